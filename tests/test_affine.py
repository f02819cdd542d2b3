"""A generator written as a function is solved as the `Modulated` generator it is
(`as_modulated`): the rewrite against the function itself at many times, the solver it
gets, and the solve and its gradients against the function solved unrewritten (a
reference that backsolving, which skips the rewrite, or Dopri8 gives) and finite
differences."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
from odeexpm._generator.affine import as_modulated
from odeexpm.harness._time_dependent import ising_chain

from .helpers import random_matrix, rel_err

HZZ, HX = (jnp.asarray(m, complex) for m in ising_chain(4))  # 16 x 16
B = random_matrix(5, 30)
C = random_matrix(5, 31)
TIMES = np.linspace(-1.0, 3.0, 7)


def ising(t, a):
    return -1j * (HZZ + a * jnp.sin(t) * HX)


ISING = odeexpm.Modulated(-1j * HZZ, (-1j * HX)[None], lambda t, a: a * jnp.sin(t))


def two_controls(t, args):
    w, M = args
    return M + jnp.cos(w * t) * B - 0.5 * t**2 * jnp.tanh(t) * C


def phase(t, args):  # a complex control
    return -1j * HZZ + jnp.exp(1j * args * t) * HX


def airy(t, args):  # time inside the matrix's entries
    return jnp.array([[0.0, 1.0], [-1.0 - t, 0.0]])


def via_call(t, args):  # through a jitted function and a matrix product
    return jax.jit(lambda s: (B + s * C) @ C)(jnp.sin(t))


def _rewritten(fn, args, t0=0.0):
    generator = odeexpm.FromFunction(fn)
    return as_modulated(generator, jnp.asarray(t0), args)


@pytest.mark.parametrize(
    "fn, args, controls",
    [
        (ising, jnp.asarray(0.7), 1),
        (two_controls, (jnp.asarray(1.3), random_matrix(5, 32)), 2),
        (phase, jnp.asarray(2.0), 1),
        (airy, None, 1),
        (via_call, None, 1),
    ],
)
def test_rewrite_equals_the_function(fn, args, controls):
    generator = _rewritten(fn, args)
    assert isinstance(generator, odeexpm.Modulated)
    assert generator.num_controls == controls
    for t in TIMES:
        np.testing.assert_allclose(generator(t, args), fn(t, args), rtol=1e-14, atol=1e-14)


def test_real_controls_stay_real():
    # `a sin(t)` scales a complex matrix: the control is kept real, so that the
    # commutators combine in real arithmetic.
    generator = _rewritten(ising, jnp.asarray(0.7))
    assert not jnp.iscomplexobj(generator.controls(0.3, jnp.asarray(0.7)))
    assert jnp.iscomplexobj(_rewritten(phase, jnp.asarray(2.0)).controls(0.3, jnp.asarray(2.0)))


@pytest.mark.parametrize(
    "fn",
    [
        lambda t, args: jnp.where(t > 1.0, B, C),  # time in a predicate
        lambda t, args: jax.scipy.linalg.expm(t * B),  # a matrix function of time
        lambda t, args: jnp.sin(t * B),  # elementwise, not linear
        lambda t, args: B * (t * jnp.ones((5, 5))).astype(int),  # an integer array
        lambda t, args: jnp.roll(B, jnp.floor(t).astype(int)),  # time in an index
        lambda t, args: B,  # constant in time
        lambda t, args: sum(jnp.cos(k * t) * B for k in range(1, 10)),  # nine controls
    ],
)
def test_other_functions_are_left_as_they_are(fn):
    generator = odeexpm.FromFunction(fn)
    assert as_modulated(generator, jnp.asarray(0.0), None) is generator


def test_generators_with_structure_are_left_as_they_are():
    pwc = odeexpm.PiecewiseConstant(jnp.array([0.0, 1.0, 2.0]), jnp.stack([B, C]))
    assert as_modulated(pwc, jnp.asarray(0.0), None) is pwc
    assert as_modulated(ISING, jnp.asarray(0.0), 0.7) is ISING


def test_a_function_is_solved_as_fast_as_the_modulated_form():
    U_fn, stats_fn = odeexpm.propagator(ising, 0.0, 4.0, args=0.7, return_stats=True)
    U_mod, stats_mod = odeexpm.propagator(ISING, 0.0, 4.0, args=0.7, return_stats=True)
    assert stats_fn.solver == stats_mod.solver == "Magnus8()"
    assert int(stats_fn.num_steps) == int(stats_mod.num_steps)
    assert rel_err(U_fn, U_mod) < 1e-13
    hamiltonian = odeexpm.schrodinger(lambda t, a: HZZ + a * jnp.sin(t) * HX)
    U_h, stats_h = odeexpm.propagator(hamiltonian, 0.0, 4.0, args=0.7, return_stats=True)
    assert stats_h.solver == "Magnus8()" and rel_err(U_h, U_mod) < 1e-13
    # Against the function solved unrewritten (backsolving takes it as it is).
    reference = odeexpm.propagator(
        ising, 0.0, 4.0, args=0.7, solver=diffrax.Dopri8(), rtol=1e-13, atol=1e-13,
        adjoint=diffrax.BacksolveAdjoint(),
    )  # fmt: skip
    assert rel_err(U_fn, reference) < 1e-9


def loss(fn, args):
    U = odeexpm.propagator(fn, 0.0, 2.0, args=args)
    return jnp.real(jnp.sum(U * jnp.conj(U[::-1])))


def test_gradients_against_finite_differences():
    M = random_matrix(5, 33)
    args = (jnp.asarray(1.3), M)
    grad_w, grad_M = jax.grad(loss, argnums=1)(two_controls, args)
    direction = random_matrix(5, 34)
    eps = 1e-5

    def at(w, M):
        return loss(two_controls, (w, M))

    fd_w = (at(1.3 + eps, M) - at(1.3 - eps, M)) / (2 * eps)
    fd_M = (at(1.3, M + eps * direction) - at(1.3, M - eps * direction)) / (2 * eps)
    assert abs(grad_w - fd_w) <= 1e-6 * abs(fd_w)
    assert abs(jnp.sum(grad_M * direction) - fd_M) <= 1e-6 * abs(fd_M)
    # Forward mode agrees.
    _, tangent = jax.jvp(
        lambda w: odeexpm.propagator(
            two_controls, 0.0, 2.0, args=(w, M), adjoint=diffrax.ForwardMode()
        ),
        (jnp.asarray(1.3),),
        (jnp.asarray(1.0),),
    )
    fd = (
        odeexpm.propagator(two_controls, 0.0, 2.0, args=(1.3 + eps, M))
        - odeexpm.propagator(two_controls, 0.0, 2.0, args=(1.3 - eps, M))
    ) / (2 * eps)
    assert rel_err(tangent, fd) < 1e-6


def test_closed_over_tracers_jit_and_vmap():
    # The generator built inside a jitted function of the amplitude, closing over it,
    # and differentiated through another jitted function: as users write it.
    @jax.jit
    def closed(a):
        return odeexpm.propagator(lambda t, _: -1j * (HZZ + a * jnp.sin(t) * HX), 0.0, 2.0)

    def population(propagate, a):
        return jnp.abs(propagate(a)[0, 0]) ** 2

    grad_closed = jax.jit(jax.grad(lambda a: population(closed, a)))(0.7)
    grad_args = jax.grad(lambda a: population(lambda a: odeexpm.propagator(ising, 0, 2, args=a), a))
    assert abs(grad_closed - grad_args(0.7)) <= 1e-12 * abs(grad_closed)
    amplitudes = jnp.array([0.2, 0.7])
    batched = jax.vmap(lambda a: odeexpm.propagator(ising, 0.0, 2.0, args=a))(amplitudes)
    for a, U in zip(amplitudes, batched):
        assert rel_err(U, odeexpm.propagator(ISING, 0.0, 2.0, args=a)) < 1e-13


def test_single_precision():
    U, stats = odeexpm.propagator(
        lambda t, a: (-1j * (HZZ + a * jnp.sin(t) * HX)).astype(jnp.complex64),
        0.0, 2.0, args=jnp.float32(0.7), return_stats=True,
    )  # fmt: skip
    assert U.dtype == jnp.complex64 and stats.solver == "Magnus8()"
    assert rel_err(U, odeexpm.propagator(ISING, 0.0, 2.0, args=0.7)) < 1e-5
