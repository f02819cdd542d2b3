"""Every experiment script runs end to end in its quick mode and writes its report and
figures (into a temporary folder: the committed results are never touched)."""

import os
import pathlib
import subprocess
import sys

import pytest

EXPERIMENTS = pathlib.Path(__file__).resolve().parent.parent / "experiments"
SCRIPTS = sorted(path.stem for path in EXPERIMENTS.glob("*.py") if not path.stem.startswith("_"))


def test_every_experiment_is_indexed():
    index = (EXPERIMENTS / "README.md").read_text()
    missing = [name for name in SCRIPTS if f"{name}.py" not in index]
    assert not missing, f"experiments/README.md does not index {missing}"


@pytest.mark.parametrize("name", SCRIPTS)
def test_experiment_runs_quick(name, tmp_path):
    env = {**os.environ, "ODEEXPM_CACHE": str(tmp_path / "cache"), "MPLBACKEND": "Agg"}
    completed = subprocess.run(
        [sys.executable, str(EXPERIMENTS / f"{name}.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (tmp_path / f"{name}.md").stat().st_size > 0
    assert list(tmp_path.glob(f"{name}*.png")), "no figure written"
