"""Helpers shared by ``registry.decisions``, ``.evaluations`` and ``.promotion``:
timestamps and JSON as they are stored, and transactions.

Timestamps are stored naive in UTC; they are read back tz-aware UTC. JSON columns hold
plain JSON types only (NaN/inf become null). Writers run in one transaction: their own, or
the caller's when one is already open (:func:`atomic`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from clm_assets.registry.gates import finite_or_none

# --------------------------------------------------------------------------- timestamps


def utc(ts: Any) -> pd.Timestamp:
    """A tz-aware UTC timestamp; naive input is read as UTC (how it is stored)."""
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def naive(ts: Any) -> datetime:
    """A naive UTC datetime: how timestamps are stored."""
    return utc(ts).tz_localize(None).to_pydatetime()


def utc_now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC))


# --------------------------------------------------------------------------- JSON


def json_safe(value: Any) -> Any:
    """Plain JSON types; NaN/inf become None (JSON has no NaN, and it is not a value)."""
    if value is None or isinstance(value, (bool, np.bool_, str)):
        return bool(value) if isinstance(value, np.bool_) else value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return finite_or_none(value)
    if isinstance(value, (pd.Timestamp, datetime)):
        return pd.Timestamp(value).isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    raise TypeError(f"cannot record {type(value).__name__} {value!r} as JSON")


def dumps(value: Any) -> str:
    return json.dumps(json_safe(value), sort_keys=True, allow_nan=False)


# --------------------------------------------------------------------------- connections


def _in_transaction(conn: duckdb.DuckDBPyConnection) -> bool:
    """Inside an explicit transaction the transaction id stays put between statements;
    in auto-commit mode every statement gets a new one. (A failed ``BEGIN`` would abort
    the caller's transaction, so it cannot be used as the probe.)"""
    first = conn.execute("SELECT txid_current()").fetchone()
    second = conn.execute("SELECT txid_current()").fetchone()
    return first == second


@contextmanager
def atomic(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """Our own transaction, or the caller's when one is open (it commits or rolls back)."""
    if _in_transaction(conn):
        yield
        return
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def has_table(conn: duckdb.DuckDBPyConnection, table: str) -> bool:
    rows = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'registry' "
        "AND table_name = ?",
        [table],
    ).fetchall()
    return bool(rows)
