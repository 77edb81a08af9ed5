"""``registry.model_versions``: one row per (family, symbol, as-of), with full lineage.

Written in the same transaction as the model bytes, so a registered version always has
its bytes and bytes never exist without a registry row.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd

from clm_assets.models.artifact import ModelArtifact

TRAINING, CANDIDATE, PRODUCTION, RETIRED, REJECTED = (
    "TRAINING",
    "CANDIDATE",
    "PRODUCTION",
    "RETIRED",
    "REJECTED",
)
STATUSES = (TRAINING, CANDIDATE, PRODUCTION, RETIRED, REJECTED)

DDL = """
CREATE SCHEMA IF NOT EXISTS registry;
CREATE TABLE IF NOT EXISTS registry.model_versions (
    family VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    version VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    model_sha256 VARCHAR NOT NULL,
    size_bytes BIGINT NOT NULL,
    train_start TIMESTAMP NOT NULL,
    train_end TIMESTAMP NOT NULL,
    rows BIGINT NOT NULL,
    rows_unlabeled BIGINT NOT NULL,
    feature_count INTEGER NOT NULL,
    horizon INTEGER NOT NULL,
    seed BIGINT NOT NULL,
    data_hash VARCHAR NOT NULL,
    params JSON NOT NULL,
    library_versions JSON NOT NULL,
    code_version VARCHAR NOT NULL,
    train_seconds DOUBLE,
    registered_at TIMESTAMP NOT NULL,
    PRIMARY KEY (family, symbol, as_of)
);
"""


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(DDL)


def register(conn: duckdb.DuckDBPyConnection, artifact: ModelArtifact) -> None:
    """Insert or replace the row of ``artifact``'s (family, symbol, as-of): TRAINING for new
    bytes, the recorded status for the same bytes."""
    ensure_schema(conn)
    card = artifact.card
    key = [artifact.family, artifact.symbol, _naive(artifact.as_of)]
    where = "WHERE family = ? AND symbol = ? AND as_of = ?"
    same = conn.execute(
        f"SELECT status FROM registry.model_versions {where} AND version = ?",
        [*key, artifact.version],
    ).fetchall()
    # Re-training to the same bytes (training is deterministic) keeps the decided status:
    # re-materializing the champion's partition must not silently dethrone it.
    status = same[0][0] if same else TRAINING
    values = {
        "family": artifact.family,
        "symbol": artifact.symbol,
        "as_of": key[2],
        "version": artifact.version,
        "status": status,
        "model_sha256": artifact.sha256,
        "size_bytes": len(artifact.blob),
        "train_start": _naive(pd.Timestamp(card.train_start)),
        "train_end": _naive(pd.Timestamp(card.train_end)),
        "rows": card.rows,
        "rows_unlabeled": card.rows_unlabeled,
        "feature_count": len(card.feature_columns),
        "horizon": card.horizon,
        "seed": card.seed,
        "data_hash": card.data_hash,
        "params": json.dumps(card.params, sort_keys=True, default=str),
        "library_versions": json.dumps(card.library_versions, sort_keys=True),
        "code_version": artifact.code_version,
        "train_seconds": artifact.train_seconds,
        "registered_at": datetime.now(UTC).replace(tzinfo=None),
    }
    _require_columns(conn, list(values))
    conn.execute(f"DELETE FROM registry.model_versions {where}", key)
    conn.execute(
        f"INSERT INTO registry.model_versions ({', '.join(values)}) "
        f"VALUES ({', '.join('?' * len(values))})",
        list(values.values()),
    )


def _require_columns(conn: duckdb.DuckDBPyConnection, columns: list[str]) -> None:
    """A table made by an older clm lacks new columns: say so, not a DuckDB binder error."""
    existing = {
        name
        for (name,) in conn.execute(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'registry' AND table_name = 'model_versions'"
        ).fetchall()
    }
    missing = [c for c in columns if c not in existing]
    if missing:
        raise RuntimeError(
            f"registry.model_versions has no column(s) {missing}: it was created by an older "
            "clm; start from a new database (CLM_DB_PATH) or drop the registry schema and "
            "re-materialize the model partitions"
        )


def _naive(ts: pd.Timestamp) -> datetime:
    ts = pd.Timestamp(ts)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()
