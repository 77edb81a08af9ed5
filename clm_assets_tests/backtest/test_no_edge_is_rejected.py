"""A model trained on shuffled labels has no edge and the DSR gate rejects its record; the
same model trained on the true labels of a planted signal passes every gate (so the gates
can pass), with the default thresholds but for the record length (the record here is 41
days)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.evaluate import evaluate
from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN
from clm_assets.models.gbdt import XGBoostModel
from clm_assets.promotion.judge import decide
from clm_assets.promotion.record import FamilyRecord
from clm_assets.registry.gates import Gates

N, TRAIN = 3000, 2000
GATES = Gates(lookback_days=60, min_record_days=30)


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hourly bars whose next move is hinted by ``f_signal`` (a positive control), plus
    pure-noise features."""
    rng = np.random.default_rng(11)
    move = rng.choice([-1.0, 1.0], N) * rng.uniform(0.002, 0.01, N)  # open -> close
    close = 100 * np.cumprod(1 + move)
    open_ = np.concatenate([[100.0], close[:-1]])
    times = pd.date_range("2024-01-01", periods=N, freq="1h", tz="UTC")
    bars = pd.DataFrame({"open_time": times, "open": open_, "close": close})
    nxt = np.append(move[1:], np.nan)  # the move of the bar a signal at t gets filled into
    features = pd.DataFrame(
        {
            "open_time": times,
            "symbol": "SYN-USD",
            "close": close,
            "f_signal": np.sign(np.nan_to_num(nxt)) + rng.normal(0, 0.8, N),
            **{f"f_noise_{i}": rng.normal(size=N) for i in range(5)},
            LABEL_RETURN: nxt,
            LABEL_SIGN: np.sign(nxt),
        }
    )
    return bars, features


def _trial(market, shuffle: bool):
    bars, features = market
    train = features.iloc[:TRAIN].copy()
    if shuffle:
        train[LABEL_SIGN] = np.random.default_rng(3).permutation(train[LABEL_SIGN].to_numpy())
    model = XGBoostModel(params={"n_estimators": 60, "max_depth": 3, "nthread": 1}, seed=0)
    model.fit(train, horizon=1)
    start, end = features["open_time"].iloc[TRAIN + 10], features["open_time"].iloc[-1]
    ev = evaluate(model, features, bars, start, end, "1h", fee_bps=1.0)
    r = ev.result
    record = FamilyRecord(
        "xgboost", "SYN-USD", end, "v", r.open_time[0], end, r.open_time, r.returns,
        len(r.trades), r.n_bars, (), 24.0,
    )  # fmt: skip
    return ev, decide("SYN-USD", end, [record], None, GATES).reports["xgboost"]


def test_shuffled_labels_give_no_edge_and_fail_the_dsr_gate(market) -> None:
    ev, report = _trial(market, shuffle=True)
    assert not report.passed
    assert not report.gate("dsr").passed
    assert report.gate("dsr").value < GATES.min_dsr
    assert 0.4 < ev.metrics["accuracy"] < 0.6


def test_true_labels_of_a_planted_signal_pass_every_gate(market) -> None:
    ev, report = _trial(market, shuffle=False)
    assert report.passed, report.summary()
    assert report.gate("dsr").value > 0.99
    assert ev.metrics["accuracy"] > 0.75
