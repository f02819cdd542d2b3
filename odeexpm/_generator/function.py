"""`FromFunction`: a plain callable as a generator."""

import inspect
from collections.abc import Callable

from .base import AbstractGenerator


class FromFunction(AbstractGenerator):
    """A plain callable `fn(t, args) -> (n, n)` as a generator (what `odeexpm.propagator`
    wraps functions in). Arrays it closes over are constants, not parameters: to
    differentiate with respect to them pass them in `args`, or write an
    `AbstractGenerator` subclass. Taken to be smooth in time (no jump times). A function
    that is a sum of scalar functions of time times fixed matrices is solved as the
    `odeexpm.Modulated` generator it is (read off its jaxpr), with that form's solvers.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> A = odeexpm.FromFunction(lambda t, args: t * jnp.eye(2))
        >>> A(2.0).tolist()
        [[2.0, 0.0], [0.0, 2.0]]
    """

    fn: Callable
    jump_ts = None

    def __call__(self, t, args=None):
        return self.fn(t, args)


def from_callable(fn: Callable, name: str, caller: str) -> FromFunction:
    """`FromFunction(fn)`, with a clear error naming `name` where `fn` cannot be called
    as `fn(t, args)` (checked on its signature, where it has one)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # (builtins and the like: no signature to check)
        return FromFunction(fn)
    try:
        signature.bind(0.0, None)
    except TypeError:
        raise TypeError(
            f"{caller}: `{name}` must be callable as {name}(t, args); "
            f"{getattr(fn, '__name__', fn)}{signature} is not. Write `lambda t, args: ...` "
            "(args may go unused)."
        ) from None
    return FromFunction(fn)
