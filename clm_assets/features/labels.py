"""Forward-return labels: the only columns of the features frame that look into the future.

``label_fwd_return`` at bar t is ``close[t + horizon] / close[t] - 1`` and ``label_sign`` its
sign (-1, 0, 1). Both are NaN (null) for the last ``horizon`` bars of the frame, whose
future close is not in the data: a label is never extrapolated or padded.

Because a label at t needs ``horizon`` bars *after* t, a caller that computes a partition on
``[day - warm-up, day + 1 day)`` gets null labels for the day's last ``horizon`` bars; they
become known only once the next bars exist (re-materialise the day then, or load ``horizon``
extra bars after the day before computing).
"""

from __future__ import annotations

import operator

import numpy as np
import pandas as pd

from clm_assets.features.schema import LABEL_RETURN, LABEL_SIGN

LABEL_NAMES: tuple[str, str] = (LABEL_RETURN, LABEL_SIGN)


def check_horizon(horizon: int) -> int:
    """``horizon`` as a plain int; a ``ValueError`` unless it is an integer >= 1."""
    if isinstance(horizon, bool):
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
    try:
        value = operator.index(horizon)
    except TypeError as exc:
        raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}") from exc
    if value < 1:
        raise ValueError(f"horizon must be an integer >= 1, got {value}")
    return value


def fill_labels(close: np.ndarray, horizon: int, ret_out: np.ndarray, sign_out: np.ndarray) -> None:
    """Write both labels of ``close`` (float64, ascending bars) into the given float64 views."""
    horizon = check_horizon(horizon)
    n = len(close)
    known = max(n - horizon, 0)
    ret_out[known:] = np.nan
    if known:
        np.divide(close[horizon:], close[:known], out=ret_out[:known])
        np.subtract(ret_out[:known], 1.0, out=ret_out[:known])
    np.sign(ret_out, out=sign_out)  # sign(NaN) is NaN: null stays null


def compute_labels(close: np.ndarray | pd.Series, horizon: int) -> pd.DataFrame:
    """Both labels of one symbol's ascending closes, as a two-column float64 frame."""
    values = np.asarray(close, dtype=np.float64)
    out = np.empty((len(values), 2), dtype=np.float64, order="F")
    fill_labels(values, horizon, out[:, 0], out[:, 1])
    index = close.index if isinstance(close, pd.Series) else None
    return pd.DataFrame(out, columns=list(LABEL_NAMES), index=index, copy=False)
