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


class HorizonMismatchError(ValueError):
    """Features labelled for one horizon read by a consumer that expects another."""


def check_label_horizon(frame: pd.DataFrame, expected: int, consumer: str) -> None:
    """Refuse features whose labels look a different number of bars ahead than ``expected``.

    Changing ``CLM_LABEL_HORIZON`` does not re-materialize stored features, so without this
    a model would silently learn (or be scored against) the old horizon's labels.
    """
    if LABEL_HORIZON not in frame.columns:
        raise HorizonMismatchError(
            f"{consumer}: the stored features have no {LABEL_HORIZON} column (written by an "
            "older clm); re-materialize features"
        )
    found = sorted(int(h) for h in frame[LABEL_HORIZON].dropna().unique())
    if found and found != [expected]:
        raise HorizonMismatchError(
            f"{consumer}: the stored features are labelled {', '.join(map(str, found))} bars ahead"
            f" but {expected} bars are expected; re-materialize features with "
            f"CLM_LABEL_HORIZON={expected} (or set it back to what the features were built with)"
        )
