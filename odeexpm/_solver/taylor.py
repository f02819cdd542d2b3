"""`Taylor`: a diffrax solver for linear ODEs with a constant generator."""

from typing import ClassVar

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Inexact

from .._complex import merge_complex, split_complex
from .._generator import Constant, Modulated
from .._linalg import matmul
from .._operator import AbstractOperator, DenseOperator
from .action import is_narrow, taylor_action
from .base import AbstractLinearSolver
from .modulated_series import (
    CONTROL_DEGREE,
    ModulatedParts,
    control_series,
    has_control_series,
    modulated_taylor_step,
)
from .polynomial import (
    largest_alpha,
    power_norm_bound,
    taylor_powers,
    taylor_step_polynomial,
)


class Taylor(AbstractLinearSolver):
    """Truncated Taylor steps `y1 = T_m(hA) y0` for `dy/dt = A y` with constant `A`.

    For `dy/dt = A y` with constant `A`, one step of any explicit method is a fixed
    polynomial in `hA` applied to `y`. The best polynomial of a given cost is the
    truncated Taylor series itself, `T_m(hA) = sum_{k <= m} (hA)^k / k!`, evaluated with
    few matrix products (Paterson-Stockmeyer, about `2 sqrt(m)`; 5 for `m = 18` and `21`), where
    an `m`-stage Runge-Kutta method spends `m` products on an order below `m`.

    Order `degree`. The powers of `A` the polynomial combines are formed once per solve
    (those of `hA` are `h^j A^j`). The local error estimate bounds the truncated tail
    with Al-Mohy and Higham's `alpha`, from norms of those powers (far below `||hA||`
    for non-normal matrices), scaled by `|y1|` so the step-size controller sees a
    relative error.

    For constant generators (`odeexpm.Constant`, as in `expm` and `expm_multiply`) and
    `odeexpm.Modulated` ones (below), with adjoints that differentiate the discrete solve
    (`RecursiveCheckpointAdjoint`, `DirectAdjoint`, `ForwardMode`): the adjoint
    equation that `BacksolveAdjoint` integrates is not linear in this form. Its dense
    output interpolates linearly between steps.

    **Action steps.** When the generator is an operator rather than a dense matrix
    (`odeexpm.expm_multiply`), or the state is narrow (`k sqrt(m) < 2n` columns), the
    step evaluates `y1 = e^(hc) sum_k T_k` with `T_0 = y0`,
    `T_k = (h/k) (A - cI) T_(k-1)`, one product with `A` per term, where `c` is the
    center of a disk holding the spectrum (computed once per solve, `precompute`): the
    shift shrinks the norm the series must cover, and makes the terms of a Markov
    generator non-negative. The series stops after `K <= degree` terms, once the last
    two are below `tolerance` times the sum (inf-norms); `degree` is then the most
    products a step may use. Its error estimate has two parts: the truncation error the
    step would have at the full degree, extrapolated from the last terms (the model
    `error ~ h^(degree+1)` that the step-size controller assumes, so steps grow until
    `degree` terms are needed), and rounding, `eps (sum ||T_k|| / ||sum T_k|| - 1)`
    relative to `y1`, which is large when the terms cancel (oscillatory `A`, large
    steps) and makes the controller shorten such steps. Gradients: a custom JVP rule
    differentiates the polynomial the step used (forward mode; reverse mode by
    transposition).

    **Steps in time.** For a `Modulated` generator `A(t) = A0 + sum_c f_c(t) A_c` (the
    default for sparse and matrix-free ones), a step evaluates the Taylor polynomial of
    degree `degree` of the solution itself, `y(t + h) ~ sum_k T_k`, from the recurrence
    `T_(k+1) = h/(k+1) (A0 T_k + sum_c sum_(j<=k) F_(j,c) A_c T_(k-j))`, with
    `F_(j,c) = h^j f_c^(j)(t)/j!` from `jax.experimental.jet` (cut at degree 16): `K + 1`
    products per term, no matrix function. The error estimate is that of the action
    steps, plus `h |f_c(t + h) - sum_j F_(j,c)| |A_c y|`, which catches a control's kink
    inside a step (undeclared in `jump_ts`) or a drive too fast for the series. The
    controls must be written with primitives `jet` can expand (elementwise functions,
    not table lookups). Gradients: a custom JVP rule differentiates the terms (reverse
    mode keeps a few states per term, not the products of every term at every term).

    **Arguments:**

    - `degree`: the degree of the polynomial (the most products of an action step; the
      number of terms of a step in time). Default 21, which `expm` uses: 5 matrix
      products by the scheme of Sastre, Ibáñez and Defez (a step of 64 rows or more
      whose powers allow it takes degree 12 in 4 products instead).
    - `tolerance`: action steps only: stop adding terms below this relative size
      (`None`: the unit roundoff of the dtype).

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> X = odeexpm.expm(A, solver=odeexpm.Taylor(degree=12))
        >>> bool(jnp.allclose(X[0, 1], jnp.sin(1.0)))
        True

        A sparse driven qubit, stepped in time (the default for sparse generators):

        >>> from jax.experimental import sparse
        >>> X = sparse.BCOO.fromdense(jnp.array([[0.0, 1.0], [1.0, 0.0]]))
        >>> Z = sparse.BCOO.fromdense(jnp.array([[1.0, 0.0], [0.0, -1.0]]))
        >>> H = odeexpm.Modulated(Z, [X], [lambda t, a: a * jnp.cos(t)])
        >>> A = odeexpm.schrodinger(H)
        >>> psi = odeexpm.evolve(A, jnp.array([1.0, 0.0]), 0.0, 2.0, args=0.5)
        >>> bool(abs(jnp.linalg.norm(psi) - 1) < 1e-5)
        True
    """

    degree: int = 21
    tolerance: float | None = None

    interpolation_cls: ClassVar = diffrax.LocalLinearInterpolation

    def __check_init__(self):
        if not isinstance(self.degree, int) or self.degree < 1:
            raise ValueError(f"odeexpm.Taylor: `degree` must be an int >= 1; got {self.degree!r}.")
        if self.tolerance is not None and not 0 < self.tolerance < 1:
            raise ValueError(
                f"odeexpm.Taylor: `tolerance` must be in (0, 1); got {self.tolerance!r}."
            )

    def order(self, terms):
        return self.degree

    def precompute(self, generator, t0, y0, args):
        """For polynomial steps, `(powers, alpha)`: the powers `(I, A, ..., A^q)` the
        polynomial combines (those of `hA` are `h^j A^j`: formed once per solve, not
        once per step), and their `power_norm_bound` (that of `hA` is `|h| alpha`); for
        action steps, `(center, radius)` of a disk holding the spectrum (the center is
        their shift); for steps in time, the `ModulatedParts` (the generator's operators
        in their fast forms)."""
        if isinstance(generator, Modulated):
            if not has_control_series(generator, t0, args):
                raise TypeError(
                    "odeexpm.Taylor expands the controls of a Modulated generator in time "
                    "with jax.experimental.jet, which has no rule for an operation these "
                    "controls use (odeexpm.PiecewiseConstant, jnp.interp and "
                    "jnp.searchsorted search with a loop). Leave `solver` to its default, "
                    "which picks a solver for such controls, or pass a Runge-Kutta or "
                    "Magnus solver."
                )
            return ModulatedParts.of(generator)
        if not isinstance(generator, Constant):
            raise TypeError(
                "odeexpm.Taylor needs a constant generator (odeexpm.Constant, as in "
                "odeexpm.expm and odeexpm.expm_multiply) or an odeexpm.Modulated one; for "
                "other time-dependent generators use a Runge-Kutta or Magnus solver. Got "
                f"{type(generator).__name__}."
            )
        operator = _action_operator(generator.matrix, y0, self.degree)
        if operator is None:
            powers = taylor_powers(generator.matrix, self.degree)
            return powers, power_norm_bound(powers, self.degree)
        return jax.lax.stop_gradient(operator.disk())

    def within_roundoff(self, terms, t0, t1, y0, solver_state) -> Bool[Array, ""]:
        """Whether the step from `t0` to `t1` is a polynomial one whose truncation bound
        is at most the unit roundoff: its error estimate, that bound times `y1`, is then
        at most `u |y1|` entrywise. `False` for action steps and steps in time."""
        term, _ = self.linear_term(terms)
        generator = merge_complex(term.generator)
        y = merge_complex(y0)
        if (
            not isinstance(generator, Constant)
            or _action_operator(generator.matrix, y, self.degree) is not None
        ):
            return jnp.zeros((), bool)
        _, alpha = self.precomputed(terms, solver_state)
        h = terms.contr(t0, t1)
        # (Degree 12, where `taylor_step_polynomial` takes it, is within at lower `alpha`.)
        return jnp.abs(h) * alpha <= largest_alpha(self.degree, y.dtype)

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del made_jump
        term, direction = self.linear_term(terms)
        h = terms.contr(t0, t1)
        y = merge_complex(y0)
        generator = merge_complex(term.generator)
        if isinstance(generator, Modulated):
            # In the user's time (diffeqsolve runs in `direction * t`).
            start, h = direction * t0, direction * (t1 - t0)
            args = merge_complex(args)
            degree = min(self.degree, CONTROL_DEGREE)
            series = control_series(generator, start, h, args, degree)
            controls_at_end = generator.controls(start + h, args)
            parts = self.precomputed(terms, solver_state)
            y1, y_error = modulated_taylor_step(parts, series, controls_at_end, h, y, self.degree)
            y1, y_error = split_complex(y1), split_complex(y_error)
            return y1, y_error, dict(y0=y0, y1=y1), solver_state, diffrax.RESULTS.successful
        A = term.matrix(t0, args)
        operator = _action_operator(A, y, self.degree)
        if operator is None:
            powers, alpha = self.precomputed(terms, solver_state)
            scaled = tuple(h**j * power for j, power in enumerate(powers))
            polynomial, error_bound = taylor_step_polynomial(
                scaled, jnp.abs(h) * alpha, self.degree
            )
            y1 = _times_state(polynomial, y)
            y_error = error_bound * y1
        else:
            center, _ = self.precomputed(terms, solver_state)
            y1, y_error = taylor_action(operator, center, h, y, self.degree, self.tolerance)
        y1, y_error = split_complex(y1), split_complex(y_error)
        dense_info = dict(y0=y0, y1=y1)
        return y1, y_error, dense_info, solver_state, diffrax.RESULTS.successful


def _action_operator(
    A: Inexact[Array, "n n"] | AbstractOperator, y: Inexact[Array, " n *k"], degree: int
) -> AbstractOperator | None:
    """The operator an action step applies (`A` itself, or a dense `A` as a
    `DenseOperator` for a narrow state), or `None` where the step is a polynomial."""
    if isinstance(A, AbstractOperator):
        return A
    return DenseOperator(A) if is_narrow(y, degree) else None


@eqx.filter_custom_jvp
def _times_state(P: Inexact[Array, "n n"], y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
    """`P @ y`, without the product where `y` is the identity: the first step of
    `expm`, usually its only one (one product of six at degree 21)."""
    return _unless_identity(y, lambda: P, lambda: matmul(P, y))


@_times_state.def_jvp
def _times_state_jvp(primals, tangents):
    # Linear in the tangents, with the identity test on the primal `y`: transposable.
    (P, y), (dP, dy) = primals, tangents
    parts = []
    if dP is not None:
        parts.append(_unless_identity(y, lambda: dP, lambda: matmul(dP, y)))
    if dy is not None:
        parts.append(matmul(P, dy))
    return _times_state(P, y), sum(parts[1:], parts[0]) if parts else None


def _unless_identity(y, identity_case, general_case):
    """`identity_case()` where `y` is exactly the identity (every matrix of a batch),
    else `general_case()`."""
    if y.ndim != 2 or y.shape[0] != y.shape[1]:  # (a vector, or a non-square state)
        return general_case()
    is_identity = eqxi.unvmap_all(jnp.all(y == jnp.eye(y.shape[0], dtype=y.dtype)))
    return jax.lax.cond(is_identity, identity_case, general_case)
