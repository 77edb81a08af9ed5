"""The data_freshness sensor through ``evaluate_tick`` against a real instance and store:
nothing new -> skip; new bars -> exactly the days behind; the same bars again after they
landed -> skip; a source outage or a locked store -> skip with the reason."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clm_assets.definitions import build_definitions
from clm_assets.resources.market_data import MarketDataResource
from clm_assets.sensors.freshness import newest_stored_bars
from clm_assets.settings import Settings
from clm_assets.sources.freshness import DAY, days_to_refresh
from clm_assets.sources.intervals import INTERVALS
from clm_assets_tests.conftest import materialize, partition_metadata, synthetic_settings


@pytest.fixture
def today() -> pd.Timestamp:
    """Taken when the test starts, not at collection: the sensors read the clock too."""
    return pd.Timestamp.now(tz="UTC").floor("D")


SYNTHETIC = MarketDataResource(source="synthetic", synthetic_seed=7)


def _settings(tmp_path: Path, today: pd.Timestamp) -> Settings:
    return synthetic_settings(
        tmp_path / "clm.duckdb", start_date=f"{today - 8 * DAY:%Y-%m-%d}", end_date=None
    )


def _stored_until(
    tmp_path: Path, instance: dg.DagsterInstance, today: pd.Timestamp, last: pd.Timestamp
) -> Settings:
    """Settings whose raw bars are stored from the first partition through day ``last``."""
    settings = _settings(tmp_path, today)
    first = f"{today - 8 * DAY:%Y-%m-%d}"
    materialize(settings, ["market_data/raw_ohlcv"], first, f"{last:%Y-%m-%d}", instance)
    return settings


def _tick(settings: Settings, instance: dg.DagsterInstance, market_data=SYNTHETIC):
    defs = build_definitions(settings)
    sensor = defs.get_sensor_def("data_freshness")
    context = dg.build_sensor_context(
        instance=instance, resources={"market_data": market_data}, definitions=defs
    )
    return sensor.evaluate_tick(context)


def test_nothing_stored_is_a_skip_not_a_backfill(
    tmp_path: Path, instance, today: pd.Timestamp
) -> None:
    tick = _tick(_settings(tmp_path, today), instance)
    assert tick.run_requests == []
    assert "BTC-USDT: nothing stored yet; backfill its history first" in tick.skip_message


def test_new_bars_request_exactly_the_days_behind_then_nothing(
    tmp_path: Path, instance, today: pd.Timestamp
) -> None:
    last_stored = today - 4 * DAY
    settings = _stored_until(tmp_path, instance, today, last_stored)
    tick = _tick(settings, instance)
    assert len(tick.run_requests) == 2
    for request, symbol in zip(tick.run_requests, settings.symbols, strict=True):
        newest = pd.Timestamp(request.tags["clm/newest_source_bar"])
        assert newest + INTERVALS["1h"] <= pd.Timestamp.now(tz="UTC")  # a closed bar
        # days behind: the complete days after the stored ones and today as far as its bars
        # have closed; the day before them is recomputed for its labels (a 4-bar horizon
        # looks one day ahead)
        assert request.tags["dagster/asset_partition_range_start"] == (
            f"{last_stored:%Y-%m-%d}|{symbol}"
        )
        assert request.tags["dagster/asset_partition_range_end"] == (f"{newest:%Y-%m-%d}|{symbol}")
        assert request.run_key.endswith(newest.isoformat())
    # What the sensor asked for, run as asked: afterwards it has nothing to request.
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    for request in tick.run_requests:
        job.execute_in_process(
            instance=instance, asset_selection=request.asset_selection, tags=request.tags
        )
    again = _tick(settings, instance)
    for request in again.run_requests:  # only when a bar closed meanwhile (hour boundary)
        assert (
            request.tags["clm/newest_stored_bar"]
            == tick.run_requests[0].tags["clm/newest_source_bar"]
        )
    if not again.run_requests:
        assert again.skip_message.count("up to date") == 2


def test_today_stores_only_its_closed_bars_and_says_how_many_are_to_come(
    tmp_path: Path, instance, today: pd.Timestamp
) -> None:
    settings = _settings(tmp_path, today)
    day = f"{today:%Y-%m-%d}"
    metadata = partition_metadata(settings, "market_data/raw_ohlcv", day, day)
    now = pd.Timestamp.now(tz="UTC")
    stored = newest_stored_bars(settings)
    for symbol in settings.symbols:
        assert stored[symbol] + INTERVALS["1h"] <= now  # closed
        meta = metadata[f"{day}|{symbol}"]
        assert meta["rows_written"].value + meta["bars_not_closed_yet"].value == 24
        assert meta["missing_bars"].value == 0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_source_outage_is_a_skip_with_the_reason(
    tmp_path: Path, instance, today: pd.Timestamp
) -> None:
    settings = _stored_until(tmp_path, instance, today, today - 6 * DAY)
    down = MarketDataResource(
        source="exchange",
        exchange_url=f"http://127.0.0.1:{_closed_port()}",
        exchange_max_retries=0,
    )
    tick = _tick(settings, instance, down)
    assert tick.run_requests == []
    assert "BTC-USDT: source failed" in tick.skip_message
    assert "ETH-USDT: source failed" in tick.skip_message


def test_a_store_locked_by_a_writer_is_a_skip_not_a_wait(
    tmp_path: Path, instance, today: pd.Timestamp
) -> None:
    settings = _stored_until(tmp_path, instance, today, today - 6 * DAY)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('locked', flush=True); time.sleep(60)", str(settings.db_path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        started = time.monotonic()
        tick = _tick(settings, instance)
        assert time.monotonic() - started < 30
    finally:
        holder.kill()
        holder.wait()
    assert tick.run_requests == []
    assert tick.skip_message.startswith("store not readable")


@given(
    stored_hours=st.integers(0, 24 * 30),
    lag_hours=st.integers(-48, 24 * 10),
)
def test_days_to_refresh_run_from_the_unfinished_stored_day_to_the_newest_source_day(
    stored_hours: int, lag_hours: int
) -> None:
    first_day = pd.Timestamp("2024-01-01", tz="UTC")
    stored = first_day + pd.Timedelta(hours=stored_hours)
    source = stored + pd.Timedelta(hours=lag_hours)
    days = days_to_refresh(stored, source, "1h", first_day, None)
    assert all(b - a == DAY for a, b in itertools.pairwise(days))
    if source <= stored:
        assert days == []
        return
    assert days[-1] == source.floor("D")  # through today, as far as its bars closed
    complete = stored.hour == 23  # the stored day has all its bars
    assert days[0] == stored.floor("D") + (DAY if complete else pd.Timedelta(0))
