"""A model trained on shuffled labels has no edge and the PSR gate rejects it; the same
model trained on the true labels of a planted signal passes (so the gate can pass)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.evaluate import evaluate
from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN
from clm_assets.models.gbdt import XGBoostModel
from clm_assets.registry.gates import Gates
from clm_assets.registry.gates import evaluate as gate

N, TRAIN = 3000, 2000


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
    return ev, gate(ev.metrics, None, False, Gates())


def test_shuffled_labels_give_no_edge_and_fail_the_psr_gate(market) -> None:
    ev, report = _trial(market, shuffle=True)
    assert not report.passed
    assert not report.gate("psr_vs_flat").passed
    assert ev.metrics["psr"] < 0.95
    assert 0.4 < ev.metrics["accuracy"] < 0.6


def test_true_labels_of_a_planted_signal_pass_every_gate(market) -> None:
    ev, report = _trial(market, shuffle=False)
    assert report.passed, report.summary()
    assert ev.metrics["psr"] > 0.99
    assert ev.metrics["accuracy"] > 0.75
