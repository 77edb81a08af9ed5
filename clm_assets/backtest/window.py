"""Score a stored model on an evaluation window read from the store.

One function serves the evaluation assets, the incumbent re-scored during promotion and
the walk-forward record, so all of them read the same bars and charge the same costs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from clm_assets.backtest.evaluate import Evaluation, evaluate
from clm_assets.features.schema import KEY_COLUMNS
from clm_assets.models.artifact import ModelArtifact
from clm_assets.models.windows import Windows
from clm_assets.sources.intervals import interval_delta
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets.storage.slices import require_days, symbol_slice

CONTEXT_BARS = 512
"""History loaded before a window: sequence models read their input window from it."""


@dataclass(frozen=True)
class Costs:
    """What a fill costs and which side may be held: every backtest number depends on it."""

    fee_bps: float = 10.0
    slippage_bps: float = 0.0
    long_only: bool = False

    def as_dict(self) -> dict[str, float | bool]:
        return asdict(self)


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
    features = store.read(
        symbol_slice("features", "features", symbol, history, end), order_by=order
    )
    bars = store.read(
        symbol_slice("market_data", "raw_ohlcv", symbol, start, end),
        columns=["open_time", "open", "close"],
        order_by=['"open_time"'],
    )
    inside = features[features["open_time"] >= start]
    require_days(inside, symbol, start, end, f"{consumer} (features)")
    require_days(bars, symbol, start, end, f"{consumer} (raw_ohlcv)")
    return features, bars


def evaluate_on_window(
    store: DuckDBStore,
    artifact: ModelArtifact,
    wins: Windows,
    interval: str,
    costs: Costs,
    consumer: str,
) -> Evaluation:
    """The stored model replayed on the evaluation window with the given costs."""
    features, bars = read_window(
        store, artifact.symbol, wins.eval_start, wins.eval_end, interval_delta(interval), consumer
    )
    return evaluate(
        artifact.load(),
        features,
        bars,
        wins.eval_start,
        wins.eval_end,
        interval,
        fee_bps=costs.fee_bps,
        slippage_bps=costs.slippage_bps,
        long_only=costs.long_only,
    )
