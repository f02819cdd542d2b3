"""`expm_multiply`: the action `exp(tA) B` as the solution of `dY/ds = A Y`, `Y(0) = B`."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import lineax as lx
import numpy as np
from jax.experimental import sparse
from jaxtyping import Array, ArrayLike, Inexact, Real

from ._checks import as_real_scalar, checked_dtype
from ._operators import AbstractOperator, OperatorGenerator, as_operator
from ._solve import Stats, default_tolerances, outcome, raise_if_failed, solve_linear
from ._taylor import Taylor, largest_radius

# Most operator products one Taylor step may use. A step of degree m covers a shifted
# norm ||h (A - cI)|| of about m - 5.6 sqrt(m) at rtol 1e-13 (44 for m = 100), so higher
# degrees need fewer products per unit of ||tA|| on dissipative problems; on oscillatory
# ones rounding caps the step well below that, and a rejected step of a high degree
# costs more. 100 balances the two (150: 12% fewer products on a Markov chain, 20% more
# on a skew-symmetric generator). The series stops early when fewer terms suffice.
ACTION_DEGREE = 100


def expm_multiply(
    A: Inexact[ArrayLike, "n n"] | sparse.BCOO | sparse.BCSR | lx.AbstractLinearOperator,
    B: Inexact[ArrayLike, "n *k"],
    t: Real[ArrayLike, ""] = 1.0,
    *,
    solver: diffrax.AbstractSolver | None = None,
    stepsize_controller: diffrax.AbstractStepSizeController | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    adjoint: diffrax.AbstractAdjoint | None = None,
    max_steps: int | None = 4096,
    throw: bool = True,
    return_stats: bool = False,
) -> Inexact[Array, "n *k"] | tuple[Inexact[Array, "n *k"], Stats]:
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
      ELLPACK form, planned on the host once per index array (this needs concrete
      indices; inside `jax.jit` with traced indices a slower `segment_sum` product is
      used). Its values are differentiable: dense entries, `BCOO.data`, and the arrays
      a lineax operator holds (for a `lineax.FunctionLinearOperator`, those its
      function closes over).
    - `B`: the state, `(n,)` or `(n, k)` (`k` columns share the steps); `jax.vmap` for
      more axes. Differentiable.
    - `t`: real scalar time (negative integrates backwards); differentiable.
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

    **Returns:** `exp(t A) @ B` with the shape of `B`, in the common dtype of `A` and
    `B`; with `return_stats=True` also the `Stats`.

    Example:
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

        Gradients with respect to the rates (`BCOO.data`), `B` and `t` follow from
        `jax.grad` (see `docs_expm_multiply.md`).
    """
    caller = "odeexpm.expm_multiply"
    operator = as_operator(A, caller)
    B = _as_state(B, operator, caller)
    t = as_real_scalar(t, B.dtype, "t", caller)
    if solver is None and not isinstance(adjoint, diffrax.BacksolveAdjoint):
        solver = Taylor(
            degree=ACTION_DEGREE, tolerance=_series_tolerance(rtol, stepsize_controller, B.dtype)
        )
    # (With BacksolveAdjoint, whose adjoint equation is no linear ODE of this form,
    # `solve_linear` picks a Runge-Kutta solver.)
    Y, stats = _expm_multiply(
        operator,
        B,
        t,
        throw=throw,
        solve_options=dict(
            solver=solver,
            stepsize_controller=stepsize_controller,
            rtol=rtol,
            atol=atol,
            adjoint=adjoint,
            max_steps=max_steps,
        ),
    )
    return (Y, stats) if return_stats else Y


def _as_state(B, operator: AbstractOperator, caller: str) -> Array:
    if not hasattr(B, "shape") or not hasattr(B, "dtype"):
        B = np.asarray(B)
    n = operator.shape[0]
    if B.ndim not in (1, 2) or B.shape[0] != n:
        raise ValueError(
            f"{caller}: `B` must have shape (n,) or (n, k) with n = {n} (`A` is {n}x{n}); "
            f"got shape {tuple(B.shape)}. Use jax.vmap for more axes."
        )
    dtype = checked_dtype(B, "B", caller)
    return jnp.asarray(B, jnp.result_type(dtype, operator.dtype))


def _series_tolerance(rtol, stepsize_controller, dtype) -> float:
    """Where the Taylor series stops: the relative tolerance the solve is asked for."""
    if rtol is not None:
        return rtol
    controller_rtol = getattr(stepsize_controller, "rtol", None)
    if isinstance(controller_rtol, (int, float)) and 0 < controller_rtol < 1:
        return float(controller_rtol)
    return default_tolerances(dtype)[0]


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


def _is_finite(tree) -> Array:
    leaves = [x for x in jtu.tree_leaves(tree) if eqx.is_inexact_array(x)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


# Compiled once per operator structure, shapes, dtypes and options.
@eqx.filter_jit
def _expm_multiply(operator, B, t, *, throw, solve_options):
    Y, stats = _expm_multiply_single(operator, B, t, solve_options)
    if throw:
        Y = raise_if_failed(Y, stats.result, solve_options["max_steps"])
    return Y, stats


def _expm_multiply_single(operator, B, t, solve_options):
    bad = jnp.logical_not(_is_finite((operator, B, t)))
    # A NaN would make the step-size controller reject every step; solve a harmless
    # problem (A = 0) instead and report the bad input.
    operator, B, t = jtu.tree_map(
        lambda x: jnp.where(bad, 0, x) if eqx.is_inexact_array(x) else x, (operator, B, t)
    )
    # The operator in the form and row order it applies fastest in (for a sparse matrix:
    # values gathered into sliced ELLPACK groups, rows grouped by length), once per
    # solve; the solve runs in that order, so no product renumbers its input and output.
    operator, permutation, inverse = operator.prepare()
    center, radius = jax.lax.stop_gradient(operator.disk())
    center = center.astype(jnp.result_type(center.dtype, B.dtype))
    dt0 = jax.lax.stop_gradient(_first_step(t, radius, solve_options["solver"]))
    if permutation is not None:
        B = B[permutation]
    ys, stats, result = solve_linear(
        OperatorGenerator(operator, center), B, 0.0, t, dt0=dt0, **solve_options
    )
    Y = ys[0] if permutation is None else ys[0][inverse]
    return outcome(Y, stats, result, bad)
