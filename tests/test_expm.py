"""Forward accuracy, dtypes, batching and compilation of `odeexpm.expm`."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
from odeexpm.reference import mp_expm, pade_expm

from .helpers import count_compiles, random_matrix, rel_err


def laplacian(n):
    L = 2 * np.eye(n) - np.eye(n, k=1) - np.eye(n, k=-1)
    L[0, 0] = L[-1, -1] = 1
    return L


def families(n, seed):
    rng = np.random.default_rng(seed)
    S = rng.standard_normal((n, n))
    H = S + S.T
    return {
        "gaussian": random_matrix(n, seed, scale=2.0),
        "nonnormal": np.triu(rng.standard_normal((n, n))) * 2,
        "stiff_laplacian": -200.0 * laplacian(n),
        "skew": S - S.T,
        "hermitian": -1j * H / np.sqrt(n),
    }


@pytest.mark.parametrize("family", list(families(8, 0)))
def test_families_against_mpmath(family):
    A = families(8, 0)[family]
    X = odeexpm.expm(A)
    assert rel_err(X, mp_expm(A, dps=30)) < 1e-11


@pytest.mark.parametrize("family", ["gaussian", "nonnormal", "skew"])
def test_families_against_pade_n32(family):
    A = families(32, 1)[family]
    assert rel_err(odeexpm.expm(A), pade_expm(A)) < 1e-11


@pytest.mark.parametrize(
    "dtype,tol",
    [(jnp.float32, 1e-5), (jnp.float64, 1e-10), (jnp.complex64, 1e-5), (jnp.complex128, 1e-10)],
)
def test_dtypes(dtype, tol):
    A = random_matrix(6, 3, complex_=jnp.issubdtype(dtype, jnp.complexfloating), scale=2.0)
    X = odeexpm.expm(jnp.asarray(A, dtype))
    assert X.dtype == dtype
    assert rel_err(X, mp_expm(A, dps=30)) < tol


def test_integers_promoted_to_default_float():
    X = odeexpm.expm(jnp.array([[0, 1], [-1, 0]]))
    assert X.dtype == jnp.float64
    assert rel_err(X, [[np.cos(1), np.sin(1)], [-np.sin(1), np.cos(1)]]) < 1e-12


def test_plain_solve_matches():
    A = random_matrix(6, 4, scale=2.0)
    X, stats = odeexpm.expm(A, squarings=0, return_stats=True)
    assert int(stats.num_squarings) == 0
    assert rel_err(X, mp_expm(A, dps=30)) < 1e-11


def test_t_scales_the_generator():
    A = random_matrix(5, 5)
    for t in [0.0, -1.5, 3.0]:
        assert rel_err(odeexpm.expm(A, t), pade_expm(t * A)) < 1e-11


@pytest.mark.parametrize(
    "solver",
    [diffrax.Dopri8(), diffrax.Tsit5(), diffrax.Kvaerno5(), odeexpm.Taylor(degree=8)],
    ids=["dopri8", "tsit5", "kvaerno5", "taylor8"],
)
def test_other_solvers(solver):
    A = random_matrix(5, 6, scale=3.0)
    assert rel_err(odeexpm.expm(A, solver=solver), pade_expm(A)) < 1e-10


def test_batch_and_vmap():
    A = np.stack([random_matrix(4, seed, scale=seed) for seed in range(6)]).reshape(2, 3, 4, 4)
    X = odeexpm.expm(A)
    assert X.shape == (2, 3, 4, 4)
    assert rel_err(X, pade_expm(A)) < 1e-11
    Y = jax.vmap(jax.vmap(odeexpm.expm))(A)
    assert rel_err(Y, X) < 1e-14
    _, stats = odeexpm.expm(A, return_stats=True)
    assert stats.num_steps.shape == (2, 3)
    assert stats.num_squarings[1, 2] > stats.num_squarings[0, 0]


def _large_batch():
    # 300 3x3 matrices: more than a chunk, and not a multiple of one (a remainder).
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2, 150, 3, 3)) * rng.uniform(0.1, 30.0, (2, 150, 1, 1))
    return A, rng.standard_normal(A.shape)


def test_large_batches_run_in_chunks_with_the_same_answers():
    A, _ = _large_batch()
    A[1, 149, 0, 0] = np.nan
    assert "scan" in str(jax.make_jaxpr(odeexpm.expm)(A))
    X, stats = odeexpm.expm(A, throw=False, return_stats=True)
    assert stats.num_squarings.shape == (2, 150)
    assert np.isnan(X[1, 149]).all() and not np.isnan(X[:, :149]).any()
    # Under the caller's vmap too; against single calls (no vmap), one per class.
    vmapped = jax.vmap(jax.vmap(lambda A: odeexpm.expm(A, throw=False)))
    assert "scan" in str(jax.make_jaxpr(vmapped)(A))
    np.testing.assert_array_equal(X, vmapped(A))
    for i, j in [(0, 0), (1, 148)]:
        np.testing.assert_allclose(X[i, j], odeexpm.expm(A[i, j]), rtol=1e-14, atol=0)
    # One chunk's computation in the program: the remainder (300 = 2 x 128 + 44) is the
    # loop's last chunk, overlapping the one before, not a second copy to compile.
    two_chunks = len(str(jax.make_jaxpr(odeexpm.expm)(A[:, :128])))
    assert len(str(jax.make_jaxpr(odeexpm.expm)(A))) < 1.2 * two_chunks


def _chunk_computations():
    # The default `expm`'s computation of a chunk, and its general path under `vmap`.
    from odeexpm._expm import exponential_solve

    defaults = dict(solver=None, stepsize_controller=None, rtol=None, atol=None, max_steps=4096)
    chunks = exponential_solve(squarings=None, adjoint=None, **defaults)
    return chunks.on_chunk, jax.vmap(chunks.fn, in_axes=(0, None))


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.complex128, jnp.float32])
def test_chunks_where_no_safeguard_acts_skip_them_with_the_same_answers(dtype):
    on_chunk, general = _chunk_computations()

    def marked(A, t):  # the general path, its answers replaced by 7
        X, stats = general(A, t)
        return jnp.full_like(X, 7), stats

    rng = np.random.default_rng(1)
    A = rng.standard_normal((40, 3, 3)) / 2
    if jnp.issubdtype(dtype, jnp.complexfloating):
        A = A + 1j * rng.standard_normal(A.shape) / 2
    # Rotations by 7.2 to 7.9 radians: 3 squarings, without the shift (their trace is 0).
    A[:4] = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 0]]) * np.linspace(7.2, 7.9, 4)[:, None, None]
    A = jnp.asarray(A, dtype)
    t = jnp.asarray(1.0, jnp.finfo(dtype).dtype)
    X, stats = on_chunk(A, t, marked)
    expected, expected_stats = general(A, t)
    # The same operations: equal to rounding (bitwise, where both are compiled whole).
    np.testing.assert_allclose(X, expected, rtol=0, atol=8 * float(jnp.finfo(dtype).eps))
    for field in ("num_steps", "num_accepted_steps", "num_rejected_steps", "num_squarings"):
        np.testing.assert_array_equal(getattr(stats, field), getattr(expected_stats, field))
    assert stats.successful.all() and stats.solver == expected_stats.solver
    double = jnp.finfo(dtype).bits == 64
    assert (stats.num_squarings[:4] == (3 if double else 1)).all()
    # One matrix where a safeguard acts sends the chunk to the general path.
    odd_ones = [np.triu(A[5]), A[5] * 20, A[5] * np.nan]
    if double:  # (in single precision, 2 squarings: no shift is looked for)
        odd_ones.append(np.array([[1, 1e-3, 0], [0, 1, 0], [1e-3, 0, 1]]) * 7.9)  # 7.9 I, nearly
    for odd in odd_ones:
        X, _ = on_chunk(A.at[5].set(jnp.asarray(odd, dtype)), t, marked)
        assert (X == 7).all()
    X, _ = on_chunk(A, jnp.asarray(np.inf, t.dtype), marked)
    assert (X == 7).all()


def test_batches_over_matrices_and_times_match_single_calls():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((300, 3, 3)) / 2
    A[7] = np.triu(A[7])  # (its chunk takes the general path)
    t = rng.uniform(-2.0, 2.0, 300)
    W = rng.standard_normal(A.shape)
    X, stats = jax.vmap(lambda A, t: odeexpm.expm(A, t, return_stats=True))(A, t)
    G = jax.grad(lambda A: jnp.sum(W * jax.vmap(odeexpm.expm)(A, t)))(A)
    for i in [0, 7, 150, 299]:
        np.testing.assert_allclose(X[i], odeexpm.expm(A[i], t[i]), rtol=1e-14, atol=1e-15)
        _, single_stats = odeexpm.expm(A[i], t[i], return_stats=True)
        assert stats.num_squarings[i] == single_stats.num_squarings
        single = jax.grad(lambda A: jnp.sum(W[i] * odeexpm.expm(A, t[i])))(A[i])
        np.testing.assert_allclose(G[i], single, rtol=1e-13, atol=1e-14)


@pytest.mark.slow
def test_derivatives_of_large_batches_run_in_chunks():
    A, W = _large_batch()

    def gradient(expm):
        return jax.grad(lambda A: jnp.sum(W * expm(A)))(A)

    # Against an adjoint that does not chunk: the discrete solve, differentiated in
    # reverse mode.
    direct = lambda A: odeexpm.expm(A, adjoint=diffrax.DirectAdjoint())  # noqa: E731
    np.testing.assert_allclose(gradient(odeexpm.expm), gradient(direct), rtol=1e-12, atol=1e-12)
    X, L = odeexpm.expm_frechet(A, W)
    assert "scan" in str(jax.make_jaxpr(odeexpm.expm_frechet)(A, W))
    for i, j in [(0, 0), (1, 148)]:
        X1, L1 = odeexpm.expm_frechet(A[i, j], W[i, j])
        np.testing.assert_allclose(L[i, j], L1, rtol=1e-14, atol=0)
        np.testing.assert_allclose(X[i, j], X1, rtol=1e-14, atol=0)


def test_compiles_once_per_shape(caplog):
    jitted = jax.jit(odeexpm.expm)
    A, B = random_matrix(5, 7), random_matrix(5, 8, scale=50.0)
    jitted(A, 1.0)
    assert count_compiles(caplog, jitted, B, 2.0) == 0
    # Eager calls hit diffrax's cache too.
    odeexpm.expm(A)
    assert count_compiles(caplog, odeexpm.expm, B) == 0
    grad = jax.jit(jax.grad(lambda A, t: odeexpm.expm(A, t).sum()))
    grad(A, 1.0)
    assert count_compiles(caplog, grad, B, 0.5) == 0


def test_default_solve_is_the_one_step_diffrax_takes():
    # At the defaults the scaled solve is one Taylor step, taken without diffrax's loop:
    # bitwise what diffeqsolve returns (an explicit controller keeps diffeqsolve), with
    # fewer loops to compile.
    A = random_matrix(6, 3, scale=3.0)
    complex_batch = np.stack([random_matrix(4, s) + 1j * random_matrix(4, s + 9) for s in (1, 2)])
    controller = diffrax.PIDController(rtol=1e-13, atol=1e-13)
    for M in (A, complex_batch):
        X, stats = odeexpm.expm(M, return_stats=True)
        Y = odeexpm.expm(M, stepsize_controller=controller)
        np.testing.assert_array_equal(np.asarray(X), np.asarray(Y))
        assert np.all(np.asarray(stats.num_accepted_steps) == 1)

    def loops(**options):
        return jax.jit(lambda A: odeexpm.expm(A, **options)).lower(A).as_text().count("while")

    assert loops() < loops(stepsize_controller=controller)
    gradient = jax.grad(lambda A: odeexpm.expm(A)[0, 1])(A)
    expected = jax.grad(lambda A: odeexpm.expm(A, stepsize_controller=controller)[0, 1])(A)
    np.testing.assert_array_equal(np.asarray(gradient), np.asarray(expected))


def test_the_one_step_is_accepted_unjudged_only_where_the_controller_accepts_it():
    # expm's one step skips the controller's error norm where the step's truncation bound
    # is at most the unit roundoff (`within_roundoff`): the controller accepts such a step
    # even at the tightest rtol that step allows (eps). Above that bound the step is judged.
    from odeexpm._generator import Constant
    from odeexpm._solver.polynomial import largest_alpha
    from odeexpm._term import LinearTerm

    eps = float(np.finfo(np.float64).eps)
    controller = diffrax.PIDController(rtol=eps, atol=0.0)
    solver = odeexpm.Taylor()
    identity = jnp.eye(5)
    X = jnp.asarray(random_matrix(5, 4))
    verdicts = set()
    for scale in np.geomspace(0.05, 8.0, 24):
        generator = Constant(scale * X)
        term = LinearTerm(generator, solver.precompute(generator, 0.0, identity, None))
        y1, y_error, *_ = solver.step(term, 0.0, 1.0, identity, None, None, False)
        _, state = controller.init(term, 0.0, 1.0, identity, 1.0, None, None, 21)
        accepted = bool(
            controller.adapt_step_size(0.0, 1.0, identity, y1, None, y_error, 21, state)[0]
        )
        within = bool(solver.within_roundoff(term, 0.0, 1.0, identity, None))
        _, alpha = term.precomputed
        assert within == (float(alpha) <= largest_alpha(21, jnp.float64))
        assert accepted or not within
        verdicts.add((within, accepted))
    assert {(True, True), (False, False)} <= verdicts  # (both sides of the bound are seen)
    # Action steps (a vector state) are never within: their estimate is not `bound * y1`.
    vector = jnp.ones(5)
    term = LinearTerm(Constant(X), solver.precompute(Constant(X), 0.0, vector, None))
    assert not bool(solver.within_roundoff(term, 0.0, 1.0, vector, None))


def test_beyond_the_reach_of_scaling():
    # A rotation by 1e25 rad needs more than 64 squarings: refused, not a wrong number.
    A = 1e25 * np.array([[0.0, 1.0], [-1.0, 0.0]])
    X, stats = odeexpm.expm(A, return_stats=True, throw=False)
    assert stats.result == odeexpm.RESULTS.beyond_scaling
    assert np.all(np.isnan(np.asarray(X)))
    with pytest.raises(Exception, match="beyond the reach of scaling"):
        odeexpm.expm(A)
    # From 64 rows on the step is judged only where its bound is not within roundoff.
    G = random_matrix(64, 2)
    X, stats = odeexpm.expm(1e25 * (G - G.T), return_stats=True, throw=False)
    assert stats.result == odeexpm.RESULTS.beyond_scaling
    # A nilpotent matrix of that norm is in reach (its powers vanish).
    N = np.array([[0.0, 1e25], [0.0, 0.0]])
    assert rel_err(odeexpm.expm(N), np.eye(2) + N) < 1e-15


def test_stats():
    A = 1000.0 * np.array([[0.0, 1.0], [-1.0, 0.0]])
    X, stats = odeexpm.expm(A, return_stats=True)
    assert rel_err(X, [[np.cos(1000), np.sin(1000)], [-np.sin(1000), np.cos(1000)]]) < 1e-10
    assert int(stats.num_squarings) == 10  # 1000 / 2^10 below 1.77 (degree 21)
    assert int(stats.num_steps) == int(stats.num_accepted_steps) + int(stats.num_rejected_steps)
    assert 0 < int(stats.num_steps) < 20
    assert bool(stats.successful)
