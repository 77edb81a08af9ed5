"""Small deterministic inputs for domain tests (real computations on seeded random walks).

These are test inputs only; nothing in ``clm_assets`` ever substitutes them for real data.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN

FAST_PARAMS: dict[str, dict] = {
    "xgboost": {"n_estimators": 10},
    "lightgbm": {"n_estimators": 10},
    "nhits": {"max_steps": 3, "input_size": 24, "mlp_units": [[32, 32]] * 3},
    "patchtst": {"max_steps": 3, "input_size": 24},
    "ppo": {
        "iterations": 1,
        "train_batch_size": 128,
        "minibatch_size": 64,
        "num_epochs": 1,
        "window": 64,
    },
}
"""The fewest steps that still exercise every family's whole fit → bytes → load path."""


def random_walk_bars(
    n: int = 2000, seed: int = 0, start: str = "2024-01-01", freq: str = "1h"
) -> pd.DataFrame:
    """OHLCV bars of a seeded log-normal random walk, OHLC bounds consistent."""
    rng = np.random.default_rng(seed)
    log_ret = rng.normal(0.0, 0.008, n)
    close = 100.0 * np.exp(np.cumsum(log_ret))
    open_ = np.concatenate([[100.0], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, 0.003, (2, n)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    volume = rng.lognormal(3.0, 0.5, n)
    return pd.DataFrame(
        {
            "open_time": pd.date_range(start, periods=n, freq=freq, tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": pd.array(rng.integers(50, 500, n), dtype="Int64"),
        }
    )


def simple_feature_frame(
    n: int = 2000, seed: int = 0, horizon: int = 4, symbol: str = "BTC-USD"
) -> pd.DataFrame:
    """A features-shaped frame (keys, ``close``, a few ``f_`` columns, labels) for model tests.

    Features are lagged returns and rolling stats of the walk, all causal; the labels are the
    forward return over ``horizon`` bars and its sign, null at the tail where the future is
    unknown, exactly as the real features asset produces them.
    """
    bars = random_walk_bars(n, seed)
    close = bars["close"]
    ret = close.pct_change()
    frame = pd.DataFrame(
        {
            "open_time": bars["open_time"],
            "symbol": symbol,
            "close": close,
            "f_ret_1": ret,
            "f_ret_2": ret.shift(1),
            "f_ret_3": ret.shift(2),
            "f_vol_24": ret.rolling(24).std(),
            "f_mom_12": close.pct_change(12),
            "f_range": (bars["high"] - bars["low"]) / close,
            "f_hour": bars["open_time"].dt.hour.astype("float64"),
        }
    )
    fwd = close.shift(-horizon) / close - 1.0
    frame[LABEL_RETURN] = fwd
    frame[LABEL_SIGN] = np.sign(fwd)
    return frame.iloc[30:].reset_index(drop=True)
