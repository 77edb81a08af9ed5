"""A year of raw_ohlcv + features backfilled in one CLI run, against one run per partition.

``run(days)`` works in a fresh temp ``DAGSTER_HOME`` (sqlite, ``dagster.yaml`` linked to
the project's) and a temp DuckDB file, with ``CLM_SOURCE=synthetic``, two symbols, 1h bars
and ``days`` daily partitions from 2024-01-01:

a. the chosen policy: ``dagster asset materialize --partition-range FIRST|BTC...LAST|ETH``
   of both assets (single-run backfill policy), timed as ``T_single``; the run count is read
   from the instance afterwards;
b. the baseline: ``k`` (default 6) separate ``dagster asset materialize --partition
   DAY|SYMBOL`` runs of both assets, for partitions spread over the range, against a COPY
   of the backfilled DuckDB file from which those partitions' rows were deleted first (so
   the runs must write them, and every warm-up day they read exists). ``t_p`` is their mean
   wall time; ``t_p x days x 2`` is the per-partition total *projected* from those ``k``
   measured runs (not run: ~2 hours at ~9 s a run), compared with the measured ``T_single``;
c. the rows each of those runs wrote alone are compared with the backfill's rows of the
   same partitions (raw_ohlcv and features, exact frame equality); a mismatch raises;
d. the floor, what Dagster itself costs: ``noop_defs.py`` (the same asset keys, partitions
   definition, backfill policy and partition mapping, bodies that do nothing and store
   nothing) through the same CLI in another fresh home: one ``--partition-range`` run over
   the same range, and the same ``k`` ``--partition`` runs (measured, not projected).

All sides are CLI processes on the default multiprocess executor (each step in its own
process, which loads the code location again), so all pay process start and code loading;
the no-op's code location imports less of clm (no models, sensors or resources).
``python benchmarks/bench_backfill.py`` prints a table.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
from instance_runs import run_records, synthetic_env

from clm_assets.definitions import build_definitions
from clm_assets.pipeline import materialize_days
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CLM = ("-m", "clm_assets.definitions")
NOOP = ("-f", str(Path(__file__).resolve().with_name("noop_defs.py")))
SELECTION = ("market_data/raw_ohlcv", "features/features")
TABLES = ("market_data.raw_ohlcv", "features.features")
SYMBOLS = ("BTC-USDT", "ETH-USDT")
FIRST = pd.Timestamp("2024-01-01")

TARGETS = [
    ("single-run backfill is 1 run", "runs_single", "==", 1),
    ("per-partition runs (projected) / single run >= 100x", "speedup_projected", ">=", 100.0),
    ("partitions written alone equal the backfill", "rows_equal", "==", True),
    ("no-op single-run backfill is 1 run", "runs_noop_single", "==", 1),
]


def _env(tmp: Path, name: str, db: Path, days: int) -> dict[str, str]:
    return synthetic_env(tmp, name, db, SYMBOLS, FIRST, days)


def _materialize(env: dict[str, str], code: tuple[str, str], *partition_args: str) -> float:
    cmd = [
        str(BIN / "dagster"), "asset", "materialize", *code,
        "--select", ",".join(SELECTION), *partition_args,
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return seconds


def in_process_ephemeral(env: dict[str, str], days: int) -> float:
    """The same range in one in-process run on an ephemeral instance (no sqlite event log,
    no process start): what the run costs without the CLI and the persistent instance."""
    settings = Settings.from_env(env)
    defs = build_definitions(settings)
    last = pd.Timestamp(FIRST, tz="UTC") + pd.Timedelta(days=days - 1)
    t0 = time.perf_counter()
    with dg.DagsterInstance.ephemeral() as instance:
        materialize_days(defs, settings, SELECTION, pd.Timestamp(FIRST, tz="UTC"), last, instance)
    return time.perf_counter() - t0


def sample_partitions(days: int, k: int) -> list[tuple[str, str]]:
    """``k`` (day, symbol) keys spread evenly over the range, symbols alternating."""
    picks = []
    for i in range(k):
        day = FIRST + pd.Timedelta(days=int((i + 0.5) * days / k))
        picks.append((f"{day:%Y-%m-%d}", SYMBOLS[i % len(SYMBOLS)]))
    return picks


def _partition_sql(table: str) -> str:
    return f"FROM {table} WHERE symbol = ? AND open_time >= ? AND open_time < ? + INTERVAL 1 DAY"


def _partition_rows(db: Path, table: str, day: str, symbol: str) -> pd.DataFrame:
    start = pd.Timestamp(day).to_pydatetime()
    return DuckDBStore(db).query(
        f"SELECT * {_partition_sql(table)} ORDER BY open_time", [symbol, start, start]
    )


def run(days: int = 365, k: int = 6) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_backfill_"))
    try:
        db = tmp / "backfill.duckdb"
        env = _env(tmp, "backfill", db, days)
        last = FIRST + pd.Timedelta(days=days - 1)
        whole_range = f"{FIRST:%Y-%m-%d}|{SYMBOLS[0]}...{last:%Y-%m-%d}|{SYMBOLS[-1]}"
        t_single = _materialize(env, CLM, "--partition-range", whole_range)
        single_runs = run_records(env["DAGSTER_HOME"])
        with duckdb.connect(str(db), read_only=True) as conn:
            rows = {t: conn.sql(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}

        alone_db = tmp / "alone.duckdb"
        shutil.copyfile(db, alone_db)
        picks = sample_partitions(days, k)
        with duckdb.connect(str(alone_db)) as conn:  # the runs must write these rows again
            conn.execute("SET TimeZone = 'UTC'")
            for day, symbol in picks:
                start = pd.Timestamp(day).to_pydatetime()
                for table in TABLES:
                    conn.execute(f"DELETE {_partition_sql(table)}", [symbol, start, start])
        env_alone = _env(tmp, "alone", alone_db, days)
        per_partition = [
            _materialize(env_alone, CLM, "--partition", f"{day}|{symbol}") for day, symbol in picks
        ]
        alone_runs = run_records(env_alone["DAGSTER_HOME"])
        env_noop = _env(tmp, "noop", tmp / "noop_unused.duckdb", days)
        t_noop_single = _materialize(env_noop, NOOP, "--partition-range", whole_range)
        noop_single_runs = run_records(env_noop["DAGSTER_HOME"])
        env_noop_alone = _env(tmp, "noop_alone", tmp / "noop_unused.duckdb", days)
        noop_per_partition = [
            _materialize(env_noop_alone, NOOP, "--partition", f"{day}|{symbol}")
            for day, symbol in picks
        ]
        env_mem = _env(tmp, "in_process", tmp / "in_process.duckdb", days)
        t_in_process = in_process_ephemeral(env_mem, days)

        equal, checked_rows, mismatches = True, 0, []
        for day, symbol in picks:
            for table in TABLES:
                backfilled = _partition_rows(db, table, day, symbol)
                alone = _partition_rows(alone_db, table, day, symbol)
                checked_rows += len(alone)
                try:
                    assert len(alone) > 0, "no rows written"
                    pd.testing.assert_frame_equal(alone, backfilled, check_exact=True)
                except AssertionError as exc:
                    equal = False
                    mismatches.append(f"{table} {day}|{symbol}: {str(exc)[:300]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    partitions = days * len(SYMBOLS)
    t_p = sum(per_partition) / len(per_partition)
    t_noop_p = sum(noop_per_partition) / len(noop_per_partition)
    projected = t_p * partitions
    result = {
        "days": days,
        "symbols": len(SYMBOLS),
        "partitions": partitions,
        "t_single_s": t_single,
        "runs_single": len(single_runs),
        "run_single": single_runs[0] if len(single_runs) == 1 else single_runs,
        "t_in_process_ephemeral_s": t_in_process,
        "rows": rows,
        "k": k,
        "sampled_partitions": [f"{d}|{s}" for d, s in picks],
        "per_partition_s": per_partition,
        "runs_per_partition": len(alone_runs),
        "run_statuses_per_partition": [r["status"] for r in alone_runs],
        "run_s_per_partition": [r["run_s"] for r in alone_runs],
        "t_p_s": t_p,
        "t_p_min_s": min(per_partition),
        "t_p_max_s": max(per_partition),
        "per_partition_total_projected_s": projected,
        "projected_from": f"mean of {k} measured per-partition CLI runs x {partitions} partitions",
        "speedup_projected": projected / t_single,
        "single_run_s_per_partition": t_single / partitions,
        "rows_equal": equal,
        "rows_checked": checked_rows,
        "t_noop_single_s": t_noop_single,
        "runs_noop_single": len(noop_single_runs),
        "run_noop_single": noop_single_runs[0] if len(noop_single_runs) == 1 else noop_single_runs,
        "noop_per_partition_s": noop_per_partition,
        "t_noop_p_s": t_noop_p,
        "single_vs_noop_single": t_single / t_noop_single,
        "per_partition_vs_noop": t_p / t_noop_p,
        "noop_share_of_single": t_noop_single / t_single,
        "noop_share_of_per_partition": t_noop_p / t_p,
        "noop_speedup_projected": t_noop_p * partitions / t_noop_single,
    }
    if not equal:
        raise AssertionError(
            "partitions materialized alone differ from the backfill:\n" + "\n".join(mismatches)
        )
    return result


def _print_run(run: dict) -> None:
    """Where the time of one run went, from the instance's run and event records."""
    steps = ", ".join(f"{k} {v['s']:.1f} s" for k, v in run["steps"].items())
    print(
        f"    created..start {run['created_to_start_s']:.1f} s, start..end "
        f"{run['run_s']:.1f} s ({run['events']:,} events); {steps}"
    )
    for kind in ("ASSET_MATERIALIZATION_PLANNED", "ASSET_MATERIALIZATION"):
        if kind in run["event_types"]:
            count, span = run["event_types"][kind]
            print(f"    {count:,} {kind} events stored over {span:.1f} s")


def print_table(r: dict) -> None:
    print(
        f"backfill of raw_ohlcv + features: {r['days']} days x {r['symbols']} symbols = "
        f"{r['partitions']} partitions, synthetic 1h, CLI, sqlite instance"
    )
    print(f"{'policy':<56}{'runs':>6}{'seconds':>10}")
    label = "single run (--partition-range), measured"
    print(f"{label:<56}{r['runs_single']:>6}{r['t_single_s']:>10.1f}")
    if r["runs_single"] == 1:
        _print_run(r["run_single"])
    label = f"one run per partition, mean of {r['k']} measured"
    print(
        f"{label:<56}{1:>6}{r['t_p_s']:>10.1f}"
        f"  (min {r['t_p_min_s']:.1f}, max {r['t_p_max_s']:.1f})"
    )
    run_s = [x for x in r["run_s_per_partition"] if x is not None]
    if run_s:
        print(f"    run start..end {sum(run_s) / len(run_s):.1f} s mean")
    label = f"one run per partition x {r['partitions']}, PROJECTED"
    print(f"{label:<56}{r['partitions']:>6}{r['per_partition_total_projected_s']:>10.0f}")
    label = "same range, in-process run, ephemeral instance, measured"
    print(f"{label:<56}{1:>6}{r['t_in_process_ephemeral_s']:>10.1f}")
    label = "NO-OP assets, single run (--partition-range), measured"
    print(f"{label:<56}{r['runs_noop_single']:>6}{r['t_noop_single_s']:>10.1f}")
    if r["runs_noop_single"] == 1:
        _print_run(r["run_noop_single"])
    noop = r["noop_per_partition_s"]
    label = f"NO-OP assets, one run per partition, mean of {len(noop)} measured"
    print(f"{label:<56}{1:>6}{r['t_noop_p_s']:>10.1f}  (min {min(noop):.1f}, max {max(noop):.1f})")
    print(
        f"speedup (projected per-partition total / measured single run): "
        f"{r['speedup_projected']:.0f}x  [projected from {r['projected_from']}]"
    )
    print(
        f"vs the no-op floor: single run {r['single_vs_noop_single']:.2f}x the no-op single run "
        f"(Dagster's own cost is {r['noop_share_of_single']:.0%} of it); one partition "
        f"{r['per_partition_vs_noop']:.2f}x the no-op partition run "
        f"({r['noop_share_of_per_partition']:.0%}); no-op per-partition (projected) / no-op "
        f"single run {r['noop_speedup_projected']:.0f}x"
    )
    print(
        f"single run: {r['single_run_s_per_partition'] * 1000:.0f} ms per partition; rows "
        + ", ".join(f"{t} {n:,}" for t, n in r["rows"].items())
    )
    print(
        f"sampled partitions {', '.join(r['sampled_partitions'])}: written alone == backfill: "
        f"{r['rows_equal']} ({r['rows_checked']} rows compared over both tables)"
    )


if __name__ == "__main__":
    print_table(run())
