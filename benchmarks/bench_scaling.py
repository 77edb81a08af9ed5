"""Many symbols: 20 synthetic symbols x a year of hourly raw_ohlcv + features in ONE run, and
how the cost of that run grows with symbols and with days.

Each point of ``GRID`` (symbols, days, interval) is one ``dagster asset materialize -m
clm_assets.definitions --select market_data/raw_ohlcv,features/features --partition-range
FIRST|SYN00-USDT...LAST|SYNnn-USDT`` CLI process (the single-run backfill policy makes it
one run: the run count is read from the instance afterwards) in a fresh temp
``DAGSTER_HOME`` (sqlite; ``dagster.yaml`` linked to the project's) with a fresh temp
DuckDB file, ``CLM_SOURCE=synthetic``, symbols ``SYN00-USDT``... (each its own series: the
synthetic source seeds every block from a hash of the symbol) and days from 2024-01-01.
Per point, from the instance afterwards: the CLI's wall and CPU time (the CLI and every
step process it reaped), run created -> start, run start -> end, each step's duration,
stored events by type (and the time per stored event at the beginning and at the end of
each burst, which shows whether writing them slows down as they pile up), the bars stored
in DuckDB per table (asserted == symbols x days x bars per day) and the file sizes.

The compute side is measured, not assumed: DIRECT times the same work outside Dagster in
this process, on a fresh DuckDB file: the asset bodies' own functions (``fetch_bars``:
synthetic fetch + validation + per-partition metadata; ``compute_days``: features per day
on its own warm-up window) called with a stand-in context that only lists the partition
keys, the IO manager's slice write and read (``FrameHandler`` on the same ``DuckDBStore``),
and the ``candles_valid`` check's read-back and ``check_candles`` per day (against the row
counts the stand-in recorded, not the instance). The two DuckDB files must hold identical
tables (checked). Dagster's share of the CLI run is ``1 - direct / CLI wall``: process
starts, code loading, run/step bookkeeping and the sqlite events. Two floors for part of
the grid: ``noop_defs.py`` (same keys, partitions, policy and mapping, bodies that do
nothing) through the same CLI (``NOOP_POINTS``), and the real graph in one in-process run
on an ephemeral instance (``IN_PROCESS_POINTS``: no sqlite, no step processes).

Where the time goes: each step's duration = its own work (DIRECT) + the span over which it
stored its materialization events + the rest; the rest grows with partitions squared
because every ``context.add_asset_metadata(..., partition_key=...)`` call (one per
partition) makes Dagster rebuild and scan every key of the step's range, which is timed
alone per point (``range_check_ms``). Before the run starts: the planned materialization
events, then the partitioned check's planned event, which stores one row per partition each
holding the run's whole partition subset (quadratic in time and in ``DAGSTER_HOME`` bytes).

Cost model: least squares of wall (and CPU) ~ a + b*partitions + c*bars over the points,
and with a d*partitions^2 term. At a fixed interval bars = 24 x partitions, so one point at
15m bars (4x the bars per partition) is in the grid to tell the two apart; the linear fit is
also made without the biggest point to see whether it extrapolates (superlinear growth shows
as a miss). ``summarize`` re-applies the analysis to saved points (stderr carries each
point's JSON as it completes).

    python benchmarks/bench_scaling.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
from instance_runs import run_records, synthetic_env

from clm_assets.assets.features.assets import compute_days, warmup_days
from clm_assets.assets.market_data.assets import ROWS_WRITTEN, fetch_bars
from clm_assets.assets.runs import DAY
from clm_assets.definitions import build_definitions
from clm_assets.partitions import DATE, SYMBOL, market_partitions
from clm_assets.pipeline import materialize_days
from clm_assets.resources.duckdb_io_manager import FrameHandler, slice_for
from clm_assets.settings import Settings
from clm_assets.sources import synthetic
from clm_assets.sources.intervals import interval_delta
from clm_assets.sources.validation import check_candles
from clm_assets.storage.slices import symbol_slice

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLM = ("-m", "clm_assets.definitions")
NOOP = ("-f", str(Path(__file__).resolve().with_name("noop_defs.py")))
RAW, FEATURES = "market_data/raw_ohlcv", "features/features"
SELECTION = (RAW, FEATURES)
TABLES = ("market_data.raw_ohlcv", "features.features")
FIRST = pd.Timestamp("2024-01-01")
CLI_TIMEOUT_S = 4 * 3600
RETRY_AFTER_S = 60
"""A point that fails is tried once more after this wait (others edit the code meanwhile)."""

GRID: tuple[tuple[int, int, str], ...] = (
    # (symbols, days, interval), run in this order; the last is the issue's point
    (20, 30, "1h"),
    (20, 30, "15m"),  # 4x the bars per partition: separates per-bar from per-partition cost
    (2, 365, "1h"),
    (20, 90, "1h"),
    (5, 365, "1h"),
    (20, 365, "1h"),
)
FULL = (20, 365, "1h")
NOOP_POINTS: tuple[tuple[int, int], ...] = ((20, 30), (20, 90))  # 1h
IN_PROCESS_POINTS: tuple[tuple[int, int], ...] = ((20, 90),)  # 1h

QUICK_GRID: tuple[tuple[int, int, str], ...] = (
    (2, 7, "1h"),
    (4, 7, "15m"),
    (4, 7, "1h"),
    (4, 14, "1h"),
)
QUICK_FULL = (4, 14, "1h")
QUICK_NOOP: tuple[tuple[int, int], ...] = ((4, 7),)
QUICK_IN_PROCESS: tuple[tuple[int, int], ...] = ((4, 7),)

TARGETS = [
    ("20 symbols x 365 days is one run", "runs_full", "==", 1),
    ("every point is one run", "all_single_run", "==", True),
    ("bars stored = symbols x days x 24 (x96 at 15m), both tables", "bars_ok", "==", True),
    ("direct (no Dagster) tables == CLI tables", "direct_equal", "==", True),
]


def symbols(n: int) -> tuple[str, ...]:
    return tuple(f"SYN{i:02d}-USDT" for i in range(n))


def _env(tmp: Path, name: str, db: Path, n_symbols: int, days: int, interval: str) -> dict:
    shutil.rmtree(tmp / f"home_{name}", ignore_errors=True)  # a retried point starts afresh
    db.unlink(missing_ok=True)
    return synthetic_env(tmp, name, db, symbols(n_symbols), FIRST, days, interval)


def _range(n_symbols: int, days: int) -> str:
    names, last = symbols(n_symbols), FIRST + pd.Timedelta(days=days - 1)
    return f"{FIRST:%Y-%m-%d}|{names[0]}...{last:%Y-%m-%d}|{names[-1]}"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


class LoadSampler:
    """The 1-minute load average every ``every`` seconds while the block runs."""

    def __init__(self, every: float = 15.0) -> None:
        self.every, self.samples = every, [loadavg()]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.every):
            self.samples.append(loadavg())

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append(loadavg())

    def summary(self) -> dict[str, float]:
        return {"mean": sum(self.samples) / len(self.samples), "max": max(self.samples)}


def _materialize(env: dict, code: tuple[str, str], partition_range: str) -> tuple[float, float]:
    """Wall and CPU seconds (the CLI and the step processes it reaped) of one CLI run."""
    cmd = [
        str(BIN / "dagster"), "asset", "materialize", *code,
        "--select", ",".join(SELECTION), "--partition-range", partition_range,
    ]  # fmt: skip
    cpu0, t0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(
        cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    seconds, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return seconds, cpu


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _rows(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as conn:
        return {t: conn.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}


def _tables_differ(a: Path, b: Path) -> dict[str, int]:
    """Rows of each table in one file and not the other (EXCEPT ALL both ways)."""
    with duckdb.connect() as conn:
        conn.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
        conn.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
        out = {}
        for t in TABLES:
            n = 0
            for x, y in (("a", "b"), ("b", "a")):
                sql = (
                    f"SELECT count(*) FROM (SELECT * FROM {x}.{t} EXCEPT ALL SELECT * FROM {y}.{t})"
                )
                n += conn.sql(sql).fetchall()[0][0]
            out[t] = n
    return out


def _definitions(settings: Settings) -> dg.Definitions:
    with warnings.catch_warnings():  # partitioned asset checks are a Dagster preview
        warnings.simplefilter("ignore", category=dg.PreviewWarning)
        return build_definitions(settings)


class _StepContext:
    """What ``fetch_bars`` and ``compute_days`` read from a Dagster context: the step's
    partition keys and partitions definition; per-partition metadata is kept in a dict."""

    def __init__(self, partitions: dg.MultiPartitionsDefinition, keys: list[str]) -> None:
        self.partition_keys = keys
        self.assets_def = SimpleNamespace(partitions_def=partitions)
        self.metadata: dict[str, dict] = {}

    def add_asset_metadata(self, metadata: dict, partition_key: Any = None, **_: Any) -> None:
        self.metadata[str(partition_key)] = metadata


def direct(env: dict) -> dict[str, float]:
    """The two steps' and the check's own work, without Dagster, timed piece by piece.

    The partition range is the whole partitions definition, so the features step's mapped
    upstream (warm-up days before, label days after, nonexistent ones dropped) is the same
    keys; the synthetic source's per-process cache of block sums is cleared first, as a
    fresh step process starts without it.
    """
    settings = Settings.from_env(env)
    defs = _definitions(settings)
    partitions = market_partitions(settings)
    keys = partitions.get_partition_keys()
    io, handler = defs.resources["duckdb_io"], FrameHandler()
    raw_def = defs.resolve_assets_def(dg.AssetKey.from_user_string(RAW))
    features_def = defs.resolve_assets_def(dg.AssetKey.from_user_string(FEATURES))
    synthetic._LEVELS.clear()
    t: dict[str, float] = {}

    t0 = time.perf_counter()
    raw_context = _StepContext(partitions, keys)
    out = fetch_bars(
        raw_context, settings, defs.resources["market_data"], defs.resources["storage"]
    )
    raw = next(out).value
    list(out)  # the no_missing_bars check result
    t["raw_fetch_validate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    raw_slice = slice_for(raw_def.key, partitions, keys, raw_def.metadata_by_key[raw_def.key])
    handler.write(io.store, raw_slice, raw)
    t["raw_store_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()  # candles_valid: read back per symbol, check each day
    days: dict[str, list[pd.Timestamp]] = defaultdict(list)
    for key in keys:
        dims = partitions.get_partition_key_from_str(key).keys_by_dimension
        days[dims[SYMBOL]].append(pd.Timestamp(dims[DATE], tz="UTC"))
    bad = 0
    for symbol, starts in days.items():
        stored = io.store.read(
            symbol_slice("market_data", "raw_ohlcv", symbol, min(starts), max(starts) + DAY),
            order_by=["rowid"],
        )
        by_day = dict(iter(stored.groupby(stored["open_time"].dt.floor("D"), sort=False)))
        for day in starts:
            key = str(dg.MultiPartitionKey({DATE: f"{day:%Y-%m-%d}", SYMBOL: symbol}))
            rows = by_day.get(day, stored.iloc[:0])
            written = raw_context.metadata[key][ROWS_WRITTEN]
            found = check_candles(rows, settings.interval, day, day + DAY, written)
            bad += any(found.values())
    if bad:
        raise AssertionError(f"direct candles check: {bad} partitions fail")
    t["check_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    frame = handler.read(io.store, raw_slice)
    t["features_read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    features = compute_days(_StepContext(partitions, keys), settings, frame).value
    t["features_compute_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feature_slice = slice_for(
        features_def.key, partitions, keys, features_def.metadata_by_key[features_def.key]
    )
    handler.write(io.store, feature_slice, features)
    t["features_store_s"] = time.perf_counter() - t0
    t["raw_s"] = t["raw_fetch_validate_s"] + t["raw_store_s"]
    t["features_s"] = t["features_read_s"] + t["features_compute_s"] + t["features_store_s"]
    t["total_s"] = t["raw_s"] + t["check_s"] + t["features_s"]
    return t


def in_process_ephemeral(env: dict, days: int) -> float:
    """The real graph, one in-process run on an ephemeral instance (no sqlite, no step
    processes, no CLI): Dagster's in-process cost on top of the direct work."""
    settings = Settings.from_env(env)
    defs = _definitions(settings)
    first = pd.Timestamp(FIRST, tz="UTC")
    synthetic._LEVELS.clear()
    t0 = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_days(
            defs, settings, SELECTION, first, first + pd.Timedelta(days=days - 1), instance
        )
    return time.perf_counter() - t0


def _step(run: dict, kind: str) -> float | None:
    for key, s in run["steps"].items():
        if kind == "check" and key.endswith("candles_valid"):
            return s["s"]
        if kind == "raw" and key.endswith("raw_ohlcv"):
            return s["s"]
        if kind == "features" and key.startswith("features"):
            return s["s"]
    return None


def measure_point(tmp: Path, n_symbols: int, days: int, interval: str) -> dict:
    name = f"{n_symbols}x{days}_{interval}"
    db = tmp / f"{name}.duckdb"
    env = _env(tmp, name, db, n_symbols, days, interval)
    with LoadSampler() as load:
        wall, cpu = _materialize(env, CLM, _range(n_symbols, days))
    runs = run_records(env["DAGSTER_HOME"])
    rows = _rows(db)
    partitions = n_symbols * days
    bars = partitions * (DAY // interval_delta(interval))
    point = {
        "symbols": n_symbols,
        "days": days,
        "interval": interval,
        "partitions": partitions,
        "bars": bars,
        "wall_s": wall,
        "cpu_s": cpu,
        "runs": len(runs),
        "run": runs[0] if runs else None,
        "rows": rows,
        "bars_ok": all(n == bars for n in rows.values()),
        "duckdb_bytes": db.stat().st_size,
        "dagster_home_bytes": _tree_bytes(Path(env["DAGSTER_HOME"])),
        "warmup_days": warmup_days(interval),
        "load": load.summary(),
    }
    if len(runs) == 1:
        run = runs[0]
        point |= {f"{k}_step_s": _step(run, k) for k in ("raw", "check", "features")}
        point["events"] = run["events"]
        point["events_per_partition"] = run["events"] / partitions
    d_db = tmp / f"{name}_direct.duckdb"
    point["direct"] = direct(_env(tmp, f"{name}_direct", d_db, n_symbols, days, interval))
    point["direct_differ"] = _tables_differ(db, d_db)
    point["direct_equal"] = not any(point["direct_differ"].values())
    point["dagster_share"] = 1 - point["direct"]["total_s"] / wall
    point["direct_rows"] = _rows(d_db)
    point["range_check_ms"] = range_check_ms(n_symbols, days)
    for path in (db, d_db):
        path.unlink(missing_ok=True)
    return point


def measure_noop(tmp: Path, n_symbols: int, days: int) -> dict:
    name = f"noop_{n_symbols}x{days}"
    env = _env(tmp, name, tmp / f"{name}_unused.duckdb", n_symbols, days, "1h")
    with LoadSampler() as load:
        wall, cpu = _materialize(env, NOOP, _range(n_symbols, days))
    runs = run_records(env["DAGSTER_HOME"])
    point = {
        "load": load.summary(),
        "symbols": n_symbols,
        "days": days,
        "partitions": n_symbols * days,
        "wall_s": wall,
        "cpu_s": cpu,
        "runs": len(runs),
        "run": runs[0] if runs else None,
    }
    if len(runs) == 1:
        point["events"] = runs[0]["events"]
    return point


LINEAR = ("partitions", "bars")
QUADRATIC = ("partitions", "bars", "partitions^2")
UNITS = {"partitions": (1e3, "ms/partition"), "bars": (1e3, "ms/bar"),
         "partitions^2": (1e6, "us/partition^2")}  # fmt: skip


def _regressor(point: dict, term: str) -> float:
    return float(point["partitions"] ** 2 if term == "partitions^2" else point[term])


def fit(points: list[dict], key: str, terms: tuple[str, ...] = LINEAR) -> dict:
    """Least squares ``key ~ fixed + sum(coef[t] * t)`` over ``terms`` (seconds)."""
    x = np.array([[1.0, *(_regressor(p, t) for t in terms)] for p in points])
    y = np.array([_dig(p, key) for p in points])
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    pred = x @ coef
    ss = float(((y - y.mean()) ** 2).sum())
    return {
        "terms": list(terms),
        "coef": [float(c) for c in coef],
        "r2": 1 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else float("nan"),
        "residuals_s": [float(r) for r in y - pred],
        "points": len(points),
    }


def _dig(point: dict, key: str) -> float:
    value: Any = point
    for part in key.split("."):
        value = value[part]
    return float(value)


def _terms(model: dict, point: dict) -> dict[str, float]:
    """Seconds each term of ``model`` contributes at ``point``."""
    fixed, *coef = model["coef"]
    return {"fixed": fixed} | {
        t: c * _regressor(point, t) for t, c in zip(model["terms"], coef, strict=True)
    }


def range_check_ms(n_symbols: int, days: int, reps: int = 5) -> float:
    """One ``context.add_asset_metadata(..., partition_key=...)`` call's check that the key
    is targeted: Dagster rebuilds every key of the step's range and scans the list (once per
    call, so a step that records each partition's metadata pays it once per partition).
    Timed here on the point's partitions definition; the fastest of ``reps``, in ms."""
    settings = Settings(
        source="synthetic",
        symbols=symbols(n_symbols),
        start_date=f"{FIRST:%Y-%m-%d}",
        end_date=f"{FIRST + pd.Timedelta(days=days):%Y-%m-%d}",
        db_path=Path(tempfile.gettempdir()) / "bench_scaling_unused.duckdb",
    )
    partitions = market_partitions(settings)
    keys = partitions.get_partition_keys()
    key_range = dg.PartitionKeyRange(keys[0], keys[-1])
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        targeted = partitions.get_partition_keys_in_range(partition_key_range=key_range)
        assert keys[-1] in targeted
        best = min(best, time.perf_counter() - t0)
    return 1000 * best


def _breakdown(point: dict) -> dict[str, dict[str, float]]:
    """Each step's duration in the run = its own work (direct) + the span over which it
    stored its materialization events + the rest (Dagster inside the step)."""
    d, run = point["direct"], point["run"] or {}
    spans = {
        ("raw" if step.endswith("raw_ohlcv") else "features"): v["span_s"]
        for step, v in run.get("materializations_by_step", {}).items()
    }
    out = {}
    for kind, direct_s in (("raw", d["raw_s"]), ("features", d["features_s"])):
        step = point.get(f"{kind}_step_s")
        if step is None or kind not in spans:
            continue
        rest = step - direct_s - spans[kind]
        out[kind] = {
            "step_s": step,
            "direct_s": direct_s,
            "events_s": spans[kind],
            "rest_s": rest,
            "rest_us_per_partition2": 1e6 * rest / point["partitions"] ** 2,
        }
    return out


def _retry(func: Any, *args: Any) -> Any:
    try:
        return func(*args)
    except Exception as exc:
        print(
            f"  [{func.__name__}{args[1:]} failed ({type(exc).__name__}: {str(exc)[-500:]}); "
            f"retrying once in {RETRY_AFTER_S} s]",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(RETRY_AFTER_S)
        return func(*args)


def run(
    grid: tuple[tuple[int, int, str], ...] = GRID,
    full: tuple[int, int, str] = FULL,
    noop_points: tuple[tuple[int, int], ...] = NOOP_POINTS,
    in_process_points: tuple[tuple[int, int], ...] = IN_PROCESS_POINTS,
) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_scaling_"))
    points, noop, in_process = [], [], []
    try:
        for n_symbols, days, interval in grid:
            point = _retry(measure_point, tmp, n_symbols, days, interval)
            points.append(point)
            print(
                f"  [{n_symbols} x {days} {interval}: {point['wall_s']:.0f} s, "
                f"{point['runs']} run(s), load mean {point['load']['mean']:.1f}]\n"
                f"  point json: {json.dumps(point, default=str)}",
                file=sys.stderr,
                flush=True,
            )
        for n_symbols, days in noop_points:
            noop.append(_retry(measure_noop, tmp, n_symbols, days))
        for n_symbols, days in in_process_points:
            name = f"in_process_{n_symbols}x{days}"
            env = _env(tmp, name, tmp / f"{name}.duckdb", n_symbols, days, "1h")
            seconds = _retry(in_process_ephemeral, env, days)
            in_process.append({"symbols": n_symbols, "days": days, "wall_s": seconds})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    return summarize(points, noop, in_process, full)


def summarize(points: list[dict], noop: list[dict], in_process: list[dict], full: tuple) -> dict:
    """The fits, shares and targets of measured points (also re-applicable to saved ones)."""
    by_point = {(p["symbols"], p["days"], p["interval"]): p for p in points}
    full_point = by_point.get(tuple(full))
    for p in points:
        p["dagster_s"] = p["wall_s"] - p["direct"]["total_s"]
        p["breakdown"] = _breakdown(p)
    models = {
        "wall": fit(points, "wall_s"),
        "wall+P^2": fit(points, "wall_s", QUADRATIC),
        "cpu+P^2": fit(points, "cpu_s", QUADRATIC),
        "direct": fit(points, "direct.total_s"),
        "dagster+P^2": fit(points, "dagster_s", QUADRATIC),
    }
    result: dict[str, Any] = {
        "points": points,
        "noop": noop,
        "in_process": in_process,
        "models": models,
        "full": list(full),
        "runs_full": full_point["runs"] if full_point else None,
        "all_single_run": all(p["runs"] == 1 for p in points + noop),
        "bars_ok": all(p["bars_ok"] for p in points),
        "direct_equal": all(p["direct_equal"] for p in points),
    }
    if full_point is not None:
        f = full_point
        result["terms_full"] = {k: _terms(m, f) for k, m in models.items()}
        rest = [p for p in points if p is not f]
        extrapolated = {}  # linear models only: the smaller points cannot pin a curvature
        for terms in (("partitions",), LINEAR):
            if len(rest) > len(terms) + 1:
                name = "wall ~ fixed + " + " + ".join(terms)
                extrapolated[name] = sum(_terms(fit(rest, "wall_s", terms), f).values())
        result["extrapolated_full_s"] = extrapolated
        result["full_wall_s"] = f["wall_s"]
        result["full_dagster_share"] = f["dagster_share"]
        result["full_events_per_partition"] = f.get("events_per_partition")
    for n in noop:
        match = by_point.get((n["symbols"], n["days"], "1h"))
        if match:
            n["share_of_real"] = n["wall_s"] / match["wall_s"]
    for ip in in_process:
        match = by_point.get((ip["symbols"], ip["days"], "1h"))
        if match:
            ip["share_of_real"] = ip["wall_s"] / match["wall_s"]
            ip["direct_s"] = match["direct"]["total_s"]
    if not result["bars_ok"]:
        bad = [(p["symbols"], p["days"], p["interval"], p["rows"]) for p in points]
        raise AssertionError(f"bars stored != symbols x days x bars per day: {bad}")
    return result


def _fmt_rate(rate: tuple[float, float] | None) -> str:
    return "-" if rate is None else f"{rate[0]:.0f}->{rate[1]:.0f}"


def print_table(r: dict) -> None:
    pts = r["points"]
    print(
        "raw_ohlcv + features of N synthetic symbols x D days from 2024-01-01, one CLI "
        "--partition-range run per point (single-run backfill), sqlite instance, "
        "multiprocess executor; seconds"
    )
    head = (
        f"{'symbols x days':<16}{'bar':>5}{'parts':>7}{'bars':>9}{'runs':>5}{'wall':>8}"
        f"{'cpu':>8}{'cr->st':>8}{'run':>8}{'raw':>7}{'check':>7}{'feat':>7}"
        f"{'events':>8}{'ev/p':>6}{'ms/part':>8}{'load':>10}"
    )
    print(head)
    for p in pts:
        run = p["run"] or {}
        print(
            f"{p['symbols']:>3} x {p['days']:<10}{p['interval']:>5}{p['partitions']:>7,}"
            f"{p['bars']:>9,}{p['runs']:>5}{p['wall_s']:>8.0f}{p['cpu_s']:>8.0f}"
            f"{run.get('created_to_start_s') or 0:>8.0f}{run.get('run_s') or 0:>8.0f}"
            f"{p.get('raw_step_s') or 0:>7.0f}{p.get('check_step_s') or 0:>7.0f}"
            f"{p.get('features_step_s') or 0:>7.0f}{p.get('events', 0):>8,}"
            f"{p.get('events_per_partition', 0):>6.1f}"
            f"{1000 * p['wall_s'] / p['partitions']:>8.0f}"
            f"{p['load']['mean']:>5.1f}/{p['load']['max']:<4.1f}"
        )
    print(
        "(cr->st: run created -> started; run: start -> end; raw/check/feat: step durations; "
        "ev/p: stored events per partition; ms/part: CLI wall / partitions; load: 1-min "
        "load average during the CLI run, mean/max of samples every 15 s)"
    )
    print("\nwhere the time goes inside each run (ms per stored event, first -> last tenth)")
    print(
        f"{'point':<20}{'planned ev':>11}{'ms/ev':>10}{'raw mat':>9}{'span':>7}{'ms/ev':>10}"
        f"{'feat mat':>9}{'span':>7}{'ms/ev':>10}{'duckdb MB':>10}{'home MB':>8}"
    )
    for p in pts:
        run = p["run"] or {}
        planned = run.get("event_types", {}).get("ASSET_MATERIALIZATION_PLANNED", (0, 0))
        mats = run.get("materializations_by_step", {})
        raw = next((v for k, v in mats.items() if k.endswith("raw_ohlcv")), None)
        feat = next((v for k, v in mats.items() if k.startswith("features")), None)
        cells = ""
        for m in (raw, feat):
            cells += (
                f"{m['count']:>9,}{m['span_s']:>7.0f}{_fmt_rate(m['ms_per_event']):>10}"
                if m
                else f"{'-':>9}{'-':>7}{'-':>10}"
            )
        print(
            f"{p['symbols']:>3} x {p['days']} {p['interval']:<10}{planned[0]:>11,}"
            f"{_fmt_rate(run.get('planned_ms_per_event')):>10}{cells}"
            f"{p['duckdb_bytes'] / 2**20:>10.1f}{p['dagster_home_bytes'] / 2**20:>8.1f}"
        )
    for p in pts:
        run = p["run"] or {}
        windows = ", ".join(
            f"{k} {v['from']:.0f}..{v['to']:.0f}" for k, v in run.get("steps", {}).items()
        )
        types = ", ".join(f"{k} {n:,}" for k, (n, _) in run.get("event_types", {}).items())
        print(
            f"  {p['symbols']} x {p['days']} {p['interval']}: steps (s after run start) {windows}"
        )
        print(f"    events: {types}")

    print("\nDIRECT: the same work without Dagster (asset functions, IO manager, check), seconds")
    print(
        f"{'point':<20}{'fetch+val':>10}{'store':>7}{'check':>7}{'read':>7}{'features':>9}"
        f"{'store':>7}{'total':>7}{'CLI':>7}{'Dagster':>8}{'raw step':>16}{'feat step':>16}"
        f"{'==CLI':>6}"
    )
    for p in pts:
        d = p["direct"]
        raw_step, feat_step = p.get("raw_step_s"), p.get("features_step_s")
        raw_cmp = f"{d['raw_s']:.0f}/{raw_step:.0f}" if raw_step else "-"
        feat_cmp = f"{d['features_s']:.0f}/{feat_step:.0f}" if feat_step else "-"
        print(
            f"{p['symbols']:>3} x {p['days']} {p['interval']:<10}{d['raw_fetch_validate_s']:>10.1f}"
            f"{d['raw_store_s']:>7.1f}{d['check_s']:>7.1f}{d['features_read_s']:>7.1f}"
            f"{d['features_compute_s']:>9.1f}{d['features_store_s']:>7.1f}{d['total_s']:>7.1f}"
            f"{p['wall_s']:>7.0f}{p['dagster_share']:>8.0%}{raw_cmp:>16}{feat_cmp:>16}"
            f"{p['direct_equal']!s:>6}"
        )
    print(
        "(Dagster = 1 - direct total / CLI wall; raw/feat step: direct seconds / the step's "
        "duration in the run; ==CLI: both DuckDB files hold identical tables)"
    )
    for n in r["noop"]:
        run = n["run"] or {}
        print(
            f"NO-OP floor {n['symbols']} x {n['days']} 1h ({n['partitions']:,} partitions): "
            f"{n['runs']} run, {n['wall_s']:.0f} s wall, {n['cpu_s']:.0f} s CPU, created->start "
            f"{run.get('created_to_start_s') or 0:.0f} s, run {run.get('run_s') or 0:.0f} s, "
            f"{n.get('events', 0):,} events, load {n['load']['mean']:.1f}; "
            + (
                f"{n['share_of_real']:.0%} of the real run's wall"
                if "share_of_real" in n
                else "(no real point)"
            )
        )
    for ip in r["in_process"]:
        extra = (
            f"; {ip['share_of_real']:.0%} of the CLI run's wall, direct work {ip['direct_s']:.0f} s"
            if "share_of_real" in ip
            else ""
        )
        print(
            f"IN-PROCESS ephemeral instance {ip['symbols']} x {ip['days']} 1h: "
            f"{ip['wall_s']:.0f} s{extra}"
        )

    print(
        "\ncost model, least squares over the points: y ~ a + b*partitions + c*bars "
        "(+ d*partitions^2 where named +P^2)"
    )
    for name, m in r["models"].items():
        resid = ", ".join(f"{x:+.0f}" for x in m["residuals_s"])
        coef = ", ".join(
            f"{c * UNITS[t][0]:.2f} {UNITS[t][1]}"
            for t, c in zip(m["terms"], m["coef"][1:], strict=True)
        )
        print(
            f"  {name:<12} fixed {m['coef'][0]:.0f} s, {coef}; R2 {m['r2']:.3f} "
            f"(residuals s: {resid})"
        )
    if "terms_full" in r:
        f = r["full"]
        print(f"  at {f[0]} x {f[1]} {f[2]}, the fitted terms (s):")
        for name, terms in r["terms_full"].items():
            total = sum(terms.values())
            parts = ", ".join(
                f"{k} {v:.0f} ({v / total:.0%})" if total else f"{k} {v:.0f}"
                for k, v in terms.items()
            )
            print(f"    {name:<12} {parts}")
    for name, predicted in r.get("extrapolated_full_s", {}).items():
        print(
            f"  {name}, fitted WITHOUT the {r['full'][0]} x {r['full'][1]} point, predicts it "
            f"{predicted:.0f} s; measured {r['full_wall_s']:.0f} s "
            f"({r['full_wall_s'] / predicted:.2f}x)"
        )
    print(
        "\ninside the steps: duration = own work (DIRECT) + materialization events stored + rest "
        "(s); rest / partitions^2 (us); the add_asset_metadata targeted-key check, timed alone"
    )
    print(
        f"{'point':<18}{'raw step':>9}{'own':>6}{'events':>7}{'rest':>7}{'us/P2':>7}"
        f"{'feat step':>10}{'own':>6}{'events':>7}{'rest':>7}{'us/P2':>7}"
        f"{'check ms/call':>14}{'x P calls':>10}"
    )
    for p in pts:
        cells = ""
        for kind in ("raw", "features"):
            b = p.get("breakdown", {}).get(kind)
            cells += (
                f"{b['step_s']:>{9 if kind == 'raw' else 10}.0f}{b['direct_s']:>6.0f}"
                f"{b['events_s']:>7.0f}{b['rest_s']:>7.0f}{b['rest_us_per_partition2']:>7.1f}"
                if b
                else f"{'-':>{9 if kind == 'raw' else 10}}{'-':>6}{'-':>7}{'-':>7}{'-':>7}"
            )
        check = p.get("range_check_ms")
        calls = (
            f"{check:>14.1f}{check * p['partitions'] / 1000:>9.0f}s"
            if check
            else f"{'-':>14}{'-':>10}"
        )
        print(f"{p['symbols']:>3} x {p['days']} {p['interval']:<8}{cells}{calls}")
    print(
        "\nbefore the run starts (created -> start, s): the planned materialization events, "
        "then the partitioned check's planned event (it stores one row per partition, each "
        "holding the run's whole partition subset)"
    )
    print(f"{'point':<18}{'cr->st':>7}{'planned':>9}{'span':>7}{'ms/ev':>7}{'check planned':>14}")
    for p in pts:
        types = (p["run"] or {}).get("event_types", {})
        n, span = types.get("ASSET_MATERIALIZATION_PLANNED", (0, 0.0))
        _, check = types.get("ASSET_CHECK_EVALUATION_PLANNED", (0, 0.0))
        print(
            f"{p['symbols']:>3} x {p['days']} {p['interval']:<8}"
            f"{(p['run'] or {}).get('created_to_start_s') or 0:>7.0f}{n:>9,}{span:>7.0f}"
            f"{1000 * span / max(n, 1):>7.1f}{check:>14.1f}"
        )
    print("per partition at each point (ms): CLI wall, direct work, the rest (Dagster)")
    for p in pts:
        n = p["partitions"]
        print(
            f"  {p['symbols']:>3} x {p['days']:<4}{p['interval']:<4} {1000 * p['wall_s'] / n:>6.0f}"
            f"{1000 * p['direct']['total_s'] / n:>8.1f}{1000 * p['dagster_s'] / n:>8.0f}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small grid, to try it out")
    args = parser.parse_args(argv)
    load0, t0 = Path("/proc/loadavg").read_text().split()[:3], time.perf_counter()
    quick = (QUICK_GRID, QUICK_FULL, QUICK_NOOP, QUICK_IN_PROCESS)
    result = run(*quick) if args.quick else run()
    print_table(result)
    load1 = Path("/proc/loadavg").read_text().split()[:3]
    print(
        f"(bench_scaling took {time.perf_counter() - t0:.0f} s; load {' '.join(load0)} -> "
        f"{' '.join(load1)}; {os.cpu_count()} cores)"
    )


if __name__ == "__main__":
    main()
