"""`FrechetAdjoint`: reverse mode for constant generators through the Fréchet derivative."""

from collections.abc import Callable

import diffrax
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, PyTree, Real

_Forward = Callable[[Inexact[Array, "n n"], Real[Array, ""]], tuple[Inexact[Array, "n n"], PyTree]]


class FrechetAdjoint(diffrax.AbstractAdjoint):
    """Gradients of `exp(tA)` as one more forward solve: the default adjoint of
    `odeexpm.expm`.

    For a loss with cotangent `G` on `X = exp(tA)`, the gradient is the Fréchet
    derivative at the transpose, `dL/dA = t L_exp(t A^T, G)` (the continuous adjoint
    `Lambda' = -A^T Lambda` of a constant-coefficient linear ODE is again one, and the
    integral `int exp((1-s) tA^T) G exp(s tA^T) ds` that it produces is that derivative),
    and `dL/dt = <G, A X>`. odeexpm evaluates `L_exp(tA^T, G)` as the forward-mode
    tangent of the same balanced, scaled and squared solve that computed `X`, so the
    gradient is as accurate and as robust on stiff inputs as the forward pass, costs
    about twice a forward pass, and stores nothing but `A` and `X`.

    It applies to `odeexpm.expm` (and `odeexpm.ExpmLinear`) only. Inside, the solve
    itself is differentiated in forward mode (as with `diffrax.ForwardMode`, which is
    what `diffrax.diffeqsolve` does with this adjoint). Reverse mode only (`jax.grad`,
    `jax.vjp`); for `jax.jvp` pass `adjoint=diffrax.ForwardMode()`, for second
    derivatives `diffrax.DirectAdjoint()`. The differentiated quantity is the exact
    exponential, not the discrete solve: the gradient agrees with the exact one to the
    solver's tolerance.

    Examples:
        >>> import jax, jax.numpy as jnp
        >>> import odeexpm
        >>> A = jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> loss = lambda A: odeexpm.expm(A, adjoint=odeexpm.FrechetAdjoint()).trace()
        >>> jax.grad(loss)(A).shape
        (2, 2)
    """

    def loop(self, **kwargs):
        return diffrax.ForwardMode().loop(**kwargs)


def with_frechet_gradient(forward: _Forward) -> _Forward:
    """`forward(A, t) -> (X, aux)` (forward-mode differentiable in `A`), given the
    gradient of `FrechetAdjoint` in reverse mode."""

    @jax.custom_vjp
    def differentiable(A, t):
        return forward(A, t)

    def forward_pass(A, t):
        X, aux = forward(A, t)
        return (X, aux), (A, t, X)

    def backward_pass(residuals, cotangents):
        A, t, X = residuals
        G = cotangents[0]
        # JAX's cotangents pair bilinearly (no conjugation), so the transpose of
        # E -> L_exp(tA, tE) is G -> t L_exp(tA^T, G), for complex A too.
        _, frechet = jax.jvp(lambda M: forward(M, jnp.ones_like(t))[0], (t * A.T,), (G,))
        grad_t = jnp.sum(G * (A @ X))
        return t * frechet, jnp.real(grad_t).astype(t.dtype)

    differentiable.defvjp(forward_pass, backward_pass)

    def wrapped(A, t):
        X, aux = differentiable(A, t)
        # Integer outputs of a custom_vjp still carry (zero) tangents, which primitives
        # such as equinox's runtime checks cannot differentiate: cut them off.
        return X, jax.lax.stop_gradient(aux)

    return wrapped
