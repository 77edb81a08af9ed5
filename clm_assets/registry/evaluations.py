"""``registry.evaluations``: the metrics of each model's evaluation, one row per
(family, symbol, as-of), replaced when the model is evaluated again.

Promotion reads these rows for the windows and versions of each family's record
(``clm_assets.promotion.scoring``); the paired comparison with the incumbent lives in the
decision (``registry.promotions``), not here. ``incumbent_*`` columns are set only by a
caller that computed the evaluation's ``psr_vs_incumbent`` metric against a champion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import duckdb

from clm_assets.registry._db import atomic, dumps, has_table, naive, utc, utc_now
from clm_assets.registry.decisions import ChampionRef, RegistryError
from clm_assets.registry.gates import finite_or_none
from clm_assets.registry.schema import ensure_schema


def evaluation(
    conn: duckdb.DuckDBPyConnection, family: str, symbol: str, as_of: Any
) -> dict[str, Any] | None:
    """The evaluation row of one model (metrics parsed, timestamps UTC), or None."""
    if not has_table(conn, "evaluations"):
        return None
    cur = conn.execute(
        "SELECT * FROM registry.evaluations WHERE family = ? AND symbol = ? AND as_of = ?",
        [family, symbol, naive(as_of)],
    )
    row = cur.fetchone()
    if row is None:
        return None
    out = dict(zip([d[0] for d in cur.description], row, strict=True))
    out["metrics"] = json.loads(out["metrics"])
    for col in ("as_of", "eval_start", "eval_end", "incumbent_as_of", "evaluated_at"):
        if out[col] is not None:
            out[col] = utc(out[col])
    return out


def record_evaluation(
    conn: duckdb.DuckDBPyConnection,
    *,
    family: str,
    symbol: str,
    as_of: Any,
    version: str,
    eval_start: Any,
    eval_end: Any,
    bars: int,
    metrics: Mapping[str, Any],
    tearsheet_path: str | None = None,
    costs: Mapping[str, Any] | None = None,
    incumbent: ChampionRef | None = None,
) -> None:
    """Insert or replace the evaluation of (``family``, ``symbol``, ``as_of``).

    ``metrics`` are ``metrics_table`` keys (stored whole as JSON, NaN as null; the gate
    metrics also as columns); ``incumbent`` is the champion ``psr_vs_incumbent`` was
    computed against (None: there was none), so a later manual promotion can tell whether
    that comparison still concerns the current champion; ``costs`` are the fees, slippage
    and long-only switch the returns were computed with.
    """
    if int(bars) < 0:
        raise RegistryError(f"bars must be >= 0, got {bars}")
    trades = finite_or_none(metrics.get("trade_count"))
    key = [family, symbol, naive(as_of)]
    with atomic(conn):
        ensure_schema(conn)
        conn.execute(
            "DELETE FROM registry.evaluations WHERE family = ? AND symbol = ? AND as_of = ?",
            key,
        )
        conn.execute(
            "INSERT INTO registry.evaluations (family, symbol, as_of, version, eval_start, "
            "eval_end, bars, metrics, sharpe, max_drawdown, profit_factor, trade_count, "
            "psr_vs_flat, tearsheet_path, costs, incumbent_family, incumbent_as_of, "
            "incumbent_version, evaluated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                *key,
                version,
                naive(eval_start),
                naive(eval_end),
                int(bars),
                dumps(dict(metrics)),
                finite_or_none(metrics.get("sharpe")),
                finite_or_none(metrics.get("max_drawdown")),
                finite_or_none(metrics.get("profit_factor")),
                None if trades is None else round(trades),
                finite_or_none(metrics.get("psr")),
                tearsheet_path,
                None if costs is None else dumps(dict(costs)),
                None if incumbent is None else incumbent.family,
                None if incumbent is None else naive(incumbent.as_of),
                None if incumbent is None else incumbent.version,
                naive(utc_now()),
            ],
        )
