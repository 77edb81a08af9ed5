"""Reading an evaluation window (features with model history, and the traded bars)."""

import math

import pandas as pd

from clm_assets.assets.runs import require_days
from clm_assets.backtest.evaluate import Evaluation, evaluate
from clm_assets.features.schema import KEY_COLUMNS
from clm_assets.models.artifact import ModelArtifact
from clm_assets.models.windows import Windows
from clm_assets.settings import Settings
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice

CONTEXT_BARS = 512
"""History loaded before a window: sequence models read their input window from it."""


def context_days(bar: pd.Timedelta) -> int:
    return math.ceil(CONTEXT_BARS * bar / pd.Timedelta(days=1))


def read_window(
    store: DuckDBStore,
    symbol: str,
    start: pd.Timestamp,
    end: pd.Timestamp,
    bar: pd.Timedelta,
    consumer: str,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Features of ``[start - context, end)`` and raw bars of ``[start, end)``.

    Every day of the window itself must exist; history days are used where they exist
    (the first partitions of a source have less).
    """
    history = start - context_days(bar) * pd.Timedelta(days=1)
    order = [f'"{c}"' for c in KEY_COLUMNS]
    features = store.read(_slice("features", "features", symbol, history, end), order_by=order)
    bars = store.read(
        _slice("market_data", "raw_ohlcv", symbol, start, end),
        columns=["open_time", "open", "close"],
        order_by=['"open_time"'],
    )
    inside = features[features["open_time"] >= start]
    require_days(inside, symbol, start, end, f"{consumer} (features)")
    require_days(bars, symbol, start, end, f"{consumer} (raw_ohlcv)")
    return features, bars


def _slice(schema: str, table: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp):
    return TableSlice(schema, table, (SliceCell((("symbol", symbol),), "open_time", start, end),))


def evaluate_on_window(
    store: DuckDBStore, settings: Settings, artifact: ModelArtifact, wins: Windows, consumer: str
) -> Evaluation:
    """The stored model replayed on the evaluation window with the deployment's costs."""
    bar = interval_delta(settings.interval)
    features, bars = read_window(
        store, artifact.symbol, wins.eval_start, wins.eval_end, bar, consumer
    )
    return evaluate(
        artifact.load(),
        features,
        bars,
        wins.eval_start,
        wins.eval_end,
        settings.interval,
        fee_bps=settings.fee_bps,
        slippage_bps=settings.slippage_bps,
        long_only=settings.long_only,
    )
