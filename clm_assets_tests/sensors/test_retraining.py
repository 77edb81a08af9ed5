"""The scheduled_retraining sensor through ``evaluate_tick``: an ended as-of is requested
once its features are stored, per symbol, with the partition as run key; before that the
tick says what it waits for."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.definitions import build_definitions
from clm_assets.registry.decisions import NO_CHAMPION, Decision
from clm_assets.registry.promotion import apply
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.sensors.retraining import retraining_tick
from clm_assets.settings import Settings
from clm_assets.sources.freshness import DAY
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize, synthetic_settings


@pytest.fixture
def today() -> pd.Timestamp:
    """Taken when the test starts, not at collection: the sensors read the clock too."""
    return pd.Timestamp.now(tz="UTC").floor("D")


def _settings(tmp_path: Path, today: pd.Timestamp, **kw: object) -> Settings:
    return synthetic_settings(
        tmp_path / "clm.duckdb", start_date=f"{today - 8 * DAY:%Y-%m-%d}", end_date=None, **kw
    )


def _tick(settings: Settings, instance: dg.DagsterInstance):
    defs = build_definitions(settings)
    context = dg.build_sensor_context(
        instance=instance,
        definitions=defs,
        resources={"market_data": MarketDataResource(source="synthetic")},
    )
    return defs.get_sensor_def("scheduled_retraining").evaluate_tick(context)


def _store_features(settings: Settings, instance, last: pd.Timestamp, today: pd.Timestamp) -> None:
    first = f"{today - 8 * DAY:%Y-%m-%d}"
    materialize(settings, ["market_data/raw_ohlcv"], first, f"{last:%Y-%m-%d}", instance)
    materialize(settings, ["features/features"], first, f"{last:%Y-%m-%d}", instance)


def test_the_ended_as_of_waits_for_its_features_then_is_requested_once_per_symbol(
    tmp_path: Path, instance: dg.DagsterInstance, today: pd.Timestamp
) -> None:
    settings = _settings(tmp_path, today)
    yesterday = today - DAY
    _store_features(settings, instance, today - 2 * DAY, today)
    waiting = _tick(settings, instance)
    assert waiting.run_requests == []
    assert f"{yesterday:%Y-%m-%d}|BTC-USDT: waiting for features up to" in waiting.skip_message

    _store_features(settings, instance, yesterday, today)
    tick = _tick(settings, instance)
    keys = [r.partition_key for r in tick.run_requests]
    assert keys == [f"{yesterday:%Y-%m-%d}|BTC-USDT", f"{yesterday:%Y-%m-%d}|ETH-USDT"]
    assert [r.run_key for r in tick.run_requests] == [f"retrain|{k}" for k in keys]
    assert {r.tags["clm/trigger"] for r in tick.run_requests} == {"scheduled_retraining"}


def test_an_as_of_older_than_the_newest_decision_is_not_requested(
    tmp_path: Path, instance: dg.DagsterInstance, today: pd.Timestamp
) -> None:
    """A deployment bootstrapped with a decision newer than the last retrain time (``make
    live`` decides as of its start): retraining the older as-of could only fail, since the
    registry refuses to rewrite newer history."""
    settings = _settings(tmp_path, today)
    yesterday = today - DAY
    _store_features(settings, instance, yesterday, today)
    decided = Decision(
        decision_id="bootstrap",
        symbol="BTC-USDT",
        as_of=today,
        decided_at=today,
        action=NO_CHAMPION,
        champion=None,
        previous=None,
        reason="decided as of today by the bootstrap",
    )
    store = DuckDBStore(settings.db_path)
    with store.connect() as conn:
        apply(conn, decided)

    requests, reasons = retraining_tick(settings, today + pd.Timedelta(minutes=5))
    assert [r.partition_key for r in requests] == [f"{yesterday:%Y-%m-%d}|ETH-USDT"]
    assert reasons == [
        f"{yesterday:%Y-%m-%d}|BTC-USDT: as-of {today} is already decided; retraining the "
        f"older as-of {yesterday} would rewrite newer history"
    ]


def test_a_sub_daily_cadence_requests_the_window_that_just_ended(
    tmp_path: Path, today: pd.Timestamp
) -> None:
    settings = _settings(tmp_path, today, model_cron="0 */6 * * *")
    requests, reasons = retraining_tick(settings, today + pd.Timedelta(hours=13, minutes=5))
    # nothing stored: the 06:00-12:00 window (as-of key 06:00) waits for its features
    assert requests == []
    reason = "; ".join(reasons)
    assert f"{today:%Y-%m-%d}-06:00|BTC-USDT: waiting for features up to " in reason
    assert f"{today + pd.Timedelta(hours=11)}" in reason


def test_partitions_that_have_ended_for_good_train_nothing(
    tmp_path: Path, today: pd.Timestamp
) -> None:
    settings = Settings(db_path=tmp_path / "clm.duckdb")  # the bundled sample ends 2019-01-01
    requests, reasons = retraining_tick(settings, today)
    assert requests == []
    assert reasons == ["the as-of partitions end 2019-01-01; nothing new to train"]
