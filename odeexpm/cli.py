"""The `odeexpm` command line.

odeexpm compare --quick            # a smoke run, well under a minute
odeexpm compare                    # the default suites and methods, a few minutes
odeexpm compare --list             # what can be selected
"""

import argparse
import importlib.util
import sys
import time
from collections.abc import Sequence

from . import __version__

DESCRIPTION = """\
odeexpm: differentiable matrix exponentials as solutions of linear ODEs (diffrax).

Commands:
  compare   run the validation harness: methods (odeexpm.expm variants, Padé, Taylor, and
            their derivatives; expm_multiply against SciPy; propagators by Magnus, Runge-Kutta
            and piecewise-constant Padé) on suites of cases with independent references
"""

COMPARE_DESCRIPTION = """\
Run methods on the cases of some suites and measure, per (case, method, dtype, tolerance):
the relative Frobenius error against an independent reference (closed forms, mpmath,
extended precision), gradient errors (VJP via jax.grad, JVP via jax.jvp) against the Fréchet
derivative, median run time after compilation, compile time, ODE steps and squarings,
XLA's memory estimate, and the unitarity drift of propagators of skew-Hermitian generators.
Failures (NaN/inf, exhausted step budget, exceptions) are recorded
with their message, never dropped.

Writes results.csv, results.json, report.md and PNG plots to --out, and prints a table.
References and JAX's compiled code are cached in $ODEEXPM_CACHE (default
$XDG_CACHE_HOME/odeexpm or ~/.cache/odeexpm); reruns are much faster.

Exit status: 0 when the run completed (method failures are results, not errors); 2 for
invalid options; 1 for an unexpected error.
"""

COMPARE_EPILOG = """\
examples:
  odeexpm compare --quick
  odeexpm compare --suites hard stiff --methods pade ode ode-plain --rtol default 1e-6 1e-10
  odeexpm compare --suites random --dtypes float32 float64 --repeats 10 --out results-random
  odeexpm compare --suites time_dependent --rtol 1e-6 1e-8 1e-10 1e-12
  odeexpm compare --list
"""


def _rtol(text: str) -> str | float:
    if text == "default":
        return text
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'default' or a number; got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"a tolerance must lie in (0, 1); got {value:g}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="odeexpm",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"odeexpm {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    compare = commands.add_parser(
        "compare",
        help="run the validation harness (suites x methods) and write a report",
        description=COMPARE_DESCRIPTION,
        epilog=COMPARE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument(
        "--suites",
        nargs="+",
        metavar="SUITE",
        help="suites to run (default: all registered; see --list)",
    )
    compare.add_argument(
        "--methods",
        nargs="+",
        metavar="METHOD",
        help="methods to run (default: the default selection, or the quick one with --quick; "
        "see --list)",
    )
    compare.add_argument(
        "--dtypes",
        nargs="+",
        metavar="DTYPE",
        default=["float64"],
        choices=["float32", "float64", "complex64", "complex128"],
        help="dtypes: float32, float64 (default), complex64, complex128; complex cases run in the "
        "complex dtype of each requested precision",
    )
    compare.add_argument(
        "--rtol",
        nargs="+",
        metavar="RTOL",
        type=_rtol,
        dest="rtols",
        help="tolerances of the ODE methods: 'default' (the library's; the default) and/or "
        "numbers, e.g. '--rtol default 1e-6 1e-8 1e-10' for work-precision curves. Each "
        "tolerance compiles every ODE method again (per shape), so a sweep of k values costs "
        "about k times the compile time of the ODE methods",
    )
    compare.add_argument(
        "--repeats",
        type=_positive,
        default=5,
        help="timed calls per measurement, after compilation and a first call (default: 5; "
        "fewer once they take ~1 s in total)",
    )
    compare.add_argument(
        "--out",
        default="odeexpm-results",
        help="output folder for results.csv, results.json, report.md and plots "
        "(default: ./odeexpm-results)",
    )
    compare.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: each suite's 2 x 2 cases and a few methods (under a minute)",
    )
    compare.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    compare.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not use JAX's persistent compilation cache (compile times are then true "
        "compile times on every run)",
    )
    compare.add_argument(
        "--list", action="store_true", help="list the suites and methods, and exit"
    )
    compare.set_defaults(parser=compare)  # for usage errors found after parsing
    return parser


def _configure_jax(compile_cache: bool) -> None:
    import jax

    from .harness import reference_cache_dir

    # An application may set global flags; the library itself never does.
    jax.config.update("jax_enable_x64", True)
    if compile_cache:
        jax.config.update(
            "jax_compilation_cache_dir", str(reference_cache_dir() / "jax-compilation")
        )
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _list(console) -> None:
    from rich.table import Table

    from . import harness

    suites = Table(title="suites", title_justify="left", header_style="bold")
    for name in ("suite", "cases", "quick cases", "description"):
        suites.add_column(name, overflow="fold")
    for s in harness.list_suites():
        suites.add_row(
            s.name,
            ", ".join(c.name for c in s.cases(False)),
            ", ".join(c.name for c in s.cases(True)),
            s.description,
        )
    console.print(suites)
    methods = Table(title="methods", title_justify="left", header_style="bold")
    for name in ("method", "computes", "in default / quick", "description"):
        methods.add_column(name, overflow="fold")
    for m in harness.list_methods():
        selection = " / ".join(
            "yes" if m.name in names else "-"
            for names in (harness.DEFAULT_METHODS, harness.QUICK_METHODS)
        )
        limit = f" (n <= {m.max_n})" if m.max_n else ""
        methods.add_row(m.name, ", ".join(m.quantities), selection, m.description + limit)
    console.print(methods)


def _compare(args) -> int:
    from rich.console import Console

    _configure_jax(compile_cache=not args.no_compile_cache)
    from . import harness

    # Logs and pipes get a wide table rather than rich's 80-column default.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    if args.list:
        _list(console)
        return 0
    known_suites = [s.name for s in harness.list_suites()]
    known_methods = [m.name for m in harness.list_methods()]
    for kind, chosen, known in [
        ("suite", args.suites, known_suites),
        ("method", args.methods, known_methods),
    ]:
        unknown = [name for name in chosen or () if name not in known]
        if unknown:
            args.parser.error(f"unknown {kind}(s) {', '.join(unknown)}; known: {', '.join(known)}")
    start = time.perf_counter()
    records = harness.run(
        suites=args.suites,
        methods=args.methods,
        dtypes=args.dtypes,
        rtols=args.rtols,
        repeats=args.repeats,
        quick=args.quick,
        progress=True,
    )
    harness.print_table(records, console)
    paths = harness.write_outputs(records, args.out, plots=not args.no_plots)
    console.print(
        f"Wrote {len(paths)} files to {args.out}/ ({', '.join(p.name for p in paths.values())}) "
        f"in {time.perf_counter() - start:.0f} s."
    )
    return 0


def _harness_missing() -> str | None:
    """The name of a dependency of the harness that is not installed, if any."""
    for name in ("mpmath", "scipy", "rich", "matplotlib"):
        if importlib.util.find_spec(name) is None:
            return name
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `odeexpm` console script; returns the exit status.

    Examples:
        >>> from odeexpm.cli import main
        >>> main(["compare", "--list"])  # doctest: +SKIP
        0
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "compare":
        missing = _harness_missing()
        if missing is not None:
            print(
                f"odeexpm compare needs the harness's dependencies ({missing} is not "
                "installed): pip install 'odeexpm[harness]'",
                file=sys.stderr,
            )
            return 1
        return _compare(args)
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
