"""Where an as-of partition's training and evaluation data lie in time.

As-of ``A`` (a partition window ``[A_start, A_end)``) is the moment ``A_end``: everything
the model may know happened before it. The evaluation window is the last ``eval_days``
before ``A_end``; training ends an embargo before the evaluation starts, so that no
training label (which looks ``horizon`` bars ahead) overlaps an evaluated bar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Windows:
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    eval_start: pd.Timestamp
    eval_end: pd.Timestamp

    @property
    def embargo(self) -> pd.Timedelta:
        return self.eval_start - self.train_end


def horizon_days(horizon: int, bar: pd.Timedelta) -> int:
    """Whole days covering at least ``horizon`` bars (never zero): the embargo after a
    training window, and how far ahead the labels of a features day look."""
    return max(1, math.ceil(horizon * bar / DAY))


def windows_for(
    as_of_end: pd.Timestamp, train_days: int, eval_days: int, horizon: int, bar: pd.Timedelta
) -> Windows:
    if train_days < 1 or eval_days < 1:
        raise ValueError("train_days and eval_days must be at least one day")
    eval_start = as_of_end - eval_days * DAY
    train_end = eval_start - horizon_days(horizon, bar) * DAY
    return Windows(train_end - train_days * DAY, train_end, eval_start, as_of_end)
