"""The operator interface: what a generator must offer when no dense matrix is formed.

A generator `A` enters the Taylor action step (and any diffrax solver, through
`odeexpm.LinearTerm`) only through products `A @ y`, for a state `y` of shape `(n,)` or
`(n, k)`. An `AbstractOperator` provides that product and a *disk*
`|z - center| <= radius` holding the spectrum of `A`: the action step shifts `A` by the
center (`exp(hA) = exp(h center) exp(h (A - center I))`, which shrinks the norm a Taylor
series must cover, and for a Markov generator makes every term non-negative) and the
first step size is chosen from the radius.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, Inexact, Int, Real


class Renumbering(eqx.Module):
    """A renumbering of the rows of a state: `forward(y) = y[order]`,
    `backward(y) = y[inverse]`, with `inverse` the inverse permutation of `order`."""

    order: Int[Array, " n"]
    inverse: Int[Array, " n"]

    def forward(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        return y[self.order]

    def backward(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        return y[self.inverse]


def apply_in_row_order(
    operator: "AbstractOperator", renumbering: Renumbering | None, y: Inexact[Array, " n *k"]
) -> Inexact[Array, " n *k"]:
    """`A y` from `A`'s fast form `(operator, renumbering)` (`operator = P A P^T`, `P` the
    renumbering): `P^T (operator (P y))`, in the original row order."""
    if renumbering is None:
        return operator.mv(y)
    return renumbering.backward(operator.mv(renumbering.forward(y)))


class AbstractOperator(eqx.Module):
    """A linear operator `A` on vectors of length `n`, applied to states `(n,)` or
    `(n, k)` (columns). `A @ y` is `A.mv(y)`, so an operator can stand where a dense
    matrix would in `odeexpm.LinearTerm`.
    """

    @property
    @abc.abstractmethod
    def shape(self) -> tuple[int, int]:
        """`(n, n)`."""

    @property
    @abc.abstractmethod
    def dtype(self) -> jnp.dtype:
        """The dtype of the operator's values (of `A @ y` for a real `y`)."""

    @abc.abstractmethod
    def mv(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        """`A @ y` for `y` of shape `(n,)` or `(n, k)`."""

    @abc.abstractmethod
    def disk(self) -> tuple[Inexact[Array, ""], Real[Array, ""]]:
        """`(center, radius)`: the spectrum of `A` lies in `|z - center| <= radius`
        (a bound for explicit matrices, an estimate for matrix-free ones)."""

    @abc.abstractmethod
    def diagonal(self) -> Inexact[Array, " n"] | None:
        """The diagonal of `A` where it is known without products (explicit matrices),
        else `None` (matrix-free operators)."""

    @abc.abstractmethod
    def fast_form(self) -> tuple["AbstractOperator", Renumbering | None]:
        """The operator in the storage and row order in which its products are fastest,
        `P A P^T`, with the renumbering `P` of the rows (`None` for none). Computed once
        per solve; the solve then runs in that order and renumbers only its input and
        output."""

    def __matmul__(self, y: Inexact[Array, " n *k"]) -> Inexact[Array, " n *k"]:
        return self.mv(y)


def gershgorin_disk(
    diagonal: Inexact[Array, " n"], row_radii: Real[Array, " n"], column_radii: Real[Array, " n"]
) -> tuple[Inexact[Array, ""], Real[Array, ""]]:
    """A disk holding the spectrum, from the Gershgorin disks `|z - a_ii| <= r_i` of the
    rows and those of the columns (each family holds the spectrum; the smaller
    enclosing disk is returned).

    The center is the midpoint of the union's extent along the real axis (and, for
    complex matrices, the imaginary axis). For a Markov generator with columns summing
    to zero (`a_jj = -q_j`, column radii `q_j`) it is `-max q_j`, so that `A - center I`
    has non-negative entries (uniformization); for a grid Laplacian it is the middle of
    its spectrum.
    """

    def enclosing(radii):
        def midpoint(part):
            return 0.5 * (jnp.min(part(diagonal) - radii) + jnp.max(part(diagonal) + radii))

        center = midpoint(jnp.real)
        if jnp.iscomplexobj(diagonal):
            center = center + 1j * midpoint(jnp.imag)
        return center, jnp.max(jnp.abs(diagonal - center) + radii)

    row_center, row_radius = enclosing(row_radii)
    column_center, column_radius = enclosing(column_radii)
    rows_smaller = row_radius <= column_radius
    center = jnp.where(rows_smaller, row_center, column_center)
    radius = jnp.where(rows_smaller, row_radius, column_radius)
    return center.astype(diagonal.dtype), radius


def estimated_disk(operator: AbstractOperator) -> tuple[Inexact[Array, ""], Real[Array, ""]]:
    """A disk for an operator known only by its products, estimated from two products
    with a fixed random sign vector `z`: the center is the trace estimate `z^T A z / n`,
    the radius a power-iteration estimate of `||A - center I||` (a lower estimate)."""
    n = operator.shape[0]
    z = jax.random.rademacher(jax.random.key(0), (n,), dtype=jnp.finfo(operator.dtype).dtype)
    z = z.astype(operator.dtype)
    Az = operator.mv(z)
    center = jnp.vdot(z, Az) / n
    shifted = Az - center * z
    norm = jnp.linalg.norm
    first = norm(shifted) / norm(z)
    second = norm(operator.mv(shifted) - center * shifted) / jnp.where(first > 0, norm(shifted), 1)
    return center.astype(operator.dtype), jnp.maximum(first, second)
