"""Model bytes in DuckDB: one row per (as-of, symbol) with a sha256 checked on every read.

The bytes and the registry row land in one transaction, so a registered version always
has its bytes. A blob whose checksum no longer matches is refused: evaluation must run
the exact model that training stored.
"""

from __future__ import annotations

import hashlib

import duckdb
import pandas as pd

from clm_assets.models.artifact import ModelArtifact
from clm_assets.models.base import ModelCard
from clm_assets.registry.versions import register
from clm_assets.storage.duckdb_store import (
    DuckDBStore,
    SliceCell,
    StorageError,
    TableSlice,
    replace_in,
)


class ModelChecksumError(StorageError):
    """Stored model bytes do not match their recorded sha256."""


def write_models(
    conn: duckdb.DuckDBPyConnection, table_slice: TableSlice, artifacts: list[ModelArtifact]
) -> None:
    """Replace the slice's models and register each, on the caller's transaction."""
    rows = pd.DataFrame(
        {
            "as_of": [a.as_of for a in artifacts],
            "symbol": [a.symbol for a in artifacts],
            "family": [a.family for a in artifacts],
            "version": [a.version for a in artifacts],
            "sha256": [a.sha256 for a in artifacts],
            "size_bytes": [len(a.blob) for a in artifacts],
            "code_version": [a.code_version for a in artifacts],
            "train_seconds": pd.array([a.train_seconds for a in artifacts], dtype="Float64"),
            "card": [a.card.to_json() for a in artifacts],
            "blob": [a.blob for a in artifacts],
        }
    )
    replace_in(conn, table_slice, rows)
    for artifact in artifacts:
        register(conn, artifact)


def read_models(store: DuckDBStore, table_slice: TableSlice) -> list[ModelArtifact]:
    rows = store.read(table_slice, order_by=['"symbol"', '"as_of"'])
    artifacts = []
    for row in rows.itertuples(index=False):
        blob = bytes(row.blob)
        if hashlib.sha256(blob).hexdigest() != row.sha256:
            raise ModelChecksumError(
                f"{row.family} model for {row.symbol} as of {row.as_of:%Y-%m-%d %H:%M} failed "
                f"its sha256 check (stored {row.sha256[:12]}…): the bytes were altered; "
                "re-materialize the model partition"
            )
        artifacts.append(
            ModelArtifact(
                family=row.family,
                symbol=row.symbol,
                as_of=row.as_of,
                blob=blob,
                card=ModelCard.from_json(row.card),
                code_version=row.code_version,
                train_seconds=None if pd.isna(row.train_seconds) else float(row.train_seconds),
            )
        )
    if not artifacts:
        raise StorageError(f"no stored models in {table_slice.qualified} for this partition")
    return artifacts


def read_model(store: DuckDBStore, family: str, symbol: str, as_of: pd.Timestamp) -> ModelArtifact:
    """The one stored model of (family, symbol, as-of), checksum verified."""
    as_of = pd.Timestamp(as_of)
    as_of = as_of.tz_localize("UTC") if as_of.tzinfo is None else as_of.tz_convert("UTC")
    cell = SliceCell((("symbol", symbol),), "as_of", as_of, as_of + pd.Timedelta(microseconds=1))
    (artifact,) = read_models(store, TableSlice("models", family, (cell,)))
    return artifact
