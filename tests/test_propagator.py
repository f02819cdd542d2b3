"""`propagator` and `evolve` against independent references: closed forms, SciPy's
`solve_ivp` at tight tolerance, exact products of exponentials, identities, and
finite differences. Generators are defined once at module level so that tests share
compilations."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
import scipy.integrate
import scipy.linalg
from odeexpm._solver.commutators import Commutators

from .helpers import count_compiles, random_matrix, rel_err

X = np.array([[0.0, 1.0], [1.0, 0.0]])
Y = np.array([[0.0, -1j], [1j, 0.0]])
Z = np.array([[1.0, 0.0], [0.0, -1.0]])

B0 = random_matrix(4, 10)
B1 = random_matrix(4, 11)


def qubit(t, args):
    """A driven two-level system `-i (Z/2 + a cos(w t) X + 0.2 Y)`, args = (a, w)."""
    a, w = args
    return -1j * (0.5 * Z + a * jnp.cos(w * t) * X + 0.2 * Y)


def commuting(t, args):
    """`f(t) B0` with `f = cos(2t) + 1/2`: then `U(t, 0) = exp(F(t) B0)`."""
    return (jnp.cos(2 * t) + 0.5) * B0


def commuting_exact(t):
    return scipy.linalg.expm((np.sin(2 * t) / 2 + 0.5 * t) * np.asarray(B0))


def real_driven(t, args):
    return B0 + jnp.sin(3 * t) * B1


def solve_ivp_propagator(A, t0, t1, n, args=None):
    """Reference: SciPy's DOP853 at rtol = atol = 1e-13 (independent of diffrax)."""

    def f(t, u):
        return (np.asarray(A(t, args)) @ u.reshape(n, n)).ravel()

    u0 = np.eye(n, dtype=complex).ravel()
    sol = scipy.integrate.solve_ivp(f, (t0, t1), u0, method="DOP853", rtol=1e-13, atol=1e-13)
    return sol.y[:, -1].reshape(n, n)


QUBIT_ARGS = (jnp.array(0.7), jnp.array(1.3))
QUBIT_REF = solve_ivp_propagator(qubit, 0.0, 8.0, 2, QUBIT_ARGS)

# (Magnus4, CFMagnus4 and Magnus2 are tested in test_magnus.py.)
# Runge-Kutta solvers through `propagator`: test_piecewise_constant_runge_kutta.


def test_python_number_args_are_traced(caplog):
    # A new value of a Python float in `args` reuses the compiled solve.
    odeexpm.propagator(qubit, 0.0, 8.0, args=(0.7, 1.3))
    assert count_compiles(caplog, odeexpm.propagator, qubit, 0.0, 8.0, args=(0.71, 1.3)) == 0


def test_driven_qubit():
    U = odeexpm.propagator(qubit, 0.0, 8.0, args=QUBIT_ARGS)
    assert U.dtype == jnp.complex128 and U.shape == (2, 2)
    assert rel_err(U, QUBIT_REF) < 1e-9
    assert np.linalg.norm(np.conj(U).T @ U - np.eye(2)) < 1e-13  # Magnus steps are unitary


def test_commuting_generator():
    U = odeexpm.propagator(commuting, 0.0, 3.0)
    assert U.dtype == jnp.float64
    assert rel_err(U, commuting_exact(3.0)) < 1e-9


def test_default_accuracy_and_stats():
    U, stats = odeexpm.propagator(real_driven, 0.0, 2.0, return_stats=True)
    assert rel_err(U, solve_ivp_propagator(real_driven, 0.0, 2.0, 4)) < 1e-9
    assert bool(stats.successful) and int(stats.num_steps) > 0
    assert int(stats.num_steps) == int(stats.num_accepted_steps + stats.num_rejected_steps)


def test_determinant_identity():
    # det U(T) = exp(int_0^T tr A(t) dt) (Liouville).
    T = 2.0
    U = odeexpm.propagator(real_driven, 0.0, T)
    integral = T * np.trace(B0) + (1 - np.cos(3 * T)) / 3 * np.trace(B1)
    assert abs(np.linalg.det(np.asarray(U)) / np.exp(integral) - 1) < 1e-10


def test_composition_and_reversal():
    U20 = odeexpm.propagator(real_driven, 0.0, 2.0)
    U10 = odeexpm.propagator(real_driven, 0.0, 0.7)
    U21 = odeexpm.propagator(real_driven, 0.7, 2.0)
    assert rel_err(U21 @ U10, U20) < 1e-10
    # Integrating backwards gives the inverse.
    U02 = odeexpm.propagator(real_driven, 2.0, 0.0)
    assert rel_err(U02, np.linalg.inv(np.asarray(U20))) < 1e-10


def test_saved_times():
    ts = jnp.array([0.0, 0.3, 1.1, 2.0])
    Us = odeexpm.propagator(commuting, 0.0, 2.0, ts=ts)
    assert Us.shape == (4, 4, 4)
    for t, U in zip(ts, Us):
        assert rel_err(U, commuting_exact(float(t))) < 1e-9


# Piecewise-constant generators: the reference is the exact product of exponentials.

TIMES = np.array([0.0, 0.4, 0.5, 1.3, 2.0])
VALUES = np.stack([random_matrix(3, s, complex_=True, scale=2.0) for s in range(4)])


def piecewise_exact(times, values, t0, t1):
    U = np.eye(values.shape[-1], dtype=complex)
    for i in range(len(values)):
        a, b = max(times[i], t0), min(times[i + 1], t1)
        if i == 0:
            a = t0
        if i == len(values) - 1:
            b = t1
        if b > a:
            U = scipy.linalg.expm((b - a) * values[i]) @ U
    return U


@pytest.mark.parametrize("t0,t1", [(0.0, 2.0), (0.2, 1.0), (-0.5, 2.5)])
def test_piecewise_constant(t0, t1):
    A = odeexpm.PiecewiseConstant(TIMES, VALUES)
    U, stats = odeexpm.propagator(A, t0, t1, return_stats=True)
    assert rel_err(U, piecewise_exact(TIMES, VALUES, t0, t1)) < 1e-10
    # Magnus6 is exact on a constant piece: the controller grows the step to each jump.
    assert int(stats.num_steps) < 40


def test_piecewise_constant_runge_kutta():
    # Runge-Kutta solvers step to the jumps (not searching for them with rejected steps)
    # and to the saved times (no interpolation error).
    A = odeexpm.PiecewiseConstant(TIMES, VALUES)
    ts = jnp.array([0.3, 1.0, 2.0])
    Us, stats = odeexpm.propagator(A, 0.0, 2.0, ts=ts, solver=diffrax.Dopri8(), return_stats=True)
    for t, U in zip(ts, Us):
        assert rel_err(U, piecewise_exact(TIMES, VALUES, 0.0, float(t))) < 1e-10
    assert int(stats.num_rejected_steps) < 10


def test_interpolated_linear_is_trapezoid():
    # A commuting linear interpolation g(t) B0: int g is exactly the trapezoid rule.
    ts = np.array([0.0, 0.5, 0.8, 1.5])
    g = np.array([1.0, -0.5, 2.0, 0.3])
    A = odeexpm.Interpolated(ts, g[:, None, None] * np.asarray(B0)[None])
    U = odeexpm.propagator(A, 0.0, 1.5)
    assert rel_err(U, scipy.linalg.expm(np.trapezoid(g, ts) * np.asarray(B0))) < 1e-10


@pytest.mark.slow
def test_interpolated_cubic():
    ts = np.linspace(0.0, 3.0, 61)
    values = (np.cos(2 * ts) + 0.5)[:, None, None] * np.asarray(B0)[None]
    A = odeexpm.Interpolated(ts, values, kind="cubic")
    assert rel_err(A(ts[17]), values[17]) < 1e-14 and A.jump_ts is None
    U = odeexpm.propagator(A, 0.0, 3.0)
    # Backward Hermite coefficients: interpolation error O(dt^2) = 2.5e-3 here.
    assert rel_err(U, commuting_exact(3.0)) < 1e-4
    with pytest.raises(ValueError, match="kind"):
        odeexpm.Interpolated(ts, ts, kind="quintic")


class Pulse(eqx.Module):
    """A Gaussian pulse with learnable amplitude: an equinox module as a coefficient."""

    amplitude: jax.Array

    def __call__(self, t, args=None):
        return self.amplitude * jnp.exp(-((t - 1.0) ** 2))


def test_modulated_matches_function():
    pulse = Pulse(jnp.array(0.8))
    A = odeexpm.Modulated(
        -1j * Z / 2, -1j * jnp.stack([X, Y]), [pulse, lambda t, args: 0.3 * jnp.sin(t)]
    )
    fn = lambda t, args: -1j * (Z / 2 + 0.8 * jnp.exp(-((t - 1.0) ** 2)) * X + 0.3 * jnp.sin(t) * Y)
    assert rel_err(A(0.4), fn(0.4, None)) < 1e-15
    assert A.jump_ts is None
    steps = odeexpm.PiecewiseConstant(jnp.array([0.0, 1.0, 1.5, 3.0]), jnp.array([0.5, -1.0, 2.0]))
    assert odeexpm.Modulated(A.drift, A.operators, [steps, pulse]).jump_ts.tolist() == [1.0, 1.5]
    one_callable = odeexpm.Modulated(
        A.drift, A.operators, lambda t, args: jnp.stack([pulse(t), 0.3 * jnp.sin(t)])
    )
    assert rel_err(one_callable(0.4), fn(0.4, None)) < 1e-15
    U = odeexpm.propagator(A, 0.0, 3.0)
    assert rel_err(U, solve_ivp_propagator(fn, 0.0, 3.0, 2)) < 1e-9


def test_evolve_shapes_and_promotion():
    U = odeexpm.propagator(qubit, 0.0, 8.0, args=QUBIT_ARGS)
    psi = jnp.array([1.0, 0.0])  # real state, complex generator: promoted
    y = odeexpm.evolve(qubit, psi, 0.0, 8.0, args=QUBIT_ARGS)
    assert y.shape == (2,) and y.dtype == jnp.complex128
    assert rel_err(y, U @ psi) < 1e-9
    # Columns are states; leading axes are a batch of independent solves; `ts` leads.
    states = jnp.array([[1.0, 0.0, 0.6], [0.0, 1.0, 0.8]])
    batch = jnp.stack([states, 2 * states])
    ts = jnp.array([0.0, 4.0, 8.0])
    ys = odeexpm.evolve(qubit, batch, 0.0, 8.0, args=QUBIT_ARGS, ts=ts)
    assert ys.shape == (3, 2, 2, 3)
    assert rel_err(ys[-1, 1], 2 * U @ states) < 1e-9 and rel_err(ys[0], batch) < 1e-15


# float64 and complex128 are the dtypes of the tests above.
@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-4)])
def test_real_dtypes(dtype, tol):
    A = odeexpm.Modulated(
        jnp.asarray(B0, dtype), jnp.asarray(B1, dtype)[None], [lambda t, a: jnp.sin(3 * t)]
    )
    U = odeexpm.propagator(A, 0.0, 2.0)
    assert U.dtype == dtype
    assert rel_err(U, solve_ivp_propagator(real_driven, 0.0, 2.0, 4)) < tol


@pytest.mark.parametrize("dtype,tol", [(jnp.complex64, 1e-4)])
def test_complex_dtypes(dtype, tol):
    A = odeexpm.Modulated(
        jnp.asarray(-1j * (0.5 * Z + 0.2 * Y), dtype),
        jnp.asarray(-1j * X, dtype)[None],
        [lambda t, a: 0.7 * jnp.cos(1.3 * t)],
    )
    U = odeexpm.propagator(A, 0.0, 8.0)
    assert U.dtype == dtype
    assert rel_err(U, QUBIT_REF) < tol
    # Unitary to the rounding of the dtype.
    assert np.linalg.norm(np.conj(U).T @ U - np.eye(2)) < 100 * np.finfo(dtype).eps


def test_jit_and_vmap_over_generators():
    amplitudes = jnp.array([0.0, 0.5, 1.0])

    def final(a):
        return odeexpm.propagator(qubit, 0.0, 8.0, args=(a, jnp.array(1.3)))

    Us = jax.jit(jax.vmap(final))(amplitudes)
    assert Us.shape == (3, 2, 2)
    assert rel_err(Us[0], scipy.linalg.expm(-8j * (0.5 * Z + 0.2 * Y))) < 1e-9
    assert rel_err(Us[2], solve_ivp_propagator(qubit, 0.0, 8.0, 2, (1.0, 1.3))) < 1e-9


# Gradients. For a piecewise-constant control the exact propagator is a product of
# exponentials, and its derivatives follow from SciPy's Fréchet derivative of `expm`.
# Three qubits (8x8): large enough for Magnus6 to use precomputed commutators of the
# Modulated generator, so gradients flow through them too.


def kron(*ops):
    out = np.eye(1)
    for op in ops:
        out = np.kron(out, op)
    return out


I2 = np.eye(2)
CONTROL_TIMES = np.array([0.0, 0.6, 1.0, 1.8, 2.5])
CONTROL = -1j * (kron(X, I2, I2) + kron(I2, I2, X))
TARGET = kron(X, I2, X)
DRIFT = -1j * (0.5 * kron(Z, I2, I2) + 0.3 * kron(Z, Z, I2) + 0.4 * kron(I2, Y, Y))
AMPLITUDES = np.array([0.3, -0.8, 1.1, 0.4])


def control_generator(drift, amplitudes):
    control = odeexpm.PiecewiseConstant(jnp.asarray(CONTROL_TIMES), amplitudes)
    return odeexpm.Modulated(drift, jnp.asarray(CONTROL)[None], [control])


def infidelity(U):
    return 1 - jnp.abs(jnp.trace(TARGET.T @ U)) ** 2 / 64


def exact_infidelity_and_derivative(drift, amplitudes, d_drift, d_amplitudes):
    """The infidelity of the exact product of exponentials and its derivative in the
    direction (d_drift, d_amplitudes)."""
    U, dU = np.eye(8, dtype=complex), np.zeros((8, 8), complex)
    for i in range(4):
        dt = CONTROL_TIMES[i + 1] - CONTROL_TIMES[i]
        H, dH = drift + amplitudes[i] * CONTROL, d_drift + d_amplitudes[i] * CONTROL
        E, dE = scipy.linalg.expm_frechet(dt * H, dt * dH)
        U, dU = E @ U, dE @ U + E @ dU
    overlap, d_overlap = np.trace(TARGET.T @ U), np.trace(TARGET.T @ dU)
    return 1 - abs(overlap) ** 2 / 64, -2 * np.real(np.conj(overlap) * d_overlap) / 64


def test_reverse_gradient_of_generator_arrays():
    A = control_generator(jnp.asarray(DRIFT), jnp.asarray(AMPLITUDES))
    # Magnus6 (the default here) computes the commutators of A's matrices once per solve.
    commutators = odeexpm.Magnus6().init(odeexpm.LinearTerm(A), 0.0, 1.0, None, None)
    assert isinstance(commutators, Commutators)
    value, grads = jax.value_and_grad(lambda A: infidelity(odeexpm.propagator(A, 0.0, 2.5)))(A)
    assert (
        abs(
            value - exact_infidelity_and_derivative(DRIFT, AMPLITUDES, 0 * DRIFT, 0 * AMPLITUDES)[0]
        )
        < 1e-10
    )
    # Each amplitude, and a random direction of the (complex) drift: for a real loss,
    # JAX's gradient g of a complex array gives the derivative Re sum(g * direction).
    zero = np.zeros(4)
    for i in range(4):
        _, ref = exact_infidelity_and_derivative(DRIFT, AMPLITUDES, 0 * DRIFT, np.eye(4)[i])
        assert abs(grads.coefficients[0].values[i] - ref) < 1e-8 * max(1.0, abs(ref))
    direction = random_matrix(8, 5, complex_=True)
    _, ref = exact_infidelity_and_derivative(DRIFT, AMPLITUDES, direction, zero)
    assert abs(np.real(np.sum(np.asarray(grads.drift) * direction)) - ref) < 1e-8


def test_forward_mode():
    def loss(amplitudes):
        A = control_generator(jnp.asarray(DRIFT), amplitudes)
        return infidelity(odeexpm.propagator(A, 0.0, 2.5, adjoint=diffrax.ForwardMode()))

    direction = np.array([1.0, -2.0, 0.5, 0.3])
    _, tangent = jax.jvp(loss, (jnp.asarray(AMPLITUDES),), (jnp.asarray(direction),))
    _, ref = exact_infidelity_and_derivative(DRIFT, AMPLITUDES, 0 * DRIFT, direction)
    assert abs(tangent - ref) < 1e-8 * abs(ref)


@pytest.mark.slow
def test_modulated_commutators_match_generic_steps():
    # A smooth drive: Magnus6 from precomputed commutators (Modulated) and from matrix
    # products (the same generator as a plain function) against SciPy.
    A = odeexpm.Modulated(
        jnp.asarray(DRIFT), jnp.asarray(CONTROL)[None], [lambda t, args: jnp.cos(2 * t)]
    )
    fn = lambda t, args: A(t)
    ref = solve_ivp_propagator(fn, 0.0, 2.0, 8)
    assert rel_err(odeexpm.propagator(A, 0.0, 2.0), ref) < 1e-9
    assert rel_err(odeexpm.propagator(fn, 0.0, 2.0), ref) < 1e-9


@pytest.mark.slow
def test_backsolve_gradient_of_args():
    # BacksolveAdjoint (the default solver becomes Dopri8): gradient with respect to
    # `args`, a complex amplitude and a real frequency, against central differences.
    def loss(args):
        U = odeexpm.propagator(qubit, 0.0, 8.0, args=args, adjoint=diffrax.BacksolveAdjoint())
        return jnp.abs(U[1, 0]) ** 2

    a, w = 0.7 - 0.2j, 1.3
    grad_a, grad_w = jax.grad(loss)((jnp.asarray(a), jnp.asarray(w)))

    def reference(a, w):
        return abs(solve_ivp_propagator(qubit, 0.0, 8.0, 2, (a, w))[1, 0]) ** 2

    eps = 1e-5
    fd_re = (reference(a + eps, w) - reference(a - eps, w)) / (2 * eps)
    fd_im = (reference(a + 1j * eps, w) - reference(a - 1j * eps, w)) / (2 * eps)
    fd_w = (reference(a, w + eps) - reference(a, w - eps)) / (2 * eps)
    # JAX's gradient of a real function of a complex z is d/dRe z - i d/dIm z.
    assert abs(grad_a - (fd_re - 1j * fd_im)) < 1e-6 and abs(grad_w - fd_w) < 1e-6


@pytest.mark.slow
def test_second_derivative_with_direct_adjoint():
    # A Hessian-vector product against central differences of the exact gradient.
    def loss(a):
        A = control_generator(jnp.asarray(DRIFT), a)
        return infidelity(odeexpm.propagator(A, 0.0, 2.5, adjoint=diffrax.DirectAdjoint()))

    direction = np.array([1.0, -2.0, 0.5, 0.3])
    _, hvp = jax.jvp(jax.grad(loss), (jnp.asarray(AMPLITUDES),), (jnp.asarray(direction),))

    def exact_gradient(a):
        return np.array(
            [
                exact_infidelity_and_derivative(DRIFT, a, 0 * DRIFT, np.eye(4)[i])[1]
                for i in range(4)
            ]
        )

    eps = 1e-5
    ref = (
        exact_gradient(AMPLITUDES + eps * direction) - exact_gradient(AMPLITUDES - eps * direction)
    ) / (2 * eps)
    assert rel_err(hvp, ref) < 1e-6


# Errors.


def test_bad_input():
    with pytest.raises(ValueError, match=r"square \(n, n\)"):
        odeexpm.propagator(lambda t, args: jnp.ones(3), 0.0, 1.0)
    with pytest.raises(TypeError, match="callable"):
        odeexpm.propagator(np.eye(2), 0.0, 1.0)
    with pytest.raises(ValueError, match=r"shape \(n,\) or \(\.\.\., n, k\)"):
        odeexpm.evolve(commuting, jnp.ones(3), 0.0, 1.0)
    with pytest.raises(TypeError, match="float16"):
        odeexpm.propagator(lambda t, args: jnp.eye(2, dtype=jnp.float16), 0.0, 1.0)
    with pytest.raises(ValueError, match="scalar"):
        odeexpm.propagator(commuting, 0.0, jnp.ones(2))
    with pytest.raises(ValueError, match="1-D"):
        odeexpm.propagator(commuting, 0.0, 1.0, ts=jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="BacksolveAdjoint"):
        odeexpm.propagator(
            commuting, 0.0, 1.0, solver=odeexpm.Magnus4(), adjoint=diffrax.BacksolveAdjoint()
        )
    with pytest.raises(ValueError, match="times"):
        odeexpm.PiecewiseConstant(jnp.arange(3.0), jnp.ones((3, 2, 2)))
    with pytest.raises(ValueError, match="coefficients"):
        odeexpm.Modulated(jnp.eye(2), jnp.ones((2, 2, 2)), [jnp.sin])


def test_nonfinite_input_and_step_budget():
    # `propagator` always runs jitted: the errors are raised from compiled code.
    bad = odeexpm.PiecewiseConstant(
        TIMES, np.where(np.arange(4)[:, None, None] == 2, np.nan, VALUES)
    )
    with pytest.raises(Exception, match="non-finite"):
        odeexpm.propagator(bad, 0.0, 2.0)
    with pytest.raises(Exception, match="non-finite"):
        odeexpm.propagator(qubit, 0.0, np.inf, args=QUBIT_ARGS)
    with pytest.raises(Exception, match="max_steps=4096"):
        odeexpm.propagator(qubit, 0.0, 1e5, args=QUBIT_ARGS)
    # With throw=False: NaN and the reason in the statistics.
    nan_args = (jnp.array(np.nan), QUBIT_ARGS[1])
    U, stats = odeexpm.propagator(qubit, 0.0, 8.0, args=nan_args, throw=False, return_stats=True)
    assert bool(jnp.all(jnp.isnan(U))) and not bool(stats.successful)
    assert "non-finite" in odeexpm.RESULTS[stats.result]
    U, stats = odeexpm.propagator(qubit, 0.0, 1e5, args=QUBIT_ARGS, throw=False, return_stats=True)
    assert bool(jnp.all(jnp.isnan(U)))
    assert stats.result == odeexpm.RESULTS.max_steps_reached


def test_times_known_when_compiled_stay_constants():
    # Zeroing the times by the other inputs' finiteness made them data, and diffrax's
    # `t1` less 100 ulps (100 `nextafter`s) then compiled into about 1,600 instructions
    # per solve, where XLA folds them for constant times.
    A = jnp.asarray(B0)
    solves = {
        "propagator": lambda A: odeexpm.propagator(lambda t, a: jnp.cos(t) * A, 0.0, 2.0),
        "expm_multiply": lambda A: odeexpm.expm_multiply(A, jnp.ones(4), 2.0),
    }
    for name, solve in solves.items():
        text = jax.jit(solve).lower(A).compile().as_text()
        stepped = sum("nextafter" in line for line in text.splitlines())
        assert stepped < 100, (name, stepped)


def test_taylor_steps_from_the_identity_differentiate_the_state():
    # The first step from `y0 = I` skips its product with the identity (expm's solve):
    # derivatives with respect to `y0` must still carry `exp(hA) dy0`.
    A = np.asarray(B1)
    W = np.asarray(random_matrix(4, 12)).real
    taylor = dict(solver=odeexpm.Taylor())

    def solve(y0, **options):
        return odeexpm.evolve(odeexpm.Constant(jnp.asarray(A)), y0, 0.0, 0.3, **taylor, **options)

    E = scipy.linalg.expm(0.3 * A)
    gradient = jax.grad(lambda y0: jnp.sum(W * solve(y0)).real)(jnp.eye(4, dtype=A.dtype))
    assert rel_err(gradient, (E.T @ W).conj()) < 1e-13
    _, tangent = jax.jvp(
        lambda y0: solve(y0, adjoint=diffrax.ForwardMode()),
        (jnp.eye(4, dtype=A.dtype),),
        (jnp.asarray(W, A.dtype),),
    )
    assert rel_err(tangent, E @ W) < 1e-13
    # A vector state of a small matrix takes the same polynomial step (not an action).
    rotation = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
    y = odeexpm.evolve(odeexpm.Constant(rotation), jnp.array([1.0, 0.0]), 0.0, 1.0, **taylor)
    assert rel_err(y, scipy.linalg.expm(np.asarray(rotation))[:, 0]) < 1e-13
