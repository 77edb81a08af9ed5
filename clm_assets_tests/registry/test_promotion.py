"""Promotion on a real DuckDB file: real registered models, records of real backtests,
decided by ``promotion.judge.decide`` and written by ``registry.promotion``."""

from __future__ import annotations

import functools
import json
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from clm_assets.backtest.metrics import metrics_table
from clm_assets.models.artifact import ModelArtifact, code_version
from clm_assets.models.gbdt import LightGBMModel, XGBoostModel
from clm_assets.promotion.judge import IncumbentRecord, decide
from clm_assets.promotion.record import FamilyRecord
from clm_assets.registry import versions
from clm_assets.registry.decisions import (
    KEPT_INCUMBENT,
    MANUAL_PROMOTE,
    NO_CHAMPION,
    PROMOTED,
    ROLLBACK,
    ChampionRef,
    Decision,
    RegistryError,
)
from clm_assets.registry.evaluations import evaluation, record_evaluation
from clm_assets.registry.gates import GATE_NAMES, NO_INCUMBENT, SAME_FAMILY, Gates
from clm_assets.registry.promotion import (
    apply,
    champion,
    history,
    incumbent_for,
    promote_manual,
    rollback,
)
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.factories import simple_feature_frame
from clm_assets_tests.registry.test_gates import GATES, N_BARS, backtest, record_of

BTC, ETH = "BTC-USD", "ETH-USD"
AS_OFS = [pd.Timestamp(d, tz="UTC") for d in ("2024-03-01", "2024-03-08", "2024-03-15")]
MODEL_CLASSES = {"xgboost": XGBoostModel, "lightgbm": LightGBMModel}
THREADS = {"xgboost": {"nthread": 1}, "lightgbm": {"num_threads": 1}}
WORKFLOW = replace(GATES, min_incumbent_days=100.0)
"""Gates of these tests: an incumbent's floors are never reached here (``test_judge``
tests them), so each decision is about the candidates."""
DAY = pd.Timedelta(days=1)


def artifact(family: str, i: int, symbol: str = BTC) -> ModelArtifact:
    """A tiny real model of ``family`` fitted on as-of ``i``'s own data (fitted once: the
    card's training time makes every fit's bytes, hence its version, different)."""
    return _artifact(family, i, symbol)


@functools.cache
def _artifact(family: str, i: int, symbol: str) -> ModelArtifact:
    model = MODEL_CLASSES[family](params={"n_estimators": 5, **THREADS[family]}, seed=0)
    frame = simple_feature_frame(300, seed=10 * i + len(symbol), symbol=symbol)
    card = model.fit(frame, horizon=4)
    return ModelArtifact(family, symbol, AS_OFS[i], model.to_bytes(), card, code_version(family))


@pytest.fixture
def store(tmp_path: Path) -> DuckDBStore:
    store = DuckDBStore(tmp_path / "clm.duckdb", lock_timeout_s=30)
    with store.transaction() as conn:
        for symbol in (BTC, ETH):
            for i in range(len(AS_OFS)):
                for family in MODEL_CLASSES:
                    versions.register(conn, artifact(family, i, symbol))
    return store


def candidate(
    family: str, i: int, market: str, policy: str = "toggle", *, symbol: str = BTC
) -> FamilyRecord:
    """The record of ``family`` at as-of ``i``: a real backtest of ``policy`` on ``market``."""
    record = record_of(backtest(market, policy, i + 1), family, AS_OFS[i])
    return replace(record, symbol=symbol, version=artifact(family, i, symbol).version)


def incumbent_record(ref: ChampionRef, i: int, policy: str = "random") -> IncumbentRecord:
    """The incumbent re-scored on the bars of as-of ``i``'s records."""
    result = backtest("noise", policy, i + 1)
    return IncumbentRecord(ref, ref.as_of + DAY, result.open_time, result.returns, 24.0)


def promote(
    store: DuckDBStore,
    i: int,
    specs: dict[str, tuple[str, str]],
    *,
    symbol: str = BTC,
    incumbent_policy: str = "random",
    gates: Gates = WORKFLOW,
) -> Decision:
    """One as-of's promotion the way the pipeline runs it: incumbent, records, decide,
    apply. ``specs`` maps family -> (market, policy) of its record."""
    with store.connect() as conn:
        incumbent = incumbent_for(conn, symbol, AS_OFS[i])
    inc = None if incumbent is None else incumbent_record(incumbent, i, incumbent_policy)
    records = [candidate(f, i, m, p, symbol=symbol) for f, (m, p) in specs.items()]
    decision = decide(symbol, AS_OFS[i], records, inc, gates)
    with store.connect() as conn:
        apply(conn, decision)
    return decision


def statuses(store: DuckDBStore, symbol: str = BTC) -> dict[tuple[str, int], str]:
    rows = store.query(
        "SELECT family, as_of, status FROM registry.model_versions WHERE symbol = ?", [symbol]
    )
    return {(r.family, AS_OFS.index(r.as_of)): r.status for r in rows.itertuples()}


def production(store: DuckDBStore, symbol: str = BTC) -> list[tuple[str, int]]:
    return sorted(k for k, s in statuses(store, symbol).items() if s == "PRODUCTION")


def hist(store: DuckDBStore, symbol: str = BTC) -> pd.DataFrame:
    with store.connect() as conn:
        return history(conn, symbol)


def current(store: DuckDBStore, symbol: str = BTC) -> ChampionRef | None:
    with store.connect() as conn:
        return champion(conn, symbol)


# --------------------------------------------------------------------------- evaluations


def test_record_evaluation_replaces_its_row_and_keeps_the_gate_metrics(store):
    result = backtest("good", "toggle", 1)
    art = artifact("xgboost", 0)
    inc = ChampionRef("lightgbm", BTC, AS_OFS[0], artifact("lightgbm", 0).version)
    first = metrics_table(result, "1h")
    second = metrics_table(backtest("noise", "toggle", 1), "1h")
    common = dict(
        family="xgboost",
        symbol=BTC,
        as_of=AS_OFS[0],
        version=art.version,
        eval_start=result.open_time[0],
        eval_end=result.open_time[-1],
        bars=result.n_bars,
    )
    with store.connect() as conn:
        record_evaluation(conn, metrics=first, tearsheet_path="/tmp/a.html", **common)
        record_evaluation(conn, metrics=second, incumbent=inc, **common)
        row = evaluation(conn, "xgboost", BTC, AS_OFS[0])
    rows = store.query("SELECT * FROM registry.evaluations")
    assert len(rows) == 1
    assert row["sharpe"] == second["sharpe"] and row["psr_vs_flat"] == second["psr"]
    assert row["max_drawdown"] == second["max_drawdown"]
    assert row["profit_factor"] == second["profit_factor"]
    assert row["trade_count"] == int(second["trade_count"])
    assert row["bars"] == N_BARS - 1 and row["tearsheet_path"] is None
    assert row["eval_start"] == result.open_time[0]
    assert (row["incumbent_family"], row["incumbent_as_of"]) == ("lightgbm", AS_OFS[0])
    assert row["metrics"]["sharpe"] == second["sharpe"]
    assert row["metrics"]["psr_vs_incumbent"] is None  # None stays None, not a number


# --------------------------------------------------------------------------- decide + apply


def test_highest_dsr_wins_and_every_candidate_report_is_recorded(store):
    d = promote(store, 0, {"lightgbm": ("good", "toggle"), "xgboost": ("strong", "toggle")})
    dsr = {f: d.gate_reports[f]["metrics"]["dsr"] for f in ("lightgbm", "xgboost")}
    assert dsr["xgboost"] > dsr["lightgbm"] >= WORKFLOW.min_dsr  # both eligible
    assert d.action == PROMOTED
    assert (d.champion.family, d.champion.version) == ("xgboost", artifact("xgboost", 0).version)
    assert d.previous is None
    assert statuses(store)[("xgboost", 0)] == "PRODUCTION"
    assert statuses(store)[("lightgbm", 0)] == "CANDIDATE"
    assert current(store) == d.champion

    h = hist(store)
    assert len(h) == 1
    row = h.iloc[0]
    assert (row.action, row.champion_family, row.previous_family) == (PROMOTED, "xgboost", None)
    assert row.decision_id == d.decision_id and row.as_of == AS_OFS[0]
    for family in ("lightgbm", "xgboost"):
        rec = row.gate_reports[family]
        assert rec["eligible"] is True
        assert [g["name"] for g in rec["report"]["gates"]] == list(GATE_NAMES)
        by_name = {g["name"]: g for g in rec["report"]["gates"]}
        assert by_name["dsr"]["value"] == dsr[family]
        assert by_name["record_bars"]["value"] == rec["metrics"]["covered_bars"] == N_BARS - 1
        assert by_name["paired_psr"]["reason"] == f"paired_psr: {NO_INCUMBENT}"
        assert rec["metrics"]["trials"] == 2
    assert row.gate_reports["xgboost"]["rank"] == 1 and row.gate_reports["lightgbm"]["rank"] == 2
    assert row.gate_reports["_decision"]["gates"] == WORKFLOW.as_dict()
    assert "highest DSR (N=2 trials)" in row.reason and "first champion" in row.reason
    assert json.loads(json.dumps(d.as_dict(), allow_nan=False))["champion"]["family"] == "xgboost"
    assert hist(store, ETH).empty and current(store, ETH) is None  # other symbols untouched


def test_equal_dsr_breaks_the_tie_on_the_family_name(store):
    d = promote(store, 0, {"xgboost": ("good", "toggle"), "lightgbm": ("good", "toggle")})
    assert d.champion.family == "lightgbm"


def test_a_candidate_failing_one_gate_is_rejected_and_the_record_names_it(store):
    d = promote(store, 0, {"xgboost": ("strong", "hold"), "lightgbm": ("good", "toggle")})
    assert d.champion.family == "lightgbm"
    assert statuses(store)[("xgboost", 0)] == "REJECTED"
    rec = hist(store).iloc[0].gate_reports["xgboost"]
    assert rec["eligible"] is False and rec["rank"] is None
    assert rec["report"]["failed"] == ["trade_count"]
    gate = next(g for g in rec["report"]["gates"] if g["name"] == "trade_count")
    assert (gate["value"], gate["threshold"], gate["passed"]) == (1.0, 10.0, False)
    assert "xgboost (failed trade_count 1 < 10)" in d.reason


def test_no_eligible_candidate_keeps_the_incumbent_and_records_every_gate_value(store):
    first = promote(store, 0, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    d = promote(store, 1, {"xgboost": ("noise", "toggle"), "lightgbm": ("strong", "hold")})
    assert d.action == KEPT_INCUMBENT
    assert d.champion == first.champion == d.previous
    assert production(store) == [("xgboost", 0)]
    assert statuses(store)[("xgboost", 1)] == statuses(store)[("lightgbm", 1)] == "REJECTED"
    assert statuses(store)[("lightgbm", 0)] == "CANDIDATE"

    row = hist(store).iloc[-1]
    assert row.action == KEPT_INCUMBENT
    assert (row.champion_family, row.champion_as_of) == ("xgboost", AS_OFS[0])
    assert (row.previous_family, row.previous_as_of) == ("xgboost", AS_OFS[0])
    for family, cand in zip(("xgboost", "lightgbm"), d.candidates, strict=True):
        rec = row.gate_reports[family]
        gates = {g["name"]: g for g in rec["report"]["gates"]}
        assert set(gates) == set(GATE_NAMES)
        assert all(set(g) >= {"value", "threshold", "comparator", "passed"} for g in gates.values())
        assert gates["dsr"]["value"] == cand.metrics["dsr"]
        assert gates["trade_count"]["value"] == cand.metrics["trade_count"]
        assert gates["max_drawdown"]["value"] == abs(cand.metrics["max_drawdown"])
        assert rec["incumbent"]["family"] == "xgboost"
    # the incumbent is an xgboost: a refresh of xgboost needs no paired test, lightgbm does
    assert SAME_FAMILY in row.gate_reports["xgboost"]["report"]["gates"][-1]["reason"]
    paired = row.gate_reports["lightgbm"]["report"]["gates"][-1]
    assert paired["value"] == d.candidates[1].metrics["paired"]["psr"] is not None
    assert "no candidate passed all gates" in row.reason and "stays champion" in row.reason


def test_no_eligible_candidate_and_no_incumbent_is_no_champion(store):
    d = promote(store, 0, {"xgboost": ("noise", "toggle"), "lightgbm": ("strong", "zero")})
    assert d.action == NO_CHAMPION and d.champion is None
    assert production(store) == [] and current(store) is None
    rec = hist(store).iloc[0].gate_reports["lightgbm"]
    gates = {g["name"]: g for g in rec["report"]["gates"]}
    assert gates["dsr"]["value"] is None and gates["dsr"]["passed"] is False
    assert "not computable" in gates["dsr"]["reason"]


def test_applying_the_same_decision_twice_changes_nothing(store):
    specs = {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")}
    promote(store, 0, specs)
    d1 = promote(store, 1, {"xgboost": ("good", "toggle"), "lightgbm": ("strong", "toggle")})
    before, rows_before = statuses(store), hist(store)
    with store.connect() as conn:
        apply(conn, d1)
    assert statuses(store) == before
    after = hist(store)
    assert len(after) == len(rows_before) == 2
    assert list(after.decision_id) == list(rows_before.decision_id)


def test_re_running_an_as_of_compares_with_the_champion_before_it(store):
    promote(store, 0, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    specs = {"xgboost": ("good", "toggle"), "lightgbm": ("strong", "toggle")}
    d1 = promote(store, 1, specs)
    assert d1.champion.family == "lightgbm" and d1.previous.as_of == AS_OFS[0]
    before = statuses(store)
    again = promote(store, 1, specs)  # a re-materialization: decided afresh
    assert again.decision_id != d1.decision_id
    assert again.previous == d1.previous  # not the champion it chose itself
    assert again.champion == d1.champion
    assert statuses(store) == before
    h = hist(store)
    assert list(h.action) == [PROMOTED, PROMOTED]
    assert list(h.as_of) == AS_OFS[:2]
    assert h.decision_id.iloc[-1] == again.decision_id


def test_a_re_run_with_another_outcome_restores_the_champion_before_that_as_of(store):
    promote(store, 0, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    promote(store, 1, {"xgboost": ("good", "toggle"), "lightgbm": ("strong", "toggle")})
    assert production(store) == [("lightgbm", 1)]
    d = promote(store, 1, {"xgboost": ("noise", "toggle"), "lightgbm": ("strong", "hold")})
    assert d.action == KEPT_INCUMBENT and d.champion.as_of == AS_OFS[0]
    assert production(store) == [("xgboost", 0)]
    assert statuses(store)[("lightgbm", 1)] == "REJECTED"
    h = hist(store)
    assert list(h.action) == [PROMOTED, KEPT_INCUMBENT]


def test_a_stale_decision_is_refused_and_changes_nothing(store):
    promote(store, 0, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    stale = decide(BTC, AS_OFS[1], [candidate("lightgbm", 1, "strong")], None, WORKFLOW)
    before, rows = statuses(store), len(hist(store))
    with store.connect() as conn, pytest.raises(RegistryError, match="stale decision"):
        apply(conn, stale)
    assert statuses(store) == before and len(hist(store)) == rows


def test_an_earlier_as_of_after_a_later_one_is_refused(store):
    specs = {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")}
    promote(store, 0, specs)
    promote(store, 1, specs)
    with pytest.raises(RegistryError, match="already decided"):
        promote(store, 0, specs)


def test_a_candidate_whose_registered_version_changed_is_refused(store):
    other = replace(candidate("xgboost", 0, "strong"), version="0123456789ab")
    d = decide(BTC, AS_OFS[0], [other], None, WORKFLOW)
    with store.connect() as conn, pytest.raises(RegistryError, match="re-evaluate"):
        apply(conn, d)
    assert production(store) == [] and hist(store).empty


def test_apply_in_the_callers_transaction_rolls_back_with_it(store):
    d = decide(BTC, AS_OFS[0], [candidate("xgboost", 0, "strong")], None, WORKFLOW)
    with pytest.raises(RuntimeError, match="boom"), store.transaction() as conn:
        apply(conn, d)
        assert champion(conn, BTC) == d.champion  # visible inside the transaction
        raise RuntimeError("boom")
    assert production(store) == [] and hist(store).empty
    with store.transaction() as conn:
        apply(conn, d)
    assert production(store) == [("xgboost", 0)]


def test_decide_refuses_inconsistent_candidates():
    c0 = candidate("xgboost", 0, "strong")
    inc = incumbent_record(ChampionRef("xgboost", BTC, AS_OFS[0], c0.version), 0)
    with pytest.raises(RegistryError, match="duplicate"):
        decide(BTC, AS_OFS[0], [c0, c0], None, WORKFLOW)
    with pytest.raises(RegistryError, match="the decision for"):
        decide(BTC, AS_OFS[1], [c0], None, WORKFLOW)
    with pytest.raises(RegistryError, match="incumbent_for"):
        decide(BTC, AS_OFS[0], [c0], inc, WORKFLOW)


def test_apply_refuses_rollback_and_manual_decisions(store):
    d = decide(BTC, AS_OFS[0], [candidate("xgboost", 0, "strong")], None, WORKFLOW)
    manual = Decision(**{**d.__dict__, "action": ROLLBACK})
    with store.connect() as conn, pytest.raises(RegistryError, match="rollback"):
        apply(conn, manual)


# --------------------------------------------------------------------------- rollback


def test_rollback_restores_the_previous_champion_and_records_both(store):
    first = promote(store, 0, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    second = promote(store, 1, {"xgboost": ("good", "toggle"), "lightgbm": ("strong", "toggle")})
    assert production(store) == [("lightgbm", 1)]
    with store.connect() as conn:
        d = rollback(conn, BTC, "live PnL collapsed")
    assert d.action == ROLLBACK
    assert d.champion == first.champion and d.previous == second.champion
    assert production(store) == [("xgboost", 0)]
    assert statuses(store)[("lightgbm", 1)] == "RETIRED"
    row = hist(store).iloc[-1]
    assert row.action == ROLLBACK and row.decision_id == d.decision_id
    assert (row.champion_family, row.champion_as_of) == ("xgboost", AS_OFS[0])
    assert (row.previous_family, row.previous_as_of) == ("lightgbm", AS_OFS[1])
    assert row.previous_version == artifact("lightgbm", 1).version
    assert "live PnL collapsed" in row.reason


def test_rollbacks_walk_back_one_champion_each_then_stop(store):
    promote(store, 0, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    promote(store, 1, {"xgboost": ("good", "toggle"), "lightgbm": ("strong", "toggle")})
    promote(store, 2, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    assert production(store) == [("xgboost", 2)]
    with store.connect() as conn:
        rollback(conn, BTC, "one")
        assert champion(conn, BTC).as_of == AS_OFS[1]
        rollback(conn, BTC, "two")  # not forward to xgboost@2 again
        assert (champion(conn, BTC).family, champion(conn, BTC).as_of) == ("xgboost", AS_OFS[0])
        with pytest.raises(RegistryError, match="no previous champion"):
            rollback(conn, BTC, "three")
    assert production(store) == [("xgboost", 0)]
    assert list(hist(store).action) == [PROMOTED] * 3 + [ROLLBACK] * 2


def test_rollback_without_a_previous_champion_raises_and_changes_nothing(store):
    with store.connect() as conn, pytest.raises(RegistryError, match="no champion"):
        rollback(conn, BTC, "nothing there")
    promote(store, 0, {"xgboost": ("strong", "toggle")})
    with store.connect() as conn, pytest.raises(RegistryError, match="no previous champion"):
        rollback(conn, BTC, "first champion")
    assert production(store) == [("xgboost", 0)]
    assert list(hist(store).action) == [PROMOTED]


# --------------------------------------------------------------------------- manual


def test_manual_promotion_of_a_model_that_failed_its_gates_needs_force(store):
    promote(store, 0, {"xgboost": ("strong", "toggle")})
    inc = current(store)
    promote(store, 1, {"xgboost": ("noise", "toggle"), "lightgbm": ("strong", "hold")})
    with store.connect() as conn, pytest.raises(RegistryError, match="trade_count 1 < 10"):
        promote_manual(conn, BTC, "lightgbm", AS_OFS[1], "operator hunch")
    assert production(store) == [("xgboost", 0)] and len(hist(store)) == 2

    with store.connect() as conn:
        d = promote_manual(conn, BTC, "lightgbm", AS_OFS[1], "operator hunch", force=True)
    assert d.action == MANUAL_PROMOTE and d.forced and d.previous == inc
    assert production(store) == [("lightgbm", 1)]
    assert statuses(store)[("xgboost", 0)] == "RETIRED"
    row = hist(store).iloc[-1]
    assert row.action == MANUAL_PROMOTE and bool(row.forced) is True
    assert "FORCED" in row.reason and "operator hunch" in row.reason
    assert row.gate_reports["lightgbm"]["report"]["failed"] == ["trade_count"]
    with store.connect() as conn:  # and it can be undone
        rollback(conn, BTC, "undo the override")
    assert production(store) == [("xgboost", 0)]


def test_manual_promotion_of_a_model_judged_eligible_against_the_champion_is_unforced(store):
    promote(store, 0, {"xgboost": ("good", "toggle")})
    first = current(store)
    promote(store, 1, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    assert statuses(store)[("lightgbm", 1)] == "CANDIDATE"  # eligible, not chosen
    with store.connect() as conn:
        rollback(conn, BTC, "back to the first")
        d = promote_manual(conn, BTC, "lightgbm", AS_OFS[1], "skip the schedule")
    assert d.action == MANUAL_PROMOTE and not d.forced and d.previous == first
    assert d.reports["lightgbm"].passed
    assert production(store) == [("lightgbm", 1)]


def test_manual_promotion_needs_a_judgement_against_the_current_champion(store):
    promote(store, 0, {"xgboost": ("good", "toggle")})
    promote(store, 1, {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")})
    # lightgbm@1 was compared with xgboost@0; the champion is now xgboost@1
    with store.connect() as conn, pytest.raises(RegistryError, match="paired test was against"):
        promote_manual(conn, BTC, "lightgbm", AS_OFS[1], "x")
    with store.connect() as conn, pytest.raises(RegistryError, match="no automatic decision"):
        promote_manual(conn, BTC, "xgboost", AS_OFS[2], "x")
    with store.connect() as conn, pytest.raises(RegistryError, match="already the champion"):
        promote_manual(conn, BTC, "xgboost", AS_OFS[1], "x", force=True)
    assert production(store) == [("xgboost", 1)]


# --------------------------------------------------------------------------- sequence


def test_three_as_of_promotions_keep_exactly_one_production_per_symbol(store):
    plan = {
        BTC: [
            {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")},  # xgboost@0
            {"xgboost": ("noise", "toggle"), "lightgbm": ("strong", "hold")},  # kept
            {"xgboost": ("good", "toggle"), "lightgbm": ("strong", "toggle")},  # lightgbm@2
        ],
        ETH: [
            {"xgboost": ("noise", "toggle"), "lightgbm": ("strong", "zero")},  # none
            {"xgboost": ("good", "toggle"), "lightgbm": ("noise", "toggle")},  # xgboost@1
            {"xgboost": ("strong", "toggle"), "lightgbm": ("good", "toggle")},  # xgboost@2
        ],
    }
    actions: dict[str, list[str]] = {BTC: [], ETH: []}
    for i in range(3):
        for symbol, steps in plan.items():
            d = promote(store, i, steps[i], symbol=symbol)
            actions[symbol].append(d.action)
            for s in (BTC, ETH):  # exactly one once a symbol has had a champion
                assert len(production(store, s)) == int(PROMOTED in actions[s])
    assert actions[BTC] == [PROMOTED, KEPT_INCUMBENT, PROMOTED]
    assert actions[ETH] == [NO_CHAMPION, PROMOTED, PROMOTED]
    assert statuses(store, BTC) == {
        ("xgboost", 0): "RETIRED",
        ("lightgbm", 0): "CANDIDATE",
        ("xgboost", 1): "REJECTED",
        ("lightgbm", 1): "REJECTED",
        ("xgboost", 2): "CANDIDATE",
        ("lightgbm", 2): "PRODUCTION",
    }
    assert statuses(store, ETH) == {
        ("xgboost", 0): "REJECTED",
        ("lightgbm", 0): "REJECTED",
        ("xgboost", 1): "RETIRED",
        ("lightgbm", 1): "REJECTED",
        ("xgboost", 2): "PRODUCTION",
        ("lightgbm", 2): "CANDIDATE",
    }
    h = hist(store, BTC)
    assert list(h.action) == actions[BTC]
    # each row's previous is the champion after the row before it
    chain = list(zip(h.champion_family, h.champion_as_of, strict=True))
    prev = list(zip(h.previous_family, h.previous_as_of, strict=True))
    assert prev[1:] == chain[:-1]
    assert all(json.dumps(g) for g in h.gate_reports)


# --------------------------------------------------------------------------- retirement


def test_a_retired_incumbent_leaves_the_symbol_flat_and_a_re_run_judges_it_again(store):
    first = promote(store, 0, {"xgboost": ("strong", "toggle")})
    judging = replace(WORKFLOW, min_incumbent_days=14.0)
    # the incumbent's forward record loses 0.2 % a bar
    losing = backtest("noise", "random", 2)
    collapse = IncumbentRecord(
        first.champion, AS_OFS[0] + DAY, losing.open_time, losing.returns - 0.002, 24.0
    )
    specs = [candidate("xgboost", 1, "noise")]
    d = decide(BTC, AS_OFS[1], specs, collapse, judging)
    assert d.action == "RETIRED_INCUMBENT" and d.champion is None
    with store.connect() as conn:
        apply(conn, d)
        assert champion(conn, BTC) is None
        # a re-run of this as-of is decided against the model it retired
        assert incumbent_for(conn, BTC, AS_OFS[1]) == first.champion
    assert statuses(store)[("xgboost", 0)] == "RETIRED" and production(store) == []
    row = hist(store).iloc[-1]
    assert row.action == "RETIRED_INCUMBENT" and row.previous_family == "xgboost"
    judged = row.gate_reports["_decision"]["incumbent"]
    assert judged["retired"] is True and "forward_psr" in judged["report"]["failed"]
    # re-run, the incumbent now holding its floor: it is champion again
    healthy = IncumbentRecord(
        first.champion, AS_OFS[0] + DAY, losing.open_time, losing.returns * 0.0, 24.0
    )
    again = decide(BTC, AS_OFS[1], specs, healthy, judging)
    with store.connect() as conn:
        apply(conn, again)
    assert again.action == KEPT_INCUMBENT and production(store) == [("xgboost", 0)]
    assert list(hist(store).action) == [PROMOTED, KEPT_INCUMBENT]
