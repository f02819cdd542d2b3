"""`Lindblad`: the generator of the Lindblad master equation, from `H` and the jump
operators."""

from collections.abc import Sequence

import jax.numpy as jnp
from jax.experimental import sparse as jsparse
from jaxtyping import Array, Inexact

from .._checks import as_array, checked_dtype
from .._operator import (
    AbstractOperator,
    BandedOperator,
    LineaxOperator,
    Liouvillian,
    OperatorCombination,
    SumOfSquares,
    as_operator,
    banded_form,
    decay_of,
    gram,
    is_operator,
)
from .base import AbstractGenerator
from .constant import Constant
from .function import from_callable
from .modulated import Modulated

_CALLER = "odeexpm.Lindblad"


class Lindblad(AbstractGenerator):
    """The generator of the Lindblad master equation (with `hbar = 1`)

        d rho/dt = -i [H(t), rho] + sum_k (L_k rho L_k^H - 1/2 {L_k^H L_k, rho}),

    for `odeexpm.evolve` (density matrices `(n, n)`, evolved in matrix form) and
    `odeexpm.propagator` (the `(n^2, n^2)` superoperator on column-stacked `vec(rho)`,
    whose entry `i + j n` is `rho[i, j]`: `vec(rho) = rho.T.reshape(-1)`).

    The map is applied as `M rho + (M rho^H)^H + sum_k L_k (L_k rho^H)^H` with
    `M = -i H - 1/2 sum_k L_k^H L_k`: products from the left only, a pass over `rho`
    per sparse factor and `O(n^3)` per dense one; the `n^2 x n^2` superoperator is never
    formed (except by `propagator`, which returns it).

    **Arguments:**

    - `hamiltonian`: the Hamiltonian `H` itself (not `-iH`, unlike the generators of
      `odeexpm.propagator`): an `(n, n)` array, a `BCOO`/`BCSR` matrix, a lineax
      operator; or a time-dependent one: an odeexpm generator (`Modulated` for
      `H0 + sum_k f_k(t) H_k`, `PiecewiseConstant`, ...) or a callable
      `H(t, args)`. Its arrays are differentiable parameters.
    - `jump_operators`: a sequence of jump operators `L_k`: `(n, n)` arrays or sparse
      matrices; or time-dependent ones (odeexpm generators or callables `L(t, args)`)
      returning dense arrays. Rates are part of the operators: pass `sqrt(gamma) L`.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> H = 0.5 * jnp.array([[1.0, 0.0], [0.0, -1.0]])
        >>> decay = jnp.array([[0.0, 1.0], [0.0, 0.0]])     # |0><1|: decay to |0>
        >>> lindblad = odeexpm.Lindblad(H, [jnp.sqrt(0.3) * decay])
        >>> rho0 = jnp.array([[0.0, 0.0], [0.0, 1.0]])     # the excited state |1>
        >>> rho = odeexpm.evolve(lindblad, rho0, 0.0, 2.0)
        >>> bool(jnp.isclose(rho[1, 1].real, jnp.exp(-0.3 * 2.0)))
        True
    """

    hamiltonian: AbstractGenerator
    jump_operators: tuple[AbstractGenerator, ...]
    decay: Inexact[Array, "n n"] | AbstractOperator | None

    def __init__(self, hamiltonian, jump_operators):
        if not isinstance(jump_operators, (list, tuple)):
            raise TypeError(
                f"{_CALLER}: `jump_operators` must be a list of (n, n) operators (an empty "
                f"list for none); got {type(jump_operators).__name__}."
            )
        self.hamiltonian = _with_banded_parts(_as_part(hamiltonian, "hamiltonian"))
        self.jump_operators = tuple(
            _as_part(L, name) for L, name in zip(jump_operators, _names(len(jump_operators))[1:])
        )
        parts = (self.hamiltonian, *self.jump_operators)
        _check_sizes(
            {
                name: part.matrix.shape
                for name, part in zip(_names(len(jump_operators)), parts)
                if isinstance(part, Constant)
            }
        )
        constant = all(isinstance(L, Constant) for L in self.jump_operators)
        self.decay = _constant_decay(jump_operators, self.jump_operators) if constant else None

    def __call__(self, t, args=None):
        names = _names(len(self.jump_operators))
        parts = (self.hamiltonian, *self.jump_operators)
        H, *jumps = (_factor(part(t, args), name) for part, name in zip(parts, names))
        jumps = tuple(jumps)
        _check_sizes({name: value.shape for name, value in zip(names, (H, *jumps))})
        decay = self.decay
        if decay is None and jumps:
            if not all(isinstance(L, jnp.ndarray) for L in jumps):
                raise TypeError(
                    f"{_CALLER}: time-dependent jump operators must return dense (n, n) "
                    "arrays; sparse or matrix-free jump operators must be constant."
                )
            decay = decay_of(jumps)
        return Liouvillian(H, jumps, decay)

    @property
    def jump_ts(self):
        times = [
            part.jump_ts
            for part in (self.hamiltonian, *self.jump_operators)
            if part.jump_ts is not None
        ]
        return jnp.sort(jnp.concatenate(times)) if times else None


def _names(jumps: int) -> list[str]:
    """How errors name the Hamiltonian and the jump operators."""
    return ["hamiltonian"] + [f"jump_operators[{k}]" for k in range(jumps)]


def _as_part(x, name: str) -> AbstractGenerator:
    """`x` (an operator or a time-dependent one) as a generator."""
    if isinstance(x, AbstractGenerator):
        return x
    if callable(x) and not is_operator(x):
        return from_callable(x, name, _CALLER)
    if is_operator(x):
        return Constant(_banded_if_possible(as_operator(x, name, _CALLER)))
    x = as_array(x, name, _CALLER)
    if x.ndim != 2 or x.shape[0] != x.shape[1]:
        raise ValueError(
            f"{_CALLER}: `{name}` must be a square (n, n) matrix; got shape {x.shape}."
        )
    return Constant(jnp.asarray(x, checked_dtype(x.dtype, name, _CALLER)))


def _banded_if_possible(operator):
    banded = banded_form(operator)
    return operator if banded is None else banded


def _with_banded_parts(hamiltonian: AbstractGenerator) -> AbstractGenerator:
    """A sparse `Modulated` Hamiltonian with its parts by diagonals, where they have few."""
    if not (isinstance(hamiltonian, Modulated) and hamiltonian.is_operator):
        return hamiltonian
    parts = [banded_form(part) for part in (hamiltonian.drift, *hamiltonian.operators)]
    if any(part is None for part in parts):
        return hamiltonian
    return Modulated(parts[0], parts[1:], hamiltonian.coefficients)


def _factor(value, name: str):
    """What a part returned at a time `t`, as a factor of `Liouvillian`."""
    if isinstance(value, (AbstractOperator, OperatorCombination)):
        return value
    if is_operator(value):
        return as_operator(value, name, _CALLER)
    value = jnp.asarray(value)
    if value.ndim != 2 or value.shape[0] != value.shape[1]:
        raise ValueError(
            f"{_CALLER}: `{name}` must give a square (n, n) matrix; it gave shape "
            f"{tuple(value.shape)}."
        )
    return value


def _check_sizes(shapes: dict[str, tuple[int, ...]]) -> None:
    if len({shape for shape in shapes.values()}) > 1:
        described = ", ".join(f"`{name}` {tuple(shape)}" for name, shape in shapes.items())
        raise ValueError(
            f"{_CALLER}: the Hamiltonian and the jump operators must all be (n, n) with the "
            f"same n; got {described}."
        )


def _constant_decay(jump_operators: Sequence, parts: tuple[Constant, ...]):
    """`K = sum_k L_k^H L_k` of constant jump operators (`parts`, made from the raw
    `jump_operators`): a dense array where they are all dense, by diagonals where they
    are all banded, else an operator applying `sum_k L_k^H (L_k y)` (the adjoint of a
    sparse `L` is the sparse matrix of its conjugated values and swapped indices, so
    gradients reach the values)."""
    if not jump_operators:
        return None
    matrices = [part.matrix for part in parts]
    if not any(is_operator(L) for L in matrices):
        return decay_of(tuple(matrices))
    if all(isinstance(L, BandedOperator) for L in matrices):
        return gram(tuple(matrices))
    if any(isinstance(L, LineaxOperator) for L in matrices):
        raise TypeError(
            f"{_CALLER}: jump operators must be arrays or sparse matrices (their adjoints "
            "are needed); a lineax operator is not supported."
        )
    adjoints = tuple(_adjoint(L) for L in jump_operators)
    factors = tuple(as_operator(L, "jump_operators", _CALLER) for L in matrices)
    return SumOfSquares(factors, adjoints)


def _adjoint(L):
    if isinstance(L, jsparse.BCSR):
        L = L.to_bcoo()
    if isinstance(L, jsparse.BCOO):
        adjoint = jsparse.BCOO((jnp.conj(L.data), L.indices[:, ::-1]), shape=L.shape[::-1])
        return as_operator(adjoint, "jump_operators", _CALLER)
    return as_operator(jnp.conj(jnp.asarray(L)).T, "jump_operators", _CALLER)
