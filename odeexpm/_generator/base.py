"""`AbstractGenerator`: the matrix-valued function `A(t, args)` of a linear ODE."""

import abc

import equinox as eqx
import jax
import numpy as np
from equinox import AbstractVar
from jaxtyping import Array, Inexact, PyTree, Real


class AbstractGenerator(eqx.Module):
    """Base class for the generator `A(t, args)` of a linear ODE `dX/dt = A(t, args) X`.

    Subclass it to define your own generator (a Hamiltonian with drives, a small neural
    network, ...): implement `__call__(t, args)` returning an `(n, n)` array (or a sparse
    matrix or lineax operator), and set `jump_ts`: the times where the generator or its
    derivative jumps, or `None` if it is smooth. Adaptive step-size controllers step
    exactly to the jump times (diffrax's `jump_ts`), so no step straddles a
    discontinuity. Every array field of the subclass is a differentiable parameter.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> class Rotation(odeexpm.AbstractGenerator):
        ...     omega: jnp.ndarray
        ...     jump_ts = None  # smooth in time
        ...     def __call__(self, t, args=None):
        ...         return self.omega * jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> Rotation(jnp.array(2.0))(0.0).shape
        (2, 2)
    """

    jump_ts: AbstractVar[Real[Array, " jumps"] | None]

    @abc.abstractmethod
    def __call__(self, t: Real[Array, ""] | float, args: PyTree = None) -> Inexact[Array, "n n"]:
        """The generator at time `t`."""


def check_increasing(times: Real[Array, " m"], name: str, caller: str) -> None:
    """A `ValueError` naming `name` if the (concrete) `times` do not increase strictly."""
    if not isinstance(times, jax.core.Tracer) and not np.all(np.diff(np.asarray(times)) > 0):
        raise ValueError(f"{caller}: `{name}` must increase strictly; got {times}.")


def interior_breakpoints(times: Real[Array, " m"]) -> Real[Array, " m-2"] | None:
    """The interior breakpoints of a piecewise definition on `times` (the ends are no
    jumps: the first and last pieces extend beyond them)."""
    return times[1:-1] if times.shape[0] > 2 else None
