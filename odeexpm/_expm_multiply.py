"""`expm_multiply`: the action `exp(tA) B` as the solution of `dY/ds = A Y`, `Y(0) = B`."""

import weakref

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
from jax.experimental import sparse
from jaxtyping import Array, ArrayLike, Inexact

from ._checks import (
    as_array,
    as_real_times,
    checked_dtype,
    warn,
    warn_if_below_precision,
)
from ._generator import Constant
from ._operator import AbstractOperator, as_operator
from ._solution import Stats, nothing_to_solve, outcome
from ._solve import (
    compiled,
    solve_linear,
    solver_for,
    without_nonfinite_solve_inputs,
)
from ._solver import Taylor
from ._solver.action import largest_radius


def expm_multiply(
    A: ArrayLike | sparse.BCOO | sparse.BCSR | lx.AbstractLinearOperator,
    B: ArrayLike,
    t: ArrayLike = 1.0,
    *,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
    return_stats: bool = False,
) -> Inexact[Array, " n *k"] | tuple[Inexact[Array, " n *k"], Stats]:
    """The action `exp(t A) @ B` of the matrix exponential, without forming `exp(t A)`
    (nor, for sparse or matrix-free `A`, any dense `n x n` array).

    `Y(s) = exp(s A) B` solves `dY/ds = A Y`, `Y(0) = B`; `expm_multiply` integrates it
    over `[0, t]` with `diffrax.diffeqsolve`. The default solver is `odeexpm.Taylor` in
    its action form: each step applies the Taylor series of `exp(h (A - cI))` to the
    state, one product with `A` per term, with `c` the center of a disk holding the
    spectrum of `A` (Gershgorin's for explicit matrices, an estimate for matrix-free
    ones). Adaptive steps of up to `degree = 100` terms cover a shifted norm of about 44
    each, and the series stops once its terms are negligible: `exp(5 L) v` for a
    300 x 300 grid Laplacian is one step of 63 products. For a Markov generator the
    shift is uniformization, and all terms are non-negative.

    **Arguments:**

    - `A`: the `(n, n)` generator: a dense array; a `jax.experimental.sparse.BCOO` (or
      `BCSR`) matrix; or a `lineax.AbstractLinearOperator` on vectors `(n,)`
      (matrix-free: only `A.mv` is called). Real or complex (float32, float64,
      complex64, complex128). Sparse matrices are stored for fast products in sliced
      ELLPACK form, planned on the host once per index array (also for a BCOO built
      inside `jax.jit` from NumPy indices); a BCOO whose indices are traced (passed to
      a jitted function) is laid out on the device once per solve if
      its entries are sorted by row, and applied by a slower `segment_sum` otherwise.
      Its values are differentiable: dense entries, `BCOO.data`, and the arrays a
      lineax operator holds (for a `lineax.FunctionLinearOperator`, those its function
      closes over).
    - `B`: the state, `(n,)` or `(n, k)` (`k` columns share the steps); `jax.vmap` for
      more axes. Differentiable.
    - `t`: a real scalar time (negative integrates backwards; differentiable), or a 1-D
      array of times `0 <= t_0 < t_1 < ...` (or all `<= 0` and decreasing): then
      `exp(t_i A) B` for each, stacked along a new leading axis, from one solve whose
      steps land on the times (as `odeexpm.evolve` with `ts`; cheaper than `jax.vmap`
      over `t`, above all for gradients).
    - `solver`: any `diffrax.AbstractSolver`; default `odeexpm.Taylor(degree=100)` in
      action form (with `diffrax.BacksolveAdjoint`: `diffrax.Dopri8()`, `Tsit5()` in
      single precision). Runge-Kutta solvers work too, with many more products.
    - `stepsize_controller`, `rtol`, `atol`: as in `odeexpm.expm` (default tolerances
      `1e-13` in double and `1e-6` in single precision; `rtol` also sets where the
      Taylor series stops).
    - `adjoint`: how gradients flow. Default `diffrax.RecursiveCheckpointAdjoint()`:
      reverse mode (`jax.grad`), the exact gradient of the computed solution with
      respect to `A`'s values, `B` and `t`. For forward mode (`jax.jvp`, `jax.jacfwd`)
      pass `diffrax.ForwardMode()`; `diffrax.DirectAdjoint()` allows both.
    - `max_steps`: step budget of the ODE solve.
    - `throw`: if `True` (default) failures (non-finite input, overflow, exhausted step
      budget) raise an error, under `jax.jit` too; if `False` the result is NaN and the
      failure is reported in the statistics.
    - `return_stats`: if `True` return `(Y, stats)` with an `odeexpm.Stats`.

    **Returns:** `exp(t A) @ B` with the shape of `B` (`(len(t),) + B.shape` for a 1-D
    `t`), in the common dtype of `A` and `B`; with `return_stats=True` also the `Stats`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jax.experimental import sparse
        >>> import odeexpm
        >>> # A birth-death Markov chain on 0..n-1: columns of Q sum to zero.
        >>> n = 50
        >>> Q = jnp.diag(jnp.full(n - 1, 1.0), -1) + jnp.diag(jnp.full(n - 1, 2.0), 1)
        >>> Q = Q - jnp.diag(Q.sum(axis=0))
        >>> p0 = jnp.zeros(n).at[0].set(1.0)
        >>> p, stats = odeexpm.expm_multiply(sparse.BCOO.fromdense(Q), p0, 3.0, return_stats=True)
        >>> bool(abs(p.sum() - 1.0) < 1e-5), int(stats.num_steps)
        (True, 1)
        >>> odeexpm.expm_multiply(Q, p0, jnp.linspace(0.0, 3.0, 7)).shape   # at 7 times
        (7, 50)

        Gradients with respect to the rates (`BCOO.data`), `B` and `t` follow from
        `jax.grad` (see the guide to actions in the documentation).
    """
    caller = "odeexpm.expm_multiply"
    _warn_if_rows_sum_to_zero(A, caller)
    operator = as_operator(A, "A", caller)
    B = _as_state(B, operator, caller)
    t = as_real_times(t, B.dtype, "t", caller)
    warn_if_below_precision(rtol, atol, stepsize_controller, B.dtype, caller)
    if B.size == 0:  # n = 0 (or no columns): nothing to propagate
        Y, stats = nothing_to_solve(jnp.broadcast_to(0 * B, t.shape + B.shape), ())
        return (Y, stats) if return_stats else Y
    options = dict(
        solver=solver,
        stepsize_controller=stepsize_controller,
        rtol=rtol,
        atol=atol,
        adjoint=adjoint,
        max_steps=max_steps,
    )
    Y, stats = compiled(
        eqx.Partial(_expm_multiply_single, options=options),
        (operator, B, t),
        batch_ndim=0,
        in_axes=(),
        throw=throw,
        max_steps=max_steps,
    )
    return (Y, stats) if return_stats else Y


# The values arrays already checked by `_warn_if_rows_sum_to_zero` (weak references only:
# the check reads a matrix once, not on every call with it).
_CHECKED: dict[int, weakref.ref] = {}


def _warn_if_rows_sum_to_zero(A, caller: str) -> None:
    """A warning where a concrete real matrix looks like a Markov generator in the row
    convention (`dp/dt = p Q` for row vectors: rows sum to zero), where odeexpm evolves
    columns, `dp/dt = Q p` (columns sum to zero). Each values array is read once."""
    if isinstance(A, sparse.BCSR):
        A = A.to_bcoo()
    if isinstance(A, sparse.BCOO):
        leaves = (A.data, A.indices)
    elif isinstance(A, (jax.Array, np.ndarray)):
        leaves = (A,)
    else:
        return
    if any(isinstance(x, jax.core.Tracer) for x in leaves) or jnp.iscomplexobj(leaves[0]):
        return
    seen = _CHECKED.get(id(leaves[0]))
    if seen is not None and seen() is leaves[0]:
        return
    if len(_CHECKED) >= 64:
        _CHECKED.clear()
    try:
        _CHECKED[id(leaves[0])] = weakref.ref(leaves[0])
    except TypeError:  # not weak-referenceable: checked on every call
        pass
    if isinstance(A, sparse.BCOO):
        if A.n_batch or A.n_dense or A.ndim != 2:
            return
        data, (rows, columns) = np.asarray(A.data), np.asarray(A.indices).T
    else:
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            return
        dense = np.asarray(A)
        rows, columns = np.nonzero(dense)
        data = dense[rows, columns]
    n = A.shape[0]
    off_diagonal = rows != columns
    if n < 2 or not np.all(data[off_diagonal] >= 0):
        return
    row_sums = np.bincount(rows, data, minlength=n)
    column_sums = np.bincount(columns, data, minlength=n)
    scale = np.abs(data).max(initial=0.0) * n * 1e-12
    if np.all(np.abs(row_sums) <= scale) and not np.all(np.abs(column_sums) <= scale):
        warn(
            f"{caller}: `A` looks like the generator of a Markov chain whose rows sum to "
            "zero (dp/dt = p A for row vectors p). expm_multiply computes exp(tA) B, "
            "evolving columns (dp/dt = A p, columns of A summing to zero): pass A.T.",
        )


def _as_state(B, operator: AbstractOperator, caller: str) -> Array:
    B = as_array(B, "B", caller)
    n = operator.shape[0]
    if B.ndim not in (1, 2) or B.shape[0] != n:
        raise ValueError(
            f"{caller}: `B` must have shape (n,) or (n, k) with n = {n} (`A` is {n}x{n}); "
            f"got shape {tuple(B.shape)}. Use jax.vmap for more axes."
        )
    dtype = checked_dtype(B.dtype, "B", caller)
    return jnp.asarray(B, jnp.result_type(dtype, operator.dtype))


def _first_step(t, radius, solver):
    """`dt0`: for a Taylor solver the largest step its degree covers at a shifted norm
    `radius` (Poisson tail at the series tolerance); for other solvers `1 / radius`."""
    if isinstance(solver, Taylor):
        tolerance = solver.tolerance or float(jnp.finfo(t.dtype).eps)
        reach = largest_radius(solver.degree, tolerance)
    else:
        reach = 1.0
    covered = radius * jnp.abs(t) <= reach
    # When one step covers [0, t], ask for more: diffrax clips the step to end at `t`,
    # and a tie in that clip would split the derivative with respect to `t` in half.
    size = jnp.where(covered, 2 * jnp.abs(t), reach / jnp.where(radius > 0, radius, 1))
    # A zero-length solve still needs a nonzero first step.
    size = jnp.where(size > 0, size, 1)
    return jnp.where(t < 0, -size, size)


def _expm_multiply_single(operator, B, t, *, options):
    (operator, B), t, bad = without_nonfinite_solve_inputs((operator, B), t)
    # The operator in the form and row order it applies fastest in (for a sparse matrix:
    # values gathered into sliced ELLPACK groups, rows grouped by length), once per
    # solve; the solve runs in that order, so no product renumbers its input and output.
    operator, renumbering = operator.fast_form()
    generator = Constant(operator)
    # Chosen here, as the first step depends on it.
    solver = solver_for(generator, B.dtype, options, exponential=False)
    # The spectral disk sets the first step, and the Taylor action steps' shift.
    if isinstance(solver, Taylor):
        precomputed = solver.precompute(generator, 0.0, B, None)
        _, radius = precomputed
    else:
        precomputed = None
        _, radius = jax.lax.stop_gradient(operator.disk())
    t_end = t if t.ndim == 0 else t[-1]
    dt0 = jax.lax.stop_gradient(_first_step(t_end, radius, solver))
    if renumbering is not None:
        B = renumbering.forward(B)
    saveat = diffrax.SaveAt(t1=True) if t.ndim == 0 else diffrax.SaveAt(ts=t)
    ys, stats, result = solve_linear(
        generator, B, 0.0, t_end, saveat=saveat, dt0=dt0, precomputed=precomputed,
        **{**options, "solver": solver},
    )  # fmt: skip
    Y = ys[0] if t.ndim == 0 else ys
    if renumbering is not None:
        Y = renumbering.backward(Y.swapaxes(0, -B.ndim)).swapaxes(0, -B.ndim)
    return outcome(Y, stats, result, bad)
