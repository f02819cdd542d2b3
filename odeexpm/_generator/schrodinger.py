"""`schrodinger`: the generator `-i H(t)` of the Schrödinger equation, from `H` itself."""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import lineax as lx
from jax.experimental import sparse as jsparse

from .._operator import AbstractOperator, LineaxOperator, ScaledOperator, is_operator
from .base import AbstractGenerator
from .constant import Constant
from .function import FromFunction
from .modulated import Modulated
from .piecewise_constant import PiecewiseConstant


class _TimesMinusI(AbstractGenerator):
    """`-i H(t, args)` for any generator `H` (its arrays stay parameters)."""

    hamiltonian: AbstractGenerator

    def __call__(self, t, args=None):
        return _minus_i(self.hamiltonian(t, args))

    @property
    def jump_ts(self):
        return self.hamiltonian.jump_ts


def _minus_i(H):
    """`-i H` for an array, a sparse matrix or a lineax operator (what `H(t, args)` may
    return, and what users pass)."""
    if isinstance(H, AbstractOperator):  # the parts of a sparse or matrix-free Modulated
        return ScaledOperator(jnp.asarray(-1j, jnp.result_type(H.dtype, jnp.complex64)), H)
    if isinstance(H, lx.AbstractLinearOperator):
        # Complex in and out, whatever H's own structure (LineaxOperator applies a real H
        # to each part of a complex vector).
        structure = H.in_structure()
        apply = LineaxOperator(H).mv
        complex_structure = jax.ShapeDtypeStruct(
            structure.shape, jnp.result_type(structure.dtype, jnp.complex64)
        )
        return lx.FunctionLinearOperator(lambda v: -1j * apply(v), complex_structure)
    return -1j * H if isinstance(H, jsparse.JAXSparse) else -1j * jnp.asarray(H)


def schrodinger(hamiltonian: AbstractGenerator | Callable | object) -> AbstractGenerator:
    """The generator `A(t, args) = -i H(t, args)` of the Schrödinger equation
    `d psi/dt = -i H(t) psi` (with `hbar = 1`), from the Hamiltonian `H` itself: the
    convention of QuTiP and dynamiqs, where `odeexpm.propagator` and `odeexpm.evolve`
    take the generator `A` of `dy/dt = A y`. (Passing `H` itself as `A` solves
    `dy/dt = H y` instead, whose solution grows exponentially: `propagator` and `evolve`
    warn when a complex generator is Hermitian.)

    **Arguments:**

    - `hamiltonian`: `H`: an `(n, n)` array, sparse matrix (`BCOO`/`BCSR`) or lineax
      operator (a constant Hamiltonian); an odeexpm generator (`Modulated` for
      `H0 + sum_k f_k(t) H_k`, `PiecewiseConstant`, ...; its arrays stay differentiable
      parameters); or a callable `H(t, args)`.

    **Returns:** a generator of the same kind where there is one (a `Modulated`
    Hamiltonian gives a `Modulated` generator, so that `odeexpm.Magnus8` applies),
    else one that multiplies `H(t, args)` by `-i`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> Z = jnp.diag(jnp.array([1.0, -1.0]))
        >>> X = jnp.array([[0.0, 1.0], [1.0, 0.0]])
        >>> H = odeexpm.Modulated(0.5 * Z, X[None], [lambda t, a: a * jnp.cos(t)])
        >>> A = odeexpm.schrodinger(H)        # -i H(t), still a Modulated generator
        >>> U = odeexpm.propagator(A, 0.0, 10.0, args=0.3)
        >>> bool(jnp.allclose(U.conj().T @ U, jnp.eye(2), atol=1e-9))
        True
    """
    # Generators keep their kind, with their arrays or operators times -i.
    if isinstance(hamiltonian, Modulated):
        parts = hamiltonian.operators
        parts = [_minus_i(part) for part in parts] if hamiltonian.is_operator else _minus_i(parts)
        return Modulated(_minus_i(hamiltonian.drift), parts, hamiltonian.coefficients)
    if isinstance(hamiltonian, Constant) and not is_operator(hamiltonian.matrix):
        return Constant(_minus_i(hamiltonian.matrix))
    if isinstance(hamiltonian, PiecewiseConstant):
        return PiecewiseConstant(hamiltonian.times, _minus_i(hamiltonian.values))
    if isinstance(hamiltonian, AbstractGenerator):
        return _TimesMinusI(hamiltonian)
    if callable(hamiltonian) and not is_operator(hamiltonian):
        return _TimesMinusI(FromFunction(hamiltonian))
    return Constant(_minus_i(hamiltonian))
