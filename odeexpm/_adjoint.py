"""`FrechetAdjoint`: every derivative of `exp(tA)` through its Fréchet derivative.

The derivative of `X = exp(tA)` is `dX = L_exp(tA, t dA + dt A)`, where
`L_exp(M, E) = int_0^1 exp(sM) E exp((1-s)M) ds` is linear in `E`, and its transpose
under JAX's (bilinear) pairing is `G -> L_exp(M^T, G)`. The primitive `frechet_p`
computes `L_exp(M, E)` as the forward-mode tangent of the same solve that computes
`exp(M)`, and knows its own transpose and derivative, so JAX obtains every mode from
one rule: `jax.jvp` and `jax.jacfwd` evaluate the primitive, `jax.grad` and `jax.vjp`
transpose it, and `jax.hessian` differentiates the transpose.
"""

from collections.abc import Callable

import diffrax
import equinox.internal as eqxi
import jax
import jax.interpreters.ad as ad
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Inexact, PyTree, Real

# `forward(A, t) -> (exp(tA), aux)`, forward-mode differentiable in `A`.
_Forward = Callable[[Inexact[Array, "n n"], Real[Array, ""]], tuple[Inexact[Array, "n n"], PyTree]]


class FrechetAdjoint(diffrax.AbstractAdjoint):
    """Derivatives of `exp(tA)` through the Fréchet derivative: the default adjoint of
    `odeexpm.expm`, for every mode of differentiation.

    The derivative of `X = exp(tA)` in a direction `(dA, dt)` is the Fréchet derivative
    `dX = L_exp(tA, t dA + dt A)`, which odeexpm evaluates as the forward-mode tangent of
    the same balanced, scaled and squared solve that computes `X` (so it is as accurate
    and as robust on stiff inputs as the forward pass). `L_exp(M, E)` is linear in `E`,
    with the transpose `G -> L_exp(M^T, G)` (the continuous adjoint
    `Lambda' = -A^T Lambda` of a constant-coefficient linear ODE is again one): a
    gradient costs one more such solve, at `A^T`, and stores nothing but `A` and `X`.

    All of `jax.grad`, `jax.vjp`, `jax.jvp`, `jax.jacfwd`, `jax.jacrev`, `jax.hessian`
    and Hessian-vector products `jax.jvp(jax.grad(f), ...)` work. (Reverse mode over
    forward mode, `jax.grad` of a function that calls `jax.jvp`, does not: use
    forward over reverse.) The differentiated quantity is the exact exponential, not the
    discrete solve: derivatives agree with the exact ones to the solver's tolerance.

    It applies to `odeexpm.expm` (and `odeexpm.ExpmLinear`) only. Inside, the solve is
    differentiated in forward mode (as with `diffrax.ForwardMode`, which is what
    `diffrax.diffeqsolve` does with this adjoint).

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> loss = lambda A: odeexpm.expm(A, adjoint=odeexpm.FrechetAdjoint()).trace()
        >>> jax.grad(loss)(A).shape
        (2, 2)
        >>> _, dX = jax.jvp(odeexpm.expm, (A,), (jnp.eye(2),))   # d/ds exp(A + sI) = exp(A)
        >>> bool(jnp.allclose(dX, odeexpm.expm(A)))
        True
    """

    def loop(self, **kwargs):
        return diffrax.ForwardMode().loop(**kwargs)


def with_frechet_derivative(forward: _Forward) -> _Forward:
    """`forward(A, t) -> (X, aux)` (forward-mode differentiable in `A`), differentiated
    in every mode through `frechet_p`."""

    @jax.custom_jvp
    def differentiable(A, t):
        return forward(A, t)

    @differentiable.defjvp
    def _jvp(primals, tangents):
        A, t = primals
        dA, dt = tangents
        X, aux = forward(A, t)
        dX = frechet(forward, t * A, t * dA + dt * A)
        return (X, aux), (dX, jtu.tree_map(no_tangent, aux))

    return differentiable


def no_tangent(x):
    """The tangent of a non-differentiable output (integers, statistics): float0 zeros."""
    return np.zeros(jnp.shape(x), jax.dtypes.float0)


def frechet(forward: _Forward, M: Inexact[Array, "n n"], E: Inexact[Array, "n n"]):
    """`L_exp(M, E)`, the Fréchet derivative of `exp` at `M` in the direction `E`, by
    `forward` (which computes `exp(tM)`)."""
    return eqxi.filter_primitive_bind(frechet_p, forward, M, E)


def _frechet_impl(forward, M, E):
    one = jnp.ones((), jnp.finfo(M.dtype).dtype)
    _, dX = jax.jvp(lambda M: forward(M, one)[0], (M,), (E,))
    return dX


@eqxi.filter_primitive_def
def _frechet_abstract_eval(forward, M, E):
    return jax.core.ShapedArray(E.shape, E.dtype)


@eqxi.filter_primitive_jvp
def _frechet_jvp(primals, tangents):
    forward, M, E = primals
    _, dM, dE = tangents
    out = frechet(forward, M, E)
    # d L(M, E) = L(M, dE) + (the second derivative of exp at M in directions dM, E).
    terms = []
    if dE is not None:
        terms.append(frechet(forward, M, dE))
    if dM is not None:
        terms.append(jax.jvp(lambda M: _frechet_impl(forward, M, E), (M,), (dM,))[1])
    return out, (sum(terms) if terms else None)


@eqxi.filter_primitive_transpose(materialise_zeros=True)
def _frechet_transpose(inputs, ct):
    forward, M, E = inputs
    assert not isinstance(M, ad.UndefinedPrimal), "L_exp(M, E) is linear in E only"
    # JAX pairs cotangents bilinearly (no conjugation): the transpose of E -> L(M, E) is
    # G -> L(M^T, G), for complex M too.
    ct_E = frechet(forward, M.T, ct) if isinstance(E, ad.UndefinedPrimal) else None
    return jtu.tree_map(lambda _: None, forward), None, ct_E


frechet_p = eqxi.create_vprim(
    "odeexpm_frechet",
    eqxi.filter_primitive_def(_frechet_impl),
    _frechet_abstract_eval,
    _frechet_jvp,
    _frechet_transpose,
)
