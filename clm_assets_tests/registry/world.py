"""A small stored world for promotion tests: raw bars, registered model versions, their
evaluation rows and per-bar evaluation backtests, written into real DuckDB tables the way
the evaluation assets write them (``run_backtest`` over each evaluation window), without
training models.

A family's held position at bar t depends only on the bar (``edge``: the bar's own
direction with probability ``hit``; ``noise``: a fair coin), so overlapping evaluation
windows of consecutive as-ofs agree, as the positions of one procedure would.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clm_assets.backtest.engine import run_backtest
from clm_assets.registry import versions
from clm_assets.registry._db import naive
from clm_assets.registry.evaluations import record_evaluation
from clm_assets.storage.duckdb_store import DuckDBStore, replace_in
from clm_assets.storage.slices import symbol_slice
from clm_assets_tests.factories import random_walk_bars

DAY = pd.Timedelta(days=1)
FEE_BPS = 1.0


@dataclass(frozen=True)
class World:
    store: DuckDBStore
    symbol: str
    bars: pd.DataFrame
    as_ofs: tuple[pd.Timestamp, ...]
    """Partition starts; an as-of's end (its decision time) is the next midnight."""
    held: dict[str, pd.Series]
    """Per family, the position held in each bar (indexed by open time)."""

    def version(self, family: str, as_of: pd.Timestamp) -> str:
        return f"{family}-{as_of:%Y%m%d}"


def held_positions(bars: pd.DataFrame, policy: str, seed: int, hit: float) -> pd.Series:
    rng = np.random.default_rng(seed)
    up = np.sign(bars["close"].to_numpy() - bars["open"].to_numpy())
    if policy == "edge":
        right = rng.random(len(bars)) < hit
        held = np.where(right, up, -up)
    elif policy == "noise":
        held = rng.choice([-1.0, 1.0], len(bars))
    elif policy == "flat":
        held = np.zeros(len(bars))
    else:
        raise ValueError(f"unknown policy {policy!r}")
    return pd.Series(held.astype(np.float64), index=pd.DatetimeIndex(bars["open_time"]))


def register(store: DuckDBStore, family: str, symbol: str, as_of, version: str) -> None:
    """A model_versions row (what training writes next to the bytes) for ``version``."""
    with store.transaction() as conn:
        register_in(conn, family, symbol, as_of, version)


def register_in(conn, family: str, symbol: str, as_of, version: str) -> None:
    """Lineage columns other than the key and version get neutral values of their type
    (these tests read only the key, version and status)."""
    versions.ensure_schema(conn)
    key = {"family": family, "symbol": symbol, "as_of": naive(as_of)}
    conn.execute(
        "DELETE FROM registry.model_versions WHERE family = ? AND symbol = ? AND as_of = ?",
        list(key.values()),
    )
    known = {**key, "version": version, "status": "TRAINING"}
    columns = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'registry' AND table_name = 'model_versions' "
        "ORDER BY ordinal_position"
    ).fetchall()
    neutral = {"VARCHAR": "x", "JSON": "{}", "TIMESTAMP": naive(as_of)}
    values = [known.get(name, neutral.get(kind, 0)) for name, kind in columns]
    marks = ", ".join("?" for _ in columns)
    conn.execute(f"INSERT INTO registry.model_versions VALUES ({marks})", values)


def build_world(
    store: DuckDBStore,
    policies: dict[str, str],
    *,
    days: int,
    first_as_of_day: int,
    eval_days: int = 7,
    cadence_days: int = 1,
    symbol: str = "BTC-USDT",
    hit: float = 0.6,
    seed: int = 0,
) -> World:
    """``days`` days of hourly bars from 2024-01-01; as-ofs every ``cadence_days`` from day
    ``first_as_of_day`` to the last day, each family evaluated on the ``eval_days`` before
    its as-of's end with ``policies[family]`` positions."""
    bars = random_walk_bars(days * 24, seed=seed, start="2024-01-01")
    bars.insert(1, "symbol", symbol)
    start = bars["open_time"].iloc[0]
    store.replace(symbol_slice("market_data", "raw_ohlcv", symbol, start, start + days * DAY), bars)
    as_ofs = tuple(start + d * DAY for d in range(first_as_of_day, days, cadence_days))
    held = {
        f: held_positions(bars, p, seed + 1 + i, hit) for i, (f, p) in enumerate(policies.items())
    }
    world = World(store, symbol, bars, as_ofs, held)
    with store.transaction() as conn:
        for family in policies:
            frame = pd.concat(
                [evaluate(conn, world, family, a, eval_days) for a in as_ofs], ignore_index=True
            )
            where = symbol_slice(
                "evaluation", f"backtest_{family}", symbol, as_ofs[0], as_ofs[-1] + DAY, "as_of"
            )
            replace_in(conn, where, frame)
    return world


def evaluate(conn, world: World, family: str, as_of: pd.Timestamp, eval_days: int) -> pd.DataFrame:
    """What ``evaluation/backtest_<family>`` stores for one as-of, and its registry rows."""
    end = as_of + DAY
    start = end - eval_days * DAY
    window = world.bars[(world.bars["open_time"] >= start) & (world.bars["open_time"] < end)]
    held = world.held[family].reindex(window["open_time"]).to_numpy()
    target = np.append(held[1:], 0.0)  # held[k] = target[k - 1]
    result = run_backtest(
        window["open_time"], window["open"], window["close"], target, fee_bps=FEE_BPS
    )
    version = world.version(family, as_of)
    register_in(conn, family, world.symbol, as_of, version)
    record_evaluation(
        conn,
        family=family,
        symbol=world.symbol,
        as_of=as_of,
        version=version,
        eval_start=start,
        eval_end=end,
        bars=result.n_bars,
        metrics={},
    )
    frame = result.to_frame()
    frame.insert(0, "as_of", as_of)
    frame.insert(1, "symbol", world.symbol)
    return frame
