"""Presenting records: a terminal table (rich), `results.csv`, `results.json` and
`report.md` with the plots embedded."""

import csv
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import jax
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._cases import KINDS
from ._run import SKIPPED, Record

# The accuracy the library promises with default settings (design notes, section 1).
TARGET_ERROR = {"float64": 1e-10, "complex128": 1e-10, "float32": 1e-5, "complex64": 1e-5}
FIELDS = [field.name for field in dataclasses.fields(Record)]


def format_error(error: float | None) -> str:
    return "" if error is None else f"{error:.1e}"


def format_time(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.3g}s"


def format_bytes(size: int | None) -> str:
    if size is None:
        return ""
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f}{unit}" if unit == "B" else f"{size:.3g}{unit}"
        size /= 1024
    return f"{size:.3g}GiB"


def format_steps(record: Record) -> str:
    if record.steps is None:
        return ""
    rejected = f" ({record.rejected_steps} rej)" if record.rejected_steps else ""
    return f"{record.steps}{rejected}"


def _condition(record: Record) -> str:
    return "" if record.condition is None else f"{record.condition:.2g}"


def _error_style(record: Record) -> str:
    if record.error is None:
        return ""
    target = TARGET_ERROR.get(record.dtype, 1e-10)
    return (
        "green" if record.error <= target else "yellow" if record.error <= 1e3 * target else "red"
    )


def print_table(records: Sequence[Record], console: Console | None = None) -> None:
    """Prints one table per suite, then the failures with their messages.

    Errors are green at or below the library's target (1e-10 in double, 1e-5 in single
    precision), yellow within a factor 1000 of it, red beyond.
    """
    console = console or Console()
    several_dtypes = len({r.dtype for r in records}) > 1
    for suite, rows in _by_suite(records).items():
        table = Table(title=f"suite: {suite}", title_justify="left", header_style="bold")
        for name, justify in [
            ("case", "left"),
            ("n", "right"),
            ("‖A‖₁", "right"),
            ("method", "left"),
            ("qty", "left"),
        ]:
            table.add_column(name, justify=justify)
        if several_dtypes:
            table.add_column("dtype")
        unitary = any(r.unitarity is not None for r in rows)
        conditioned = any(r.condition is not None for r in rows)
        if conditioned:
            table.add_column("κ_exp", justify="right")
        for name in ("status", "rel. error", "time", "compile", "steps", "sq", "memory"):
            table.add_column(name, justify="left" if name == "status" else "right")
        if unitary:
            table.add_column("‖UᴴU−I‖", justify="right")
        previous = None
        for r in rows:
            if previous is not None and r.case != previous:
                table.add_section()
            first = r.case != previous
            previous = r.case
            status_style = "" if r.ok else "dim" if r.status == SKIPPED else "bold red"
            cells = [
                escape(r.case) if first else "",
                str(r.n) if first else "",
                f"{r.norm1:.3g}" if first else "",
                *([_condition(r) if first else ""] if conditioned else []),
                escape(r.label),
                r.quantity,
                *([r.dtype] if several_dtypes else []),
                f"[{status_style}]{r.status}[/]" if status_style else r.status,
                f"[{_error_style(r)}]{format_error(r.error)}[/]" if r.error is not None else "",
                format_time(r.time_s),
                format_time(r.compile_s) + (" (cached)" if r.compile_cache_hit else ""),
                format_steps(r),
                "" if r.squarings is None else str(r.squarings),
                format_bytes(r.memory_bytes),
                *([format_error(r.unitarity)] if unitary else []),
            ]
            table.add_row(*cells)
        console.print(table)
    problems = [r for r in records if not r.ok]
    if problems:
        table = Table(title="failures and skips", title_justify="left", header_style="bold")
        for name in ("suite/case", "method", "qty", "dtype", "status", "message"):
            table.add_column(name, overflow="fold")
        for r in problems:
            cells = (f"{r.suite}/{r.case}", r.label, r.quantity, r.dtype, r.status, r.message)
            # Messages quote code such as `f64[2,2]`, which rich would read as markup.
            table.add_row(*(escape(cell) for cell in cells))
        console.print(table)
    counts = Counter(
        "ok" if r.ok else "skipped" if r.status == SKIPPED else "failed" for r in records
    )
    console.print(
        f"{len(records)} measurements: {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['skipped']} skipped."
    )


def _by_suite(records: Sequence[Record]) -> dict[str, list[Record]]:
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in records:
        groups[r.suite].append(r)
    return groups


def environment() -> dict[str, Any]:
    """Where and with what the records were measured."""

    def version(name):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {
            name: version(name)
            for name in ("odeexpm", "jax", "jaxlib", "diffrax", "equinox", "numpy", "mpmath")
        },
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        # Other processes on the machine disturb timings; say how busy it was.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "devices": [str(d) for d in jax.devices()],
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "persistent_compilation_cache": jax.config.jax_compilation_cache_dir,
        "longdouble_eps": float(np.finfo(np.longdouble).eps),
    }


def write_csv(records: Sequence[Record], path: pathlib.Path) -> None:
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=FIELDS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: "" if v is None else v for k, v in r.to_dict().items()})


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or inf; a missing number is null.
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(records: Sequence[Record], path: pathlib.Path, environment_: dict) -> None:
    rows = [{k: _json_safe(v) for k, v in r.to_dict().items()} for r in records]
    payload = {"environment": environment_, "records": rows}
    path.write_text(json.dumps(payload, indent=1, allow_nan=False))


def read_records(path: str | os.PathLike) -> list[Record]:
    """Reads the records back from a `results.json` written by `write_outputs`.

    Examples:
        >>> from odeexpm import harness
        >>> records = harness.read_records("odeexpm-results/results.json")  # doctest: +SKIP
    """
    payload = json.loads(pathlib.Path(path).read_text())
    return [Record(**row) for row in payload["records"]]


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def _summary_rows(records: Sequence[Record]) -> list[list[str | int]]:
    groups: dict[tuple, list[Record]] = defaultdict(list)
    for r in records:
        groups[(r.label, r.quantity, r.dtype)].append(r)
    rows = []
    for (label, quantity, dtype), group in groups.items():
        ok = [r for r in group if r.ok]
        failed = [r for r in group if r.failed]
        errors = [r.error for r in ok]
        times = [r.time_s for r in ok if r.time_s is not None]
        target = TARGET_ERROR.get(dtype, 1e-10)
        rows.append(
            [
                label,
                quantity,
                dtype,
                len(ok),
                sum(e <= target for e in errors),
                len(failed),
                sum(r.status == SKIPPED for r in group),
                format_error(statistics.median(errors)) if errors else "",
                format_error(max(errors)) if errors else "",
                format_time(statistics.median(times)) if times else "",
                ", ".join(sorted({f"{r.case} ({r.status})" for r in failed})),
            ]
        )
    return rows


NOTES = """\
## How to read this

- **rel. error**: `||X - X_ref||_F / ||X_ref||_F` against an independent reference: a closed
  form where one exists, else mpmath at 40 digits (n <= 24) or a Taylor scaling and squaring
  in `np.longdouble` (larger n). Inputs are rounded to the run's dtype before the reference
  is computed, so single precision is judged on the matrix it was given.
- **Actions** `exp(tA) B` (suite `action`) are compared with `exp(tA) @ B` from the same
  high-precision exponential (dense `A`), or with a Taylor action in `np.longdouble`
  (sparse `A`); SciPy's `expm_multiply` is measured as a method, not trusted as a reference.
- **Propagators** `U(t1, t0)` (suite `time_dependent`) are compared with a closed form where
  the generator commutes with itself, else with diffrax's Dopri8 at `rtol = atol = 1e-14`
  on a plain `ODETerm` in double precision (errors near 1e-13 are at that reference's
  resolution). `pwc-pade (N=...)` freezes `A` at `N` midpoints (GRAPE's propagator).
  **‖UᴴU−I‖**: the unitarity drift, for skew-Hermitian generators.
- **Derivatives** are of the loss `Re sum(W * exp(A))` (`W`, `E` fixed random unit
  directions per case). VJP: `jax.grad` compared with `L_exp(A^T, W)`, the Fréchet derivative
  by the block identity `exp([[A, E], [0, A]])` at high precision. For real `A` this is
  `L_exp(A^H, W)`; for complex `A` it is JAX's convention, the conjugate of the
  steepest-ascent direction `L_exp(A^H, conj(W))`. JVP: `jax.jvp` against `L_exp(A, E)`.
- **time**: median over the repeats of one compiled call (`block_until_ready`), after a
  first call; failures are timed too. **compile**: tracing + lowering + XLA compilation,
  once per method, shape and dtype ("cached": loaded from JAX's persistent compilation
  cache, so not a compile time). **steps**: ODE steps attempted (rejected in brackets);
  **sq**: squarings after the solve. **memory**: XLA's estimate of temporaries + outputs.
- **status**: `ok`; `nonfinite` (NaN or inf with no failure reported: e.g. Padé beyond its
  16 squarings); `max_steps`, `overflow`, `bad_input`, `failed` (reported in
  `odeexpm.Stats.result`, run with `throw=False`); `error` (an exception; its message is
  kept); `skipped` (outside a method's declared limits).
- Errors in the tables of the terminal are green at or below the library's target
  (1e-10 in double precision, 1e-5 in single).
"""


def write_report(
    records: Sequence[Record],
    path: pathlib.Path,
    plots: dict[str, pathlib.Path],
    environment_: dict,
) -> None:
    lines = ["# odeexpm compare", ""]
    versions = ", ".join(f"{k} {v}" for k, v in environment_["versions"].items() if v)
    lines += [
        f"- date: {environment_['date']}",
        f"- {versions}",
        f"- platform: {environment_['platform']}, {environment_['cpu_count']} CPU cores, "
        f"devices: {', '.join(environment_['devices'])}",
        f"- suites: {', '.join(dict.fromkeys(r.suite for r in records))}; "
        f"dtypes: {', '.join(dict.fromkeys(r.dtype for r in records))}; "
        f"tolerances: {', '.join(dict.fromkeys(r.rtol for r in records if r.rtol)) or 'n/a'}",
        f"- persistent compilation cache: {environment_['persistent_compilation_cache'] or 'off'}",
        f"- load average (1 min) when written: {environment_['load_average_1min']:.1f} on "
        f"{environment_['cpu_count']} cores (above the core count, other processes competed "
        "for the CPU and timings are noisy: compare `time_min_s` in the CSV)"
        if environment_.get("load_average_1min") is not None
        else "- load average: unknown",
        "",
    ]
    counts = Counter(
        "ok" if r.ok else "skipped" if r.status == SKIPPED else "failed" for r in records
    )
    lines += [
        f"{len(records)} measurements: {counts['ok']} ok, {counts['failed']} failed, "
        f"{counts['skipped']} skipped.",
        "",
        "## Summary per method",
        "",
        "Target: the library's accuracy goal, relative error <= 1e-10 in double and 1e-5 in "
        "single precision (on well-conditioned inputs; some hard cases are not).",
        "",
    ]
    lines += _md_table(
        [
            "method",
            "qty",
            "dtype",
            "ok",
            "ok within target",
            "failed",
            "skipped",
            "median error",
            "max error",
            "median time",
            "failures",
        ],
        _summary_rows(records),
    )
    if plots:
        lines += ["## Plots", ""]
        for name, plot_path in plots.items():
            lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({plot_path.name})", ""]
    else:
        lines += ["(plots not written)", ""]
    for suite, rows in _by_suite(records).items():
        lines += [f"## Suite `{suite}`", ""]
        cases = {}
        for r in rows:
            cases.setdefault(r.case, r)
        conditioned = any(r.condition is not None for r in rows)
        lines += _md_table(
            ["case", "n", "‖A‖₁", *(["κ_exp"] if conditioned else []), "reference"],
            [
                [
                    c,
                    r.n,
                    f"{r.norm1:.3g}",
                    *([_condition(r)] if conditioned else []),
                    next((x.reference for x in rows if x.case == c and x.quantity in KINDS), ""),
                ]
                for c, r in cases.items()
            ],
        )
        unitary = any(r.unitarity is not None for r in rows)
        lines += _md_table(
            [
                "case",
                "method",
                "qty",
                "dtype",
                "status",
                "rel. error",
                "time",
                "compile",
                "steps",
                "sq",
                "memory",
                *(["‖UᴴU−I‖"] if unitary else []),
            ],
            [
                [
                    r.case,
                    r.label,
                    r.quantity,
                    r.dtype,
                    r.status,
                    format_error(r.error),
                    format_time(r.time_s),
                    format_time(r.compile_s) + (" (cached)" if r.compile_cache_hit else ""),
                    format_steps(r),
                    "" if r.squarings is None else r.squarings,
                    format_bytes(r.memory_bytes),
                    *([format_error(r.unitarity)] if unitary else []),
                ]
                for r in rows
            ],
        )
    problems = [r for r in records if not r.ok]
    if problems:
        lines += ["## Failures and skips", ""]
        lines += _md_table(
            ["suite/case", "method", "qty", "dtype", "status", "message"],
            [
                [f"{r.suite}/{r.case}", r.label, r.quantity, r.dtype, r.status, r.message]
                for r in problems
            ],
        )
    lines += [NOTES]
    path.write_text("\n".join(lines))


def write_outputs(
    records: Sequence[Record], out_dir: str | os.PathLike, plots: bool = True
) -> dict[str, pathlib.Path]:
    """Writes `results.csv`, `results.json`, `report.md` and (with `plots=True`) the PNG plots
    into `out_dir` (created if needed); returns `{name: path}` of every file written.

    Examples:
        >>> import jax
        >>> jax.config.update("jax_enable_x64", True)
        >>> from odeexpm import harness
        >>> records = harness.run(suites=["hard"], methods=["pade"], quick=True, repeats=1)
        >>> paths = harness.write_outputs(records, "/tmp/odeexpm-example", plots=False)
        >>> paths["csv"].name, paths["json"].name, paths["report"].name
        ('results.csv', 'results.json', 'report.md')
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    env = environment()
    paths = {"csv": out / "results.csv", "json": out / "results.json", "report": out / "report.md"}
    written_plots = {}
    if plots:
        from ._plots import write_plots  # matplotlib is slow to import; only when asked

        written_plots = write_plots(records, out)
    write_csv(records, paths["csv"])
    write_json(records, paths["json"], env)
    write_report(records, paths["report"], written_plots, env)
    return {**paths, **written_plots}
