"""A small live world, built once per test session through the real assets: a synthetic
market with a planted hour-of-day signal that reverses on 2024-02-25 (labelled synthetic in
its source name), xgboost trained and promoted as of 2024-02-14 and refreshed as of
2024-02-21 on a 4-hour as-of grid retrained weekly, and the paper record of every day from
2024-02-12 to 2024-03-09."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pandas as pd

from clm_assets.definitions import build_definitions
from clm_assets.pipeline import materialize_days
from clm_assets.settings import Settings

SYMBOL = "BTC-USDT"
FLIP = pd.Timestamp("2024-02-25", tz="UTC")
AS_OFS = ("2024-02-14-00:00", "2024-02-21-00:00")
LIVE_FIRST, LIVE_LAST = pd.Timestamp("2024-02-12", tz="UTC"), pd.Timestamp("2024-03-09", tz="UTC")
GATES = {"CLM_GATE_LOOKBACK_DAYS": "14", "CLM_GATE_MIN_RECORD_DAYS": "6"}
"""A 7-day evaluation window must be record enough (the defaults ask for 90 days)."""


@dataclass(frozen=True)
class LiveWorld:
    settings: Settings
    instance: dg.DagsterInstance


def live_settings(db_path: Path, reports: Path) -> Settings:
    return Settings(
        source="synthetic",
        symbols=(SYMBOL,),
        start_date="2024-01-01",
        end_date="2024-03-10",
        synthetic_signal=0.3,
        synthetic_flip_at=FLIP.isoformat(),
        families=("xgboost",),
        train_days=20,
        eval_days=7,
        model_cron="0 */4 * * *",
        retrain_cron="0 0 * * 1",  # Mondays: the as-of ending 2024-03-10 (a Sunday) is not one
        model_params={"xgboost": {"n_estimators": 100, "max_depth": 2}},
        db_path=db_path,
        reports_dir=reports,
        lock_timeout_s=60.0,
    )


def build_live_world(root: Path, instance: dg.DagsterInstance) -> LiveWorld:
    settings = live_settings(root / "clm.duckdb", root / "reports")
    defs = train_world(settings, instance)
    materialize_days(
        defs, settings, ["monitoring/live_performance"], LIVE_FIRST, LIVE_LAST, instance
    )
    return LiveWorld(settings, instance)


def train_world(settings: Settings, instance: dg.DagsterInstance) -> dg.Definitions:
    """Bars and features of every day, then xgboost trained, evaluated and judged at each
    as-of of ``AS_OFS``: everything but the paper record."""
    defs = build_definitions(settings)
    materialize_days(
        defs,
        settings,
        ["market_data/raw_ohlcv", "features/features"],
        pd.Timestamp(settings.start_date, tz="UTC"),
        pd.Timestamp(settings.end_date, tz="UTC") - pd.Timedelta(days=1),
        instance,
    )
    job = defs.resolve_implicit_global_asset_job_def()
    models = [
        dg.AssetKey(["models", "xgboost"]),
        dg.AssetKey(["evaluation", "backtest_xgboost"]),
        dg.AssetKey(["promotion", "promoted_model"]),
    ]
    for as_of in AS_OFS:
        job.execute_in_process(
            instance=instance, partition_key=f"{as_of}|{SYMBOL}", asset_selection=models
        )
    return defs
