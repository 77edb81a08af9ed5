"""The production path of promotion (``promotion.scoring``): records stitched from what the
evaluation assets stored, judged with the DEFAULT gates, on real DuckDB tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.window import Costs
from clm_assets.promotion.scoring import Context, decide_as_of, family_records
from clm_assets.registry.decisions import DECISION_KEY, NO_CHAMPION, PROMOTED
from clm_assets.registry.gates import Gates
from clm_assets.registry.promotion import apply, champion, history
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.registry.world import DAY, FEE_BPS, build_world, register

DEFAULTS = Context(Gates(), Costs(fee_bps=FEE_BPS), "1h")


def end_of(as_of: pd.Timestamp) -> pd.Timestamp:
    return as_of + DAY


@pytest.fixture(scope="module")
def long_world(tmp_path_factory: pytest.TempPathFactory):
    """200 days; weekly as-ofs with 7-day evaluation windows (the README's recipe) from day
    7: a planted edge (xgboost) and no edge (lightgbm)."""
    store = DuckDBStore(tmp_path_factory.mktemp("scoring") / "clm.duckdb", lock_timeout_s=30)
    policies = {"xgboost": "edge", "lightgbm": "noise"}
    return build_world(store, policies, days=200, first_as_of_day=7, cadence_days=7, hit=0.56)


def test_default_gates_promote_a_planted_edge_and_refuse_no_edge(long_world) -> None:
    as_of = long_world.as_ofs[-1]
    decision = decide_as_of(long_world.store, long_world.symbol, as_of, end_of, None, DEFAULTS)
    assert decision.action == PROMOTED
    assert decision.champion.family == "xgboost"
    assert decision.champion.version == long_world.version("xgboost", as_of)
    noise = decision.reports["lightgbm"]
    assert not noise.passed and "dsr" in noise.failed
    assert noise.gate("record_bars").passed  # refused for its DSR, not for its length
    record = decision.gate_reports["xgboost"]["metrics"]
    # the whole default lookback, one segment per as-of; weekly windows tile it, and the
    # first bar of each window, which its evaluation did not trade (its first fill is at
    # the second open), is held flat
    start = end_of(as_of) - Gates().lookback_days * DAY
    window_starts = [a + DAY - 7 * DAY for a in long_world.as_ofs]
    flat = sum(start <= t < end_of(as_of) for t in window_starts)
    assert record["covered_bars"] == Gates().lookback_days * 24 - flat
    assert record["window"][1] == end_of(as_of).isoformat()
    assert len(record["as_ofs"]) == Gates().lookback_days // 7 + 1
    assert decision.gate_reports[DECISION_KEY]["trials"] == 2
    assert decision.gate_reports[DECISION_KEY]["missing_families"] == ["nhits", "patchtst", "ppo"]
    with long_world.store.connect() as conn:
        apply(conn, decision)
        assert champion(conn, long_world.symbol) == decision.champion
        row = history(conn, long_world.symbol).iloc[-1]
    assert (
        row.gate_reports["xgboost"]["metrics"]["dsr"]
        == decision.reports["xgboost"].gate("dsr").value
    )


def test_a_short_record_is_not_eligible_however_good(long_world) -> None:
    as_of = long_world.as_ofs[5]  # 6 weekly evaluations: 42 days < 90
    decision = decide_as_of(long_world.store, long_world.symbol, as_of, end_of, None, DEFAULTS)
    assert decision.action == NO_CHAMPION
    gate = decision.reports["xgboost"].gate("record_bars")
    need = int(Gates().min_record_days * 24)
    assert gate.reason == f"insufficient record: {42 * 24 - 6} bars < {need}"  # 6 windows


def test_the_stitched_record_trades_what_each_model_stored_and_pays_for_switching(
    long_world,
) -> None:
    as_of = long_world.as_ofs[-1]
    records, missing = family_records(
        long_world.store, long_world.symbol, as_of, end_of(as_of), DEFAULTS
    )
    (xgb,) = [r for r in records if r.family == "xgboost"]
    stored = long_world.store.query(
        "SELECT as_of, open_time, position, return FROM evaluation.backtest_xgboost "
        "ORDER BY as_of, open_time"
    )
    mine = stored[stored["open_time"].isin(xgb.open_time)]
    # weekly windows tile the lookback: each bar has exactly one owner, except the first
    # bar of each window, which its evaluation never traded (filled at the second open)
    assert xgb.covered_bars == len(mine["open_time"].unique()) == len(mine)
    by_bar = mine.set_index("open_time")
    held = long_world.held["xgboost"]
    own = by_bar.index
    np.testing.assert_array_equal(by_bar["position"].to_numpy(), held.reindex(own).to_numpy())
    ours = pd.Series(xgb.returns, index=xgb.open_time).reindex(own)
    # away from the window starts (and the record's own entry) the record earns exactly
    # what the evaluation stored; there it pays the flat bar's exit and re-entry
    starts = {a + DAY - 7 * DAY + pd.Timedelta(hours=h) for a in long_world.as_ofs for h in (0, 1)}
    inner = [t for t in own[1:] if t not in starts]
    assert len(inner) > 0.95 * len(own)
    np.testing.assert_allclose(ours.loc[inner], by_bar.loc[inner, "return"], rtol=0, atol=1e-15)
    assert missing == ["nhits", "patchtst", "ppo"]


def test_only_evaluations_of_the_registered_version_count(tmp_path: Path) -> None:
    store = DuckDBStore(tmp_path / "clm.duckdb", lock_timeout_s=30)
    world = build_world(store, {"xgboost": "edge"}, days=30, first_as_of_day=7, cadence_days=7)
    as_of = world.as_ofs[-1]
    gates = Gates(lookback_days=30, min_record_days=20)
    ctx = Context(gates, Costs(fee_bps=FEE_BPS), "1h")
    before = decide_as_of(store, world.symbol, as_of, end_of, None, ctx)
    assert before.gate_reports["xgboost"]["metrics"]["covered_bars"] == 4 * (7 * 24 - 1)
    for old in world.as_ofs[:-1]:  # re-trained since: their evaluations are of other bytes
        register(store, "xgboost", world.symbol, old, "retrained")
    after = decide_as_of(store, world.symbol, as_of, end_of, None, ctx)
    metrics = after.gate_reports["xgboost"]["metrics"]
    assert metrics["covered_bars"] == 7 * 24 - 1
    assert metrics["versions"] == [world.version("xgboost", as_of)]
    assert "insufficient record" in after.reports["xgboost"].summary()
