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
   same partitions (raw_ohlcv and features, exact frame equality); a mismatch raises.

Both sides are CLI processes, so both pay the same process start and code loading.
``python benchmarks/bench_backfill.py`` prints a table.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd

from clm_assets.storage.duckdb_store import DuckDBStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SELECTION = ("market_data/raw_ohlcv", "features/features")
TABLES = ("market_data.raw_ohlcv", "features.features")
SYMBOLS = ("BTC-USDT", "ETH-USDT")
FIRST = pd.Timestamp("2024-01-01")

TARGETS = [
    ("single-run backfill is 1 run", "runs_single", "==", 1),
    ("per-partition runs (projected) / single run >= 100x", "speedup_projected", ">=", 100.0),
    ("partitions written alone equal the backfill", "rows_equal", "==", True),
]


def _env(tmp: Path, name: str, db: Path, days: int) -> dict[str, str]:
    home = tmp / f"home_{name}"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLM_")}
    return {
        **env,
        "DAGSTER_HOME": str(home),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": ",".join(SYMBOLS),
        "CLM_INTERVAL": "1h",
        "CLM_START_DATE": f"{FIRST:%Y-%m-%d}",
        "CLM_END_DATE": f"{FIRST + pd.Timedelta(days=days):%Y-%m-%d}",
        "CLM_DB_PATH": str(db),
    }


def _materialize(env: dict[str, str], *partition_args: str) -> float:
    cmd = [
        str(BIN / "dagster"), "asset", "materialize", "-m", "clm_assets.definitions",
        "--select", ",".join(SELECTION), *partition_args,
    ]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
    return seconds


def _runs(home: str) -> list[str]:
    with dg.DagsterInstance.from_config(home) as instance:
        return [r.dagster_run.status.value for r in instance.get_run_records()]


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
        t_single = _materialize(
            env,
            "--partition-range",
            f"{FIRST:%Y-%m-%d}|{SYMBOLS[0]}...{last:%Y-%m-%d}|{SYMBOLS[-1]}",
        )
        single_runs = _runs(env["DAGSTER_HOME"])
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
            _materialize(env_alone, "--partition", f"{day}|{symbol}") for day, symbol in picks
        ]
        alone_runs = _runs(env_alone["DAGSTER_HOME"])

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
    projected = t_p * partitions
    result = {
        "days": days,
        "symbols": len(SYMBOLS),
        "partitions": partitions,
        "t_single_s": t_single,
        "runs_single": len(single_runs),
        "run_statuses_single": single_runs,
        "rows": rows,
        "k": k,
        "sampled_partitions": [f"{d}|{s}" for d, s in picks],
        "per_partition_s": per_partition,
        "runs_per_partition": len(alone_runs),
        "run_statuses_per_partition": alone_runs,
        "t_p_s": t_p,
        "t_p_min_s": min(per_partition),
        "t_p_max_s": max(per_partition),
        "per_partition_total_projected_s": projected,
        "projected_from": f"mean of {k} measured per-partition CLI runs x {partitions} partitions",
        "speedup_projected": projected / t_single,
        "single_run_s_per_partition": t_single / partitions,
        "rows_equal": equal,
        "rows_checked": checked_rows,
    }
    if not equal:
        raise AssertionError(
            "partitions materialized alone differ from the backfill:\n" + "\n".join(mismatches)
        )
    return result


def print_table(r: dict) -> None:
    print(
        f"backfill of raw_ohlcv + features: {r['days']} days x {r['symbols']} symbols = "
        f"{r['partitions']} partitions, synthetic 1h, CLI, sqlite instance"
    )
    print(f"{'policy':<52}{'runs':>6}{'seconds':>11}")
    print(f"{'single run (--partition-range), measured':<52}{r['runs_single']:>6}"
          f"{r['t_single_s']:>11.1f}")  # fmt: skip
    label = f"one run per partition, mean of {r['k']} measured"
    print(
        f"{label:<52}{1:>6}{r['t_p_s']:>11.1f}"
        f"   (min {r['t_p_min_s']:.1f}, max {r['t_p_max_s']:.1f})"
    )
    print(
        f"{'one run per partition x ' + str(r['partitions']) + ', PROJECTED':<52}"
        f"{r['partitions']:>6}{r['per_partition_total_projected_s']:>11.0f}"
    )
    print(
        f"speedup (projected per-partition total / measured single run): "
        f"{r['speedup_projected']:.0f}x  [projected from {r['projected_from']}]"
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
