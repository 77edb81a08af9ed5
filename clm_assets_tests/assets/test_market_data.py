"""raw_ohlcv through real Dagster runs on a temporary DuckDB file."""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.definitions import build_definitions
from clm_assets.pipeline import materialize_days
from clm_assets.settings import Settings
from clm_assets.sources.base import (
    ExchangeUnavailableError,
    OutOfRangeError,
    UnknownSymbolError,
)
from clm_assets.sources.synthetic import SyntheticSource
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import synthetic_settings

RAW = "market_data/raw_ohlcv"
DAY = pd.Timedelta(days=1)


def _raw(settings: Settings) -> pd.DataFrame:
    return DuckDBStore(settings.db_path).query(
        "SELECT * FROM market_data.raw_ohlcv ORDER BY symbol, open_time"
    )


def _run(settings: Settings, first: str, last: str, instance: dg.DagsterInstance):
    return materialize_days(
        build_definitions(settings),
        settings,
        [RAW],
        pd.Timestamp(first, tz="UTC"),
        pd.Timestamp(last, tz="UTC"),
        instance,
    )


def test_stores_the_sources_bars_once_per_partition(
    synthetic: Settings, instance: dg.DagsterInstance
) -> None:
    result = _run(synthetic, "2024-03-01", "2024-03-03", instance)
    stored = _raw(synthetic)
    assert len(stored) == 3 * 24 * 2
    source = SyntheticSource(seed=synthetic.synthetic_seed)
    for symbol in synthetic.symbols:
        expected = source.fetch(
            symbol, "1h", pd.Timestamp("2024-03-01", tz="UTC"), pd.Timestamp("2024-03-04", tz="UTC")
        )
        got = stored[stored["symbol"] == symbol].drop(columns="symbol").reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)

    materialization = result.asset_materializations_for_node("market_data__raw_ohlcv")[0]
    meta = materialization.metadata
    assert meta["rows"].value == 144
    assert meta["missing_bars"].value == 0
    assert meta["repairs"].value == 0
    assert "| open_time" in meta["preview"].value
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"candles_valid": True, "no_missing_bars": True}

    # Re-materializing one partition replaces it: same rows, no duplicates.
    _run(synthetic, "2024-03-02", "2024-03-02", instance)
    again = _raw(synthetic)
    pd.testing.assert_frame_equal(again, stored)
    assert not again.duplicated(["symbol", "open_time"]).any()


def test_unknown_symbol_fails_and_keeps_other_partitions(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = Settings(symbols=("BTC-USD", "ETH-USD"), db_path=tmp_path / "clm.duckdb")
    defs = build_definitions(settings)
    job = defs.resolve_implicit_global_asset_job_def()
    job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey.from_user_string(RAW)],
        partition_key="2018-06-01|BTC-USD",
    )
    before = _raw(settings)
    with pytest.raises(UnknownSymbolError, match="ETH-USD"):
        job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(RAW)],
            partition_key="2018-06-01|ETH-USD",
        )
    pd.testing.assert_frame_equal(_raw(settings), before)
    assert set(before["symbol"]) == {"BTC-USD"}


def test_day_outside_the_sample_is_an_error_and_writes_nothing(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = Settings(end_date="2019-02-01", db_path=tmp_path / "clm.duckdb")
    _run(settings, "2018-12-30", "2018-12-31", instance)
    before = _raw(settings)
    with pytest.raises(OutOfRangeError, match="2019-01-05"):
        _run(settings, "2019-01-05", "2019-01-05", instance)
    pd.testing.assert_frame_equal(_raw(settings), before)


def test_unreachable_exchange_is_a_clear_error(tmp_path: Path, instance) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = synthetic_settings(
        tmp_path / "clm.duckdb",
        source="exchange",
        exchange_url=f"http://127.0.0.1:{port}/api/v3",
        exchange_max_retries=0,
    )
    with pytest.raises(ExchangeUnavailableError, match="binance"):
        _run(settings, "2024-03-01", "2024-03-01", instance)
    assert not DuckDBStore(settings.db_path).table_exists("market_data", "raw_ohlcv")
