"""What a call returns besides its answer: `RESULTS`, `Stats`, and how failures are
reported (NaN and a result code with `throw=False`, an error with `throw=True`)."""

import functools
from typing import TypeVar

import diffrax
import equinox as eqx
import equinox.internal as eqxi
import jax
import jax.numpy as jnp
import jax.tree_util as jtu
import numpy as np
from jaxtyping import Array, Bool, Int, PyTree

_Y = TypeVar("_Y")


class RESULTS(diffrax.RESULTS):  # pyright: ignore[reportGeneralTypeIssues]
    """Outcomes of a solve: diffrax's, plus the ones odeexpm checks for itself."""

    nonfinite_values = (
        "odeexpm: the input contains non-finite values (NaN or inf); there is no "
        "meaningful exponential to return."
    )
    beyond_scaling = (
        "odeexpm: ||tA||_1 is beyond the reach of scaling and squaring (more than 64 "
        "squarings, ||tA||_1 above about 1e19): exp(tA) cannot be computed accurately."
    )
    overflow = (
        "odeexpm: the result overflowed (inf or NaN from finite input): exp(tA) exceeds "
        "the range of the dtype. Use a wider dtype or a smaller t."
    )


class Stats(eqx.Module):
    """Solver statistics of one call, returned with `return_stats=True`.

    Every field has the batch shape of the call (a scalar for a single matrix).

    - `num_steps`: steps the solver attempted (accepted plus rejected).
    - `num_accepted_steps`, `num_rejected_steps`: as in `diffrax.Solution.stats`.
    - `num_squarings`: squarings applied after the ODE solve (0 for a plain solve).
    - `result`: an `odeexpm.RESULTS` item; `RESULTS.successful` unless something went
      wrong (with `throw=False` a failure is reported here instead of raised).
    - `solver`: the solver that ran (as its `repr`), the library's default or yours.

    Examples:
        >>> import jax.numpy as jnp
        >>> import odeexpm
        >>> X, stats = odeexpm.expm(jnp.array([[0.0, 30.0], [-30.0, 0.0]]), return_stats=True)
        >>> int(stats.num_squarings), bool(stats.successful)
        (5, True)
        >>> stats  # doctest: +NORMALIZE_WHITESPACE
        Stats(solver=Taylor(), num_steps=1, num_accepted_steps=1, num_rejected_steps=0,
              num_squarings=5, result=successful)
    """

    num_steps: Int[Array, "*batch"]
    num_accepted_steps: Int[Array, "*batch"]
    num_rejected_steps: Int[Array, "*batch"]
    num_squarings: Int[Array, "*batch"]
    result: RESULTS
    solver: str = eqx.field(static=True, default="")

    @property
    def successful(self) -> Bool[Array, "*batch"]:
        """Whether the call succeeded (elementwise over a batch)."""
        return self.result == RESULTS.successful

    def __repr__(self) -> str:
        counts = ", ".join(
            f"{name}={_readable(getattr(self, name))}"
            for name in ("num_steps", "num_accepted_steps", "num_rejected_steps", "num_squarings")
        )
        return f"Stats(solver={self.solver}, {counts}, result={_outcomes(self.result)})"


def _readable(x) -> str:
    x = np.asarray(x)
    return str(x.item()) if x.ndim == 0 else np.array2string(x, threshold=20)


def _outcomes(result: RESULTS) -> str:
    """`successful`, or each distinct failure message (with its count over a batch)."""
    codes = np.asarray(result._value).ravel()
    names = {}
    for code in codes:
        item = eqx.tree_at(lambda r: r._value, result, np.asarray(code))
        message = RESULTS[item] or "successful"
        names[message] = names.get(message, 0) + 1
    if len(names) == 1 and codes.size <= 1:
        return next(iter(names))
    return "{" + ", ".join(f"{count} x {message!r}" for message, count in names.items()) + "}"


def nothing_to_solve(y: PyTree[Array], batch_shape: tuple[int, ...]) -> tuple[PyTree[Array], Stats]:
    """The answer and `Stats` of a call on empty input (`y` the empty result, of the
    right shape and dtype): no solve runs."""
    zeros = jnp.zeros(batch_shape, jnp.int32)
    result = jtu.tree_map(lambda v: jnp.broadcast_to(v, batch_shape), RESULTS.successful)
    return y, Stats(zeros, zeros, zeros, zeros, result, solver="none (empty input)")


def outcome(
    y: Array, stats: dict, result: RESULTS, bad_input: Bool[Array, ""], num_squarings=0
) -> tuple[Array, Stats]:
    """The answer and `Stats` of a public function, from its solve's output.

    Flags an overflowed answer and non-finite input (`bad_input`) in the result, and
    replaces a failed answer by NaN: a partial solve is never handed out as a number.
    """
    finite = jnp.all(jnp.isfinite(y))
    # A solve whose state grows past sqrt(max) stalls instead of overflowing: the
    # controller's error norm squares the state, overflows, and rejects every step until
    # the budget runs out. diffrax hands back the last accepted state, so that is seen here.
    # (Or the step accepted an infinite state, and the solve never reached its end.)
    exhausted = result == RESULTS.max_steps_reached
    stalled = exhausted & (_beyond_norm_range(y) | jnp.logical_not(finite))
    overflow = (jnp.logical_not(finite) & (result == RESULTS.successful)) | stalled
    result = RESULTS.where(overflow, RESULTS.overflow, result)
    result = RESULTS.where(bad_input, RESULTS.nonfinite_values, result)
    y = jnp.where(result == RESULTS.successful, y, jnp.nan)
    return y, Stats(
        num_steps=stats["num_steps"],
        num_accepted_steps=stats["num_accepted_steps"],
        num_rejected_steps=stats["num_rejected_steps"],
        num_squarings=jnp.asarray(num_squarings, jnp.int32),
        result=result,
        solver=repr(stats["solver"]),
    )


def _beyond_norm_range(y: Array) -> Bool[Array, ""]:
    magnitude = jnp.abs(y)
    largest = jnp.sqrt(jnp.finfo(magnitude.dtype).max)
    return jnp.any(jnp.where(jnp.isfinite(magnitude), magnitude, 0) > largest)


def raise_if_failed(x: _Y, result: RESULTS, max_steps: int | None) -> _Y:
    """Raises an error naming the failure recorded in `result` (under jit and vmap too)."""
    if jax.device_count() > 1:
        # equinox raises from a host callback that XLA runs on one device: in a program
        # partitioned over several, the others would then wait for it at their next
        # collective, forever. Here every device raises (a partitioned debug callback on
        # the code of a failure, the same on each device after a reduction over the
        # batch, including the axes of an enclosing jax.vmap).
        code = _largest_failure(result)
        jax.debug.callback(
            functools.partial(_raise_on_failure, max_steps=max_steps),
            code,
            partitioned=True,
        )
        return x
    # One check (each is a conditional the program runs on every call), with the budget
    # message in place of diffrax's for an exhausted budget.
    messages = list(RESULTS._index_to_message)
    messages[RESULTS.max_steps_reached._value] = _budget_message(max_steps)
    code = _largest_failure(result)
    return eqxi.branched_error_if(x, code != 0, code, messages)


def _largest_failure(result: RESULTS) -> Int[Array, ""]:
    """The largest failure code in `result` (0: none), over all its batch axes and those
    of an enclosing `jax.vmap`: found bit by bit from the top by `unvmap_any`, which an
    empty batch answers (`unvmap_max` has no value to give it, and fails)."""
    failed = jnp.where(result == RESULTS.successful, 0, result._value)
    code = jnp.max(failed, initial=0)
    largest = jnp.zeros((), code.dtype)
    for bit in reversed(range(len(RESULTS._index_to_message).bit_length())):
        candidate = largest | (1 << bit)
        largest = jnp.where(eqxi.unvmap_any(code >= candidate), candidate, largest)
    return largest


def _budget_message(max_steps: int | None) -> str:
    return (
        f"odeexpm: the ODE solver used its whole step budget (max_steps={max_steps}) "
        "before reaching the final time. Increase `max_steps`, loosen `rtol`/`atol`, "
        "use a stiff solver, or (for `expm`) let it scale with `squarings=None`."
    )


def _raise_on_failure(code, *, max_steps: int | None) -> None:
    code = int(np.max(code))  # (a batch of codes under jax.vmap)
    if code:
        item = eqx.tree_at(lambda r: r._value, RESULTS.successful, np.asarray(code))
        budget = bool(item == RESULTS.max_steps_reached)
        raise RuntimeError(_budget_message(max_steps) if budget else RESULTS[item])
