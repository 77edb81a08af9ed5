"""A Binance-format exchange on loopback and a deployment reading it into a temporary
DuckDB file, with a stored history to damage."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize, synthetic_settings
from clm_assets_tests.sources.binance_server import BinanceServer

RAW = "market_data/raw_ohlcv"
SYMBOL, PAIR = "BTC-USDT", "BTCUSDT"
STORED = ("2024-01-01", "2024-01-10")
"""What the deployment had stored before the fault."""
FIRST, LAST = "2024-01-01", "2024-02-14"
"""The range a run fetches under the fault: 1080 hourly bars, two pages of 1000."""


@pytest.fixture(scope="module")
def exchange() -> Iterator[BinanceServer]:
    with BinanceServer(seed=7) as server:
        yield server


def exchange_settings(db: Path, exchange: BinanceServer, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "source": "exchange",
        "exchange_url": exchange.api_url,
        "symbols": (SYMBOL,),
        "end_date": "2024-03-01",
        **overrides,
    }
    return synthetic_settings(db, **values)


@pytest.fixture(scope="module")
def history(exchange: BinanceServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DuckDB file holding the first ten days, fetched without faults."""
    db = tmp_path_factory.mktemp("history") / "clm.duckdb"
    materialize(exchange_settings(db, exchange), [RAW], *STORED)
    return db


@pytest.fixture
def deployment(exchange: BinanceServer, history: Path, tmp_path: Path) -> Settings:
    """A copy of the history, so that each fault starts from the same stored bars."""
    exchange.requests.clear()
    shutil.copy(history, tmp_path / "clm.duckdb")
    return exchange_settings(tmp_path / "clm.duckdb", exchange, exchange_max_retries=2)


def stored(settings: Settings) -> pd.DataFrame:
    return DuckDBStore(settings.db_path).query(
        "SELECT * FROM market_data.raw_ohlcv ORDER BY symbol, open_time"
    )


def servers_bars(exchange: BinanceServer, first: str, last: str) -> pd.DataFrame:
    """The exchange's own rows for days ``[first, last]`` as stored columns: the truth."""
    start = pd.Timestamp(first, tz="UTC")
    end = pd.Timestamp(last, tz="UTC") + pd.Timedelta(days=1)
    rows = exchange.rows(PAIR, "1h", start.value // 10**6, end.value // 10**6)
    return pd.DataFrame(
        {
            "open_time": pd.to_datetime([r[0] for r in rows], unit="ms", utc=True),
            **{c: [float(r[i]) for r in rows] for c, i in (("open", 1), ("high", 2))},
            **{c: [float(r[i]) for r in rows] for c, i in (("low", 3), ("close", 4))},
            "volume": [float(r[5]) for r in rows],
        }
    )


def run(settings: Settings, first: str = FIRST, last: str = LAST) -> dg.ExecuteInProcessResult:
    with dg.DagsterInstance.ephemeral() as instance:
        return materialize(settings, [RAW], first, last, instance)


@pytest.fixture
def world_copy(live_world, tmp_path: Path) -> Settings:
    """The session's live world (xgboost in production for BTC-USDT), copied: damage here
    reaches no other test."""
    db = tmp_path / "clm.duckdb"
    shutil.copy(live_world.settings.db_path, db)
    return dataclasses.replace(live_world.settings, db_path=db, reports_dir=tmp_path)
