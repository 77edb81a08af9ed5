"""``benchmarks/RESULTS.md``: what ran, where, on which code, and every table it printed.

The numbers are only comparable with their context, so the file starts with the machine
(CPU model, cores and RAM from ``/proc``), the load average before and after (these
machines are shared: a busy neighbour slows every wall time), the UTC start and end, the
git commit and whether the tree had uncommitted changes, the command, and the versions of
the packages that do the work (vectorbt's from its own venv). Then each benchmark's
printed output verbatim and the targets summary.
"""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from vectorbt_env import MARKER, VENV

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "dagster",
    "dagster-duckdb",
    "dagster-duckdb-pandas",
    "duckdb",
    "pandas",
    "numpy",
    "pyarrow",
    "quantstats",
    "TA-Lib",
    "xgboost",
    "lightgbm",
)
VECTORBT_PACKAGES = ("vectorbt", "numba", "pandas", "numpy")


@dataclass(frozen=True)
class Section:
    name: str
    output: str
    seconds: float
    load_before: str
    load_after: str


def loadavg() -> str:
    """1, 5 and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    mem_kb = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    return f"{cpu}, {os.cpu_count()} cores, {mem_kb / 2**20:.1f} GiB RAM, {platform.platform()}"


def _git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else f"(git {args[0]} failed)"


def git_state() -> str:
    changed = [line for line in _git("status", "--porcelain").splitlines() if line]
    dirty = f"dirty: {len(changed)} changed or untracked paths" if changed else "clean"
    return f"{_git('rev-parse', 'HEAD')} ({dirty})"


def versions() -> str:
    found = []
    for name in PACKAGES:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return f"Python {platform.python_version()}; " + ", ".join(found)


def vectorbt_versions() -> str:
    if not MARKER.exists():
        return "(its venv is not created: bench_vectorbt did not run)"
    code = "from importlib.metadata import version as v; print(', '.join(f'{p} {v(p)}' for p in "
    code += f"{VECTORBT_PACKAGES!r}))"
    done = subprocess.run([str(VENV / "bin" / "python"), "-c", code], capture_output=True)
    return done.stdout.decode().strip() or "(version query failed)"


def render(command: str, started: str, finished: str, sections: list[Section], summary: str) -> str:
    total = sum(s.seconds for s in sections)
    loads = [s.load_before for s in sections[:1]] + [s.load_after for s in sections[-1:]]
    lines = [
        "# Benchmark results",
        "",
        "Written by `benchmarks/run.py` (`make bench`); every ratio's baseline was measured "
        "in the same run. Regenerate with `make bench`.",
        "",
        f"- command: `{command}`",
        f"- started {started}, finished {finished} (UTC), {total / 60:.1f} min of benchmarks",
        f"- machine: {machine()}",
        f"- load average (1/5/15 min) before: {loads[0] if loads else '-'}, "
        f"after: {loads[-1] if loads else '-'} (shared machine; per benchmark below)",
        f"- git: {git_state()}",
        f"- packages: {versions()}",
        f"- vectorbt venv (`benchmarks/.venv-vectorbt`): {vectorbt_versions()}",
        "",
    ]
    for s in sections:
        lines += [
            f"## bench_{s.name}",
            "",
            f"{s.seconds:.0f} s; load average before {s.load_before}, after {s.load_after}",
            "",
            "```",
            s.output.strip("\n"),
            "```",
            "",
        ]
    lines += ["## Targets", "", "```", summary.rstrip(), "```", ""]
    return "\n".join(lines)
