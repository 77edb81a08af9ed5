"""The slices the assets read, named once: one symbol's rows of a time range, and one
(symbol, as-of) partition of a model-keyed table; plus the check that a range is complete.

A partition mapping (or a window read) returns zero rows for a day that was never
materialized, so every consumer that reads a range checks what it actually got.
"""

from __future__ import annotations

import pandas as pd

from clm_assets.storage.duckdb_store import SliceCell, TableSlice

ONE_KEY = pd.Timedelta(microseconds=1)
"""Width of a slice that selects exactly one as-of timestamp."""


class MissingPartitionsError(RuntimeError):
    """Upstream days a step needs are not materialized."""


def symbol_slice(
    schema: str, table: str, symbol: str, start: pd.Timestamp, end: pd.Timestamp,
    column: str = "open_time",
) -> TableSlice:  # fmt: skip
    """Rows of ``symbol`` with ``start <= column < end``."""
    return TableSlice(schema, table, (SliceCell((("symbol", symbol),), column, start, end),))


def as_of_slice(schema: str, table: str, symbol: str, as_of: pd.Timestamp) -> TableSlice:
    """The rows of one (symbol, as-of) partition."""
    return symbol_slice(schema, table, symbol, as_of, as_of + ONE_KEY, column="as_of")


def require_days(
    frame: pd.DataFrame, symbol: str, start: pd.Timestamp, end: pd.Timestamp, consumer: str
) -> None:
    """Every day of ``[start, end)`` must have rows, or the consumer would silently work on
    less; the error names the partitions to materialize."""
    present = set(frame["open_time"].dt.floor("D"))
    wanted = pd.date_range(start.floor("D"), end, freq="D", inclusive="left")
    missing = [d for d in wanted if d not in present]
    if missing:
        keys = ", ".join(f"{d:%Y-%m-%d}|{symbol}" for d in missing[:10])
        more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise MissingPartitionsError(
            f"{consumer} for {symbol} needs upstream partitions that are not materialized: "
            f"{keys}{more}. Materialize them first (or backfill the range)."
        )
