"""``make demo``: the whole pipeline, offline, on the bundled real BTC-USD sample.

Runs through the real Dagster definitions on the persistent instance (``DAGSTER_HOME``),
so ``make ui`` shows the demo's runs, partitions and metadata afterwards. Every number
printed is read back from what the runs stored.
"""

from __future__ import annotations

import os
import time

import dagster as dg
import pandas as pd

from clm_assets.assets.features.assets import warmup_days
from clm_assets.assets.training.assets import lookback_days
from clm_assets.definitions import build_definitions
from clm_assets.features.indicators import FEATURE_NAMES
from clm_assets.numbers import fmt_number
from clm_assets.pipeline import materialize_days
from clm_assets.registry.evaluations import evaluation
from clm_assets.registry.promotion import champion, history
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore

DAY = pd.Timedelta(days=1)
COLUMNS = (
    ("total_return", "return"),
    ("sharpe", "Sharpe"),
    ("sortino", "Sortino"),
    ("max_drawdown", "max DD"),
    ("win_rate", "win rate"),
    ("profit_factor", "PF"),
    ("trade_count", "trades"),
    ("psr", "PSR"),
    ("accuracy", "accuracy"),
)


def run_demo(days: int = 90) -> int:
    settings = Settings.from_env({**os.environ, "CLM_SOURCE": "sample"})
    defs = build_definitions(settings)
    as_of = pd.Timestamp(settings.end_date, tz="UTC") - DAY
    features_first = as_of - (lookback_days(settings) - 1) * DAY
    raw_first = features_first - warmup_days(settings.interval) * DAY
    home = os.environ.get("DAGSTER_HOME")
    instance = dg.DagsterInstance.get() if home else dg.DagsterInstance.ephemeral()
    print(f"clm demo: bundled Coinbase BTC-USD {settings.interval} sample, offline")
    print(f"  DuckDB {settings.db_path}; Dagster instance {home or '(ephemeral)'}\n")

    def stage(selection: list[str], first: pd.Timestamp) -> float:
        started = time.perf_counter()
        materialize_days(defs, settings, selection, first, as_of, instance)
        return time.perf_counter() - started

    timings = {
        "market_data/raw_ohlcv": stage(["market_data/raw_ohlcv"], raw_first),
        "features/features": stage(["features/features"], features_first),
    }
    _print_data(DuckDBStore(settings.db_path), timings, features_first, as_of, days, settings)
    train_s = stage([f"models/{f}" for f in settings.families], as_of)
    eval_s = stage(
        [f"evaluation/backtest_{f}" for f in settings.families] + ["promotion/promoted_model"],
        as_of,
    )
    _print_models(DuckDBStore(settings.db_path), settings, as_of, train_s, eval_s)
    return 0


def _print_data(store, timings, features_first, as_of, days, settings) -> None:
    summary = store.query(
        "SELECT 'market_data/raw_ohlcv' AS asset, count(DISTINCT date_trunc('day', open_time)) "
        "AS partitions, count(*) AS rows, min(open_time) AS first, max(open_time) AS last "
        "FROM market_data.raw_ohlcv UNION ALL "
        "SELECT 'features/features', count(DISTINCT date_trunc('day', open_time)), count(*), "
        "min(open_time), max(open_time) FROM features.features ORDER BY asset DESC"
    )
    print(
        f"{'asset':<24}{'partitions':>11}{'rows':>8}  {'first bar':<27}{'last bar':<27}{'time':>7}"
    )
    for row in summary.itertuples(index=False):
        print(
            f"{row.asset:<24}{row.partitions:>11}{row.rows:>8}  {row.first!s:<27}"
            f"{row.last!s:<27}{timings[row.asset]:>6.1f}s"
        )
    recent = store.query(
        "SELECT count(*) AS n FROM features.features WHERE open_time >= ?",
        [(as_of - (days - 1) * DAY).tz_localize(None).to_pydatetime()],
    ).iloc[0]["n"]
    print(
        f"features: {len(FEATURE_NAMES)} per bar + 2 labels (horizon {settings.label_horizon} "
        f"bars); the sample's last {days} days hold {recent} feature rows\n"
    )


def _print_models(store, settings, as_of, train_s, eval_s) -> None:
    versions = store.query(
        "SELECT family, rows, size_bytes, train_seconds FROM registry.model_versions "
        "WHERE as_of = ?",
        [as_of.tz_localize(None).to_pydatetime()],
    ).set_index("family")
    print(
        f"models as of {as_of:%Y-%m-%d}: trained in {train_s:.0f} s, backtested and promoted "
        f"in {eval_s:.0f} s"
    )
    head = f"{'':<14}{'train s':>8}{'MB':>7}" + "".join(f"{t:>10}" for _, t in COLUMNS)
    print(head)
    paths, bh = [], None
    with store.connect() as conn:
        for family in settings.families:
            ev = evaluation(conn, family, "BTC-USD", as_of)
            if ev is None:
                print(f"{family:<14}  no evaluation recorded")
                continue
            m, v = ev["metrics"], versions.loc[family]
            print(
                f"{family:<14}{fmt_number(v.train_seconds, 3):>8}{v.size_bytes / 1e6:>7.2f}"
                + "".join(f"{fmt_number(m.get(k), 3):>10}" for k, _ in COLUMNS)
            )
            paths.append((family, ev["tearsheet_path"]))
            bh = m
        if bh is not None:
            print(
                f"{'buy & hold':<14}{'':>15}"
                + "".join(f"{fmt_number(bh.get('bh_' + k), 3):>10}" for k, _ in COLUMNS)
            )
        champ = champion(conn, "BTC-USD")
        last = history(conn, "BTC-USD").iloc[-1]
    window = f"{settings.eval_days} days before {as_of + DAY:%Y-%m-%d}"
    print(f"(out-of-sample window: the {window}; {settings.fee_bps:g} bps fees)\n")
    print(f"promotion: {last['action']}; champion: {champ.label if champ else 'none'}")
    print(f"  {last['reason']}\n")
    print("tearsheets:")
    for family, path in paths:
        print(f"  {family:<10} {path}")
