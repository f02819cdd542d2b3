"""The Magnus solvers: order of convergence, unitarity over thousands of steps, their
error estimates, the step exponential, and their use inside `diffrax.diffeqsolve`."""

import re

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
import scipy.integrate
import scipy.linalg
from odeexpm._complex import merge_complex, split_complex
from odeexpm._linalg import matmul
from odeexpm._solve import default_solver
from odeexpm._solver.commutators import Commutators, _lie_basis
from odeexpm._solver.exponential import step_exponential, step_range
from odeexpm._solver.magnus import Samples

from .helpers import rel_err

rng = np.random.default_rng(3)
_h = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4))
H0 = (_h + _h.conj().T) / 4
_h = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4))
H1 = (_h + _h.conj().T) / 4


def hermitian_driven(t, args):
    """`-i (H0 + sin(2t) H1)`: skew-Hermitian, non-commuting."""
    return -1j * (H0 + jnp.sin(2 * t) * H1)


# The same generator as a `Modulated` one, which Magnus8 needs.
MODULATED = odeexpm.Modulated(-1j * H0, -1j * H1[None], [lambda t, args: jnp.sin(2 * t)])


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
    "CFMagnus6": odeexpm.CFMagnus6(),
    "CFMagnus8": odeexpm.CFMagnus8(),
    "Magnus6": odeexpm.Magnus6(),
    "Magnus8": odeexpm.Magnus8(),
}


def fixed_steps(solver, t1, steps):
    # dt0 is traced: every step count and final time reuses one compilation per solver.
    generator = MODULATED if isinstance(solver, odeexpm.Magnus8) else hermitian_driven
    return odeexpm.propagator(
        generator,
        0.0,
        t1,
        solver=solver,
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=jnp.asarray(t1 / steps),
        max_steps=4000,
    )


@pytest.mark.parametrize(
    "name",
    # (CFMagnus8's order is measured on a sparse generator in test_commutator_free.py.)
    [pytest.param(n, marks=pytest.mark.slow) if n == "CFMagnus8" else n for n in MAGNUS],
)
def test_order_and_unitarity(name):
    solver = MAGNUS[name]
    p = solver.order(None)
    ref = reference(2.0)
    # (CFMagnus8 reaches the reference's own error, 1e-13, at 8 steps.)
    steps = (3, 6) if name == "CFMagnus8" else (8, 16)
    coarse, fine = (rel_err(fixed_steps(solver, 2.0, n), ref) for n in steps)
    # Halving the step divides the error by about 2^p.
    assert 0.6 * 2**p < coarse / fine < 1.6 * 2**p, (coarse, fine)
    # Unitary to rounding after 4000 steps (each a product of exponentials).
    U = fixed_steps(solver, 40.0, 4000)
    assert np.linalg.norm(np.conj(U).T @ U - np.eye(4)) < 1e-12


def test_magnus4_commutators_of_modulated():
    # For a Modulated generator Magnus4 builds Omega from the precomputed commutator
    # [A0, A1] instead of matrix products: the same method, to rounding.
    A = odeexpm.Modulated(-1j * H0, -1j * H1[None], [lambda t, args: jnp.sin(2 * t)])
    assert isinstance(commutators_of(odeexpm.Magnus4(), A), Commutators)
    U = odeexpm.propagator(
        A,
        0.0,
        2.0,
        solver=odeexpm.Magnus4(),
        stepsize_controller=diffrax.ConstantStepSize(),
        dt0=jnp.asarray(2.0 / 8),
        max_steps=4000,
    )
    assert rel_err(U, fixed_steps(odeexpm.Magnus4(), 2.0, 8)) < 1e-13


@pytest.mark.slow
def test_runge_kutta_drifts_from_unitarity():
    # The contrast the test above is about: 400 steps of size 0.1, Dopri5 against Magnus6.
    drift = lambda U: np.linalg.norm(np.conj(U).T @ U - np.eye(4))
    assert drift(fixed_steps(diffrax.Dopri5(), 40.0, 400)) > 1e-8
    assert drift(fixed_steps(MAGNUS["Magnus6"], 40.0, 400)) < 1e-13


def commutators_of(solver, generator):
    """What `solver.init` computes once per solve: the commutators its steps use."""
    return solver.init(odeexpm.LinearTerm(generator), 0.0, 1.0, None, None)


def local_step(solver, t, h):
    generator = odeexpm.FromFunction(hermitian_driven)
    if isinstance(solver, odeexpm.Magnus8):
        generator = MODULATED
    term = odeexpm.LinearTerm(generator)
    y0 = jnp.eye(4, dtype=complex)
    samples = Samples(term, None, commutators_of(solver, generator))
    y1, y_error, ok = solver.advance(samples, t, h, y0)
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


def test_magnus8_error_estimate():
    # The estimate (the h^7 terms of Omega) is O(h^7), as `error_order` tells the
    # controller, and bounds the error of the propagated eighth-order step from above.
    solver = MAGNUS["Magnus8"]
    assert solver.error_order(None) == 7
    estimates = []
    for h in (0.4, 0.2):
        y1, estimate = local_step(solver, 0.3, h)
        assert 10 * np.linalg.norm(y1 - reference(0.3 + h, 0.3)) < estimate
        estimates.append(estimate)
    assert 90 < estimates[0] / estimates[1] < 180  # a factor 2^7 = 128


def test_magnus8_needs_modulated():
    # A function that is a Modulated generator written out is solved as one ...
    U = odeexpm.propagator(hermitian_driven, 0.0, 1.0, solver=odeexpm.Magnus8())
    assert rel_err(U, odeexpm.propagator(MODULATED, 0.0, 1.0, solver=odeexpm.Magnus8())) < 1e-13
    # ... one that is not is refused.
    with pytest.raises(TypeError, match="Modulated"):
        odeexpm.propagator(
            lambda t, args: -1j * (H0 + jnp.sin(t * H1)),  # (sin of each entry)
            0.0, 1.0, solver=odeexpm.Magnus8(),
        )  # fmt: skip


def propagator_solver(generator):
    """The solver `odeexpm.propagator` picks by default for a dense generator."""
    return default_solver(
        generator, jnp.complex128, operator_valued=False, adjoint=None, rtol=None,
        stepsize_controller=None, exponential=False,
    )  # fmt: skip


def test_default_solver():
    # Magnus8 where its commutators pay (one control, n >= 12), Magnus6 otherwise.
    big = odeexpm.Modulated(jnp.zeros((16, 16)), jnp.ones((1, 16, 16)), [jnp.sin])
    assert isinstance(propagator_solver(big), odeexpm.Magnus8)
    assert isinstance(propagator_solver(MODULATED), odeexpm.Magnus6)
    assert isinstance(propagator_solver(odeexpm.FromFunction(hermitian_driven)), odeexpm.Magnus6)


@pytest.mark.parametrize("m, d", [(2, 6), (3, 4)])
def test_lie_basis(m, d):
    # Every right-nested commutator r(u) of depth d is the stated combination of the
    # basis ones, for any matrices; the basis has the dimension of the free Lie algebra.
    rng = np.random.default_rng(d)
    letters = rng.standard_normal((m, 5, 5))
    words, relations = _lie_basis(m, d)
    assert len(words) == {(2, 6): 9, (3, 4): 18}[m, d]

    def nested(word):
        out = letters[word[-1]]
        for a in reversed(word[:-1]):
            out = letters[a] @ out - out @ letters[a]
        return out

    basis = np.stack([nested(w) for w in words])
    for u, row in zip(np.ndindex(*(m,) * d), relations):
        assert np.allclose(nested(u), np.tensordot(row, basis, axes=1), atol=1e-9)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128, jnp.float32, jnp.complex64])
@pytest.mark.parametrize("norm", [1e-3, 0.2, 0.9, 7.5])
def test_expm_step(dtype, norm):
    rng = np.random.default_rng(int(norm * 10))
    x = rng.standard_normal((5, 5))
    if jnp.iscomplexobj(jnp.zeros((), dtype)):
        x = x + 1j * rng.standard_normal((5, 5))
    x = norm * x / np.abs(x).sum(axis=0).max()
    e, ok = step_exponential(jnp.asarray(x, dtype))
    assert bool(ok) and e.dtype == dtype
    assert rel_err(e, scipy.linalg.expm(x)) < 100 * jnp.finfo(dtype).eps


def test_expm_step_is_unitary_and_refuses_large_norms():
    rng = np.random.default_rng(0)
    h = rng.standard_normal((8, 8)) + 1j * rng.standard_normal((8, 8))
    omega = -1j * (h + h.conj().T)
    omega = 7.0 * omega / np.abs(omega).sum(axis=0).max()
    e, _ = step_exponential(jnp.asarray(omega))
    assert np.linalg.norm(np.conj(e).T @ e - np.eye(8)) < 1e-14
    _, ok = step_exponential(jnp.asarray(0.99 * step_range(np.float64) * omega / 7.0))
    assert bool(ok)
    _, ok = step_exponential(jnp.asarray(1.01 * step_range(np.float64) * omega / 7.0))
    assert not bool(ok)


def test_large_norm_generator_takes_several_steps():
    # ||hA|| beyond the exponential's range: steps are refused and shrunk, never wrong.
    theta = 300.0
    A = odeexpm.Constant(theta * jnp.array([[0.0, 1.0], [-1.0, 0.0]]))
    U, stats = odeexpm.propagator(A, 0.0, 1.0, return_stats=True)
    exact = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    assert rel_err(U, exact) < 1e-11
    assert int(stats.num_accepted_steps) >= theta / step_range(np.float64)


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
        term,
        odeexpm.Magnus6(),
        0.0,
        2.0,
        None,
        split_complex(y0),
        None,
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


def test_default_magnus8_accuracy():
    # At its defaults on a 16x16 driven system (Magnus8, with precomputed commutators):
    # relative error about 1e-10 and unitary to rounding.
    rng = np.random.default_rng(7)
    h0, h1 = (rng.standard_normal((16, 16)) + 1j * rng.standard_normal((16, 16)) for _ in range(2))
    h0, h1 = (h0 + h0.conj().T) / 8, (h1 + h1.conj().T) / 8
    A = odeexpm.Modulated(-1j * h0, -1j * h1[None], lambda t, a: a * jnp.cos(1.5 * t))
    assert isinstance(propagator_solver(A), odeexpm.Magnus8)
    U = odeexpm.propagator(A, 0.0, 6.0, args=0.8)

    def f(t, u):
        return (-1j * (h0 + 0.8 * np.cos(1.5 * t) * h1) @ u.reshape(16, 16)).ravel()

    sol = scipy.integrate.solve_ivp(
        f, (0.0, 6.0), np.eye(16, dtype=complex).ravel(), method="DOP853", rtol=1e-13, atol=1e-13
    )
    reference_U = sol.y[:, -1].reshape(16, 16)
    assert rel_err(U, reference_U) < 1e-9
    assert np.linalg.norm(np.conj(U).T @ U - np.eye(16)) < 1e-13
    # In single precision: about 1e-5.
    A32 = odeexpm.Modulated(
        (-1j * h0).astype(np.complex64),
        (-1j * h1[None]).astype(np.complex64),
        lambda t, a: a * jnp.cos(1.5 * t),
    )
    U32 = odeexpm.propagator(A32, 0.0, 6.0, args=np.float32(0.8))
    assert U32.dtype == jnp.complex64 and rel_err(U32, reference_U) < 3e-5


def test_step_exponential_under_vmap_squares_only_what_the_batch_needs():
    # Matrices needing 0, 2 and 4 squarings in one batch: each exact to rounding, and
    # the squarings stay conditionals (a select would run all four for every matrix).
    rng = np.random.default_rng(3)
    batch = np.stack([s * rng.standard_normal((6, 6)) / 6 for s in (0.5, 5.0, 20.0)])
    E, ok = jax.vmap(step_exponential)(jnp.asarray(batch))
    assert bool(jnp.all(ok))
    for got, x in zip(E, batch):
        assert rel_err(got, scipy.linalg.expm(x)) < 1e-13
    jaxpr = str(jax.make_jaxpr(jax.vmap(step_exponential))(jnp.asarray(batch)))
    assert "cond[" in jaxpr


def test_step_exponential_at_the_squaring_thresholds():
    # Norms at, just below and just above `theta 2^i`, where the number of squarings
    # changes: exact to rounding on both sides, and refused only beyond the range.
    from odeexpm._solver.exponential import _degree
    from odeexpm._solver.polynomial import largest_alpha

    theta = largest_alpha(_degree(jnp.float64), jnp.float64)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((5, 5))
    x /= np.abs(x).sum(axis=0).max()  # ||x||_1 = 1
    for i in range(5):
        for norm in theta * 2.0**i * np.array([1 - 1e-15, 1.0, 1 + 1e-15]):
            E, ok = step_exponential(jnp.asarray(norm * x))
            assert bool(ok) == (norm <= step_range(jnp.float64)), norm
            if ok:
                assert rel_err(E, scipy.linalg.expm(norm * x)) < 1e-13, norm


@pytest.mark.parametrize("solver", [odeexpm.Magnus6(), odeexpm.Magnus8()], ids=repr)
def test_a_step_looks_up_piecewise_controls_once(solver):
    # The samples of a step at its nodes come from one vmapped evaluation of the
    # generator, so a table lookup (here `PiecewiseConstant`'s search of its times)
    # compiles once per step rather than once per node (5 for Magnus6), in a smaller
    # and faster program.
    X, Z = jnp.array([[0.0, 1.0], [1.0, 0.0]]), jnp.diag(jnp.array([1.0, -1.0]))
    times = jnp.linspace(0.0, 5.0, 41)

    def propagator(u):
        controls = odeexpm.PiecewiseConstant(times, u)
        generator = odeexpm.Modulated(-1j * Z, -1j * X[None], controls)
        return odeexpm.propagator(generator, 0.0, 5.0, solver=solver)

    u = jnp.asarray(np.random.default_rng(6).standard_normal((40, 1)))
    text = jax.jit(propagator).lower(u).compile().as_text()
    lookups = sum(bool(re.search(r"\bwhile\(.*searchsorted", line)) for line in text.splitlines())
    assert lookups <= 2
    # Against SciPy: the product of the pieces' exponentials.
    expected = np.eye(2)
    for k in range(40):
        piece = -1j * (np.asarray(Z) + float(u[k, 0]) * np.asarray(X)) * (5.0 / 40)
        expected = scipy.linalg.expm(piece) @ expected
    assert rel_err(propagator(u), expected) < 1e-9
