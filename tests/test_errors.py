"""Bad input gets an error naming the problem; with throw=False it shows in the stats."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import odeexpm
import pytest
from jax.experimental import sparse
from odeexpm._solution import _largest_failure


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (4, 2, 3)])
def test_shape(shape):
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, n\)"):
        odeexpm.expm(jnp.ones(shape))


def test_dtype():
    with pytest.raises(TypeError, match="float16"):
        odeexpm.expm(jnp.eye(2, dtype=jnp.float16))
    with pytest.raises(TypeError, match="real"):
        odeexpm.expm(jnp.eye(2), 1j)
    with pytest.raises(ValueError, match="scalar"):
        odeexpm.expm(jnp.eye(2), jnp.ones(2))
    with pytest.raises(ValueError, match="squarings"):
        odeexpm.expm(jnp.eye(2), squarings=-1)
    with pytest.raises(ValueError, match="not both"):
        odeexpm.expm(jnp.eye(2), rtol=1e-6, stepsize_controller=diffrax.PIDController(1e-6, 1e-6))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("jit", [False, True])
def test_nonfinite_input(bad, jit):
    A = jnp.array([[1.0, bad], [0.0, 1.0]])
    fn = jax.jit(odeexpm.expm) if jit else odeexpm.expm
    with pytest.raises(eqx.EquinoxRuntimeError if not jit else Exception, match="non-finite"):
        jax.block_until_ready(fn(A))


def test_nonfinite_input_without_throw():
    A = jnp.stack([jnp.eye(2), jnp.array([[1.0, jnp.nan], [0.0, 1.0]])])
    X, stats = odeexpm.expm(A, throw=False, return_stats=True)
    assert bool(jnp.all(jnp.isfinite(X[0]))) and bool(jnp.all(jnp.isnan(X[1])))
    assert stats.successful.tolist() == [True, False]
    assert "non-finite" in odeexpm.RESULTS[stats.result]


def test_step_budget():
    A = jnp.array([[0.0, 1.0], [-1e4, 0.0]])
    with pytest.raises(Exception, match=r"max_steps=50"):
        jax.block_until_ready(jax.jit(lambda A: odeexpm.expm(A, squarings=0, max_steps=50))(A))
    X, stats = odeexpm.expm(A, squarings=0, max_steps=50, throw=False, return_stats=True)
    assert bool(jnp.all(jnp.isnan(X)))
    assert stats.result == odeexpm.RESULTS.max_steps_reached
    assert int(stats.num_steps) == 50


def test_overflow():
    with pytest.raises(Exception, match="overflow"):
        odeexpm.expm(1000.0 * jnp.eye(2))
    _, stats = odeexpm.expm(1000.0 * jnp.eye(2), throw=False, return_stats=True)
    assert stats.result == odeexpm.RESULTS.overflow


def test_reverse_mode_adjoint_refuses_forward_mode():
    # Reverse-mode adjoints cannot be pushed forward; the error comes from JAX.
    checkpoint = diffrax.RecursiveCheckpointAdjoint()
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jvp(lambda A: odeexpm.expm(A, adjoint=checkpoint), (jnp.eye(2),), (jnp.eye(2),))


@pytest.mark.parametrize(
    "solve",
    [
        lambda A, **kw: odeexpm.expm(A, squarings=0, **kw),
        lambda A, **kw: odeexpm.expm_multiply(A, jnp.ones(2), **kw),
        lambda A, **kw: odeexpm.propagator(lambda t, args: A, 0.0, 1.0, **kw),
    ],
    ids=["expm-plain", "expm_multiply", "propagator"],
)
def test_overflow_inside_a_solve(solve):
    # exp(800) is beyond float64: the state outgrows the dtype partway through the solve,
    # which must read as an overflow, not as an exhausted step budget.
    A = jnp.array([[800.0, 1.0], [0.0, 700.0]])
    with pytest.raises(Exception, match="overflow"):
        jax.block_until_ready(solve(A))
    value, stats = solve(A, throw=False, return_stats=True)
    assert stats.result == odeexpm.RESULTS.overflow
    assert bool(jnp.all(jnp.isnan(value)))


X2 = jnp.array([[0.0, 1.0], [1.0, 0.0]])


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda: odeexpm.propagator(
                odeexpm.Modulated(X2, X2[None], [lambda t, a: jnp.ones(2)]), 0.0, 1.0
            ),
            ValueError,
            r"coefficient 0 returned shape \(2,\)",
        ),
        (
            lambda: odeexpm.propagator(
                odeexpm.Modulated(X2, X2[None], lambda t, a: jnp.ones(2)), 0.0, 1.0
            ),
            ValueError,
            r"coefficient function returned shape \(2,\)",
        ),
        (
            lambda: odeexpm.PiecewiseConstant(jnp.array([0.0, 2.0, 1.0]), jnp.stack([X2, X2])),
            ValueError,
            "`times` must increase",
        ),
        (
            lambda: odeexpm.Interpolated(jnp.array([0.0, 2.0, 1.0]), jnp.stack([X2, X2, X2])),
            ValueError,
            "`ts` must increase",
        ),
        (lambda: odeexpm.propagator(lambda t: X2, 0.0, 1.0), TypeError, r"A\(t, args\)"),
        (
            lambda: odeexpm.propagator(lambda t, a: X2, 0.0, 1.0, ts=jnp.array([0.5, 2.0])),
            ValueError,
            r"`ts` must lie in \[t0, t1\]",
        ),
        (
            lambda: odeexpm.evolve(
                lambda t, a: X2, jnp.ones(2), 0.0, 1.0, ts=jnp.array([0.5, 0.2])
            ),
            ValueError,
            "run from t0",
        ),
    ],
    ids=[
        "coefficient-shape",
        "coefficients-shape",
        "piecewise-times",
        "interpolated-times",
        "one-argument",
        "ts-outside",
        "ts-unsorted",
    ],
)
def test_messages_name_the_argument(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_tolerance_below_precision_warns():
    with pytest.warns(UserWarning, match=r"rtol=1e-13 is below the precision of float32"):
        odeexpm.expm(jnp.eye(2, dtype=jnp.float32), rtol=1e-13)
    with pytest.warns(UserWarning, match="atol=1e-20"):
        odeexpm.evolve(lambda t, a: X2, jnp.ones(2), 0.0, 1.0, rtol=1e-8, atol=1e-20)


def test_float64_without_x64_warns():
    with jax.enable_x64(False):
        with pytest.warns(UserWarning, match="64-bit arithmetic is off"):
            X = odeexpm.expm(np.eye(2))
    assert X.dtype == jnp.float32


@pytest.mark.parametrize("dtype", [np.int64, np.float32, np.float64, np.complex64, np.complex128])
def test_empty_matrix(dtype):
    X, stats = odeexpm.expm(np.zeros((0, 0), dtype), return_stats=True)
    expected = jnp.result_type(float) if dtype == np.int64 else dtype
    assert X.shape == (0, 0) and X.dtype == expected and bool(stats.successful)


def test_empty_batches_gradients_and_actions():
    assert odeexpm.expm(jnp.zeros((0, 3, 3))).shape == (0, 3, 3)
    assert odeexpm.expm(jnp.zeros((2, 0, 0))).shape == (2, 0, 0)
    assert jax.grad(lambda A: odeexpm.expm(A).sum())(jnp.zeros((0, 0))).shape == (0, 0)
    assert jax.jvp(odeexpm.expm, (jnp.zeros((0, 0)),), (jnp.zeros((0, 0)),))[1].shape == (0, 0)
    assert jax.jit(odeexpm.expm)(jnp.zeros((0, 0))).shape == (0, 0)
    assert odeexpm.expm_multiply(jnp.zeros((0, 0)), jnp.zeros(0)).shape == (0,)
    times = jnp.array([0.0, 1.0])
    assert odeexpm.expm_multiply(jnp.zeros((0, 0)), jnp.zeros((0, 2)), times).shape == (2, 0, 2)


def test_empty_batches_under_vmap():
    # The batch size of an enclosing `jax.vmap` is not seen by the call: an empty one must
    # still give empty answers and gradients (equinox's error check reduces its codes over
    # the vmap axis with `unvmap_max`, which an empty axis makes fail).
    empty = jnp.zeros((0, 3, 3))
    assert jax.vmap(odeexpm.expm)(empty).shape == (0, 3, 3)
    assert jax.jit(jax.vmap(odeexpm.expm))(empty).shape == (0, 3, 3)
    assert jax.grad(lambda A: jax.vmap(odeexpm.expm)(A).sum())(empty).shape == (0, 3, 3)
    X, L = jax.vmap(odeexpm.expm_frechet)(empty, empty)
    assert X.shape == L.shape == (0, 3, 3)
    assert jax.vmap(odeexpm.expm_cond)(empty).shape == (0,)
    action = jax.vmap(lambda A: odeexpm.expm_multiply(A, jnp.ones(3)))
    assert action(empty).shape == (0, 3)
    assert jax.grad(lambda A: action(A).sum())(empty).shape == (0, 3, 3)


def test_the_largest_failure_code_is_reported_over_a_vmap():
    # Found bit by bit over the batch and the vmap axis, without `unvmap_max`.
    def largest(codes):
        result = eqx.tree_at(lambda r: r._value, odeexpm.RESULTS.successful, codes)
        return _largest_failure(result)

    codes = jnp.array([[0, 5, 2], [16, 0, 9], [0, 0, 0]], jnp.int32)
    assert jax.vmap(largest)(codes).tolist() == [16, 16, 16]
    assert jax.vmap(jax.vmap(largest))(codes).tolist() == [[16] * 3] * 3
    assert int(largest(codes[0])) == 5 and int(largest(codes[2])) == 0
    assert jax.vmap(largest)(jnp.zeros((0, 3), jnp.int32)).shape == (0,)


def test_stats_are_readable_and_name_the_solver():
    _, stats = odeexpm.expm(jnp.eye(2), return_stats=True)
    assert repr(stats).startswith("Stats(solver=Taylor(") and "result=successful" in repr(stats)
    _, stats = odeexpm.propagator(lambda t, a: X2, 0.0, 1.0, return_stats=True)
    assert "solver=Magnus6()" in repr(stats)
    batch = jnp.stack([jnp.eye(2), jnp.full((2, 2), jnp.nan)])
    _, stats = odeexpm.expm(batch, throw=False, return_stats=True)
    assert "1 x 'successful'" in repr(stats) and "non-finite" in repr(stats)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda B: odeexpm.expm(B), "`A` must be a dense array; got a BCOO"),
        (
            lambda B: odeexpm.PiecewiseConstant(jnp.array([0.0, 1.0]), B),
            "`values` must be a dense array",
        ),
        (lambda B: odeexpm.Interpolated(jnp.array([0.0, 1.0]), B), "`values` must be a dense"),
    ],
    ids=["expm", "piecewise", "interpolated"],
)
def test_sparse_where_a_dense_array_is_needed(make, match):
    # Refused at once: NumPy would walk a BCOO element by element.
    with pytest.raises(TypeError, match=match):
        make(sparse.BCOO.fromdense(jnp.eye(3)))


def test_explicit_mesh():
    # jax.make_mesh's default axis type: refused with advice, not a sharding type error
    # from deep inside the solve.
    mesh = jax.make_mesh((1,), ("batch",), axis_types=(jax.sharding.AxisType.Explicit,))
    batch = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("batch"))
    A = jax.device_put(jnp.zeros((2, 3, 3)), batch)
    with pytest.raises(ValueError, match=r"odeexpm.expm: `A` is sharded .*AxisType\.Auto"):
        odeexpm.expm(A)
    with pytest.raises(ValueError, match=r"odeexpm.evolve: `y0` is sharded .* explicit"):
        odeexpm.evolve(odeexpm.Constant(jnp.eye(3)), A[:, 0, :].T, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"ShardedSparse: the mesh axis 'batch' .* explicit"):
        odeexpm.ShardedSparse(sparse.BCOO.fromdense(jnp.eye(2)), mesh)


def test_sharded_sparse_input():
    mesh = jax.make_mesh((1,), ("rows",), axis_types=(jax.sharding.AxisType.Auto,))
    L = sparse.BCOO.fromdense(jnp.array([[-1.0, 1.0], [1.0, -1.0]]))
    with pytest.raises(TypeError, match="`matrix` must be a jax.experimental.sparse BCOO"):
        odeexpm.ShardedSparse(jnp.eye(2), mesh)
    with pytest.raises(ValueError, match="`matrix` must be square"):
        odeexpm.ShardedSparse(sparse.BCOO.fromdense(jnp.ones((2, 3))), mesh)
    with pytest.raises(ValueError, match="`axis` 'cols' is not an axis"):
        odeexpm.ShardedSparse(L, mesh, "cols")
    with pytest.raises(TypeError, match="`mesh` must be a jax.sharding.Mesh"):
        odeexpm.ShardedSparse(L, "rows")
    with pytest.raises(ValueError, match="indices of `matrix` are traced"):
        jax.jit(lambda L: odeexpm.ShardedSparse(L, mesh).data)(L)
    # Traced values are fine (the plan needs the indices only).
    mv = jax.jit(
        lambda data: odeexpm.ShardedSparse(sparse.BCOO((data, L.indices), shape=(2, 2)), mesh).mv(
            jnp.array([1.0, 3.0])
        )
    )
    assert mv(L.data).tolist() == [2.0, -2.0]
