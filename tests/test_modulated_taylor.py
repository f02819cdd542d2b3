"""Taylor steps in time for sparse `Modulated` generators (`odeexpm.Taylor` on a
time-dependent generator, the default for sparse and matrix-free ones): the control
coefficients against mpmath, the order of convergence, a sparse driven Ising chain
against a dense reference, the norm, gradients against finite differences, kinks the
controls hide, and the fallback for controls `jet` cannot expand."""

import diffrax
import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import odeexpm
import pytest
import scipy.sparse as sp
from jax.experimental import sparse
from odeexpm._solver.modulated_series import control_series
from odeexpm.harness._time_dependent import ising_chain

from .helpers import rel_err

T, AMPLITUDE = 3.0, 0.7


H0, H1 = (sp.csr_matrix(M) for M in ising_chain(5))
N = H0.shape[0]
PSI0 = np.zeros(N, complex)
PSI0[0] = 1.0
bcoo = lambda M: sparse.BCOO.from_scipy_sparse(M.tocoo())  # noqa: E731


def drive(t, a):
    return a * jnp.sin(t)


def sparse_generator():
    return odeexpm.schrodinger(odeexpm.Modulated(bcoo(H0), [bcoo(H1)], [drive]))


def dense_generator():
    return odeexpm.schrodinger(odeexpm.Modulated(H0.toarray(), [H1.toarray()], [drive]))


def reference(generator=None, t0=0.0, t1=T, y0=PSI0, amplitude=AMPLITUDE):
    generator = dense_generator() if generator is None else generator
    return odeexpm.evolve(
        generator, y0, t0, t1, args=amplitude, solver=diffrax.Dopri8(), rtol=1e-14, atol=1e-14
    )


def test_control_series_against_mpmath():
    def f(t, a):
        return jnp.exp(-((t - 1) ** 2)) * jnp.cos(3 * t) + a * t**2

    generator = odeexpm.Modulated(np.eye(2), np.eye(2)[None], [f])
    t, h, a, degree = 0.3, 0.5, 0.7, 12
    series = control_series(generator, jnp.asarray(t), jnp.asarray(h), a, degree)
    mpmath.mp.dps = 30
    g = lambda s: mpmath.exp(-((s - 1) ** 2)) * mpmath.cos(3 * s) + a * s**2  # noqa: E731
    expected = [mpmath.diff(g, t, j) * h**j / mpmath.factorial(j) for j in range(degree + 1)]
    np.testing.assert_allclose(series[:, 0], np.array(expected, float), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("degree", [3, 5])
def test_order_of_convergence(degree):
    # Constant steps: the global error falls as h^degree.
    expected = reference(t1=1.0)

    def error(steps):
        y = odeexpm.evolve(
            sparse_generator(), PSI0, 0.0, 1.0, args=AMPLITUDE,
            solver=odeexpm.Taylor(degree=degree),
            stepsize_controller=diffrax.ConstantStepSize(), dt0=1.0 / steps,
        )  # fmt: skip
        return float(jnp.linalg.norm(y - expected))

    coarse, fine = error(16), error(32)
    assert abs(np.log2(coarse / fine) - degree) < 0.3


def test_sparse_driven_chain_at_the_defaults():
    psi, stats = odeexpm.evolve(sparse_generator(), PSI0, 0.0, T, args=AMPLITUDE, return_stats=True)
    assert stats.solver == "Taylor(degree=30)"
    assert float(jnp.linalg.norm(psi - reference())) < 1e-11
    assert abs(float(jnp.linalg.norm(psi)) - 1) < 1e-12
    # Several states as columns, and states at the requested times.
    ts = jnp.array([1.0, 2.0, T])
    block = np.stack([PSI0, np.roll(PSI0, 3)], axis=1)
    out = odeexpm.evolve(sparse_generator(), block, 0.0, T, args=AMPLITUDE, ts=ts)
    assert out.shape == (3, N, 2)
    assert float(jnp.linalg.norm(out[1, :, 0] - reference(t1=2.0))) < 1e-11
    assert float(jnp.linalg.norm(out[-1, :, 1] - reference(y0=block[:, 1]))) < 1e-11


@pytest.mark.slow  # three gradient compilations; d/da at the defaults is checked below
def test_gradients_against_finite_differences():
    def population(a, y0):
        return jnp.abs(odeexpm.evolve(sparse_generator(), y0, 0.0, T, args=a)[0]) ** 2

    grad_a, grad_y0 = jax.grad(population, argnums=(0, 1))(AMPLITUDE, PSI0)
    delta = 1e-5
    finite = (population(AMPLITUDE + delta, PSI0) - population(AMPLITUDE - delta, PSI0)) / (
        2 * delta
    )
    assert abs(grad_a - finite) < 1e-8
    direction = np.random.default_rng(0).standard_normal(N) + 0j
    step = delta * direction
    finite_y0 = (population(AMPLITUDE, PSI0 + step) - population(AMPLITUDE, PSI0 - step)) / (
        2 * delta
    )
    assert abs(jnp.real(jnp.vdot(grad_y0, direction)) - finite_y0) < 1e-8

    # Forward mode (diffrax's ForwardMode adjoint) agrees with reverse mode.
    def forward_population(a):
        psi = odeexpm.evolve(
            sparse_generator(), PSI0, 0.0, T, args=a, adjoint=diffrax.ForwardMode()
        )
        return jnp.abs(psi[0]) ** 2

    _, tangent = jax.jvp(forward_population, (AMPLITUDE,), (1.0,))
    assert abs(tangent - grad_a) < 1e-10


def test_generator_built_inside_jit_then_differentiated():
    # As users write it: the generator is made inside the jitted function of the
    # amplitude, and jax.grad wraps it (no tracer may leak from one trace to the next).
    @jax.jit
    def population(a):
        H = odeexpm.Modulated(bcoo(H0), [bcoo(H1)], [drive])
        return jnp.abs(odeexpm.evolve(odeexpm.schrodinger(H), PSI0, 0.0, T, args=a)[0]) ** 2

    gradient = jax.jit(jax.grad(population))
    delta = 1e-5
    expected = sum(
        sign * jnp.abs(reference(amplitude=AMPLITUDE + sign * delta)[0]) ** 2 / (2 * delta)
        for sign in (1, -1)
    )
    assert abs(gradient(AMPLITUDE) - expected) < 1e-8
    assert abs(gradient(0.5) - gradient(0.5)) == 0


def fast_drive(t, a):
    return a * jnp.sin(15.0 * t)


def test_controls_beyond_their_series_are_resolved():
    # A control with a kink at an undeclared time, and a fast drive (15 periods per unit
    # of time: beyond what the series' degree covers in a step the Hamiltonian allows).
    # The mismatch at each step's end makes the controller shorten the steps.
    kink = 1.237

    def ramp(t, a):
        return a * jnp.maximum(t - kink, 0.0)

    fast = odeexpm.schrodinger(odeexpm.Modulated(bcoo(H0), [bcoo(H1)], [fast_drive]))
    dense = odeexpm.schrodinger(odeexpm.Modulated(H0.toarray(), [H1.toarray()], [fast_drive]))
    psi = odeexpm.evolve(fast, PSI0, 0.0, T, args=AMPLITUDE)
    assert float(jnp.linalg.norm(psi - reference(dense))) < 1e-10

    def generator(kind):
        parts = (bcoo(H0), [bcoo(H1)]) if kind == "sparse" else (H0.toarray(), [H1.toarray()])
        return odeexpm.schrodinger(odeexpm.Modulated(*parts, [ramp]))

    psi = odeexpm.evolve(generator("sparse"), PSI0, 0.0, T, args=AMPLITUDE)
    middle = reference(generator("dense"), 0.0, kink)
    expected = reference(generator("dense"), kink, T, y0=middle)
    assert float(jnp.linalg.norm(psi - expected)) < 1e-9


def test_controls_jet_cannot_expand_fall_back_to_runge_kutta():
    pulse = odeexpm.PiecewiseConstant(jnp.linspace(0.0, T, 4), jnp.array([0.3, -0.2, 0.5]))
    generator = odeexpm.schrodinger(odeexpm.Modulated(bcoo(H0), [bcoo(H1)], [pulse]))
    psi, stats = odeexpm.evolve(generator, PSI0, 0.0, T, return_stats=True)
    assert stats.solver == "Dopri8()"
    dense = odeexpm.schrodinger(odeexpm.Modulated(H0.toarray(), [H1.toarray()], [pulse]))
    assert rel_err(psi, reference(dense)) < 1e-10
    # Asked for by name, the Taylor solver says why it cannot take them (it raised
    # jet's bare `KeyError: scan` before).
    with pytest.raises(TypeError, match="odeexpm.Taylor.*jet"):
        odeexpm.evolve(generator, PSI0, 0.0, T, solver=odeexpm.Taylor())


def test_single_precision():
    generator = odeexpm.schrodinger(
        odeexpm.Modulated(bcoo(H0.astype(np.float32)), [bcoo(H1.astype(np.float32))], [drive])
    )
    psi, stats = odeexpm.evolve(
        generator, PSI0.astype(np.complex64), 0.0, T, args=AMPLITUDE, return_stats=True
    )
    assert stats.solver == "Taylor(degree=16)" and psi.dtype == jnp.complex64
    assert float(jnp.linalg.norm(psi - reference())) < 1e-5


def test_step_derivatives_and_their_memory():
    # The JVP rule of a step's terms against JAX's own derivative of the plain scan, in
    # every input (the state, the operators' values, the control coefficients, h); and
    # reverse mode keeps a few states per term, not each iteration's buffer of products.
    from odeexpm._solver.modulated_series import ModulatedParts, _series_scan, taylor_terms

    n, degree = 2000, 40
    rng = np.random.default_rng(3)
    offsets = np.array([-1, 0, 1])
    rows = np.concatenate([np.arange(max(0, -o), n - max(0, o)) for o in offsets])
    columns = np.concatenate([np.arange(max(0, o), n - max(0, -o)) for o in offsets])
    indices = jnp.asarray(np.stack([rows, columns], 1))
    values = jnp.asarray(rng.standard_normal((2, len(rows))) / 2)
    y = jnp.asarray(rng.standard_normal(n))
    coefficients = jnp.asarray(rng.standard_normal((1, degree)) / np.arange(1, degree + 1) ** 2)
    W = jnp.asarray(rng.standard_normal(n))

    def loss(series, values, coefficients, h, y):
        drift, control = (sparse.BCOO((v, indices), shape=(n, n)) for v in values)
        parts = ModulatedParts.of(odeexpm.Modulated(drift, [control], [drive]))
        return jnp.sum(W * series(parts, coefficients, h, y))

    def with_rule(parts, coefficients, h, y):
        return taylor_terms(parts, coefficients, h, y, degree=degree)[0]

    def plain(parts, coefficients, h, y):
        return _series_scan(parts, coefficients, h, y, degree, keep_terms=False)[0][0]

    inputs = (values, coefficients, jnp.asarray(0.3), y)
    grads = jax.grad(lambda *x: loss(with_rule, *x), argnums=(0, 1, 2, 3))(*inputs)
    expected = jax.grad(lambda *x: loss(plain, *x), argnums=(0, 1, 2, 3))(*inputs)
    for got, want in zip(grads, expected):
        assert rel_err(got, want) < 1e-13
    tangents = tuple(jnp.asarray(rng.standard_normal(jnp.shape(x))) for x in inputs)
    _, jvp = jax.jvp(lambda *x: loss(with_rule, *x), inputs, tangents)
    _, expected_jvp = jax.jvp(lambda *x: loss(plain, *x), inputs, tangents)
    assert abs(float(jvp - expected_jvp)) < 1e-12 * abs(float(expected_jvp))

    gradient = jax.jit(jax.grad(lambda *x: loss(with_rule, *x), argnums=(0, 1, 2, 3)))
    memory = gradient.lower(*inputs).compile().memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    # 427 states; the plain scan keeps each iteration's buffer of products: 1988.
    assert memory.temp_size_in_bytes < 16 * degree * y.nbytes
