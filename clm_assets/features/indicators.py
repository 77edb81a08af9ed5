"""Strictly causal TA-Lib features of one symbol's bars, plus its forward-return labels.

``compute_features(bars, symbol, horizon)`` returns ``open_time``, ``symbol``, ``close``
(reference price, not a feature), the ``FEATURE_NAMES`` columns in that order, then
``label_fwd_return`` and ``label_sign`` (see ``labels``). All features are level-free
(ratios to close, normalised changes, scaled oscillators) so that one model can read
several symbols and several price eras.

Causality: every feature at row t is a function of rows <= t only. TA-Lib runs forward in
time; every other feature is an elementwise function of lagged values or a trailing window.
Nothing is centred, shifted backwards or normalised over the whole frame.

Warm-up (``EARLIEST_VALID_BAR``, ``WARMUP_BARS``) -- how a partitioned caller uses it:

* Rows ``0 .. EARLIEST_VALID_BAR - 1`` of any frame have NaN features: their trailing
  windows reach before the first row (the longest is ``SMA(200)``). Rows from
  ``EARLIEST_VALID_BAR`` on have no NaN at all. Degenerate windows that real markets do
  produce take their limiting value instead of NaN, because models refuse NaN inputs: a
  bar with ``high == low`` has body and shadows 0; a window that traded nothing has money
  flow index 0.5 (no flow either way) and volume changes, oscillator and z-score 0; a flat
  window has Bollinger %b 0.5 (the close sits on the collapsed middle band).
* Exponential indicators (EMA, RSI, ADX, KAMA, T3, MACD, TRIX, HT_TRENDLINE, ...) depend on
  the row they start from, with an influence that decays geometrically. From row
  ``WARMUP_BARS`` on, every feature agrees with the value computed on all earlier history
  to ``rtol=1e-9, atol=1e-12`` (measured on seeded random walks; see the tests).
* So to materialise one day: compute on the bars ``[day_start - WARMUP_BARS bars,
  day_end)``, then keep only the rows with ``open_time`` inside the day. When less history
  exists than ``WARMUP_BARS`` (the start of the data), the day's first rows are computed
  from the history there is: rows with index < ``EARLIEST_VALID_BAR`` in the computed frame
  are NaN and rows with index < ``WARMUP_BARS`` are still converging -- drop or flag them
  rather than treat them as final.
* Rows are bars in order; a gap in ``open_time`` is not filled (the indicators see the
  next bar as the next step). Fill or flag gaps upstream.
* Degenerate windows keep TA-Lib's own convention (e.g. RSI on a perfectly flat price,
  ``BOP`` when ``high == low``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import talib
from talib import abstract

from clm_assets.features.engine import (
    NAN,
    Bars,
    Block,
    build_frame,
    read_bars,
    rolling_mean_std,
    rolling_sum,
    safe_denominator,
)
from clm_assets.features.labels import LABEL_NAMES, check_horizon, fill_labels
from clm_assets.features.schema import PRICE_COLUMN

MOMENTUM_FEATURES: tuple[str, ...] = (
    "f_rsi_6",
    "f_rsi_14",
    "f_macd",
    "f_macd_signal",
    "f_macd_hist",
    "f_stoch_k",
    "f_stoch_d",
    "f_stochrsi_k",
    "f_stochrsi_d",
    "f_willr_14",
    "f_cci_20",
    "f_roc_10",
    "f_mfi_14",
    "f_adx_14",
    "f_adxr_14",
    "f_dx_14",
    "f_plus_di_14",
    "f_minus_di_14",
    "f_aroon_up_25",
    "f_aroon_down_25",
    "f_aroonosc_25",
    "f_ultosc",
    "f_cmo_14",
    "f_ppo",
    "f_trix_15",
    "f_bop",
)
"""0..100 oscillators are divided by 100 (WILLR, CMO, AROONOSC, CCI too); MACD by close;
ROC, PPO, TRIX are fractions instead of percent. ROC stands for MOM as well (same ratio)."""

TREND_FEATURES: tuple[str, ...] = (
    "f_sma_10",
    "f_sma_50",
    "f_sma_200",
    "f_ema_12",
    "f_ema_50",
    "f_kama_10",
    "f_t3_5",
    "f_dema_20",
    "f_tema_20",
    "f_ht_trendline",
    "f_linreg_slope_14",
    "f_sar",
)
"""Moving averages, HT_TRENDLINE and SAR as ``level / close - 1``; the regression slope
divided by close."""

VOLATILITY_FEATURES: tuple[str, ...] = (
    "f_natr_14",
    "f_trange",
    "f_bb_width_20",
    "f_bb_pctb_20",
    "f_stddev_20",
)
"""NATR as a fraction, TRANGE and STDDEV divided by close, Bollinger width over the middle
band and %b."""

VOLUME_FEATURES: tuple[str, ...] = (
    "f_obv_chg_24",
    "f_ad_chg_24",
    "f_adosc",
    "f_volume_z_24",
)
"""OBV and AD as 24-bar changes over the 24-bar volume (never cumulative levels, which
depend on where the data starts); ADOSC over the 24-bar mean volume; volume z-score over
a trailing 24-bar window."""

CANDLE_FEATURES: tuple[str, ...] = (
    "f_body_range",
    "f_upper_shadow",
    "f_lower_shadow",
    "f_cdl_doji",
    "f_cdl_engulfing",
    "f_cdl_hammer",
    "f_cdl_shootingstar",
)
"""|body|, upper and lower shadow as fractions of the bar range; CDL outputs scaled to
-1..1 (NaN until the pattern's own trailing averages exist)."""

RETURN_FEATURES: tuple[str, ...] = (
    "f_logret_1",
    "f_logret_2",
    "f_logret_4",
    "f_logret_8",
    "f_logret_24",
    "f_ret_lag_1",
    "f_ret_lag_2",
    "f_ret_lag_3",
    "f_ret_lag_4",
    "f_ret_lag_5",
    "f_rvol_24",
)
"""Log returns over k bars, the 1-bar log return of k bars ago, and sqrt of the sum of
squared 1-bar log returns over 24 bars."""

CALENDAR_FEATURES: tuple[str, ...] = ("f_hour_sin", "f_hour_cos", "f_dow_sin", "f_dow_cos")
"""Time of day (minute resolution, UTC) and day of week (Monday = 0) of the bar open."""

FEATURE_NAMES: tuple[str, ...] = (
    MOMENTUM_FEATURES
    + TREND_FEATURES
    + VOLATILITY_FEATURES
    + VOLUME_FEATURES
    + CANDLE_FEATURES
    + RETURN_FEATURES
    + CALENDAR_FEATURES
)
"""Every feature column, in output order. Stable: append, never reorder."""

OUTPUT_COLUMNS: tuple[str, ...] = (
    "open_time",
    "symbol",
    PRICE_COLUMN,
    *FEATURE_NAMES,
    *LABEL_NAMES,
)

EARLIEST_VALID_BAR = 199
"""Index of the first row whose features are all free of warm-up NaN (``SMA(200)``)."""

WARMUP_BARS = 720
"""Rows of history after which every feature matches its all-history value to
``rtol=1e-9, atol=1e-12`` (30 days of hourly bars).

Measured by computing on windows that start k rows before a cut (k = 100..1300, step 20)
and comparing the rows after the cut with the full frame, on seeded random walks of 0.8%
(the test factory), 0.05%, 4% per bar, and trending: every feature passes from k = 660
on, the slowest being ``f_ema_50`` (EMA(50) ratio, ~540-660 rows), then ADX/ADXR/DX, CMO,
MACD and STOCHRSI (~360). 720 leaves a margin. The exception is a deliberately hostile
series switching between 0.03% and 2% per bar every 300 bars: there ``f_bb_pctb_20``
differs by up to 1.2x the tolerance at 720 rows (%b divides by the tiny deviation of a
calm stretch right after a wild one)."""

_SMA, _EMA = talib.MA_Type.SMA, talib.MA_Type.EMA
_CDL = {
    "f_cdl_doji": "CDLDOJI",
    "f_cdl_engulfing": "CDLENGULFING",
    "f_cdl_hammer": "CDLHAMMER",
    "f_cdl_shootingstar": "CDLSHOOTINGSTAR",
}
# TA-Lib's Python wrapper writes 0 (not NaN) into the lookback of integer outputs.
_CDL_LOOKBACK = {name: abstract.Function(fn).lookback for name, fn in _CDL.items()}
_MINUTES_PER_DAY = 1440
_NS_PER_MINUTE = 60_000_000_000
_ANGLE_MINUTE = 2.0 * np.pi * np.arange(_MINUTES_PER_DAY) / _MINUTES_PER_DAY
_ANGLE_DOW = 2.0 * np.pi * np.arange(7) / 7.0
_TABLES = {
    "f_hour_sin": np.sin(_ANGLE_MINUTE),
    "f_hour_cos": np.cos(_ANGLE_MINUTE),
    "f_dow_sin": np.sin(_ANGLE_DOW),
    "f_dow_cos": np.cos(_ANGLE_DOW),
}


def compute_features(bars: pd.DataFrame, symbol: str, horizon: int) -> pd.DataFrame:
    """Features and labels of ONE symbol's bars (ascending, unique, tz-aware ``open_time``).

    Columns are ``OUTPUT_COLUMNS``: keys, ``close``, ``FEATURE_NAMES``, then the labels for
    ``horizon`` (>= 1) bars ahead. One row per input bar, same order. See the module
    docstring for the warm-up rows a caller must trim.
    """
    horizon = check_horizon(horizon)
    data = read_bars(bars, symbol)
    block = Block(len(data), OUTPUT_COLUMNS[2:])
    block.put(PRICE_COLUMN, data.close)
    if len(data):
        _fill_features(block, data)
        fill_labels(data.close, horizon, block.col(LABEL_NAMES[0]), block.col(LABEL_NAMES[1]))
        block.check_complete()
    return build_frame(data.open_time, symbol, block)


def _fill_features(block: Block, data: Bars) -> None:
    o, h, lo, c, v = data.open, data.high, data.low, data.close, data.volume
    _momentum(block, o, h, lo, c, v)
    _trend(block, h, lo, c)
    _volatility(block, h, lo, c)
    _volume(block, h, lo, c, v)
    _candles(block, o, h, lo, c)
    _returns(block, c)
    _calendar(block, data.epoch_ns)


def _no_volume(v: np.ndarray, period: int) -> np.ndarray | None:
    """Mask of rows whose trailing ``period`` bars traded nothing (None when none can)."""
    if len(v) == 0 or v.min() > 0.0:
        return None
    traded = talib.SUM((v > 0.0).astype(np.float64), period)  # integer counts: exact
    return traded == 0.0


def _momentum(b: Block, o, h, lo, c, v) -> None:
    pct = 0.01  # 0..100 (or +-100, or percent) to a fraction
    b.put("f_rsi_6", talib.RSI(c, 6), pct)
    b.put("f_rsi_14", talib.RSI(c, 14), pct)
    b.ratio_all(("f_macd", "f_macd_signal", "f_macd_hist"), talib.MACD(c, 12, 26, 9), c)
    b.put_all(("f_stoch_k", "f_stoch_d"), talib.STOCH(h, lo, c, 14, 3, _SMA, 3, _SMA), pct)
    b.put_all(("f_stochrsi_k", "f_stochrsi_d"), talib.STOCHRSI(c, 14, 5, 3, _SMA), pct)
    b.put("f_willr_14", talib.WILLR(h, lo, c, 14), pct)
    b.put("f_cci_20", talib.CCI(h, lo, c, 20), pct)
    b.put("f_roc_10", talib.ROC(c, 10), pct)
    mfi = b.put("f_mfi_14", talib.MFI(h, lo, c, v, 14), pct)
    idle = _no_volume(v, 14)
    if idle is not None:
        mfi[idle] = 0.5  # no money flowed either way: neutral (degenerate-window rule)
    b.put("f_adx_14", talib.ADX(h, lo, c, 14), pct)
    b.put("f_adxr_14", talib.ADXR(h, lo, c, 14), pct)
    b.put("f_dx_14", talib.DX(h, lo, c, 14), pct)
    b.put("f_plus_di_14", talib.PLUS_DI(h, lo, c, 14), pct)
    b.put("f_minus_di_14", talib.MINUS_DI(h, lo, c, 14), pct)
    b.put_all(("f_aroon_down_25", "f_aroon_up_25"), talib.AROON(h, lo, 25), pct)
    b.put("f_aroonosc_25", talib.AROONOSC(h, lo, 25), pct)
    b.put("f_ultosc", talib.ULTOSC(h, lo, c, 7, 14, 28), pct)
    b.put("f_cmo_14", talib.CMO(c, 14), pct)
    b.put("f_ppo", talib.PPO(c, 12, 26, _EMA), pct)
    b.put("f_trix_15", talib.TRIX(c, 15), pct)
    b.put("f_bop", talib.BOP(o, h, lo, c))


def _trend(b: Block, h, lo, c) -> None:
    b.ratio("f_sma_10", talib.SMA(c, 10), c, 1.0)
    b.ratio("f_sma_50", talib.SMA(c, 50), c, 1.0)
    b.ratio("f_sma_200", talib.SMA(c, 200), c, 1.0)
    b.ratio("f_ema_12", talib.EMA(c, 12), c, 1.0)
    b.ratio("f_ema_50", talib.EMA(c, 50), c, 1.0)
    b.ratio("f_kama_10", talib.KAMA(c, 10), c, 1.0)
    b.ratio("f_t3_5", talib.T3(c, 5, 0.7), c, 1.0)
    b.ratio("f_dema_20", talib.DEMA(c, 20), c, 1.0)
    b.ratio("f_tema_20", talib.TEMA(c, 20), c, 1.0)
    b.ratio("f_ht_trendline", talib.HT_TRENDLINE(c), c, 1.0)
    b.ratio("f_linreg_slope_14", talib.LINEARREG_SLOPE(c, 14), c)
    b.ratio("f_sar", talib.SAR(h, lo, 0.02, 0.2), c, 1.0)


def _volatility(b: Block, h, lo, c) -> None:
    b.put("f_natr_14", talib.NATR(h, lo, c, 14), 0.01)
    b.ratio("f_trange", talib.TRANGE(h, lo, c), c)
    # BBANDS(20, 2, 2, SMA): middle = 20-bar mean, bands = middle +- 2 population std. The
    # std comes from ``rolling_mean_std`` rather than TA-Lib's whole-series running sums,
    # whose rounding residue makes it depend on where the frame starts (~1e-8 relative).
    middle, std = rolling_mean_std(c, 20)
    b.ratio("f_stddev_20", std, c)
    std *= 4.0  # upper - lower
    b.ratio("f_bb_width_20", std, middle)
    pctb = b.col("f_bb_pctb_20")
    flat = std == 0.0
    np.subtract(c, middle, out=pctb)
    np.divide(pctb, safe_denominator(std, out=std), out=pctb)
    pctb += 0.5
    pctb[flat] = 0.5  # a flat window closes on its (collapsed) bands' middle


def _volume(b: Block, h, lo, c, v) -> None:
    window = 24
    mean, std = rolling_mean_std(v, window)
    idle = _no_volume(v, window)
    constant = std == 0.0
    safe_denominator(mean, out=mean)
    total = np.multiply(mean, float(window))
    obv = b.lag_diff("f_obv_chg_24", talib.OBV(c, v), window)
    np.divide(obv, total, out=obv)
    ad = b.lag_diff("f_ad_chg_24", talib.AD(h, lo, c, v), window)
    np.divide(ad, total, out=ad)
    b.ratio("f_adosc", talib.ADOSC(h, lo, c, v, 3, 10), mean)
    z = b.col("f_volume_z_24")
    np.subtract(v, mean, out=z)
    np.divide(z, safe_denominator(std, out=std), out=z)
    z[constant] = 0.0  # volume equal to its mean
    if idle is not None:  # nothing traded in the window: nothing moved, nothing deviated
        for name in ("f_obv_chg_24", "f_ad_chg_24", "f_adosc", "f_volume_z_24"):
            b.col(name)[idle] = 0.0


def _candles(b: Block, o, h, lo, c) -> None:
    bar_range = np.subtract(h, lo)
    safe_denominator(bar_range, out=bar_range)
    part = np.subtract(c, o)
    b.ratio("f_body_range", np.abs(part, out=part), bar_range)
    np.maximum(o, c, out=part)
    b.ratio("f_upper_shadow", np.subtract(h, part, out=part), bar_range)
    np.minimum(o, c, out=part)
    b.ratio("f_lower_shadow", np.subtract(part, lo, out=part), bar_range)
    zero_range = np.isnan(bar_range)
    for name in ("f_body_range", "f_upper_shadow", "f_lower_shadow"):
        b.col(name)[zero_range] = 0.0  # a bar with no range has no body and no shadows
    del part, bar_range
    for name, fn in _CDL.items():
        out = b.put(name, getattr(talib, fn)(o, h, lo, c), 0.01)
        out[: _CDL_LOOKBACK[name]] = NAN


def _returns(b: Block, c) -> None:
    log_close = np.log(c)
    r1 = b.lag_diff("f_logret_1", log_close, 1)
    for k in (2, 4, 8, 24):
        b.lag_diff(f"f_logret_{k}", log_close, k)
    for k in range(1, 6):
        b.shifted(f"f_ret_lag_{k}", r1, k)
    rvol = b.col("f_rvol_24")
    rvol[:1] = NAN
    np.sqrt(rolling_sum(np.square(r1[1:]), 24), out=rvol[1:])


def _calendar(b: Block, epoch_ns: np.ndarray) -> None:
    # Integer floor division by a constant is fast; ``%`` on int64 is not, hence x - (x // k) * k.
    minutes = epoch_ns // _NS_PER_MINUTE
    days = minutes // _MINUTES_PER_DAY
    minutes -= days * _MINUTES_PER_DAY  # minute of the day, 0..1439
    days += 3  # 1970-01-01 was a Thursday: Monday = 0
    days -= (days // 7) * 7
    for name, index in (
        ("f_hour_sin", minutes),
        ("f_hour_cos", minutes),
        ("f_dow_sin", days),
        ("f_dow_cos", days),
    ):
        np.take(_TABLES[name], index, out=b.col(name), mode="clip")  # indices are in range
