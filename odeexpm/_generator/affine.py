"""`as_modulated`: a generator written as a function, rewritten as the `Modulated`
generator it is, where it is one.

Users write `A = lambda t, a: -1j * (H0 + a * jnp.sin(t) * H1)` before they meet
`odeexpm.Modulated`. Both describe `A0 + sum_k f_k(t, args) A_k`, but only the second
tells the Magnus solvers which matrices to precompute commutators of, which makes their
steps about twice as cheap. The function's jaxpr says it: every value that depends on
`t` is either a scalar (a control `f_k(t, args)`, computed by any primitive) or an array
built from such scalars and fixed arrays by operations linear in each `t`-dependent
operand (`_LINEAR`, and the products `_BILINEAR`). Such an array is kept as
`offset + sum_k c_k M_k` with scalars `c_k` and fixed arrays `offset`, `M_k`; any other
use of time (a `t`-dependent index, `lax.cond` on `t`, `exp` of a matrix in `t`) leaves
the generator as it was. The rewrite is exact: the same primitives on the same numbers,
regrouped.
"""

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
from jax.extend import core as jex_core
from jaxtyping import Array, Inexact, PyTree, Real

from .base import AbstractGenerator
from .constant import Constant
from .lindblad import Lindblad
from .modulated import Modulated

# More terms than this are no Modulated generator worth the rewrite: the Magnus solvers'
# commutators pay for at most a few controls (`Commutators.pay`), and each term stores an
# `(n, n)` array.
MAX_TERMS = 7

# Linear in the operands at these positions; the other operands must not depend on `t`.
# (`pad`'s padding value and `add`'s operands are linear too: the offset takes them,
# each term gets zeros.)
_LINEAR = {
    "add": (0, 1),
    "add_any": (0, 1),
    "sub": (0, 1),
    "neg": (0,),
    "div": (0,),
    "convert_element_type": (0,),
    "broadcast_in_dim": (0,),
    "reshape": (0,),
    "transpose": (0,),
    "squeeze": (0,),
    "expand_dims": (0,),
    "rev": (0,),
    "slice": (0,),
    "dynamic_slice": (0,),
    "gather": (0,),
    "reduce_sum": (0,),
    "cumsum": (0,),
    "copy": (0,),
    "copy_p": (0,),
    "pad": (0, 1),
    "select_n": None,  # the cases, not the predicate: see `_linear_positions`
    "concatenate": None,  # every operand
}
_BILINEAR = {"mul", "dot_general"}
# Calls whose inner jaxpr is interpreted in turn.
_CALLS = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
}


class _NotModulated(Exception):
    """The function uses time in a way `Modulated` cannot express."""


class _Scalar(NamedTuple):
    """A scalar that depends on `t`: a candidate control."""

    value: Array


class _Affine(NamedTuple):
    """An array that depends on `t`, as `offset + sum_k c_k M_k`: `offset` (or `None` for
    zero) and the `M_k` have the array's shape and dtype, the `c_k` are `_Scalar`s."""

    offset: Array | None
    terms: tuple[tuple[_Scalar, Array], ...]


def _as_affine(x, aval) -> _Affine:
    if isinstance(x, _Affine):
        return x
    if isinstance(x, _Scalar):
        if not jnp.issubdtype(aval.dtype, jnp.inexact):
            raise _NotModulated("an integer or boolean array in time")
        return _Affine(None, ((x, jnp.ones(aval.shape, aval.dtype)),))
    return _Affine(x, ())


def _value(x):
    """The value of a `t`-dependent quantity (or of a fixed one)."""
    if isinstance(x, _Scalar):
        return x.value
    if isinstance(x, _Affine):
        total = x.offset
        for c, m in x.terms:
            term = (c.value * m).astype(m.dtype)  # (in the array's own precision)
            total = term if total is None else total + term
        return total if total is not None else 0.0
    return x


def _bind(eqn, operands):
    with eqn.ctx.manager:
        out = eqn.primitive.bind(*operands, **eqn.primitive.get_bind_params(eqn.params))
    return out if eqn.primitive.multiple_results else [out]


def _zeros(aval):
    return jnp.zeros(aval.shape, aval.dtype)


def _linear_positions(eqn) -> tuple[int, ...]:
    name = eqn.primitive.name
    if name == "select_n":
        return tuple(range(1, len(eqn.invars)))
    if name == "concatenate":
        return tuple(range(len(eqn.invars)))
    return _LINEAR[name]


def _linear(eqn, operands, varying) -> _Affine:
    """`eqn` applied to operands, linear in those at `_linear_positions`."""
    positions = _linear_positions(eqn)
    if any(varying[i] for i in range(len(operands)) if i not in positions):
        raise _NotModulated(eqn.primitive.name)
    avals = [v.aval for v in eqn.invars]
    affine = {i: _as_affine(operands[i], avals[i]) for i in positions}
    if eqn.primitive.name == "convert_element_type" and not jnp.issubdtype(
        eqn.params["new_dtype"], jnp.complexfloating
    ):
        # The real part of c M is c Re(M) for a real c only.
        if any(jnp.iscomplexobj(c.value) for c, _ in affine[0].terms):
            raise _NotModulated("complex to real")

    def apply(filled):
        return _bind(eqn, [filled.get(i, operands[i]) for i in range(len(operands))])[0]

    offsets = {i: affine[i].offset for i in positions}
    if all(o is None for o in offsets.values()):
        offset = None  # (a linear map of zeros)
    else:
        offset = apply({i: _zeros(avals[i]) if o is None else o for i, o in offsets.items()})
    terms = []
    for i in positions:
        for c, m in affine[i].terms:
            filled = {j: _zeros(avals[j]) for j in positions}
            filled[i] = m
            terms.append((c, apply(filled)))
    return _Affine(offset, tuple(terms))


def _bilinear(eqn, operands) -> _Affine:
    """`eqn` (a product) of two operands, expanded term by term."""
    x, y = (_as_affine(u, v.aval) for u, v in zip(operands, eqn.invars))

    def apply(a, b):
        return _bind(eqn, [a, b])[0]

    offset = None if x.offset is None or y.offset is None else apply(x.offset, y.offset)
    terms = []
    if y.offset is not None:
        terms += [(c, apply(m, y.offset)) for c, m in x.terms]
    if x.offset is not None:
        terms += [(c, apply(x.offset, m)) for c, m in y.terms]
    for c, m in x.terms:
        for d, n in y.terms:
            terms.append((_Scalar(c.value * d.value), apply(m, n)))
    return _Affine(offset, tuple(terms))


def _real_to_complex(eqn, operand) -> bool:
    return (
        isinstance(operand, _Scalar)
        and not jnp.iscomplexobj(operand.value)
        and jnp.issubdtype(eqn.params["new_dtype"], jnp.complexfloating)
    )


def _interpret(jaxpr, consts, inputs):
    """Evaluates `jaxpr`, keeping `t`-dependent quantities as `_Scalar`s and `_Affine`s."""
    env = {}

    def read(v):
        return v.val if isinstance(v, jex_core.Literal) else env[v]

    for var, value in zip(jaxpr.constvars, consts):
        env[var] = value
    for var, value in zip(jaxpr.invars, inputs):
        env[var] = value
    for eqn in jaxpr.eqns:
        operands = [read(v) for v in eqn.invars]
        varying = [isinstance(x, (_Scalar, _Affine)) for x in operands]
        name = eqn.primitive.name
        if not any(varying):
            outs = _bind(eqn, operands)
        elif name == "convert_element_type" and _real_to_complex(eqn, operands[0]):
            # A real control made complex (to scale a complex matrix) stays real: the
            # Magnus solvers combine their commutators in real arithmetic then.
            target = eqn.outvars[0].aval
            outs = [_Affine(None, ((operands[0], jnp.ones(target.shape, target.dtype)),))]
        elif all(v.aval.shape == () for v in eqn.outvars):
            # A control, or a function of controls: evaluated as it is.
            outs = [_Scalar(x) for x in _bind(eqn, [_value(x) for x in operands])]
        elif name in _CALLS:
            inner = eqn.params[_CALLS[name]]
            outs = _interpret(inner.jaxpr, inner.consts, operands)
        elif not all(jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in eqn.outvars):
            # (Integer division, rounding and logical operations are not linear.)
            raise _NotModulated("an integer or boolean array in time")
        elif name in _BILINEAR:
            outs = [_bilinear(eqn, operands)]
        elif name in _LINEAR:
            outs = [_linear(eqn, operands, varying)]
        else:
            raise _NotModulated(name)
        for out in outs:
            if isinstance(out, _Affine) and len(out.terms) > MAX_TERMS * 4:
                raise _NotModulated("too many terms")
        for var, out in zip(eqn.outvars, outs):
            env[var] = out
    return [read(v) for v in jaxpr.outvars]


def _decomposed(
    generator: AbstractGenerator, t: Real[Array, ""], args: PyTree
) -> tuple[Inexact[Array, "n n"], list[Array], list[Inexact[Array, "n n"]]]:
    """`(A0, [f_k(t, args)], [A_k])` with `generator(t, args) = A0 + sum_k f_k A_k`; raises
    `_NotModulated` where it is no such sum (or has more than `MAX_TERMS` terms)."""
    leaves, treedef = jax.tree_util.tree_flatten(args)

    def fn(t, leaves):
        return generator(t, jax.tree_util.tree_unflatten(treedef, leaves))

    closed, shape = jax.make_jaxpr(fn, return_shape=True)(t, leaves)
    if not isinstance(shape, jax.ShapeDtypeStruct) or len(shape.shape) != 2:
        raise _NotModulated("not a dense matrix")
    (out,) = _interpret(closed.jaxpr, closed.consts, [_Scalar(t), *leaves])
    if not isinstance(out, _Affine):
        raise _NotModulated("constant in time")
    # Terms sharing a control (the same traced scalar) are one term.
    grouped: dict[int, tuple[_Scalar, Array]] = {}
    for c, m in out.terms:
        previous = grouped.get(id(c))
        grouped[id(c)] = (c, m if previous is None else previous[1] + m)
    if not 0 < len(grouped) <= MAX_TERMS:
        raise _NotModulated("too many terms")
    drift = _zeros(shape) if out.offset is None else out.offset
    controls = [c.value for c, _ in grouped.values()]
    return drift, controls, [m for _, m in grouped.values()]


class _Controls(eqx.Module):
    """The coefficients `f_k(t, args)` of a generator rewritten by `as_modulated` (the
    matrices computed alongside are unused, and compiled away)."""

    generator: AbstractGenerator
    count: int = eqx.field(static=True)

    def __call__(self, t, args=None):
        _, controls, _ = _decomposed(self.generator, jnp.asarray(t), args)
        if len(controls) != self.count:
            raise _NotModulated("the controls changed with the time's dtype")
        dtype = jnp.result_type(*controls)
        return jnp.stack([jnp.asarray(c, dtype) for c in controls])


def as_modulated(generator: AbstractGenerator, t0: Real[Array, ""], args: PyTree):
    """`generator` as the `Modulated` generator `A0 + sum_k f_k(t, args) A_k` it is, where
    its jaxpr shows it to be one with at most `MAX_TERMS` controls; else `generator`.

    Only generators without structure of their own are rewritten: functions
    (`FromFunction`) and other smooth generators (no `jump_ts`) that are not `Constant`,
    `Modulated` or `Lindblad`. The matrices `A_k` are computed once, here; the controls
    at each time by the same jaxpr, whose matrix work is then dead code. Gradients flow
    through both, to `args` and to the generator's arrays.
    """
    if isinstance(generator, (Constant, Modulated, Lindblad)) or generator.jump_ts is not None:
        return generator
    try:
        drift, _, operators = _decomposed(generator, t0, args)
    except Exception:
        # `_NotModulated`, or a primitive this reading does not foresee: the rewrite is
        # only a faster route, so the function is solved as it is (and an error of its
        # own shows there, with the function's own traceback).
        return generator
    return Modulated(drift, jnp.stack(operators), _Controls(generator, len(operators)))
