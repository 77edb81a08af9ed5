"""raw_ohlcv through real Dagster runs on a temporary DuckDB file."""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.assets.market_data.assets import SourceMismatchError
from clm_assets.definitions import build_definitions
from clm_assets.pipeline import range_tags
from clm_assets.settings import Settings
from clm_assets.sources.base import (
    ExchangeUnavailableError,
    OutOfRangeError,
    UnknownSymbolError,
)
from clm_assets.sources.synthetic import SyntheticSource
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize, synthetic_settings

RAW = "market_data/raw_ohlcv"
DAY = pd.Timedelta(days=1)


def _raw(settings: Settings) -> pd.DataFrame:
    return DuckDBStore(settings.db_path).query(
        "SELECT * FROM market_data.raw_ohlcv ORDER BY symbol, open_time"
    )


def _run(settings: Settings, first: str, last: str, instance: dg.DagsterInstance):
    return materialize(settings, [RAW], first, last, instance)


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
        got = stored[stored["symbol"] == symbol].drop(columns=["symbol", "source"])
        got = got.reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected)

    materializations = result.asset_materializations_for_node("market_data__raw_ohlcv")
    assert len(materializations) == 6
    for materialization in materializations:  # each day × symbol shows its own bars
        meta = materialization.metadata
        day = str(materialization.partition).split("|")[0]
        assert meta["rows_written"].value == 24
        assert meta["first_bar"].value == f"{day}T00:00:00+00:00"
        assert meta["last_bar"].value == f"{day}T23:00:00+00:00"
        assert meta["missing_bars"].value == 0
        assert meta["step_rows"].value == 144  # the whole step, named as such
        assert meta["step_repairs"].value == 0
        assert meta["source"].value == "synthetic:seed=7"
        assert "| open_time" in meta["preview"].value
    assert set(stored["source"]) == {"synthetic:seed=7"}
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


FEATURES = "features/features"


def test_candles_valid_checks_what_is_stored_and_blocks_features(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    settings = synthetic_settings(tmp_path / "clm.duckdb", start_date="2024-03-01")
    first = _run(settings, "2024-03-01", "2024-03-02", instance)
    assert {e.check_name: e.passed for e in first.get_asset_check_evaluations()} == {
        "candles_valid": True,
        "no_missing_bars": True,
    }
    # What is stored stops being what the step wrote: one bar's high is pushed below its
    # low, one bar of another partition disappears.
    store = DuckDBStore(settings.db_path)
    with store.connect() as conn:
        conn.execute(
            "UPDATE market_data.raw_ohlcv SET high = low * 0.5 "
            "WHERE symbol = 'BTC-USDT' AND open_time = '2024-03-02 05:00:00'"
        )
        conn.execute(
            "DELETE FROM market_data.raw_ohlcv "
            "WHERE symbol = 'ETH-USDT' AND open_time = '2024-03-02 07:00:00'"
        )
    # A run of the check (alone, without re-materializing raw_ohlcv) and of features.
    job = dg.define_asset_job(
        "check_then_features",
        selection=dg.AssetSelection.assets(dg.AssetKey.from_user_string(FEATURES))
        | dg.AssetSelection.checks(
            dg.AssetCheckKey(dg.AssetKey.from_user_string(RAW), "candles_valid")
        ),
    )
    defs = dg.Definitions.merge(build_definitions(settings), dg.Definitions(jobs=[job]))
    day = pd.Timestamp("2024-03-02", tz="UTC")
    result = defs.resolve_job_def("check_then_features").execute_in_process(
        instance=instance, tags=range_tags(settings, day, day), raise_on_error=False
    )
    assert not result.success
    (evaluation,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "candles_valid"
    ]
    assert not evaluation.passed
    bad = evaluation.metadata["violations"].value
    assert bad == {
        "2024-03-02|BTC-USDT": {"ohlc_violations": 1},
        "2024-03-02|ETH-USDT": {"row_count_mismatch": 1},
    }
    assert result.asset_materializations_for_node("features__features") == []
    assert not store.table_exists("features", "features")


def test_writing_bars_of_another_source_is_refused(
    tmp_path: Path, instance: dg.DagsterInstance
) -> None:
    db = tmp_path / "clm.duckdb"
    _run(synthetic_settings(db), "2024-03-01", "2024-03-01", instance)
    before = _raw(synthetic_settings(db))
    other = synthetic_settings(db, synthetic_seed=8)
    with pytest.raises(SourceMismatchError) as err:
        _run(other, "2024-03-02", "2024-03-02", instance)
    message = str(err.value)
    assert "synthetic:seed=7" in message and "synthetic:seed=8" in message
    assert str(db) in message
    pd.testing.assert_frame_equal(_raw(other), before)
