"""Tests of the validation harness (`odeexpm.harness`) and the `odeexpm compare` CLI.

Kept fast: a tiny suite, few methods, small matrices (each new jit of the ODE path costs
seconds of compilation). References go to the test session's cache (`conftest.py`),
never the user's.
"""

import csv
import json

import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
from odeexpm import harness, reference
from odeexpm.cli import main
from odeexpm.harness import _references


def _boom(quantity, rtol):
    def fn(A, V):
        raise FloatingPointError("boom: this method always raises")

    return fn


def _tiny_suite(quick):
    hard = {case.name: case for case in harness.get_suite("hard").cases(quick=False)}
    rotation = harness.expm_case(
        "rotation-3",
        np.array([[0.0, 3.0], [-3.0, 0.0]]),
        reference=harness.Reference(label="closed form", expm=harness.closed_form_2x2),
        gradients=True,
    )
    return [hard["moler-badly-scaled-3x3"], rotation]


@pytest.fixture(scope="module")
def tiny_records():
    harness.register_suite("tiny", _tiny_suite, description="Two small cases.")
    harness.register_method(harness.Method("boom", "always raises", _boom))
    try:
        yield harness.run(
            suites=["tiny"],
            methods=["pade", "ode", "pade-frechet", "boom"],
            rtols=["default", 1e-8],
            repeats=2,
        )
    finally:
        harness.unregister_suite("tiny")
        harness.unregister_method("boom")


def _find(records, case, method, quantity="expm"):
    (record,) = [
        r for r in records if r.case == case and r.method == method and r.quantity == quantity
    ]
    return record


def test_run_measures_every_combination(tiny_records):
    keys = {(r.case, r.method, r.quantity, r.rtol) for r in tiny_records}
    assert keys == {
        ("moler-badly-scaled-3x3", "pade", "expm", None),
        ("moler-badly-scaled-3x3", "ode", "expm", "default"),
        ("moler-badly-scaled-3x3", "ode", "expm", "1e-08"),
        ("moler-badly-scaled-3x3", "boom", "expm", None),
        ("rotation-3", "pade", "expm", None),
        ("rotation-3", "ode", "expm", "default"),
        ("rotation-3", "ode", "expm", "1e-08"),
        ("rotation-3", "boom", "expm", None),
        ("rotation-3", "pade-frechet", "vjp", None),
        ("rotation-3", "pade-frechet", "jvp", None),
    }
    ode = _find([r for r in tiny_records if r.rtol == "default"], "rotation-3", "ode")
    assert ode.status == "ok" and ode.error < 1e-12
    assert ode.steps > 0 and ode.squarings >= 0 and ode.time_s > 0 and ode.compile_s > 0
    assert ode.reference == "closed form"
    loose = _find([r for r in tiny_records if r.rtol == "1e-08"], "rotation-3", "ode")
    assert loose.status == "ok" and loose.error < 1e-6 and loose.label == "ode (rtol=1e-08)"
    assert _find(tiny_records, "rotation-3", "pade-frechet", "vjp").error < 1e-13


def test_failures_are_recorded_not_dropped(tiny_records):
    # jax.scipy.linalg.expm returns NaN on Moler's badly scaled matrix (||A|| ~ 2e10).
    pade = _find(tiny_records, "moler-badly-scaled-3x3", "pade")
    assert pade.status == "nonfinite" and pade.error is None and pade.failed
    assert "NaN" in pade.message
    boom = _find(tiny_records, "moler-badly-scaled-3x3", "boom")
    assert boom.status == "error" and boom.error is None
    assert boom.message.startswith("FloatingPointError: boom")


def test_write_outputs_writes_every_file(tiny_records, tmp_path):
    out = tmp_path / "out"
    paths = harness.write_outputs(tiny_records, out)
    assert {"csv", "json", "report", "error_vs_time_tiny", "cost_vs_norm", "gradients"} <= set(
        paths
    )
    for path in paths.values():
        assert path.parent == out and path.stat().st_size > 0
    with open(paths["csv"]) as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(tiny_records)
    assert {row["status"] for row in rows} == {"ok", "nonfinite", "error"}
    payload = json.loads(paths["json"].read_text())
    assert payload["environment"]["jax_enable_x64"] is True
    assert harness.read_records(paths["json"]) == list(tiny_records)
    report = paths["report"].read_text()
    for path in paths.values():
        if path.suffix == ".png":
            assert f"]({path.name})" in report
    assert "## Failures and skips" in report and "boom: this method always raises" in report


def test_stiff_projector_fails_pade_but_not_ode():
    records = harness.run(suites=["stiff"], methods=["pade", "ode"], quick=True, repeats=1)
    statuses = {r.method: r.status for r in records}
    assert statuses == {"pade": "nonfinite", "ode": "ok"}


def test_method_limits_give_skips_with_a_reason():
    harness.register_suite("big", lambda quick: [harness.expm_case("zero-9", np.zeros((9, 9)))])
    try:
        (record,) = harness.run(suites=["big"], methods=["ode-plain-kvaerno5"], rtols=["default"])
    finally:
        harness.unregister_suite("big")
    assert record.status == "skipped" and not record.failed
    assert "n = 9 > 8" in record.message and record.compile_s is None


def test_complex_cases_run_in_complex_dtypes():
    case = harness.get_suite("skew").cases()[1]
    assert case.name == "hermitian-8" and case.is_complex
    from odeexpm.harness._run import dtypes_for

    assert dtypes_for(case, ["float64", "complex128", "float32"]) == ["complex128", "complex64"]


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        harness.register_suite("hard", lambda quick: [])
    with pytest.raises(ValueError, match="already registered"):
        harness.register_method(harness.get_method("pade"))
    with pytest.raises(KeyError, match="Unknown suite"):
        harness.get_suite("no-such-suite")


def test_reference_cache_is_used(monkeypatch, tmp_path):
    calls = []

    def counting_mp_expm(A, dps):
        calls.append(dps)
        return reference.__dict__["_original_mp_expm"](A, dps=dps)

    monkeypatch.setitem(reference.__dict__, "_original_mp_expm", reference.mp_expm)
    monkeypatch.setattr(reference, "mp_expm", counting_mp_expm)
    monkeypatch.setenv("ODEEXPM_CACHE", str(tmp_path / "my-cache"))
    A = np.random.default_rng(0).standard_normal((5, 5))
    first = harness.precise_expm(A)
    second = harness.precise_expm(A)
    assert calls == [_references.MPMATH_DPS]
    np.testing.assert_array_equal(first, second)
    assert harness.reference_cache_dir() == tmp_path / "my-cache"
    assert len(list((tmp_path / "my-cache" / "references").glob("expm-mpmath-*.npy"))) == 1
    harness.precise_expm(A + 1e-12)  # different bytes: a new entry
    assert len(calls) == 2


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("ODEEXPM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert harness.reference_cache_dir() == tmp_path / "odeexpm"


@pytest.mark.skipif(not _references.LONGDOUBLE_IS_EXTENDED, reason="np.longdouble is float64")
@pytest.mark.parametrize("is_complex", [False, True])
def test_mpmath_and_longdouble_references_agree(is_complex):
    rng = np.random.default_rng(1)
    A = 2 * rng.standard_normal((6, 6))
    E = rng.standard_normal((6, 6))
    if is_complex:
        A = A + 2j * rng.standard_normal((6, 6))
        E = E + 1j * rng.standard_normal((6, 6))
    mp = reference.mp_expm(A, dps=40)
    ld = harness.longdouble_expm(A)
    assert np.linalg.norm(mp - ld) / np.linalg.norm(mp) < 1e-15
    mp_derivative = reference.mp_frechet(A, E, dps=40)
    block = harness.longdouble_expm(np.block([[A, E], [np.zeros_like(A), A]]))[:6, 6:]
    assert np.linalg.norm(mp_derivative - block) / np.linalg.norm(mp_derivative) < 1e-15


@pytest.mark.parametrize(
    "A",
    [
        [[-49.0, 24.0], [-64.0, 31.0]],
        [[1.0 + 1e-8, 1.0], [0.0, 1.0 - 1e-8]],
        [[0.0, 1000.0], [-1000.0, 0.0]],
        [[1.0, 2.0], [0.0, 1.0]],  # defective: the limit sinh(d)/d -> 1
        [[0.5j, 1.0], [2.0, -1j]],
    ],
)
def test_closed_form_2x2_agrees_with_mpmath(A):
    A = np.array(A)
    closed = harness.closed_form_2x2(A)
    mp = reference.mp_expm(A, dps=60)
    assert np.linalg.norm(closed - mp) / np.linalg.norm(mp) < 1e-15


def test_finite_series_agrees_with_mpmath():
    for A in [np.diag(np.full(3, 6.0), 1), -np.eye(4) + np.diag(np.ones(3), 1)]:
        closed = harness.closed_form_nilpotent_shift(A)
        mp = reference.mp_expm(A, dps=40)
        assert np.linalg.norm(closed - mp) / np.linalg.norm(mp) < 1e-15


def test_vjp_reference_matches_jax_convention_for_complex_input():
    # jax.grad of the real loss Re sum(W * exp(A)) at complex A is L_exp(A^T, W): the
    # conjugate of the steepest-ascent direction L_exp(A^H, conj(W)).
    case = harness.expm_case(
        "complex-3",
        np.array([[0.3, 1j, 0.0], [0.5, -0.2j, 0.1], [0.0, 0.4 + 0.3j, 0.1]]),
        gradients=True,
    )
    W = jnp.asarray(case.data["W"])
    grad = jax.grad(lambda A: jnp.real(jnp.sum(W * jax.scipy.linalg.expm(A))))(
        jnp.asarray(case.data["A"])
    )
    expected = case.expected("vjp", "complex128")
    assert np.linalg.norm(grad - expected) / np.linalg.norm(expected) < 1e-13
    A, W = case.data["A"], case.data["W"]
    ascent = reference.mp_frechet(A.conj().T, W.conj(), dps=40)
    np.testing.assert_allclose(expected, ascent.conj(), rtol=1e-13, atol=1e-15)


def test_float32_references_use_the_rounded_input():
    case = harness.get_suite("hard").cases(quick=True)[2]  # [[1 + 1e-8, 1], [0, 1 - 1e-8]]
    assert case.name == "near-defective-2x2"
    rounded = np.asarray(case.data["A"], np.float32).astype(np.float64)
    np.testing.assert_array_equal(
        case.expected("expm", "float32"), harness.closed_form_2x2(rounded)
    )


def test_cli_compare_writes_outputs(tmp_path, capsys):
    out = tmp_path / "results"
    status = main(
        [
            "compare",
            "--quick",
            "--suites",
            "hard",
            "--methods",
            "pade",
            "--repeats",
            "1",
            "--out",
            str(out),
            "--no-compile-cache",
        ]
    )
    assert status == 0
    for name in (
        "results.csv",
        "results.json",
        "report.md",
        "error_vs_time_hard.png",
        "cost_vs_norm.png",
    ):
        assert (out / name).stat().st_size > 0
    printed = capsys.readouterr().out
    assert "moler-vanloan-2x2" in printed and "3 measurements: 3 ok" in printed


def test_cli_list_help_version_and_usage_errors(capsys):
    assert main(["compare", "--list", "--no-compile-cache"]) == 0
    listed = capsys.readouterr().out
    assert "large_norm" in listed and "ode-backsolve" in listed
    for argv in (["--version"], ["compare", "--help"]):
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 0
    assert "odeexpm 0." in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit:
        main(["compare", "--suites", "no-such-suite", "--no-compile-cache"])
    assert exit.value.code == 2
    with pytest.raises(SystemExit) as exit:
        main(["compare", "--rtol", "2"])
    assert exit.value.code == 2


def test_action_suite_quick_runs_and_scipy_agrees():
    records = harness.run(
        suites=["action"], methods=["action-ode", "action-scipy"], quick=True, repeats=1
    )
    assert {(r.case, r.method) for r in records} == {
        (case, method)
        for case in ("rotation-2x2", "sparse-path-32")
        for method in ("action-ode", "action-scipy")
    }
    for r in records:
        assert r.ok, (r.case, r.method, r.message)
        assert r.error < 1e-12, (r.case, r.method, r.error)
    sparse = _find(records, "sparse-path-32", "action-ode", "action")
    assert sparse.reference == "longdouble" and sparse.steps >= 1


@pytest.mark.parametrize("is_complex", [False, True])
def test_longdouble_action_agrees_with_scipy_and_mpmath(is_complex):
    scipy_linalg = pytest.importorskip("scipy.sparse.linalg")
    import scipy.sparse

    rng = np.random.default_rng(7)
    n = 12
    A = np.where(rng.random((n, n)) < 0.3, rng.standard_normal((n, n)), 0.0) * 3
    B = rng.standard_normal((n, 2))
    if is_complex:
        A = A * (1 + 0.5j)
    rows, columns = np.nonzero(A)
    values, indices = A[rows, columns], np.stack([rows, columns], axis=1)
    ours = harness.longdouble_action(values, indices, B, 1.5)
    exact = reference.mp_expm(1.5 * A, dps=40) @ B
    np.testing.assert_allclose(ours, exact, rtol=1e-14, atol=1e-14 * np.abs(exact).max())
    theirs = scipy_linalg.expm_multiply(1.5 * scipy.sparse.csr_array(A), B)
    np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-12 * np.abs(exact).max())


def test_markov_generator_conserves_probability():
    from odeexpm.harness._action import markov_generator

    values, indices = markov_generator(50, 3, seed=0)
    column_sums = np.bincount(indices[:, 1], values, minlength=50)
    np.testing.assert_allclose(column_sums, 0, atol=1e-14)
    p = harness.longdouble_action(values, indices, np.full(50, 1 / 50), 2.0)
    assert abs(p.sum() - 1) < 1e-14 and p.min() >= 0


def test_time_dependent_quick_runs_with_unitarity():
    records = harness.run(
        suites=["time_dependent"], methods=["magnus6", "pwc-pade"], quick=True, repeats=1
    )
    magnus = _find(records, "driven-qubit", "magnus6", "propagator")
    assert magnus.ok and magnus.error < 1e-8 and magnus.unitarity < 1e-13
    grape = {r.segments: r for r in records if r.method == "pwc-pade"}
    assert sorted(grape) == [64, 256, 1024]
    assert all(r.ok and r.unitarity < 1e-13 for r in grape.values())
    # The midpoint product is second order: 4x the segments, ~16x smaller error.
    assert 8 < grape[256].error / grape[1024].error < 32


def test_propagator_reference_matches_the_closed_form():
    # The commuting case has a closed form; the Dopri8 reference must reproduce it.
    case = next(
        c for c in harness.get_suite("time_dependent").cases() if c.name == "commuting-qubit"
    )
    data = case.inputs("complex128")
    exact = case.reference(data, "propagator")
    solved = harness.PropagatorReference(case.generator)(data, "propagator")
    assert np.linalg.norm(solved - exact) / np.linalg.norm(exact) < 1e-12


def test_sparse_time_dependent_case_skips_dense_only_methods():
    # The sparse Ising chain: Magnus steps and Padé need dense matrices and skip it;
    # the default propagator (Taylor steps in time) matches its dense reference.
    case = next(c for c in harness.get_suite("time_dependent").cases() if c.name == "tfim-6-sparse")
    assert "dense" in harness.get_method("magnus4").skip_reason(case)
    assert "dense" in harness.get_method("pwc-pade").skip_reason(case)
    assert harness.get_method("rk-dopri8").skip_reason(case) is None
    data = case.inputs("complex128")
    generator = case.generator({key: jnp.asarray(value) for key, value in data.items()})
    U, stats = odeexpm.propagator(
        generator, float(data["t0"]), float(data["t1"]), return_stats=True
    )
    assert stats.solver == "Taylor(degree=30)"
    expected = case.reference(data, "propagator")
    assert np.linalg.norm(U - expected) / np.linalg.norm(expected) < 1e-10


def test_every_expm_case_carries_its_condition_number(monkeypatch):
    # Beside every error of an `expm` case: kappa_exp, SciPy's exact expm_cond up to
    # n = 32, a power-iteration estimate beyond (checked here against the exact value).
    import scipy.linalg
    from odeexpm.harness import _cases

    for name in ("hard", "nonnormal", "stiff", "skew", "large_norm"):
        for case in harness.get_suite(name).cases():
            assert 0 < case.tags["condition"] < np.inf
    rng = np.random.default_rng(3)
    A = rng.standard_normal((12, 12)) + 3 * np.triu(rng.standard_normal((12, 12)), 1)
    monkeypatch.setattr(_cases, "EXACT_CONDITION_SIZE", 4)
    for M in (A, A + 1j * rng.standard_normal((12, 12))):
        exact = scipy.linalg.expm_cond(M)
        estimate = _cases.condition_number(M)
        assert 0.9 * exact <= estimate <= exact * (1 + 1e-12)


def test_case_data_do_not_depend_on_the_blas_kernel():
    # OpenBLAS picks its kernels by CPU, and they round differently: seeded data built
    # with BLAS (a norm, `H @ H.T`) moved by an ulp between machines, and with them the
    # errors at the conditioning limit. The same data under other kernels, in a fresh
    # process (on a CPU or a BLAS without these kernels, the variable changes nothing).
    import os
    import subprocess
    import sys
    import tempfile

    suites = ("stiff", "testmats")  # (every case has its seeded directions)
    # (Except Al-Mohy and Higham's 31, the Schur factor of a 13x13 involutory matrix:
    # LAPACK's, as in their set.)
    skipped = {"amh-31-invol-schur"}
    script = (
        "import sys, numpy as np; from odeexpm import harness; "
        "np.savez(sys.argv[1], **{f'{c.name}/{k}': v for s in sys.argv[2:] "
        "for c in harness.get_suite(s).cases() for k, v in c.data.items()})"
    )
    here = {
        f"{case.name}/{key}": value
        for suite in suites
        for case in harness.get_suite(suite).cases()
        for key, value in case.data.items()
    }
    for kernel in ("Haswell", "Sandybridge"):
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "data.npz")
            env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
            subprocess.run([sys.executable, "-c", script, path, *suites], env=env, check=True)
            there = np.load(path)
            differing = [
                k for k in here if k.split("/")[0] not in skipped
                and not np.array_equal(here[k], there[k])
            ]  # fmt: skip
            assert not differing, (kernel, differing)
