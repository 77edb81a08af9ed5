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
  ``EARLIEST_VALID_BAR`` on have no warm-up NaN (NaN can still appear later where a value is
  undefined, e.g. a bar with ``high == low`` for the candle ratios, or a trailing window
  with no volume for the volume features).
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

from clm_assets.features.engine import NAN, Bars, Block, build_frame, read_bars, safe_denominator
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
    "f_mom_10",
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
"""0..100 oscillators are divided by 100; MACD and MOM by close; ROC, PPO, TRIX are
fractions instead of percent."""

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
"""Rows of history after which every feature matches the all-history value to
``rtol=1e-9, atol=1e-12``. Measured on seeded random walks by computing on windows that
start k rows before a cut and comparing with the full frame: the worst case needed ~560
rows (EMA(50), KAMA); 720 leaves a margin."""

_SMA, _EMA = talib.MA_Type.SMA, talib.MA_Type.EMA
_STAT_BLOCK = 4096  # rows per block of ``anchored_mean_std``
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
    b.put("f_rsi_6", talib.RSI(c, 6), 0.01)
    b.put("f_rsi_14", talib.RSI(c, 14), 0.01)
    macd, signal, hist = talib.MACD(c, 12, 26, 9)
    b.ratio("f_macd", macd, c)
    b.ratio("f_macd_signal", signal, c)
    b.ratio("f_macd_hist", hist, c)
    slow_k, slow_d = talib.STOCH(h, lo, c, 14, 3, _SMA, 3, _SMA)
    b.put("f_stoch_k", slow_k, 0.01)
    b.put("f_stoch_d", slow_d, 0.01)
    fast_k, fast_d = talib.STOCHRSI(c, 14, 5, 3, _SMA)
    b.put("f_stochrsi_k", fast_k, 0.01)
    b.put("f_stochrsi_d", fast_d, 0.01)
    b.put("f_willr_14", talib.WILLR(h, lo, c, 14), 0.01)
    b.put("f_cci_20", talib.CCI(h, lo, c, 20), 0.01)
    b.put("f_roc_10", talib.ROC(c, 10), 0.01)
    b.ratio("f_mom_10", talib.MOM(c, 10), c)
    mfi = b.put("f_mfi_14", talib.MFI(h, lo, c, v, 14), 0.01)
    idle = _no_volume(v, 14)
    if idle is not None:
        mfi[idle] = NAN  # money-flow ratio of a window without volume is undefined
    b.put("f_adx_14", talib.ADX(h, lo, c, 14), 0.01)
    b.put("f_adxr_14", talib.ADXR(h, lo, c, 14), 0.01)
    b.put("f_dx_14", talib.DX(h, lo, c, 14), 0.01)
    b.put("f_plus_di_14", talib.PLUS_DI(h, lo, c, 14), 0.01)
    b.put("f_minus_di_14", talib.MINUS_DI(h, lo, c, 14), 0.01)
    down, up = talib.AROON(h, lo, 25)
    b.put("f_aroon_up_25", up, 0.01)
    b.put("f_aroon_down_25", down, 0.01)
    b.put("f_aroonosc_25", talib.AROONOSC(h, lo, 25), 0.01)
    b.put("f_ultosc", talib.ULTOSC(h, lo, c, 7, 14, 28), 0.01)
    b.put("f_cmo_14", talib.CMO(c, 14), 0.01)
    b.put("f_ppo", talib.PPO(c, 12, 26, _EMA), 0.01)
    b.put("f_trix_15", talib.TRIX(c, 15), 0.01)
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
    # BBANDS(20, 2, 2, SMA) from its own two ingredients: middle = SMA, bands = middle +- 2 std.
    middle, std = anchored_mean_std(c, 20)
    std[std <= 1e-10 * middle] = NAN  # a flat window has no bands (%b undefined, not +-inf)
    b.ratio("f_stddev_20", std, c)
    width = b.ratio("f_bb_width_20", std, middle)
    width *= 4.0
    pctb = b.col("f_bb_pctb_20")
    np.subtract(c, middle, out=pctb)
    np.divide(pctb, np.multiply(std, 4.0, out=std), out=pctb)
    pctb += 0.5


def anchored_mean_std(x: np.ndarray, period: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and population standard deviation of ``x`` over ``period`` rows.

    TA-Lib's SMA/STDDEV (and BBANDS) keep running sums of ``x`` and ``x**2`` for the whole
    series, so the rounding residue of a price's square, carried from the first row,
    swamps a small variance (a calm market after a volatile one) and makes a value depend
    on where the frame starts by ~1e-8. Here TA-Lib runs block by block on ``x`` minus a
    per-block anchor (a value of ``x`` at or before the block's first window, so causal),
    which bounds the residue by the block's own range and leaves the window's variance
    unchanged.
    """
    n = len(x)
    mean, std = np.empty(n), np.empty(n)
    head = min(period - 1, n)
    mean[:head] = NAN
    std[:head] = NAN
    for start in range(period - 1, n, _STAT_BLOCK):
        stop = min(start + _STAT_BLOCK, n)
        first = start - (period - 1)
        anchor = x[first]
        seg = np.subtract(x[first:stop], anchor)
        np.add(talib.SMA(seg, period)[period - 1 :], anchor, out=mean[start:stop])
        std[start:stop] = talib.STDDEV(seg, period, 1.0)[period - 1 :]
    return mean, std


def _volume(b: Block, h, lo, c, v) -> None:
    window = 24
    volume_sum = talib.SUM(v, window)
    idle = _no_volume(v, window)
    if idle is not None:
        volume_sum[idle] = NAN  # a running sum can leave a rounding residue instead of 0
    obv = b.lag_diff("f_obv_chg_24", talib.OBV(c, v), window)
    np.divide(obv, volume_sum, out=obv)
    ad = b.lag_diff("f_ad_chg_24", talib.AD(h, lo, c, v), window)
    np.divide(ad, volume_sum, out=ad)
    volume_mean = np.multiply(volume_sum, 1.0 / window, out=volume_sum)
    b.ratio("f_adosc", talib.ADOSC(h, lo, c, v, 3, 10), volume_mean)
    std = talib.STDDEV(v, window, 1.0)
    std[std <= 1e-6 * volume_mean] = NAN  # no dispersion (or only rounding residue): undefined
    z = b.col("f_volume_z_24")
    np.subtract(v, volume_mean, out=z)
    np.divide(z, std, out=z)


def _candles(b: Block, o, h, lo, c) -> None:
    bar_range = safe_denominator(np.subtract(h, lo))
    body = np.subtract(c, o)
    b.ratio("f_body_range", np.abs(body, out=body), bar_range)
    top = np.maximum(o, c)
    b.ratio("f_upper_shadow", np.subtract(h, top, out=top), bar_range)
    bottom = np.minimum(o, c)
    b.ratio("f_lower_shadow", np.subtract(bottom, lo, out=bottom), bar_range)
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
    if len(c) > 1:
        sq_sum = talib.SUM(np.square(r1[1:]), 24)
        np.maximum(sq_sum, 0.0, out=sq_sum)  # a running sum's residue may dip below 0
        np.sqrt(sq_sum, out=rvol[1:])


def _calendar(b: Block, epoch_ns: np.ndarray) -> None:
    minutes = epoch_ns // _NS_PER_MINUTE
    minute_of_day = minutes % _MINUTES_PER_DAY
    np.floor_divide(minutes, _MINUTES_PER_DAY, out=minutes)  # days since 1970-01-01 (Thu)
    minutes += 3
    day_of_week = np.remainder(minutes, 7, out=minutes)  # Monday = 0
    for name in ("f_hour_sin", "f_hour_cos"):
        np.take(_TABLES[name], minute_of_day, out=b.col(name))
    for name in ("f_dow_sin", "f_dow_cos"):
        np.take(_TABLES[name], day_of_week, out=b.col(name))
