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
    feature_count INTEGER NOT NULL,
    horizon INTEGER NOT NULL,
    seed BIGINT NOT NULL,
    data_hash VARCHAR NOT NULL,
    params JSON NOT NULL,
    library_versions JSON NOT NULL,
    code_version VARCHAR NOT NULL,
    train_seconds DOUBLE NOT NULL,
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
    conn.execute(f"DELETE FROM registry.model_versions {where}", key)
    conn.execute(
        "INSERT INTO registry.model_versions VALUES "
        "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            *key,
            artifact.version,
            status,
            artifact.sha256,
            len(artifact.blob),
            _naive(pd.Timestamp(card.train_start)),
            _naive(pd.Timestamp(card.train_end)),
            card.rows,
            len(card.feature_columns),
            card.horizon,
            card.seed,
            card.data_hash,
            json.dumps(card.params, sort_keys=True, default=str),
            json.dumps(card.library_versions, sort_keys=True),
            artifact.code_version,
            card.train_seconds,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    )


def _naive(ts: pd.Timestamp) -> datetime:
    ts = pd.Timestamp(ts)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo else ts).to_pydatetime()
