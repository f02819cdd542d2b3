"""The Magnus solvers: order of convergence, unitarity over thousands of steps, their
error estimates, the step exponential, and their use inside `diffrax.diffeqsolve`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.integrate
import scipy.linalg

import odeexpm
from odeexpm._magnus import MAX_SQUARINGS, TAYLOR, Samples, expm_step, matmul
from odeexpm._term import merge_complex, split_complex

from helpers import rel_err

rng = np.random.default_rng(3)
_h = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4))
H0 = (_h + _h.conj().T) / 4
_h = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4))
H1 = (_h + _h.conj().T) / 4


def hermitian_driven(t, args):
    """`-i (H0 + sin(2t) H1)`: skew-Hermitian, non-commuting."""
    return -1j * (H0 + jnp.sin(2 * t) * H1)


def reference(t1, t0=0.0):
    def f(t, u):
        return (np.asarray(hermitian_driven(t, None)) @ u.reshape(4, 4)).ravel()

    sol = scipy.integrate.solve_ivp(
        f, (t0, t1), np.eye(4, dtype=complex).ravel(), method="DOP853", rtol=1e-13, atol=1e-13
    )
    return sol.y[:, -1].reshape(4, 4)


MAGNUS = {
    "Magnus2": odeexpm.Magnus2(),
    "Magnus4": odeexpm.Magnus4(),
    "CFMagnus4": odeexpm.CFMagnus4(),
    "Magnus6": odeexpm.Magnus6(),
}


def fixed_steps(solver, t1, steps):
    # dt0 is traced: every step count and final time reuses one compilation per solver.
    return odeexpm.propagator(
        hermitian_driven, 0.0, t1, solver=solver, stepsize_controller=diffrax.ConstantStepSize(),
        dt0=jnp.asarray(t1 / steps), max_steps=4000,
    )


@pytest.mark.parametrize("name", MAGNUS)
def test_order_and_unitarity(name):
    solver = MAGNUS[name]
    p = solver.order(None)
    ref = reference(2.0)
    coarse, fine = (rel_err(fixed_steps(solver, 2.0, n), ref) for n in (8, 16))
    # Halving the step divides the error by about 2^p.
    assert 0.6 * 2**p < coarse / fine < 1.6 * 2**p, (coarse, fine)
    # Unitary to rounding after 4000 steps (each a product of exponentials).
    U = fixed_steps(solver, 40.0, 4000)
    assert np.linalg.norm(np.conj(U).T @ U - np.eye(4)) < 1e-12


def test_magnus4_commutators_of_modulated():
    # For a Modulated generator Magnus4 builds Omega from the precomputed commutator
    # [A0, A1] instead of matrix products: the same method, to rounding.
    A = odeexpm.Modulated(-1j * H0, -1j * H1[None], [lambda t, args: jnp.sin(2 * t)])
    assert isinstance(odeexpm.Magnus4().prepare(A), odeexpm.WithCommutators)
    U = odeexpm.propagator(
        A, 0.0, 2.0, solver=odeexpm.Magnus4(), stepsize_controller=diffrax.ConstantStepSize(),
        dt0=jnp.asarray(2.0 / 8), max_steps=4000,
    )
    assert rel_err(U, fixed_steps(odeexpm.Magnus4(), 2.0, 8)) < 1e-13


@pytest.mark.slow
def test_runge_kutta_drifts_from_unitarity():
    # The contrast the test above is about: 400 steps of size 0.1, Dopri5 against Magnus6.
    drift = lambda U: np.linalg.norm(np.conj(U).T @ U - np.eye(4))
    assert drift(fixed_steps(diffrax.Dopri5(), 40.0, 400)) > 1e-8
    assert drift(fixed_steps(MAGNUS["Magnus6"], 40.0, 400)) < 1e-13


def local_step(solver, t, h):
    term = odeexpm.LinearTerm(odeexpm.FromFunction(hermitian_driven))
    y0 = jnp.eye(4, dtype=complex)
    y1, y_error, ok = solver._step(Samples(term, None), t, h, y0)
    assert bool(ok)
    return np.asarray(y1), np.linalg.norm(np.asarray(y_error))


@pytest.mark.parametrize("h", [0.2, 0.1])
def test_error_estimates(h):
    t = 0.3
    exact = reference(t + h, t)
    # Step doubling: the estimate is the error of the propagated result, to leading order.
    for name in ["Magnus4", "CFMagnus4"]:
        y1, estimate = local_step(MAGNUS[name], t, h)
        error = np.linalg.norm(y1 - exact)
        assert 0.5 < estimate / error < 2.0, (name, estimate, error)
    # Magnus6: the embedded fourth-order estimate bounds the sixth-order error from above.
    y1, estimate = local_step(MAGNUS["Magnus6"], t, h)
    error = np.linalg.norm(y1 - exact)
    assert 10 * error < estimate < 1e-2 * h


def test_magnus6_estimate_order():
    estimates = [local_step(MAGNUS["Magnus6"], 0.3, h)[1] for h in (0.1, 0.05)]
    assert 20 < estimates[0] / estimates[1] < 45  # O(h^5): a factor 32


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128, jnp.float32, jnp.complex64])
@pytest.mark.parametrize("norm", [1e-3, 0.2, 0.9, 7.5])
def test_expm_step(dtype, norm):
    rng = np.random.default_rng(int(norm * 10))
    x = rng.standard_normal((5, 5))
    if jnp.iscomplexobj(jnp.zeros((), dtype)):
        x = x + 1j * rng.standard_normal((5, 5))
    x = norm * x / np.abs(x).sum(axis=0).max()
    e, ok = expm_step(jnp.asarray(x, dtype))
    assert bool(ok) and e.dtype == dtype
    assert rel_err(e, scipy.linalg.expm(x)) < 100 * jnp.finfo(dtype).eps


def test_expm_step_is_unitary_and_refuses_large_norms():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8))
    omega = -1j * (h + h.conj().T)
    omega = 7.0 * omega / np.abs(omega).sum(axis=0).max()
    e, _ = expm_step(jnp.asarray(omega))
    assert np.linalg.norm(np.conj(e).T @ e - np.eye(8)) < 1e-14
    theta = TAYLOR["double"][2]
    _, ok = expm_step(jnp.asarray(1.01 * theta * 2**MAX_SQUARINGS * omega / 7.0))
    assert not bool(ok)


def test_large_norm_generator_takes_several_steps():
    # ||hA|| beyond the exponential's range: steps are refused and shrunk, never wrong.
    theta = 300.0
    A = odeexpm.Constant(theta * jnp.array([[0.0, 1.0], [-1.0, 0.0]]))
    U, stats = odeexpm.propagator(A, 0.0, 1.0, return_stats=True)
    exact = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    assert rel_err(U, exact) < 1e-11
    assert int(stats.num_accepted_steps) >= theta / (TAYLOR["double"][2] * 2**MAX_SQUARINGS)


@pytest.mark.parametrize("n", [5, 40])
def test_matmul(n):
    rng = np.random.default_rng(n)
    a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    b = rng.standard_normal((n, 3)) + 1j * rng.standard_normal((n, 3))
    v = rng.standard_normal(n) + 1j * rng.standard_normal(n)
    for x, y in [(a, b), (a.real, b), (a, b.real), (a, v), (a.real, b.real)]:
        assert rel_err(matmul(jnp.asarray(x), jnp.asarray(y)), x @ y) < 1e-14


def test_diffeqsolve_with_dense_output():
    # Used directly in diffrax: SaveAt(ts) between steps uses the cubic Hermite output.
    # (LinearTerm carries complex states as ComplexPairs of real arrays.)
    term = odeexpm.LinearTerm(odeexpm.FromFunction(hermitian_driven))
    ts = jnp.linspace(0.0, 2.0, 7)
    y0 = jnp.array([1.0, 0.0, 0.0, 0.0], complex)
    sol = diffrax.diffeqsolve(
        term, odeexpm.Magnus6(), 0.0, 2.0, None, split_complex(y0), None,
        saveat=diffrax.SaveAt(ts=ts),
        stepsize_controller=diffrax.PIDController(rtol=1e-8, atol=1e-8),
    )
    assert int(sol.stats["num_steps"]) < 40
    for t, y in zip(ts[1:], merge_complex(sol.ys)[1:]):
        assert rel_err(y, reference(float(t)) @ np.asarray(y0)) < 1e-5


def test_needs_linear_term():
    term = diffrax.ODETerm(lambda t, y, args: -y)
    with pytest.raises(TypeError, match="LinearTerm"):
        diffrax.diffeqsolve(term, odeexpm.Magnus4(), 0.0, 1.0, 0.1, jnp.ones(2))
