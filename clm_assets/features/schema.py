"""Column conventions of the ``features`` frame, shared by features, models and backtests.

Keys: ``open_time`` (tz-aware UTC bar open) and ``symbol``. ``close`` rides along as the
reference price (models that forecast prices and the RL environment need it) but is not a
feature. Every model input starts with ``f_``; every target starts with ``label_``, so a
label can never slip into the inputs by a naming accident.
"""

from __future__ import annotations

import pandas as pd

KEY_COLUMNS: tuple[str, str] = ("open_time", "symbol")
PRICE_COLUMN = "close"
FEATURE_PREFIX = "f_"
LABEL_PREFIX = "label_"
LABEL_RETURN = "label_fwd_return"
"""Simple return from the close of bar t to the close of bar t + horizon; null when the
bars it needs do not exist yet."""
LABEL_SIGN = "label_sign"
"""Sign of ``LABEL_RETURN`` (-1, 0, 1), null where the return is null."""
LABEL_HORIZON = "label_horizon"
"""Bars ahead the labels look (the same on every row): stored with the features so that a
model trained or evaluated on them can refuse a horizon other than its own. A setting
recorded with the labels, not a target."""


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith(FEATURE_PREFIX)]


def label_columns(frame: pd.DataFrame) -> list[str]:
    """The targets (``LABEL_HORIZON`` shares the prefix but is not one)."""
    return [c for c in frame.columns if c.startswith(LABEL_PREFIX) and c != LABEL_HORIZON]
