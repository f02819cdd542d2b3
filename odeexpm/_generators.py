"""Generators: the matrix-valued functions `A(t, args)` of a linear ODE `dX/dt = A(t) X`."""

import abc

import equinox as eqx
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact


class AbstractGenerator(eqx.Module):
    """Base class for the generator `A(t, args)` of a linear ODE `dX/dt = A(t, args) X`.

    Subclass it to define your own generator (a Hamiltonian with drives, a small neural
    network, ...): implement `__call__(t, args)` returning an `(n, n)` array. Every array
    field of the subclass is a differentiable parameter.

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> class Rotation(odeexpm.AbstractGenerator):
        ...     omega: jnp.ndarray
        ...     def __call__(self, t, args=None):
        ...         return self.omega * jnp.array([[0.0, 1.0], [-1.0, 0.0]])
        >>> Rotation(jnp.array(2.0))(0.0).shape
        (2, 2)
    """

    @abc.abstractmethod
    def __call__(self, t, args=None) -> Inexact[Array, "n n"]:
        """The generator at time `t`."""


class Constant(AbstractGenerator):
    """A time-independent generator `A(t) = matrix`.

    Example:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = odeexpm.Constant(jnp.eye(3))
        >>> A(0.5).shape
        (3, 3)
    """

    matrix: Inexact[Array, "n n"]

    def __init__(self, matrix: ArrayLike):
        self.matrix = jnp.asarray(matrix)

    def __call__(self, t=None, args=None) -> Inexact[Array, "n n"]:
        return self.matrix
