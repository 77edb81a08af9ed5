"""One DuckDB file for every asset, written so that concurrent runs never lose data.

DuckDB lets one process write at a time and any open connection (read-only too) blocks
a writer, so every connection here is short-lived and opened through ``connect``, which
waits for the file lock instead of failing after a fixed number of tries. A partition is
replaced by ``DELETE`` + ``INSERT BY NAME`` inside one transaction: a crash between the
two cannot leave a partition empty, and a reordered frame cannot land in the wrong
columns. Timestamps are stored as naive UTC and every session runs with ``TimeZone='UTC'``,
so the process time zone can never shift a partition boundary.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa


class StorageError(RuntimeError):
    """A write or read was refused because it would lose or corrupt data."""


@dataclass(frozen=True)
class SliceCell:
    """The rows one partition (or a contiguous run of partitions) owns.

    ``equals`` pins static dimensions (``symbol = 'BTC-USD'``); ``time_column`` with
    ``[start, end)`` bounds the time dimension. Bounds are tz-aware UTC.
    """

    equals: tuple[tuple[str, str], ...] = ()
    time_column: str | None = None
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None


@dataclass(frozen=True)
class TableSlice:
    """A table and the cells of it an operation touches; no cells means the whole table."""

    schema: str
    table: str
    cells: tuple[SliceCell, ...] = ()

    @property
    def qualified(self) -> str:
        return f'"{self.schema}"."{self.table}"'

    def where(self) -> tuple[str, list[Any]]:
        """A parameterised predicate; bounds go in as naive UTC datetimes, never as text."""
        if not self.cells:
            return "TRUE", []
        clauses, params = [], []
        for cell in self.cells:
            parts = []
            for column, value in cell.equals:
                parts.append(f'"{column}" = ?')
                params.append(value)
            if cell.time_column is not None:
                parts.append(f'"{cell.time_column}" >= ? AND "{cell.time_column}" < ?')
                params += [_naive_utc(cell.start), _naive_utc(cell.end)]
            clauses.append("(" + " AND ".join(parts or ["TRUE"]) + ")")
        return " OR ".join(clauses), params

    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of ``frame`` fall inside this slice (the same predicate as ``where``)."""
        if not self.cells:
            return np.ones(len(frame), dtype=bool)
        inside = np.zeros(len(frame), dtype=bool)
        for cell in self.cells:
            hit = np.ones(len(frame), dtype=bool)
            for column, value in cell.equals:
                hit &= (frame[column] == value).to_numpy()
            if cell.time_column is not None:
                t = frame[cell.time_column]
                start, end = cell.start, cell.end
                if pd.api.types.is_datetime64_dtype(t.dtype):  # naive: UTC, as stored
                    start, end = pd.Timestamp(_naive_utc(start)), pd.Timestamp(_naive_utc(end))
                hit &= ((t >= start) & (t < end)).to_numpy()
            inside |= hit
        return inside


def _naive_utc(ts: pd.Timestamp | None) -> Any:
    if ts is None:
        raise StorageError("a time-bounded slice needs both bounds")
    ts = pd.Timestamp(ts)
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    return ts.to_pydatetime()


def _create_whole(path: Path) -> None:
    """Create an empty database at ``path`` so that other processes see it whole or not at all.

    DuckDB creates the file, then writes its header; a process opening the path in between
    finds an empty file and fails with "not a valid DuckDB database file" (two writers
    starting on a new file did, in a .ci/run). The database is made under a unique name in
    the same folder and hard-linked into place: the link fails if the path exists, so
    whoever links first wins and the other opens that file; a rename would replace a file
    another process may already have written to.
    """
    scratch = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}.new")
    try:
        duckdb.connect(str(scratch)).close()
        with suppress(FileExistsError):
            os.link(scratch, path)
    except (duckdb.Error, OSError) as exc:
        reason = " ".join(str(exc).split())
        raise StorageError(f"cannot create DuckDB file {path}: {reason}") from None
    finally:
        scratch.unlink(missing_ok=True)
        scratch.with_name(scratch.name + ".wal").unlink(missing_ok=True)


_TIME_TYPES = ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S")


class DuckDBStore:
    """Short-lived connections to one DuckDB file, with lock waiting and safe replaces."""

    def __init__(
        self, path: str | Path, lock_timeout_s: float = 600.0, read_only: bool = False
    ) -> None:
        self.path = Path(path)
        self.lock_timeout_s = lock_timeout_s
        self.read_only = read_only  # sensors: never take the single writer's place

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """Open, yield, close. Waits (with jittered backoff) while another process writes;
        any other failure to open (a directory, an unwritable folder, a file that is not a
        DuckDB database) is reported at once with the path, never as a lock wait."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create the folder of {self.path}: {exc}") from None
        if not self.read_only and not self.path.exists():
            _create_whole(self.path)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.02
        while True:
            try:
                conn = duckdb.connect(str(self.path), read_only=self.read_only)
                break
            except duckdb.Error as exc:
                reason = " ".join(str(exc).split())
                if not _is_lock_conflict(exc):
                    raise StorageError(f"cannot open DuckDB file {self.path}: {reason}") from None
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"could not open {self.path}: another process held its lock for "
                        f"{self.lock_timeout_s:g} s (CLM_LOCK_TIMEOUT_S): {reason}"
                    ) from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            conn.execute("SET enable_progress_bar = false")
            _check_complete(conn, self.path)
            yield conn
        except duckdb.IOException as exc:  # a damaged file fails on the first read of it
            reason = " ".join(str(exc).split())
            raise StorageError(f"cannot read DuckDB file {self.path}: {reason}") from None
        finally:
            conn.close()

    def replace(self, table_slice: TableSlice, frame: pd.DataFrame) -> int:
        """Replace exactly the rows of ``table_slice`` with ``frame``, atomically.

        Refuses an empty frame (it would silently wipe a partition) and rows outside the
        slice (a neighbouring partition's re-materialization would duplicate them).
        """
        with self.transaction() as conn:
            replace_in(conn, table_slice, frame)
        return len(frame)

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One connection, one transaction: everything inside lands together or not at all."""
        with self.connect() as conn:
            conn.execute("BEGIN TRANSACTION")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def read(
        self,
        table_slice: TableSlice,
        columns: Sequence[str] | None = None,
        order_by: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Rows of the slice through Arrow (about twice as fast as ``fetchdf``)."""
        cols = ", ".join(f'"{c}"' for c in columns) if columns else "*"
        where, params = table_slice.where()
        order = f" ORDER BY {', '.join(order_by)}" if order_by else ""
        with self.connect() as conn:
            if not _table_exists(conn, table_slice):
                raise StorageError(
                    f"table {table_slice.qualified} does not exist in {self.path}: "
                    "materialize the upstream asset first"
                )
            sql = f"SELECT {cols} FROM {table_slice.qualified} WHERE {where}{order}"
            table = conn.sql(sql, params=params).to_arrow_table()
        return _from_storage(table)

    def query(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        with self.connect() as conn:
            return _from_storage(conn.sql(sql, params=list(params)).to_arrow_table())

    def table_exists(self, schema: str, table: str) -> bool:
        if not self.path.exists():
            return False
        with self.connect() as conn:
            return _table_exists(conn, TableSlice(schema, table))


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()


def _check_complete(conn: duckdb.DuckDBPyConnection, path: Path) -> None:
    """A truncated file opens, and reads as if the lost blocks held nothing: tables may
    simply look empty (a status of "no decision recorded"). Every block in use occupies its
    own slot of the file, so a file shorter than its used blocks is refused before anything
    is read (free blocks at the tail may legitimately have been cut off by DuckDB)."""
    ((block_size, used),) = conn.execute(
        "SELECT block_size, used_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()"
    ).fetchall()
    size = path.stat().st_size
    if size < block_size * used:
        raise StorageError(
            f"DuckDB file {path} is truncated: {size} bytes on disk, but {used} blocks of "
            f"{block_size} bytes are in use; restore it from a backup, or delete it and "
            "re-materialize"
        )


def check_writable(path: Path) -> None:
    """Raise ``StorageError`` unless a DuckDB file can be written at ``path``.

    DuckDB only finds out when it first opens the file, which in a pipeline is after a step
    has computed its output; checking up front turns that into an error before any work.
    The file's folder must accept new files (DuckDB writes its ``.wal`` next to the file),
    which is tested by creating and removing a temporary file, because permission bits
    tell nothing to root. A folder that does not exist yet is fine when its nearest
    existing ancestor is a writable folder (``connect`` creates it).
    """
    if path.is_dir():
        raise StorageError(f"{path} is a directory; give the path of a DuckDB file")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise StorageError(f"cannot create {path}: {folder} is a file, not a directory")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
        if path.exists():
            path.open("r+b").close()
    except OSError as exc:
        raise StorageError(f"cannot write {path}: {exc.strerror or exc}") from None


def replace_in(
    conn: duckdb.DuckDBPyConnection, table_slice: TableSlice, frame: pd.DataFrame
) -> None:
    """``DELETE`` the slice and ``INSERT BY NAME`` the frame on an open transaction."""
    if frame.empty:
        raise StorageError(
            f"refusing to replace {table_slice.qualified} slice with an empty frame: "
            "that would delete the partition and write nothing"
        )
    outside = ~table_slice.mask(frame)
    if outside.any():
        raise StorageError(
            f"{int(outside.sum())} rows lie outside the partition being written to "
            f"{table_slice.qualified}; first: {frame[outside].iloc[0].to_dict()}"
        )
    incoming = _to_storage(frame)
    where, params = table_slice.where()
    conn.register("incoming", incoming)
    try:
        conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{table_slice.schema}"')
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {table_slice.qualified} AS SELECT * FROM incoming LIMIT 0"
        )
        _check_schema(conn, table_slice, list(incoming.columns))
        conn.execute(f"DELETE FROM {table_slice.qualified} WHERE {where}", params)
        conn.execute(f"INSERT INTO {table_slice.qualified} BY NAME SELECT * FROM incoming")
    finally:
        with suppress(duckdb.Error):  # after a failed statement only ROLLBACK is allowed
            conn.unregister("incoming")


def _table_exists(conn: duckdb.DuckDBPyConnection, table_slice: TableSlice) -> bool:
    rows = conn.execute(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [table_slice.schema, table_slice.table],
    ).fetchall()
    return bool(rows)


def _check_schema(
    conn: duckdb.DuckDBPyConnection, table_slice: TableSlice, columns: list[str]
) -> None:
    existing = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position",
        [table_slice.schema, table_slice.table],
    ).fetchall()
    types = dict(existing)
    if set(types) != set(columns):
        raise StorageError(
            f"{table_slice.qualified} has columns {sorted(types)} but the output has "
            f"{sorted(columns)}; drop the table (or re-materialize every partition) after a "
            "schema change"
        )
    for cell in table_slice.cells:
        col = cell.time_column
        if col is not None and types[col] not in _TIME_TYPES:
            raise StorageError(
                f"{table_slice.qualified}.{col} is {types[col]}, not a TIMESTAMP: partition "
                "bounds would be compared as text"
            )


def _to_storage(frame: pd.DataFrame) -> pd.DataFrame:
    """Shallow copy with tz-aware columns as naive UTC (what the time bounds assume)."""
    out = frame.copy(deep=False)
    for col in out.columns:
        dtype = out[col].dtype
        if isinstance(dtype, pd.DatetimeTZDtype):
            out[col] = out[col].dt.tz_convert("UTC").dt.tz_localize(None)
    return out


def _from_storage(table: pa.Table) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get)
    for field in table.schema:
        if pa.types.is_timestamp(field.type):
            col = frame[field.name]
            frame[field.name] = (
                col.dt.tz_localize("UTC") if col.dt.tz is None else col.dt.tz_convert("UTC")
            ).astype("datetime64[ns, UTC]")
    return frame
