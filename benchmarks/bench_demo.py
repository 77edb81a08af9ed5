"""``clm demo`` end to end: wall time and peak memory of the process tree.

``run()`` starts ``.venv/bin/clm demo`` as a subprocess with ``CLM_DB_PATH`` and
``CLM_REPORTS_DIR`` in a temp dir and ``DAGSTER_HOME`` a temp home whose ``dagster.yaml``
links to the project's (no other ``CLM_*`` variable is passed on). Memory is measured three
ways:

* ``tree_peak``: the sum of ``VmRSS`` over the process and all its descendants, sampled
  from ``/proc`` every 0.2 s in a thread (a total, but a spike shorter than 0.2 s can be
  missed); each process's own ``VmHWM`` (peak RSS) is sampled too, and the largest are
  listed with their command lines;
* ``wait4``: ``ru_maxrss`` of this one child from ``os.wait4``: the max over the child and
  its reaped descendants of each one's peak RSS, not their sum. Linux keeps the RSS of
  the memory a process had before ``exec`` in it (see below);
* ``RUSAGE_CHILDREN``: ``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` after the wait, the
  same max over every child this Python process ever reaped (inside ``benchmarks/run.py``
  that includes other benchmarks' subprocesses, hence ``wait4`` above).

The peak compared with the target is the larger of ``tree_peak`` and the largest
per-process ``VmHWM``. ``wait4`` / ``RUSAGE_CHILDREN`` are reported but not used: Python
starts the child with ``vfork`` + ``exec``, and the kernel keeps the pre-``exec`` memory's
high-water mark, so the child's ``ru_maxrss`` is at least the PARENT's peak RSS (measured:
a parent that had peaked at 2.0 GB, then freed it, got ``ru_maxrss`` 2074 MB for
``/bin/true``; under ``run.py`` after ``bench_io`` the demo read 3165 MB this way against
its own VmHWM of ~1.1 GB). ``python benchmarks/bench_demo.py`` prints a table.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 2**20

TARGETS = [
    # Issue 2's 120 s covered data + features (~7 s of it now); training all five
    # families (issue 3) has its own 5-minute budget, so the whole demo gets 300 s.
    ("clm demo wall time (data, 5 models, backtests) < 300 s", "wall_s", "<", 300.0),
    ("clm demo peak RSS < 2 GB (2048 MB)", "peak_rss_mb", "<", 2048.0),
]


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _status_kb(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status", "rb") as fh:
        for line in fh:
            if line.startswith((b"VmRSS:", b"VmHWM:")):
                key, value = line.split(b":", 1)
                out[key.decode()] = int(value.split()[0])
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return "?"
    return " ".join(a.decode(errors="replace") for a in args if a)[:120]


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as fh:
            for line in fh:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss(root: int) -> tuple[int, int, dict[int, int]]:
    """(RSS bytes and PSS bytes summed over ``root`` and its descendants,
    ``{pid: VmHWM bytes}``)."""
    kids = _children()
    rss, pss, hwm, todo = 0, 0, {}, [root]
    while todo:
        pid = todo.pop()
        try:
            status = _status_kb(pid)
        except OSError:
            continue
        rss += status.get("VmRSS", 0) * 1024
        pss += _pss_kb(pid) * 1024
        hwm[pid] = status.get("VmHWM", 0) * 1024
        todo += kids.get(pid, [])
    return rss, pss, hwm


class TreeSampler(threading.Thread):
    """Every ``every_s``: the tree's summed VmRSS, and each process's VmHWM (its own peak
    RSS, which catches a spike between samples as long as the process is still alive)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.every_s = pid, every_s
        self.peak_bytes = self.peak_pss = self.peak_procs = self.samples = 0
        self.hwm: dict[int, int] = {}
        self.names: dict[int, str] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            rss, pss, hwm = tree_rss(self.pid)
            self.samples += 1
            self.peak_bytes = max(self.peak_bytes, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, len(hwm))
            for pid, peak in hwm.items():
                if pid not in self.names:
                    self.names[pid] = _cmdline(pid)
                self.hwm[pid] = max(self.hwm.get(pid, 0), peak)
            self.stop.wait(self.every_s)

    def top(self, n: int = 3) -> list[tuple[float, str]]:
        ranked = sorted(self.hwm.items(), key=lambda kv: -kv[1])[:n]
        return [(peak / MB, self.names.get(pid, "?")) for pid, peak in ranked]


def run(days: int | None = None) -> dict:
    """``clm demo`` (its default days) or ``clm demo --days N``."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_demo_"))
    try:
        home = tmp / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLM_")}
        env.update(
            {
                "DAGSTER_HOME": str(home),
                "CLM_DB_PATH": str(tmp / "demo.duckdb"),
                "CLM_REPORTS_DIR": str(tmp / "reports"),
            }
        )
        log = tmp / "demo.log"
        with log.open("wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [str(BIN / "clm"), "demo", *([] if days is None else ["--days", str(days)])],
                cwd=tmp,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            sampler = TreeSampler(proc.pid)
            sampler.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            sampler.stop.set()
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        children_maxrss_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        output = log.read_text(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError(f"clm demo exited {proc.returncode}:\n{output[-4000:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    tree_mb = sampler.peak_bytes / MB
    hwm_mb = max(sampler.hwm.values(), default=0) / MB
    wait4_mb = usage.ru_maxrss * 1024 / MB  # Linux reports kB
    return {
        "days": days,
        "wall_s": wall,
        "user_cpu_s": usage.ru_utime,
        "sys_cpu_s": usage.ru_stime,
        "tree_peak_rss_mb": tree_mb,
        "tree_peak_pss_mb": sampler.peak_pss / MB,
        "max_process_hwm_mb": hwm_mb,
        "tree_peak_processes": sampler.peak_procs,
        "tree_samples": sampler.samples,
        "processes_seen": len(sampler.hwm),
        "top_process_hwm_mb": sampler.top(),
        "wait4_maxrss_mb": wait4_mb,
        "rusage_children_maxrss_mb": children_maxrss_kb * 1024 / MB,
        "peak_rss_mb": max(tree_mb, hwm_mb),
        "returncode": proc.returncode,
        "demo_output": output.rstrip().splitlines(),
    }


def print_table(r: dict) -> None:
    days = "" if r["days"] is None else f" --days {r['days']}"
    print(f"clm demo{days} (subprocess, temp DuckDB + temp DAGSTER_HOME)")
    print(f"{'measure':<58}{'value':>12}")
    print(f"{'wall time, s':<58}{r['wall_s']:>12.1f}")
    print(f"{'CPU user + sys, s':<58}{r['user_cpu_s'] + r['sys_cpu_s']:>12.1f}")
    label = (
        f"tree RSS peak, MB (/proc /0.2 s, {r['tree_samples']} samples, "
        f"<={r['tree_peak_processes']} procs)"
    )
    print(f"{label:<58}{r['tree_peak_rss_mb']:>12.0f}")
    print(
        f"{'tree PSS peak, MB (shared pages split, same samples)':<58}"
        f"{r['tree_peak_pss_mb']:>12.0f}"
    )
    print(f"{'largest single-process VmHWM, MB':<58}{r['max_process_hwm_mb']:>12.0f}")
    print(f"{'max RSS of the child (os.wait4 ru_maxrss), MB':<58}{r['wait4_maxrss_mb']:>12.0f}")
    print(
        f"{'getrusage(RUSAGE_CHILDREN).ru_maxrss, MB (any child ever)':<58}"
        f"{r['rusage_children_maxrss_mb']:>12.0f}"
    )
    print(f"{'peak RSS used for the target, MB':<58}{r['peak_rss_mb']:>12.0f}")
    print(f"largest per-process peaks (VmHWM) of {r['processes_seen']} processes seen:")
    for mb, cmd in r["top_process_hwm_mb"]:
        print(f"  {mb:>8.0f} MB  {cmd}")
    print("demo output:")
    for line in r["demo_output"]:
        print(f"  | {line}")


if __name__ == "__main__":
    print_table(run())
