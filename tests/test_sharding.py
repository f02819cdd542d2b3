"""Sharded batches and states on simulated CPU devices, against single-device answers.

The checks run in a subprocess (`tests/sharded_checks.py`), since the number of CPU
devices is fixed when JAX starts. Each compares a sharded call with the same call on
one device, checks that the output keeps the input's sharding, and reads the compiled
program's cross-device operations: no gathers, reductions only of a few numbers (norms,
step decisions, failure flags), and for states sharded by rows, exchanges no larger
than the rows other devices need.
"""

import json
import math
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("sharded_checks.py")


def _run(*which: str, quick: bool) -> list[dict]:
    command = [sys.executable, str(SCRIPT), *which] + (["--quick"] if quick else [])
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _largest(shape: str) -> int:
    """The number of elements of the largest array in an HLO result shape such as
    `f64[]`, `f64[12289]{0}` or `(f64[], pred[])`."""
    sizes = [
        math.prod(int(d) for d in dims.split(",") if d)
        for dims in re.findall(r"\[([\d,]*)\]", shape)
    ]
    return max(sizes, default=0)


def _check(records: list[dict], tolerance: float, exchange: dict[str, int]) -> None:
    """Every record: its error within `tolerance`, its output sharded, no gathers, only
    reductions of at most 3 numbers (a norm per state of a vmapped batch of 3; besides
    the gradient of replicated values), and
    per-device messages no longer than `exchange[name]` entries (none if absent)."""
    for record in records:
        name, ops = record["name"], record["collectives"]
        assert record["error"] <= tolerance, record
        assert record["sharded"], record
        assert not {"all-gather", "all-to-all", "reduce-scatter"} & set(ops), record
        reduced = max(map(_largest, ops.get("all-reduce", {})), default=0)
        assert reduced <= (12289 if name.endswith("grad data") else 3), record
        sent = max(map(_largest, ops.get("collective-permute", {})), default=0)
        assert sent <= exchange.get(name, 0), record


def _check_batch(records: list[dict]) -> None:
    failure = next(r for r in records if r["name"] == "failure")
    # One bad member: NaN there only with throw=False; an error, not a hang, with throw=True.
    assert failure["nan_rows"] == [i == 3 for i in range(8)]
    assert failure["raised"]
    _check([r for r in records if r is not failure], 1e-13, {})


# Largest messages: the periodic 1-D Laplacian needs one entry from each neighbour (two for a
# block of two states); the Ising chain's flips of the two highest of 10 bits need all
# 256 rows of each of the other devices.
ROW_EXCHANGE = {
    "sparse product": 16 * 3,  # (at most the 16 rows of a device, for 3 states)
    "expm_multiply stencil": 1,
    "evolve stencil": 1,
    "expm_multiply sparse": 1,
    "expm_multiply sparse ts": 1,
    "expm_multiply sparse block": 2,
    "expm_multiply sparse grad y0": 1,
    "expm_multiply sparse grad data": 1,
    "expm_multiply sparse jvp": 1,
    "expm_multiply sparse vmap": 3,  # (a halo of one entry for each of 3 states)
    "evolve sparse Ising": 256,
}


def test_batch_and_row_sharding():
    records = {r["name"]: r for r in _run("batch", "rows", quick=True)}
    assert set(records) == {
        "expm",
        "failure",
        "sparse product",
        "expm_multiply sparse",
        "evolve sparse Ising",
    }
    _check_batch([records["expm"], records["failure"]])
    rows = [r for name, r in records.items() if name not in ("expm", "failure")]
    _check(rows, 1e-12, ROW_EXCHANGE)


@pytest.mark.slow
def test_batch_sharding_everywhere():
    records = _run("batch", quick=False)
    assert len(records) == 18
    _check_batch(records)


@pytest.mark.slow
def test_row_sharding_everywhere():
    records = _run("rows", quick=False)
    assert len(records) == len(ROW_EXCHANGE)
    _check(records, 1e-12, ROW_EXCHANGE)


@pytest.mark.slow
def test_two_processes(tmp_path):
    """`benchmarks/sweep.py` as two processes of two devices each (`jax.distributed`,
    gloo), against one process with one device."""
    sweep = Path(__file__).parents[1] / "benchmarks" / "sweep.py"
    with socket.socket() as probe:  # a free port for the coordinator
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]

    def start(devices, *arguments):
        env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
        command = [sys.executable, str(sweep), "--points", "16", *arguments]
        return subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    cluster = ["--coordinator", f"localhost:{port}", "--num-processes", "2"]
    runs = [
        start(2, *cluster, "--process-id", "0", "--out", str(tmp_path / "two.npz")),
        start(2, *cluster, "--process-id", "1"),
        start(1, "--out", str(tmp_path / "one.npz")),
    ]
    try:
        outputs = [run.communicate(timeout=300) for run in runs]
    finally:
        for run in runs:
            run.kill()
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0, err[-4000:]
    assert (
        "2 process(es), 4 device(s), 16 amplitudes (output sharding P('sweep',))" in outputs[0][0]
    )
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    for key in ("values", "gradients"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-13, atol=1e-15)
    assert one["gradients"][0] < 0 < one["gradients"][-1]  # the sweep brackets the best pulse
