"""Speed of ``compute_features`` against the bare TA-Lib calls behind its feature set.

``run(n_bars)`` builds ``n_bars`` seeded random-walk hourly bars, makes one warm-up call of
each side (the first TA-Lib call in a process is ~2x slower), then times both sides
alternately, best of 3. The TA-Lib side calls every TA-Lib function the feature set is built
from, with the same parameters, plus the TA-Lib equivalents of the windowed statistics that
``compute_features`` computes itself (BBANDS/STDDEV of close, SUM/STDDEV of volume, SUM of
squared returns); it builds no frame. ``compute_features`` also writes the labels, the
non-TA-Lib features and one float64 frame. CPU times are reported next to wall times: on a
shared machine they are the steadier of the two. ``python benchmarks/bench_features.py``
prints a table.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import talib

from clm_assets.features.indicators import FEATURE_NAMES, compute_features

SMA, EMA = talib.MA_Type.SMA, talib.MA_Type.EMA


def random_walk_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.008, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * np.exp(rng.normal(0.0, 0.0005, n))
    wiggle = np.abs(rng.normal(0.0, 0.003, (2, n)))
    volume = rng.lognormal(3.0, 0.5, n)
    return pd.DataFrame(
        {
            "open_time": pd.date_range("2020-01-01", periods=n, freq="h", tz="UTC"),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + wiggle[0]),
            "low": np.minimum(open_, close) * (1 - wiggle[1]),
            "close": close,
            "volume": volume,
            "quote_volume": volume * close,
            "trades": pd.array(rng.integers(50, 500, n), dtype="Int64"),
        }
    )


def bare_talib(o, h, lo, c, v) -> int:
    """The TA-Lib calls equivalent to the feature set; returns how many were made."""
    calls = [
        # momentum
        lambda: talib.RSI(c, 6),
        lambda: talib.RSI(c, 14),
        lambda: talib.MACD(c, 12, 26, 9),
        lambda: talib.STOCH(h, lo, c, 14, 3, SMA, 3, SMA),
        lambda: talib.STOCHRSI(c, 14, 5, 3, SMA),
        lambda: talib.WILLR(h, lo, c, 14),
        lambda: talib.CCI(h, lo, c, 20),
        lambda: talib.ROC(c, 10),
        lambda: talib.MFI(h, lo, c, v, 14),
        lambda: talib.ADX(h, lo, c, 14),
        lambda: talib.ADXR(h, lo, c, 14),
        lambda: talib.DX(h, lo, c, 14),
        lambda: talib.PLUS_DI(h, lo, c, 14),
        lambda: talib.MINUS_DI(h, lo, c, 14),
        lambda: talib.AROON(h, lo, 25),
        lambda: talib.AROONOSC(h, lo, 25),
        lambda: talib.ULTOSC(h, lo, c, 7, 14, 28),
        lambda: talib.CMO(c, 14),
        lambda: talib.PPO(c, 12, 26, EMA),
        lambda: talib.TRIX(c, 15),
        lambda: talib.BOP(o, h, lo, c),
        # trend
        lambda: talib.SMA(c, 10),
        lambda: talib.SMA(c, 50),
        lambda: talib.SMA(c, 200),
        lambda: talib.EMA(c, 12),
        lambda: talib.EMA(c, 50),
        lambda: talib.KAMA(c, 10),
        lambda: talib.T3(c, 5, 0.7),
        lambda: talib.DEMA(c, 20),
        lambda: talib.TEMA(c, 20),
        lambda: talib.HT_TRENDLINE(c),
        lambda: talib.LINEARREG_SLOPE(c, 14),
        lambda: talib.SAR(h, lo, 0.02, 0.2),
        # volatility
        lambda: talib.NATR(h, lo, c, 14),
        lambda: talib.TRANGE(h, lo, c),
        lambda: talib.BBANDS(c, 20, 2.0, 2.0, SMA),
        lambda: talib.STDDEV(c, 20, 1.0),
        # volume
        lambda: talib.SUM(v, 24),
        lambda: talib.STDDEV(v, 24, 1.0),
        lambda: talib.OBV(c, v),
        lambda: talib.AD(h, lo, c, v),
        lambda: talib.ADOSC(h, lo, c, v, 3, 10),
        # candles
        lambda: talib.CDLDOJI(o, h, lo, c),
        lambda: talib.CDLENGULFING(o, h, lo, c),
        lambda: talib.CDLHAMMER(o, h, lo, c),
        lambda: talib.CDLSHOOTINGSTAR(o, h, lo, c),
        # realized volatility: a 24-bar SUM (of squared returns there; same cost on close)
        lambda: talib.SUM(c, 24),
    ]
    for call in calls:
        call()
    return len(calls)


def _timed(fn) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    del result  # freeing the output is not part of computing it
    return wall, cpu


TARGETS = [
    ("whole feature set >= 1.5M bars/s", "bars_per_s", ">=", 1_500_000),
    ("within 1.5x of the bare TA-Lib calls (wall)", "ratio_vs_talib", "<=", 1.5),
    ("within 1.5x of the bare TA-Lib calls (CPU)", "ratio_vs_talib_cpu", "<=", 1.5),
]


def run(n_bars: int = 1_000_000, repeats: int = 3) -> dict:
    bars = random_walk_bars(n_bars)
    o, h, lo, c, v = (
        bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")
    )
    n_calls = bare_talib(o, h, lo, c, v)  # warm-up
    frame = compute_features(bars, "BTC-USD", horizon=4)  # warm-up
    n_columns = frame.shape[1]
    del frame
    talib_t, feat_t = [], []
    for _ in range(repeats):
        talib_t.append(_timed(lambda: bare_talib(o, h, lo, c, v)))
        feat_t.append(_timed(lambda: compute_features(bars, "BTC-USD", horizon=4)))
    talib_s, talib_cpu = (min(t[i] for t in talib_t) for i in (0, 1))
    features_s, features_cpu = (min(t[i] for t in feat_t) for i in (0, 1))
    return {
        "bars": n_bars,
        "features_s": features_s,
        "talib_s": talib_s,
        "bars_per_s": n_bars / features_s,
        "ratio_vs_talib": features_s / talib_s,
        "features_cpu_s": features_cpu,
        "talib_cpu_s": talib_cpu,
        "ratio_vs_talib_cpu": features_cpu / talib_cpu,
        "talib_calls": n_calls,
        "features": len(FEATURE_NAMES),
        "columns": n_columns,
    }


def print_table(r: dict) -> None:
    print(f"compute_features vs bare TA-Lib, {r['bars']:,} bars, best of 3 (warm)")
    print(f"{'':24s}{'wall s':>10s}{'cpu s':>10s}")
    print(f"{'bare TA-Lib calls':24s}{r['talib_s']:10.3f}{r['talib_cpu_s']:10.3f}")
    print(f"{'compute_features':24s}{r['features_s']:10.3f}{r['features_cpu_s']:10.3f}")
    print(f"{'ratio':24s}{r['ratio_vs_talib']:10.2f}{r['ratio_vs_talib_cpu']:10.2f}")
    print(f"bars/s (wall): {r['bars_per_s']:,.0f}")
    print(
        f"{r['talib_calls']} TA-Lib calls; {r['features']} features, "
        f"{r['columns']} columns in the frame"
    )


if __name__ == "__main__":
    print_table(run())
