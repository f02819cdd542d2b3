"""The commutator-free Magnus methods on sparse and matrix-free generators: each step's
exponentials are Taylor actions on the state. Checked against the same chain solved
densely (a tight Dopri8 reference), for the norm they keep, orders measured with fixed
steps, gradients against finite differences, and every kind of operator a generator
may return."""

import diffrax
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import odeexpm
import pytest
from jax.experimental import sparse
from odeexpm.harness._time_dependent import ising_chain

from .helpers import rel_err

HZZ, HX = (np.asarray(m) for m in ising_chain(4))  # 16 x 16
SPARSE_ZZ, SPARSE_X = sparse.BCOO.fromdense(HZZ), sparse.BCOO.fromdense(HX)
DENSE = odeexpm.Modulated(-1j * HZZ, -1j * HX[None], lambda t, a: a * jnp.sin(t))
SPARSE = odeexpm.schrodinger(odeexpm.Modulated(SPARSE_ZZ, [SPARSE_X], lambda t, a: a * jnp.sin(t)))
PSI0 = jnp.zeros(16, complex).at[0].set(1.0)
T, AMPLITUDE = 3.0, 0.7
CF = {name: getattr(odeexpm, name)() for name in ("CFMagnus4", "CFMagnus6", "CFMagnus8")}


def reference(generator=DENSE, y0=PSI0, a=AMPLITUDE):
    return odeexpm.evolve(
        generator, y0, 0.0, T, args=a, solver=diffrax.Dopri8(), rtol=1e-13, atol=1e-13
    )


@pytest.mark.parametrize("name", CF)
def test_sparse_against_dense_keeps_the_norm(name):
    psi, stats = odeexpm.evolve(
        SPARSE, PSI0, 0.0, T, args=AMPLITUDE, solver=CF[name], rtol=1e-11, return_stats=True
    )
    assert stats.solver == f"{name}()"
    assert rel_err(psi, reference()) < 1e-9
    assert abs(jnp.linalg.norm(psi) - 1) < 1e-13


@pytest.mark.parametrize("name", CF)
def test_order_with_fixed_steps(name):
    solver = CF[name]

    def fixed(steps):
        return odeexpm.evolve(
            SPARSE, PSI0, 0.0, T, args=AMPLITUDE, solver=solver,
            stepsize_controller=diffrax.ConstantStepSize(), dt0=jnp.asarray(T / steps),
        )  # fmt: skip

    ref = reference()
    p = solver.order(None)
    # (Errors well above the reference's, 1e-13.)
    coarse, fine = (rel_err(fixed(n), ref) for n in ((4, 8) if p == 8 else (12, 24)))
    assert 0.6 * 2**p < coarse / fine < 1.6 * 2**p, (coarse, fine)


@pytest.mark.parametrize(
    "name",
    ["CFMagnus4"]
    + [pytest.param(name, marks=pytest.mark.slow) for name in ("CFMagnus6", "CFMagnus8")],
)
def test_gradient_against_finite_differences(name):
    def population(a, generator=SPARSE):
        psi = odeexpm.evolve(generator, PSI0, 0.0, T, args=a, solver=CF[name], rtol=1e-11)
        return jnp.abs(psi[3]) ** 2

    grad = jax.grad(population)(AMPLITUDE)
    eps = 1e-5
    fd = (
        jnp.abs(reference(a=AMPLITUDE + eps)[3]) ** 2
        - jnp.abs(reference(a=AMPLITUDE - eps)[3]) ** 2
    ) / (2 * eps)
    assert abs(grad - fd) < 1e-6 * abs(fd)


def test_forward_mode_and_the_initial_state():
    solver = odeexpm.CFMagnus4()

    def final(a, y0=PSI0):
        return odeexpm.evolve(
            SPARSE, y0, 0.0, T, args=a, solver=solver, rtol=1e-11, adjoint=diffrax.ForwardMode()
        )

    _, tangent = jax.jvp(final, (AMPLITUDE,), (1.0,))
    eps = 1e-5
    fd = (reference(a=AMPLITUDE + eps) - reference(a=AMPLITUDE - eps)) / (2 * eps)
    assert rel_err(tangent, fd) < 1e-6
    # The map y0 -> y(T) is linear: its derivative in a direction v is y(T) from v.
    v = jnp.ones(16, complex) / 4
    _, tangent = jax.jvp(lambda y0: final(AMPLITUDE, y0), (PSI0,), (v,))
    assert rel_err(tangent, reference(y0=v)) < 1e-9


def test_every_kind_of_operator_and_block_states():
    solver = odeexpm.CFMagnus4()
    block = jnp.eye(16, 3, dtype=complex)
    expected = reference(y0=block)
    callables = {
        "callable returning BCOO": lambda t, a: -1j * (SPARSE_ZZ + a * jnp.sin(t) * SPARSE_X),
        "callable returning a lineax operator": lambda t, a: lx.MatrixLinearOperator(
            -1j * (HZZ + a * jnp.sin(t) * HX)
        ),
    }
    for name, generator in callables.items():
        y = odeexpm.evolve(generator, block, 0.0, T, args=AMPLITUDE, solver=solver, rtol=1e-11)
        assert rel_err(y, expected) < 1e-9, name
    y = odeexpm.evolve(SPARSE, block, 0.0, T, args=AMPLITUDE, solver=solver, rtol=1e-11)
    assert rel_err(y, expected) < 1e-9


def test_magnus_solvers_with_commutators_refuse_operators():
    with pytest.raises(ValueError, match="commutator-free"):
        odeexpm.evolve(SPARSE, PSI0, 0.0, T, args=AMPLITUDE, solver=odeexpm.Magnus6())
