"""What the benchmarks against other libraries share: interleaved timing, the choice of
each baseline's tolerance at matched error, and the table of ratios."""

import random
import statistics
import time

import jax


def block(x):
    return jax.block_until_ready(x)


def median_times(functions, argument, repeats):
    """Median times of `f(argument)` for each function, after one untimed call each, in
    interleaved rounds: each round calls every function once, in a new random order (on
    a CPU a small program that follows a large one runs slower, so a fixed order would
    favour some)."""
    times = {name: [] for name in functions}
    order = list(functions)
    for f in functions.values():
        # Untimed: importing a library after the first call (dynamiqs) can make JAX
        # compile a function again on its next call.
        block(f(argument))
    for _ in range(repeats):
        random.shuffle(order)
        for name in order:
            start = time.perf_counter()
            block(functions[name](argument))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matched(make, error_of, target, tolerances, label):
    """`(setting, error, functions)` at the loosest of `tolerances` whose error
    (`error_of(functions)`) is at most `target`, or else `(setting, error, None)` at the
    tightest one."""
    for tolerance in tolerances:
        functions = make(tolerance)
        err = error_of(functions)
        print(f"  {label} tol {tolerance:.0e}: error {err:.2e}", flush=True)
        if err <= target:
            return f"tol {tolerance:.0e}", err, functions
    return f"tol {tolerance:.0e} (not reached)", err, None


def print_ratios(rows, forward_times, backward_times, reference="odeexpm"):
    """A markdown table: per method its setting and error (`rows[name] = (setting,
    error)`), its forward and gradient times and their ratios to `reference`'s; `-`
    where a method was not timed (or has no gradient)."""

    def cells(times, name):
        if name not in times:
            return "-", "-"
        return f"{1e3 * times[name]:.1f}", f"{times[name] / times[reference]:.2f}"

    print("\n| method | setting | error | forward (ms) | x odeexpm | gradient (ms) | x odeexpm |")
    print("|---|---|---|---|---|---|---|")
    for name, (setting, err) in rows.items():
        (f_ms, f_ratio), (g_ms, g_ratio) = cells(forward_times, name), cells(backward_times, name)
        print(f"| {name} | {setting} | {err:.1e} | {f_ms} | {f_ratio} | {g_ms} | {g_ratio} |")
