"""DDL of ``registry.evaluations`` and ``registry.promotions``, next to
``registry.model_versions`` (``registry.versions``).

* ``registry.evaluations``: one row per evaluated model (family, symbol, as-of), written
  by ``registry.evaluations.record_evaluation``.
* ``registry.promotions``: one row per decision (``registry.promotion``), ordered by
  ``seq``; :data:`PROMOTION_COLUMNS` lists its columns in the order they are written.
"""

from __future__ import annotations

import duckdb

from clm_assets.registry import versions

DDL = """
CREATE SCHEMA IF NOT EXISTS registry;
CREATE TABLE IF NOT EXISTS registry.evaluations (
    family VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    version VARCHAR NOT NULL,
    eval_start TIMESTAMP NOT NULL,
    eval_end TIMESTAMP NOT NULL,
    bars BIGINT NOT NULL,
    metrics JSON NOT NULL,
    sharpe DOUBLE,
    max_drawdown DOUBLE,
    profit_factor DOUBLE,
    trade_count BIGINT,
    psr_vs_flat DOUBLE,
    tearsheet_path VARCHAR,
    costs JSON,
    incumbent_family VARCHAR,
    incumbent_as_of TIMESTAMP,
    incumbent_version VARCHAR,
    evaluated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (family, symbol, as_of)
);
CREATE TABLE IF NOT EXISTS registry.promotions (
    decision_id VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    symbol VARCHAR NOT NULL,
    as_of TIMESTAMP NOT NULL,
    decided_at TIMESTAMP NOT NULL,
    action VARCHAR NOT NULL,
    champion_family VARCHAR,
    champion_version VARCHAR,
    champion_as_of TIMESTAMP,
    previous_family VARCHAR,
    previous_version VARCHAR,
    previous_as_of TIMESTAMP,
    forced BOOLEAN NOT NULL,
    gate_reports JSON NOT NULL,
    reason TEXT NOT NULL
);
"""

PROMOTION_COLUMNS = (
    "decision_id",
    "seq",
    "symbol",
    "as_of",
    "decided_at",
    "action",
    "champion_family",
    "champion_version",
    "champion_as_of",
    "previous_family",
    "previous_version",
    "previous_as_of",
    "forced",
    "gate_reports",
    "reason",
)


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    versions.ensure_schema(conn)
    conn.execute(DDL)
