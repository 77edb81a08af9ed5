"""Score a stored model on bars it never saw: predictions → backtest → metrics.

One function serves the evaluation assets, the incumbent re-scored on a candidate's
window during promotion, and the walk-forward record, so all three compute the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm_assets.backtest.engine import BacktestResult, run_backtest
from clm_assets.backtest.metrics import metrics_table
from clm_assets.features.schema import LABEL_RETURN
from clm_assets.models.base import TradingModel

RETURN_FORECASTERS = ("nhits", "patchtst")
"""Families whose score is a log-return forecast; the others score a direction only."""


class EvaluationError(RuntimeError):
    """A model cannot be evaluated on the window as given; nothing is reported."""


@dataclass
class Evaluation:
    predictions: pd.DataFrame
    """``open_time``, ``score``, ``position``, ``realized`` for each bar of the window."""
    result: BacktestResult
    metrics: dict[str, float | None]


def evaluate(
    model: TradingModel,
    features: pd.DataFrame,
    bars: pd.DataFrame,
    start: pd.Timestamp,
    end: pd.Timestamp,
    interval: str,
    *,
    fee_bps: float = 10.0,
    slippage_bps: float = 0.0,
    long_only: bool = False,
    incumbent_returns: np.ndarray | None = None,
) -> Evaluation:
    """Backtest ``model`` on the bars of ``[start, end)``.

    ``features`` may start earlier than ``start``: sequence models need history as input,
    exactly as they would live. Only bars inside the window are traded and scored.
    """
    predicted = model.predict(features.reset_index(drop=True))
    predicted["realized"] = features[LABEL_RETURN].to_numpy()
    inside = ((predicted["open_time"] >= start) & (predicted["open_time"] < end)).to_numpy()
    window = predicted[inside].reset_index(drop=True)
    window_bars = bars[(bars["open_time"] >= start) & (bars["open_time"] < end)]
    window_bars = window_bars.reset_index(drop=True)
    if len(window) < 2:
        raise EvaluationError(f"the evaluation window [{start}, {end}) has {len(window)} bars")
    if not window["open_time"].equals(window_bars["open_time"]):
        raise EvaluationError(
            "features and bars of the evaluation window do not cover the same bars "
            f"({len(window)} vs {len(window_bars)})"
        )
    missing = int(window["position"].isna().sum())
    if missing:
        first = window.loc[window["position"].isna(), "open_time"].iloc[0]
        raise EvaluationError(
            f"{model.family} gave no position for {missing} bars of the evaluation window "
            f"(first {first}): it lacks the history or features it needs there"
        )
    result = run_backtest(
        window_bars["open_time"],
        window_bars["open"],
        window_bars["close"],
        window["position"],
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        long_only=long_only,
    )
    # Direction metrics from the position; error metrics only from a return forecast.
    forecast = (
        np.expm1(window["score"].to_numpy())
        if model.family in RETURN_FORECASTERS
        else window["position"].to_numpy()
    )
    metrics = metrics_table(
        result,
        interval,
        score=forecast,
        realized=window["realized"].to_numpy(),
        incumbent_returns=incumbent_returns,
    )
    if model.family not in RETURN_FORECASTERS:
        metrics["mae"] = metrics["rmse"] = None  # a direction is not a return forecast
    return Evaluation(window, result, metrics)
