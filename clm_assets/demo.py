"""``make demo``: the whole pipeline, offline, on the bundled real BTC-USD sample.

Runs through the real Dagster definitions on the persistent instance (``DAGSTER_HOME``),
so ``make ui`` shows the demo's runs, partitions and metadata afterwards.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import pandas as pd

from clm_assets.assets.features.assets import warmup_days
from clm_assets.definitions import build_definitions
from clm_assets.features.indicators import FEATURE_NAMES
from clm_assets.pipeline import materialize_days
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore


def run_demo(days: int = 90) -> int:
    settings = Settings.from_env({**os.environ, "CLM_SOURCE": "sample"})
    defs = build_definitions(settings)
    last_day = pd.Timestamp(settings.end_date, tz="UTC") - pd.Timedelta(days=1)
    first_day = last_day - pd.Timedelta(days=days - 1)
    raw_first = first_day - pd.Timedelta(days=warmup_days(settings.interval))
    instance = (
        dg.DagsterInstance.get()
        if os.environ.get("DAGSTER_HOME")
        else dg.DagsterInstance.ephemeral()
    )

    print(
        f"clm demo: source=sample symbols={','.join(settings.symbols)} interval={settings.interval}"
    )
    print(f"  DuckDB: {settings.db_path}")
    timings = {}
    t0 = time.perf_counter()
    materialize_days(
        defs,
        settings,
        ["market_data/raw_ohlcv"],
        raw_first,
        last_day + pd.Timedelta(days=0),
        instance,
    )
    timings["raw_ohlcv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    materialize_days(defs, settings, ["features/features"], first_day, last_day, instance)
    timings["features"] = time.perf_counter() - t0

    store = DuckDBStore(settings.db_path, settings.lock_timeout_s)
    raw = store.query(
        "SELECT count(*) AS rows, count(DISTINCT date_trunc('day', open_time)) AS days, "
        "min(open_time) AS first, max(open_time) AS last FROM market_data.raw_ohlcv"
    ).iloc[0]
    feats = store.query(
        "SELECT count(*) AS rows, count(DISTINCT date_trunc('day', open_time)) AS days, "
        "min(open_time) AS first, max(open_time) AS last FROM features.features "
        "WHERE open_time >= ? AND open_time < ?",
        [
            first_day.tz_localize(None).to_pydatetime(),
            (last_day + pd.Timedelta(days=1)).tz_localize(None).to_pydatetime(),
        ],
    ).iloc[0]
    print()
    print(
        f"{'asset':<22}{'partitions':>11}{'rows':>9}  {'first bar':<26}{'last bar':<26}{'time':>7}"
    )
    for name, row in (("market_data/raw_ohlcv", raw), ("features/features", feats)):
        secs = timings[name.split("/")[1]]
        print(
            f"{name:<22}{int(row['days']):>11}{int(row['rows']):>9}  {row['first']!s:<26}{row['last']!s:<26}{secs:>6.1f}s"
        )
    print(
        f"\nfeatures per bar: {len(FEATURE_NAMES)} (+ 2 labels, horizon {settings.label_horizon} bars)"
    )
    return 0
