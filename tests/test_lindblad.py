"""`odeexpm.Lindblad`: the master equation in matrix form, against closed forms and the
vectorized (Kronecker) Liouvillian; gradients against finite differences; `Lawson`."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
import scipy.linalg
from jax.experimental import sparse
from odeexpm.harness._lindblad import kronecker_liouvillian

from .helpers import rel_err

SIGMA_MINUS = np.array([[0.0, 1.0], [0.0, 0.0]])  # |0><1|: decay of |1> to |0>
PAULI_Z = np.diag([1.0, -1.0])


def drive(t, eps):
    return eps * jnp.cos(t)


def oscillator(n):
    a = np.diag(np.sqrt(np.arange(1.0, n)), 1)
    return a, a.T @ a + 0.2 * a.T @ a.T @ a @ a


def bcoo(x):
    return sparse.BCOO.fromdense(jnp.asarray(x))


def test_qubit_decay_and_dephasing_closed_form():
    gamma, gamma_phi, omega, T = 0.7, 0.2, 1.3, 3.0
    lindblad = odeexpm.Lindblad(
        0.5 * omega * PAULI_Z, [np.sqrt(gamma) * SIGMA_MINUS, np.sqrt(gamma_phi / 2) * PAULI_Z]
    )
    rho0 = 0.5 * np.ones((2, 2))
    rho = odeexpm.evolve(lindblad, rho0, 0.0, T)
    excited = 0.5 * np.exp(-gamma * T)
    coherence = 0.5 * np.exp(-(gamma / 2 + gamma_phi) * T - 1j * omega * T)
    exact = np.array([[1 - excited, coherence], [np.conj(coherence), excited]])
    assert np.abs(np.asarray(rho) - exact).max() <= 1e-10


@pytest.mark.parametrize("kind", ["dense", "sparse", "mixed"])
def test_superoperator_matches_kronecker_form(kind):
    n = 5
    a, H = oscillator(n)
    H = H + 0.3j * (a - a.T)  # complex Hermitian
    jumps = [np.sqrt(0.5) * a, (0.2 + 0.1j) * a.T @ a, 0.3 * (a.T + 1j * a @ a)]
    convert = {"dense": lambda x: x, "sparse": bcoo, "mixed": bcoo}[kind]
    parts = [convert(L) for L in jumps]
    if kind == "mixed":
        parts[1] = jumps[1]
    S = odeexpm.Lindblad(convert(H), parts)(0.0)
    columns = S.mv(jnp.eye(n * n, dtype=complex))
    np.testing.assert_allclose(columns, kronecker_liouvillian(H, jumps), atol=1e-14)
    if kind == "mixed":  # (K is applied as sum_k L_k^H L_k y: its diagonal is not at hand)
        assert S.diagonal() is None
    else:
        np.testing.assert_allclose(
            S.diagonal(), np.diagonal(kronecker_liouvillian(H, jumps)), atol=1e-14
        )


def test_propagator_is_the_superoperator_exponential():
    n = 3
    a, H = oscillator(n)
    jumps = [np.sqrt(0.4) * a, 0.3 * a.T @ a]
    lindblad = odeexpm.Lindblad(H, jumps)
    S = odeexpm.propagator(lindblad, 0.0, 1.5)
    exact = scipy.linalg.expm(1.5 * kronecker_liouvillian(H, jumps))
    assert S.shape == (n * n, n * n)
    assert rel_err(S, exact) <= 1e-10
    # The generator's value is the superoperator as an operator: expm_multiply takes it.
    rho0 = np.diag([0.0, 1.0, 0.0])
    vec = odeexpm.expm_multiply(lindblad(0.0), jnp.asarray(rho0.T.reshape(-1), complex), 1.5)
    assert rel_err(vec, exact @ rho0.T.reshape(-1)) <= 1e-10


def driven_kerr(n, kind):
    a, H0 = oscillator(n)
    convert = bcoo if kind == "sparse" else jnp.asarray
    operators = [convert(a + a.T)] if kind == "sparse" else jnp.asarray(a + a.T)[None]
    H = odeexpm.Modulated(convert(H0), operators, [drive])
    return odeexpm.Lindblad(H, [convert(np.sqrt(0.5) * a)]), a, H0


def kerr_reference(n, eps, T, rho0):
    """rho(T) from the Kronecker superoperator by plain diffrax at 1e-13 (on the real
    and imaginary parts)."""
    a, H0 = oscillator(n)
    S0 = kronecker_liouvillian(H0, [np.sqrt(0.5) * a])
    S1 = kronecker_liouvillian(a + a.T, [])

    def field(t, y, e):
        S = S0 + e * jnp.cos(t) * S1
        return (S.real @ y[0] - S.imag @ y[1], S.real @ y[1] + S.imag @ y[0])

    y0 = rho0.T.reshape(-1).astype(float)
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Dopri8(), 0.0, T, 0.01, (y0, np.zeros_like(y0)),
        args=eps, stepsize_controller=diffrax.PIDController(rtol=1e-13, atol=1e-13),
        max_steps=10**5,
    )  # fmt: skip
    vec = np.asarray(solution.ys[0][-1]) + 1j * np.asarray(solution.ys[1][-1])
    return vec.reshape(n, n).T


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_driven_kerr_oscillator_at_the_defaults(kind):
    n, eps, T = 8, 1.5, 4.0
    lindblad, _, _ = driven_kerr(n, kind)
    rho0 = np.zeros((n, n))
    rho0[0, 0] = 1.0
    rho, stats = odeexpm.evolve(lindblad, rho0, 0.0, T, args=eps, return_stats=True)
    assert stats.solver == "Lawson(runge_kutta=Dopri8())"
    assert rel_err(rho, kerr_reference(n, eps, T, rho0)) <= 1e-9
    rho = np.asarray(rho)
    assert abs(np.trace(rho) - 1) <= 1e-12
    assert np.abs(rho - rho.conj().T).max() <= 1e-12
    assert np.linalg.eigvalsh(rho).min() >= -1e-10


@pytest.mark.slow
def test_batches_and_saved_times():
    n = 4
    lindblad, _, _ = driven_kerr(n, "sparse")
    rhos = np.zeros((3, n, n))
    for k in range(3):
        rhos[k, k, k] = 1.0
    ts = jnp.linspace(0.0, 2.0, 5)
    batched = odeexpm.evolve(lindblad, rhos, 0.0, 2.0, args=1.0, ts=ts)
    assert batched.shape == (5, 3, n, n)
    for k in range(3):
        single = odeexpm.evolve(lindblad, rhos[k], 0.0, 2.0, args=1.0, ts=ts)
        assert single.shape == (5, n, n)
        np.testing.assert_allclose(batched[:, k], single, atol=1e-12)
    np.testing.assert_allclose(batched[0], rhos, atol=1e-15)


def test_under_jit_and_vmap():
    n = 4
    lindblad, a, _ = driven_kerr(n, "sparse")
    rho0 = np.zeros((n, n))
    rho0[0, 0] = 1.0
    photons = lambda eps: jnp.real(
        jnp.trace(a.T @ a @ odeexpm.evolve(lindblad, rho0, 0.0, 2.0, args=eps))
    )
    values = jax.jit(jax.vmap(photons))(jnp.array([0.5, 1.0]))
    np.testing.assert_allclose(values, [photons(0.5), photons(1.0)], rtol=1e-12)


def test_tables_are_computed_once_under_vmap_and_in_reverse_mode():
    # The stencil's stage inputs, results and weights are materialized by a conditional
    # with identical branches (`computed_once`). Under `vmap` it must stay a conditional
    # (a batched predicate would make it a `select` of both branches, computing each), and
    # reverse mode must transpose it into one (materializing the cotangents).
    from odeexpm._materialize import computed_once

    def primitives(jaxpr):
        return [eqn.primitive.name for eqn in jaxpr.jaxpr.eqns]

    x = jnp.ones((3, 2))
    batched = jax.make_jaxpr(jax.vmap(lambda x: computed_once(jnp.sin, x)))(x)
    assert "cond" in primitives(batched) and "select_n" not in primitives(batched)
    reverse = jax.make_jaxpr(jax.grad(lambda x: jnp.sum(computed_once(jnp.sin, x))))(x)
    assert primitives(reverse).count("cond") == 2
    np.testing.assert_allclose(jax.vmap(lambda x: computed_once(jnp.sin, x))(x), np.sin(x))


def test_gradient_of_the_drive_against_finite_differences():
    n = 3
    lindblad, a, _ = driven_kerr(n, "sparse")
    rho0 = np.diag([1.0, 0.0, 0.0])

    def photons(eps):
        rho = odeexpm.evolve(lindblad, rho0, 0.0, 1.0, args=eps, rtol=1e-12)
        return jnp.real(jnp.trace(jnp.asarray(a.T @ a) @ rho))

    step = 1e-5
    central = (photons(0.8 + step) - photons(0.8 - step)) / (2 * step)
    np.testing.assert_allclose(jax.grad(photons)(0.8), central, rtol=1e-6)


@pytest.mark.slow
def test_gradients_against_finite_differences():
    """d<n>(T)/d(parameter) for the drive (args), the Hamiltonian, the loss rate and rho0,
    reverse and forward mode, against central differences of the tight solve."""
    n, T = 4, 2.0
    a, H0 = oscillator(n)
    number = a.T @ a

    def photons(theta, adjoint=None):
        amplitude, detuning, rate, mix = theta
        H = odeexpm.Modulated(
            jnp.asarray(H0) + detuning * jnp.asarray(number), jnp.asarray(a + a.T)[None],
            [drive],
        )  # fmt: skip
        lindblad = odeexpm.Lindblad(H, [jnp.sqrt(rate) * jnp.asarray(a)])
        rho0 = jnp.diag(jnp.array([1.0 - mix, mix, 0.0, 0.0]))
        rho = odeexpm.evolve(lindblad, rho0, 0.0, T, args=amplitude, adjoint=adjoint, rtol=1e-12)
        return jnp.real(jnp.trace(number @ rho))

    theta = jnp.array([0.8, 0.3, 0.5, 0.2])
    reverse = jax.grad(photons)(theta)
    forward = jax.jacfwd(lambda th: photons(th, diffrax.ForwardMode()))(theta)
    step = 1e-5
    central = np.array(
        [
            (photons(theta.at[k].add(step)) - photons(theta.at[k].add(-step))) / (2 * step)
            for k in range(4)
        ]
    )
    np.testing.assert_allclose(reverse, central, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(forward, reverse, rtol=1e-9, atol=1e-12)


@pytest.mark.slow
def test_gradient_with_respect_to_sparse_jump_values():
    n = 4
    a, H0 = oscillator(n)

    def photons(scale):
        indices = np.stack([np.arange(n - 1), np.arange(1, n)], 1)
        L = sparse.BCOO((scale * jnp.sqrt(jnp.arange(1.0, n)), indices), shape=(n, n))
        lindblad = odeexpm.Lindblad(bcoo(H0 + a + a.T), [L])
        rho = odeexpm.evolve(lindblad, np.diag([0.0, 1.0, 0.0, 0.0]), 0.0, 1.0, rtol=1e-12)
        return jnp.real(jnp.trace(jnp.asarray(a.T @ a) @ rho))

    step = 1e-5
    central = (photons(0.7 + step) - photons(0.7 - step)) / (2 * step)
    np.testing.assert_allclose(jax.grad(photons)(0.7), central, rtol=1e-6)


def test_time_dependent_jump_operator():
    """A decay rate switched on in time, gamma(t) = t: p(T) = exp(-T^2 / 2)."""
    lindblad = odeexpm.Lindblad(np.zeros((2, 2)), [lambda t, args: jnp.sqrt(t) * SIGMA_MINUS])
    rho = odeexpm.evolve(lindblad, np.diag([0.0, 1.0]), 0.0, 1.5)
    assert abs(float(rho[1, 1].real) - np.exp(-(1.5**2) / 2)) <= 1e-10


@pytest.mark.slow
def test_matrix_free_hamiltonian():
    import lineax as lx

    n = 4
    a, H0 = oscillator(n)
    H = lx.MatrixLinearOperator(jnp.asarray(H0 + a + a.T))
    jumps = [np.sqrt(0.5) * a]
    rho0 = np.diag([1.0, 0.0, 0.0, 0.0])
    rho = odeexpm.evolve(odeexpm.Lindblad(H, jumps), rho0, 0.0, 1.0)
    dense = odeexpm.evolve(odeexpm.Lindblad(H0 + a + a.T, jumps), rho0, 0.0, 1.0)
    assert rel_err(rho, dense) <= 1e-10


@pytest.mark.slow
def test_lawson_order_and_plain_rk_for_real_generators():
    """Lawson(Dopri8) with constant steps converges at order 8 on a driven qubit with a
    large diagonal, on which it is far more accurate than Dopri8 itself; on a real
    generator it is the Runge-Kutta method itself."""
    A = lambda t, args: -1j * (20.0 * PAULI_Z + jnp.cos(t) * np.array([[0.0, 1.0], [1.0, 0.0]]))
    y0 = jnp.array([1.0, 0.0], complex)
    exact = odeexpm.evolve(A, y0, 0.0, 1.0, solver=diffrax.Dopri8(), rtol=1e-14, atol=1e-14)

    def error(solver, steps):
        y = odeexpm.evolve(
            A, y0, 0.0, 1.0, solver=solver, stepsize_controller=diffrax.ConstantStepSize(),
            dt0=1.0 / steps, max_steps=None,
        )  # fmt: skip
        return float(jnp.linalg.norm(y - exact))

    lawson = [error(odeexpm.Lawson(diffrax.Dopri8()), steps) for steps in (16, 32)]
    assert 7.7 <= np.log2(lawson[0] / lawson[1]) <= 8.3
    assert error(odeexpm.Lawson(diffrax.Tsit5()), 8) <= error(diffrax.Tsit5(), 8) / 50
    real = lambda t, args: jnp.array([[0.0, 1.0], [-1.0 - t, -0.1]])
    options = dict(stepsize_controller=diffrax.ConstantStepSize(), dt0=0.1)
    y0 = jnp.array([1.0, 0.0])
    lawson = odeexpm.evolve(real, y0, 0.0, 1.0, solver=odeexpm.Lawson(diffrax.Tsit5()), **options)
    plain = odeexpm.evolve(real, y0, 0.0, 1.0, solver=diffrax.Tsit5(), **options)
    np.testing.assert_allclose(lawson, plain, rtol=1e-13)


def test_matrix_form_memory_at_n_128():
    """n = 128 in matrix form: the compiled solve needs a few MiB, where the
    superoperator alone would take 4 GiB."""
    n = 128
    lindblad, _, _ = driven_kerr(n, "dense")
    rho0 = jnp.zeros((n, n)).at[0, 0].set(1.0)
    solve = jax.jit(lambda eps: odeexpm.evolve(lindblad, rho0, 0.0, 0.1, args=eps))
    memory = solve.lower(1.0).compile().memory_analysis()
    total = memory.temp_size_in_bytes + memory.argument_size_in_bytes + memory.output_size_in_bytes
    assert total <= 200 * 2**20
    assert jnp.isfinite(solve(1.0)).all()


def test_bad_input():
    H = np.eye(3)
    with pytest.raises(ValueError, match=r"jump_operators\[0\]"):
        odeexpm.Lindblad(H, [np.eye(2)])
    with pytest.raises(ValueError, match="hamiltonian"):
        odeexpm.Lindblad(np.ones((3, 2)), [])
    with pytest.raises(TypeError, match="jump_operators"):
        odeexpm.Lindblad(H, np.eye(3))
    with pytest.raises(TypeError, match=r"jump_operators\[0\]\(t, args\)"):
        odeexpm.Lindblad(H, [lambda t: np.eye(3)])
    lindblad = odeexpm.Lindblad(H, [np.eye(3)])
    with pytest.raises(ValueError, match="`y0` must be a density matrix"):
        odeexpm.evolve(lindblad, np.ones((3, 2)), 0.0, 1.0)
    with pytest.raises(ValueError, match="`y0` must be a density matrix"):
        odeexpm.evolve(lindblad, np.ones(9), 0.0, 1.0)
    varying = odeexpm.Lindblad(H, [lambda t, args: jnp.eye(2)])
    with pytest.raises(ValueError, match=r"jump_operators\[0\]"):
        odeexpm.evolve(varying, np.eye(3) / 3, 0.0, 1.0)


def test_generator_is_a_module_with_parameters():
    lindblad = odeexpm.Lindblad(jnp.eye(2), [jnp.asarray(SIGMA_MINUS)])
    leaves = jax.tree_util.tree_leaves(eqx.filter(lindblad, eqx.is_inexact_array))
    assert len(leaves) >= 2


@pytest.mark.slow
def test_many_diagonal_sparse_jumps_are_differentiable():
    """A sparse jump operator with more diagonals than the banded form takes: its
    decay K = L^H L is applied by products, and gradients reach its values."""
    n = 20
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((n, n)) < 0.3, rng.standard_normal((n, n)), 0.0) / n
    indices = np.argwhere(dense != 0)
    H = np.diag(np.arange(n, dtype=float)) * 0.1

    def final(scale):
        L = sparse.BCOO((scale * jnp.asarray(dense[tuple(indices.T)]), indices), shape=(n, n))
        return odeexpm.evolve(odeexpm.Lindblad(H, [L]), np.eye(n) / n, 0.0, 1.0, rtol=1e-12)

    expected = (
        (scipy.linalg.expm(kronecker_liouvillian(H, [dense])) @ (np.eye(n) / n).T.reshape(-1))
        .reshape(n, n)
        .T
    )
    assert rel_err(final(1.0), expected) <= 1e-10
    loss = lambda s: jnp.real(final(s)[0, 0])
    step = 1e-5
    np.testing.assert_allclose(
        jax.grad(loss)(1.0), (loss(1 + step) - loss(1 - step)) / (2 * step), rtol=1e-6
    )
