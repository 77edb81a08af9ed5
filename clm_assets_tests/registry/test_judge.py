"""``promotion.judge``: deflated Sharpe, paired test, incumbent floors and the decision
they make, on records of known returns."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from clm_assets.backtest.metrics import (
    deflated_sharpe_ratio,
    expected_max_sharpe,
    probabilistic_sharpe_ratio,
)
from clm_assets.promotion.judge import IncumbentRecord, decide, judge_incumbent, paired
from clm_assets.promotion.record import FamilyRecord
from clm_assets.registry.decisions import (
    DECISION_KEY,
    KEPT_INCUMBENT,
    PROMOTED,
    RETIRED_INCUMBENT,
    ChampionRef,
)
from clm_assets.registry.gates import INCUMBENT_RETIRED, SAME_FAMILY, Gates
from clm_assets.resources.promotion import PromotionResource

SYMBOL = "BTC-USD"
AS_OF = pd.Timestamp("2024-06-01", tz="UTC")
END = AS_OF + pd.Timedelta(days=1)
DAYS = 40
GATES = Gates(lookback_days=DAYS, min_record_days=30, min_incumbent_days=14)
TIMES = pd.date_range(END - pd.Timedelta(days=DAYS), END, freq="1h", inclusive="left")


def returns(mean: float, seed: int, n: int = len(TIMES), vol: float = 0.006) -> np.ndarray:
    return mean + vol * np.random.default_rng(seed).standard_normal(n)


def record(family: str, r: np.ndarray, times: pd.DatetimeIndex = TIMES) -> FamilyRecord:
    return FamilyRecord(
        family, SYMBOL, AS_OF, f"{family}-v", times[0], END, times, r, len(r) // 12, len(r),
        (), 24.0,
    )  # fmt: skip


def incumbent(family: str, r: np.ndarray, promoted_days_ago: float) -> IncumbentRecord:
    ref = ChampionRef(family, SYMBOL, AS_OF - pd.Timedelta(days=30), f"{family}-old")
    promoted = END - pd.Timedelta(days=promoted_days_ago)
    return IncumbentRecord(ref, promoted, TIMES, r, 24.0)


STRONG = returns(0.0015, 1)  # per-bar Sharpe 0.25
NOISE = returns(0.0, 2)


# --------------------------------------------------------------------------- statistics


def test_dsr_matches_a_hand_computation() -> None:
    r = STRONG[:300] - 0.0012
    n, sr = len(r), r.mean() / r.std(ddof=1)
    skew, kurt = sps.skew(r), sps.kurtosis(r, fisher=False)
    gamma = 0.5772156649015329
    e_max = (1 - gamma) * sps.norm.ppf(1 - 1 / 5) + gamma * sps.norm.ppf(1 - 1 / (5 * math.e))
    sr0 = math.sqrt(1 / (n - 1)) * e_max
    z = (sr - sr0) * math.sqrt(n - 1) / math.sqrt(1 - skew * sr + (kurt - 1) / 4 * sr**2)
    assert deflated_sharpe_ratio(r, 5) == pytest.approx(sps.norm.cdf(z), abs=1e-12)
    assert expected_max_sharpe(5) == pytest.approx(e_max, abs=1e-12)
    assert deflated_sharpe_ratio(r, 1) == pytest.approx(probabilistic_sharpe_ratio(r), abs=1e-12)
    # and decide records that value, with the trial count it used
    recs = [record(f, returns(0.0, i)) for i, f in enumerate(("a", "b", "c", "d"))]
    d = decide(SYMBOL, AS_OF, [record("e", r, TIMES[:300]), *recs], None, GATES)
    assert d.gate_reports[DECISION_KEY]["trials"] == 5
    assert d.reports["e"].gate("dsr").value == pytest.approx(sps.norm.cdf(z), abs=1e-12)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(-0.002, 0.002))
def test_paired_psr_against_a_flat_incumbent_is_the_candidates_psr(seed, mean) -> None:
    r = returns(mean, seed)
    flat = incumbent("lightgbm", np.zeros(len(TIMES)), 10)
    assert paired(record("xgboost", r), flat).psr == probabilistic_sharpe_ratio(r)
    assert paired(record("xgboost", r), flat).bars == len(TIMES)


def test_more_trials_deflate_more() -> None:
    values = [deflated_sharpe_ratio(STRONG[:200] - 0.0013, n) for n in (1, 2, 5, 20)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]


# --------------------------------------------------------------------------- decisions


def test_a_flat_incumbent_does_not_block_a_strong_candidate() -> None:
    """Defect 3: a flat incumbent's Sharpe is undefined; the paired test is not."""
    inc = incumbent("lightgbm", np.zeros(len(TIMES)), promoted_days_ago=20)
    d = decide(SYMBOL, AS_OF, [record("xgboost", STRONG)], inc, GATES)
    assert d.action == PROMOTED and d.champion.family == "xgboost"
    gate = d.reports["xgboost"].gate("paired_psr")
    assert gate.passed and gate.value == pytest.approx(probabilistic_sharpe_ratio(STRONG))
    assert d.incumbent_report.passed  # flat is not losing: not retired
    assert "constant returns" in d.incumbent_report.gate("forward_psr").reason


def test_a_candidate_no_better_than_a_good_incumbent_of_another_family_is_refused() -> None:
    inc = incumbent("lightgbm", STRONG + returns(0.0005, 9, vol=0.002), promoted_days_ago=20)
    d = decide(SYMBOL, AS_OF, [record("xgboost", STRONG)], inc, GATES)
    assert d.action == KEPT_INCUMBENT and d.champion == inc.ref
    assert d.reports["xgboost"].failed == ("paired_psr",)


def test_same_family_refresh_replaces_the_champion_without_a_paired_test() -> None:
    inc = incumbent("xgboost", STRONG + returns(0.0005, 9, vol=0.002), promoted_days_ago=20)
    d = decide(SYMBOL, AS_OF, [record("xgboost", STRONG)], inc, GATES)
    assert d.action == PROMOTED and d.champion.as_of == AS_OF
    gate = d.reports["xgboost"].gate("paired_psr")
    assert gate.passed and gate.value is None and SAME_FAMILY in gate.reason
    assert "refreshes" in d.reason


def test_an_incumbent_whose_forward_record_collapses_is_retired_and_the_symbol_goes_flat():
    collapse = returns(-0.003, 5)
    inc = incumbent("ppo", collapse, promoted_days_ago=20)
    d = decide(SYMBOL, AS_OF, [record("xgboost", NOISE)], inc, GATES)
    assert d.action == RETIRED_INCUMBENT and d.champion is None and d.previous == inc.ref
    assert d.incumbent_report.failed == ("forward_psr", "forward_max_drawdown")
    judged = d.gate_reports[DECISION_KEY]["incumbent"]
    assert judged["retired"] is True and judged["forward_bars"] == 20 * 24
    fwd = collapse[-20 * 24 :]
    assert judged["forward_psr"] == pytest.approx(probabilistic_sharpe_ratio(fwd))
    assert "RETIRED" in d.reason
    # an eligible candidate in the same decision replaces it, no paired test against it
    d2 = decide(SYMBOL, AS_OF, [record("xgboost", STRONG)], inc, GATES)
    assert d2.action == PROMOTED
    assert INCUMBENT_RETIRED in d2.reports["xgboost"].gate("paired_psr").reason


def test_a_young_incumbent_is_not_judged_yet() -> None:
    inc = incumbent("ppo", returns(-0.003, 5), promoted_days_ago=5)
    assert judge_incumbent(inc, GATES) is None
    d = decide(SYMBOL, AS_OF, [record("xgboost", NOISE)], inc, GATES)
    assert d.action == KEPT_INCUMBENT and "not judged yet" in d.reason


def test_a_short_record_is_refused_with_its_length() -> None:
    d = decide(SYMBOL, AS_OF, [record("xgboost", STRONG[:100], TIMES[:100])], None, GATES)
    gate = d.reports["xgboost"].gate("record_bars")
    assert not gate.passed and gate.reason == "insufficient record: 100 bars < 720"


def test_the_highest_dsr_wins_and_ties_go_to_the_family_name() -> None:
    d = decide(SYMBOL, AS_OF, [record("b", STRONG), record("a", STRONG)], None, GATES)
    assert d.champion.family == "a"
    d = decide(SYMBOL, AS_OF, [record("a", STRONG - 0.0005), record("b", STRONG)], None, GATES)
    assert d.champion.family == "b"


# --------------------------------------------------------------------------- config


def test_gate_config_comes_from_clm_gate_variables_and_names_a_bad_one() -> None:
    env = {"CLM_GATE_MIN_DSR": "0.8", "CLM_GATE_LOOKBACK_DAYS": "60"}
    gates = PromotionResource(min_record_days=30.0).gates(env)
    assert (gates.min_dsr, gates.lookback_days, gates.min_record_days) == (0.8, 60, 30.0)
    with pytest.raises(ValueError, match="cannot exceed lookback_days"):
        PromotionResource().gates(env)  # the default 90-day record cannot fit in 60
    assert PromotionResource(min_dsr=0.7).gates({"CLM_GATE_MIN_DSR": "0.8"}).min_dsr == 0.7
    with pytest.raises(ValueError, match="CLM_GATE_MIN_TRADES='ten' is not an int"):
        PromotionResource().gates({"CLM_GATE_MIN_TRADES": "ten"})
    with pytest.raises(ValueError, match="min_dsr is a probability"):
        PromotionResource().gates({"CLM_GATE_MIN_DSR": "2"})
    with pytest.raises(ValueError, match="cannot exceed lookback_days"):
        replace(Gates(), min_record_days=400.0)
