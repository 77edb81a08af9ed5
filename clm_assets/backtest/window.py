"""Score a stored model on an evaluation window read from the store.

One function serves the evaluation assets, the incumbent re-scored during promotion and
the walk-forward record, so all of them read the same bars and charge the same costs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from clm_assets.backtest.evaluate import Evaluation, EvaluationError, evaluate
from clm_assets.features.schema import KEY_COLUMNS, check_label_horizon
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


class LeakageError(EvaluationError):
    """The evaluation window is not out of sample for the model: nothing is reported."""


def check_out_of_sample(artifact: ModelArtifact, wins: Windows, bar: pd.Timedelta) -> None:
    """Refuse an evaluation window that a training label of the model looked into.

    The windows are recomputed from the deployment settings at each stage, so a model
    trained under one ``CLM_EVAL_DAYS`` / ``CLM_LABEL_HORIZON`` and evaluated under another
    would silently be scored in sample. The model's own card says what it saw: its last
    training bar's label is realized at the close ``horizon`` bars later, and the first
    evaluated price is the close of ``eval_start``.
    """
    card = artifact.card
    last_bar = pd.Timestamp(card.train_end)
    last_bar = last_bar.tz_localize("UTC") if last_bar.tzinfo is None else last_bar
    label_end = last_bar + card.horizon * bar
    if wins.eval_start <= label_end:
        raise LeakageError(
            f"{artifact.family} {artifact.symbol} as of {artifact.as_of:%Y-%m-%d %H:%M} "
            f"({artifact.version}) was trained on bars {card.train_start} → {card.train_end} "
            f"with a {card.horizon}-bar label horizon (labels realized up to {label_end}); "
            f"the evaluation window {wins.eval_start} → {wins.eval_end} starts before that, so "
            "it would be scored in sample. Evaluate with the CLM_EVAL_DAYS / CLM_LABEL_HORIZON "
            "the model was trained with, or re-train it."
        )


def evaluate_on_window(
    store: DuckDBStore,
    artifact: ModelArtifact,
    wins: Windows,
    interval: str,
    costs: Costs,
    consumer: str,
) -> Evaluation:
    """The stored model replayed on the evaluation window with the given costs; refused
    when the window is not out of sample for it (:func:`check_out_of_sample`) or the features
    are labelled for another horizon than the model's (its prediction metrics would compare
    against the wrong target)."""
    bar = interval_delta(interval)
    check_out_of_sample(artifact, wins, bar)
    features, bars = read_window(
        store, artifact.symbol, wins.eval_start, wins.eval_end, bar, consumer
    )
    check_label_horizon(features, artifact.card.horizon, consumer)
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
