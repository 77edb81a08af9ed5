"""Run every ``benchmarks/bench_*.py``, summarise its targets, write ``RESULTS.md``.

Modules run in a fixed order (features, io, backtest, vectorbt, quantstats, backfill,
scaling, throughput, live, demo, then any other ``bench_*.py`` alphabetically);
``--only io --only demo`` (or ``--only io,demo``) picks some.
Each module's ``run()`` returns a dict; its table is printed by its ``print_table(result)``
(or ``_print_table``) when it has one, else the dict is listed. A module's ``TARGETS`` is a
list of ``(description, key, comparator, threshold)`` with comparator one of
``< <= > >= ==``; the final table shows each target, the measured value and PASS / MISS
(``n/a`` when the key is missing). Exit status 1 when a benchmark raised, else 0: these are
measurements on a shared machine, not timed tests.

Everything printed is also captured per benchmark and written, with the machine, load,
commit and package versions (``results.py``), to ``benchmarks/RESULTS.md`` after a full
run; a run with ``--only`` writes no file unless ``--results PATH`` names one, so a partial
run never overwrites the full results.

    python benchmarks/run.py [--only NAME ...] [--results PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import operator
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from results import Section, loadavg, render

HERE = Path(__file__).resolve().parent
ORDER = (
    "features",
    "io",
    "backtest",
    "vectorbt",
    "quantstats",
    "backfill",
    "scaling",
    "throughput",
    "live",
    "demo",
)
RESULTS = HERE / "RESULTS.md"
COMPARATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
}


def discover() -> list[str]:
    names = [p.stem.removeprefix("bench_") for p in HERE.glob("bench_*.py")]
    known = [n for n in ORDER if n in names]
    return known + sorted(n for n in names if n not in ORDER)


def load(name: str) -> ModuleType:
    module_name = f"bench_{name}"
    spec = importlib.util.spec_from_file_location(module_name, HERE / f"{module_name}.py")
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {module_name}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    spec.loader.exec_module(module)
    return module


def _fmt(value: object) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_result(module: ModuleType, result: dict) -> None:
    printer = getattr(module, "print_table", None) or getattr(module, "_print_table", None)
    if printer is not None:
        printer(result)
        return
    width = max((len(k) for k in result), default=0)
    for key, value in result.items():
        print(f"  {key:<{width}}  {_fmt(value)}")


def check(targets: list, result: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    for description, key, comparator, threshold in targets:
        target = f"{comparator} {_fmt(threshold)}"
        if key not in result:
            rows.append((description, target, "missing", "n/a"))
            continue
        value = result[key]
        ok = COMPARATORS[comparator](value, threshold)
        rows.append((description, target, _fmt(value), "PASS" if ok else "MISS"))
    return rows


class Tee(io.TextIOBase):
    """Writes to ``stream`` and keeps a copy."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.stream, self.copy = stream, io.StringIO()

    def write(self, text: str) -> int:
        self.stream.write(text)
        return self.copy.write(text)

    def flush(self) -> None:
        self.stream.flush()


def run_one(name: str) -> tuple[Section, list[tuple[str, str, str, str, str]], bool]:
    """Run, print and time one benchmark; its section, summary rows and whether it raised."""
    tee, load_before, t0 = Tee(sys.stdout), loadavg(), time.perf_counter()
    with contextlib.redirect_stdout(tee):
        print(f"\n=== bench_{name} ===", flush=True)
        try:
            module = load(name)
            result = module.run()
        except Exception:
            traceback.print_exc(file=sys.stdout)
            rows, failed = [(name, "run() raised", "", "", "ERROR")], True
        else:
            print_result(module, result)
            targets = getattr(module, "TARGETS", None)
            rows = [(name, *row) for row in check(targets, result)] if targets else []
            rows, failed = rows or [(name, "(no TARGETS defined)", "", "", "")], False
        seconds, load_after = time.perf_counter() - t0, loadavg()
        print(f"(bench_{name} took {seconds:.0f} s; load {load_before} -> {load_after})")
    section = Section(name, tee.copy.getvalue(), seconds, load_before, load_after)
    return section, rows, failed


def format_summary(summary: list[tuple[str, str, str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in [*summary, ("bench", "target", "", "", "")]) for i in (0, 1)]
    lines = [
        f"{'bench':<{widths[0]}}  {'target':<{widths[1]}}  {'threshold':>12}  "
        f"{'measured':>12}  result"
    ]
    for bench, description, threshold, measured, verdict in summary:
        lines.append(
            f"{bench:<{widths[0]}}  {description:<{widths[1]}}  {threshold:>12}  "
            f"{measured:>12}  {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only", action="append", default=[], help="benchmark name(s), e.g. io or io,demo"
    )
    parser.add_argument(
        "--results", type=Path, help=f"write the results here (default {RESULTS} without --only)"
    )
    args = parser.parse_args(argv)
    available = discover()
    wanted = [n.strip().removeprefix("bench_") for o in args.only for n in o.split(",")]
    unknown = [n for n in wanted if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {available}")
    names = [n for n in available if n in wanted] if wanted else available
    results_path = args.results or (None if wanted else RESULTS)

    started = datetime.now(UTC)
    sections, summary, failed = [], [], False
    for name in names:
        section, rows, raised = run_one(name)
        sections.append(section)
        summary += rows
        failed |= raised

    text = format_summary(summary)
    print(f"\n=== summary ===\n{text}")
    if results_path is not None:
        command = " ".join([sys.executable, *sys.argv])
        stamp = "%Y-%m-%d %H:%M:%S"
        finished = datetime.now(UTC).strftime(stamp)
        results_path.write_text(render(command, started.strftime(stamp), finished, sections, text))
        print(f"wrote {results_path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
