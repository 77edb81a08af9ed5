"""``clm`` as a user runs it: a real DuckDB file, real small models, real backtests and
decisions recorded by the registry. Bad input is one line naming what is wrong (exit 2 for
usage), never a traceback; what is shown is the record of the exact model in production."""

from __future__ import annotations

import functools
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.engine import BacktestResult, run_backtest
from clm_assets.backtest.metrics import deflated_sharpe_ratio, max_drawdown_of
from clm_assets.cli import main as clm
from clm_assets.models.artifact import ModelArtifact, code_version
from clm_assets.models.gbdt import XGBoostModel
from clm_assets.registry.decisions import (
    KEPT_INCUMBENT,
    PROMOTED,
    Candidate,
    ChampionRef,
    Decision,
)
from clm_assets.registry.gates import GateReport, compare
from clm_assets.registry.promotion import apply, history, incumbent_for
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice
from clm_assets.storage.models import write_models
from clm_assets_tests.factories import random_walk_bars, simple_feature_frame

BTC, ETH = "BTC-USD", "ETH-USD"
A0, A1 = pd.Timestamp("2024-02-20", tz="UTC"), pd.Timestamp("2024-02-21", tz="UTC")
N_BARS, SEED = 1800, 5


@functools.cache
def fitted(as_of: pd.Timestamp, n_estimators: int) -> ModelArtifact:
    """A tiny real XGBoost model; ``n_estimators`` makes another version of the same slot."""
    model = XGBoostModel(params={"n_estimators": n_estimators, "nthread": 1}, seed=0)
    card = model.fit(simple_feature_frame(N_BARS, SEED, symbol=BTC).iloc[:1000], horizon=4)
    return ModelArtifact("xgboost", BTC, as_of, model.to_bytes(), card, code_version("xgboost"))


@functools.cache
def backtest(policy: str) -> BacktestResult:
    """A real backtest of a fixed policy on a seeded up-trending walk: ``toggle`` is long
    and flat one bar in 25 (an edge, 24 trades), ``flat`` never trades."""
    rng = np.random.default_rng(3)
    close = 100.0 * np.exp(np.cumsum(0.001 + 0.005 * rng.normal(size=600)))
    open_ = np.concatenate([[100.0], close[:-1]])
    times = pd.date_range("2024-01-01", periods=600, freq="1h", tz="UTC")
    positions = np.zeros(600) if policy == "flat" else np.where(np.arange(600) % 25, 1.0, 0.0)
    return run_backtest(times, open_, close, positions, fee_bps=1.0)


def gate_report(policy: str) -> GateReport:
    """Gates on the backtest's real numbers: its deflated Sharpe, drawdown and trades."""
    result = backtest(policy)
    return GateReport(
        (
            compare("dsr", deflated_sharpe_ratio(result.returns, n_trials=1), 0.95, ">="),
            compare("max_drawdown", abs(max_drawdown_of(result.returns)), 0.5, "<="),
            compare("trade_count", len(result.trades), 10, ">="),
        )
    )


def store_model(store: DuckDBStore, artifact: ModelArtifact) -> None:
    as_of = artifact.as_of
    cell = SliceCell((("symbol", BTC),), "as_of", as_of, as_of + pd.Timedelta(microseconds=1))
    with store.transaction() as conn:
        write_models(conn, TableSlice("models", "xgboost", (cell,)), [artifact])


def store_market(store: DuckDBStore) -> None:
    """Bars and features of BTC-USD, the tables ``clm walkforward`` trades on."""
    raw = random_walk_bars(N_BARS, SEED).assign(symbol=BTC)
    features = simple_feature_frame(N_BARS, SEED, symbol=BTC)
    start, end = raw["open_time"].iloc[0], raw["open_time"].iloc[-1] + pd.Timedelta(hours=1)
    cell = SliceCell((("symbol", BTC),), "open_time", start, end)
    store.replace(TableSlice("market_data", "raw_ohlcv", (cell,)), raw)
    store.replace(TableSlice("features", "features", (cell,)), features)


def decide_and_apply(
    store: DuckDBStore, as_of: pd.Timestamp, artifact: ModelArtifact, policy: str
) -> None:
    """One automatic decision on the xgboost candidate of ``as_of``: promoted when its gates
    pass, else the incumbent stays."""
    report = gate_report(policy)
    candidate = Candidate("xgboost", as_of, artifact.version)
    with store.connect() as conn:
        incumbent = incumbent_for(conn, BTC, as_of)
    chosen = ChampionRef("xgboost", BTC, as_of, artifact.version)
    decision = Decision(
        decision_id=uuid.uuid4().hex,
        symbol=BTC,
        as_of=as_of,
        decided_at=pd.Timestamp.now(tz="UTC"),
        action=PROMOTED if report.passed else KEPT_INCUMBENT,
        champion=chosen if report.passed else incumbent,
        previous=incumbent,
        reason=f"xgboost {report.summary()}",
        reports={"xgboost": report},
        candidates=(candidate,),
        gate_reports={
            "xgboost": {
                "as_of": as_of,
                "version": artifact.version,
                "eligible": report.passed,
                "report": report.as_dict(),
            }
        },
    )
    with store.connect() as conn:
        apply(conn, decision)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A deployment of BTC-USD and ETH-USD whose DuckDB file is in ``tmp_path``."""
    for name in [n for n in os.environ if n.startswith("CLM_")]:
        monkeypatch.delenv(name)
    db = tmp_path / "clm.duckdb"
    monkeypatch.setenv("CLM_DB_PATH", str(db))
    monkeypatch.setenv("CLM_SOURCE", "synthetic")
    monkeypatch.setenv("CLM_SYMBOLS", f"{BTC},{ETH}")
    monkeypatch.setenv("CLM_START_DATE", "2024-01-01")
    monkeypatch.setenv("CLM_END_DATE", "2024-03-15")
    monkeypatch.setenv("CLM_REPORTS_DIR", str(tmp_path / "reports"))
    return db


@pytest.fixture
def decided(env: Path) -> DuckDBStore:
    """xgboost@A0 promoted at A0; at A1 a rejected xgboost candidate, the incumbent kept."""
    store = DuckDBStore(env, lock_timeout_s=30)
    store_market(store)
    for as_of in (A0, A1):
        store_model(store, fitted(as_of, 5))
    decide_and_apply(store, A0, fitted(A0, 5), "toggle")
    decide_and_apply(store, A1, fitted(A1, 5), "flat")
    with store.connect() as conn:
        actions = list(history(conn, BTC)["action"])
    assert actions == [PROMOTED, KEPT_INCUMBENT]
    return store


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = clm(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --------------------------------------------------------------------------- status (defect 7)


def test_status_shows_the_gates_and_age_of_the_decision_that_installed_the_champion(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    with decided.connect() as conn:
        promoted, kept = (row for _, row in history(conn, BTC).iterrows())
    code, out, _ = run(["status", "--symbol", BTC], capsys)

    assert code == 0
    assert f"champion: xgboost version {fitted(A0, 5).version} as of 2024-02-20" in out
    assert promoted["decision_id"] in out
    assert kept["decision_id"] not in out
    shown = promoted["gate_reports"]["xgboost"]["report"]["gates"]
    rejected = kept["gate_reports"]["xgboost"]["report"]["gates"]
    assert {g["reason"] for g in shown} != {g["reason"] for g in rejected}
    for gate in shown:
        assert gate["reason"] in out
    for gate in rejected:
        if not gate["passed"]:
            assert gate["reason"] not in out
    assert "FAIL" not in out


def test_status_after_a_rollback_shows_when_it_was_restored_and_the_gates_it_was_promoted_on(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["promote", "--symbol", BTC, "--family", "xgboost", "--as-of", "2024-02-21"]
    assert run([*argv, "--reason", "operator test", "--force"], capsys)[0] == 0
    assert run(["rollback", "--symbol", BTC, "--reason", "operator test"], capsys)[0] == 0
    with decided.connect() as conn:
        decisions = history(conn, BTC)
    promoted = decisions[decisions["action"].eq(PROMOTED)].iloc[0]
    restored = decisions.iloc[-1]
    assert restored["action"] == "ROLLBACK"

    code, out, _ = run(["status", "--symbol", BTC], capsys)
    assert code == 0
    assert f"champion: xgboost version {fitted(A0, 5).version} as of 2024-02-20" in out
    assert f"installed by ROLLBACK decision {restored['decision_id']}" in out
    assert f"gates recorded by PROMOTED decision {promoted['decision_id']}" in out
    for gate in promoted["gate_reports"]["xgboost"]["report"]["gates"]:
        assert gate["reason"] in out


def test_status_refuses_a_symbol_that_is_not_configured(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    DuckDBStore(env).query("SELECT 1")  # the file exists, nothing recorded
    code, out, err = run(["status", "--symbol", "DOGE-USD"], capsys)
    assert code == 2
    line = one_line_error(err)
    assert "--symbol" in line and "DOGE-USD" in line and BTC in line and ETH in line
    assert out == ""


# --------------------------------------------------------------------------- walkforward (7)


def test_walkforward_trades_the_exact_version_decided_and_refuses_other_bytes(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    version = fitted(A0, 5).version
    code, out, _ = run(["walkforward", "--symbol", BTC], capsys)
    assert code == 0
    assert "1 segments" in out and f"xgboost@2024-02-20 ({version})" in out

    retrained = fitted(A0, 6)
    assert retrained.version != version
    store_model(decided, retrained)
    code, out, err = run(["walkforward", "--symbol", BTC], capsys)
    assert code == 1
    line = one_line_error(err)
    assert version in line and retrained.version in line and "xgboost" in line


def test_walkforward_refuses_a_symbol_that_is_not_configured(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["walkforward", "--symbol", "DOGE-USD"], capsys)
    assert code == 2
    line = one_line_error(err)
    assert "--symbol" in line and "DOGE-USD" in line and BTC in line


def test_walkforward_without_decisions_is_one_line(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["walkforward", "--symbol", ETH], capsys)
    assert code == 1
    assert ETH in one_line_error(err)


# --------------------------------------------------------------------------- promote, rollback


@pytest.mark.parametrize(
    ("argument", "args"),
    [
        ("--family", ["--family", "xgbost", "--as-of", "2024-02-20"]),
        ("--as-of", ["--family", "xgboost", "--as-of", "2024-02-31"]),
        ("--as-of", ["--family", "xgboost", "--as-of", "yesterday"]),
        ("--symbol", ["--family", "xgboost", "--as-of", "2024-02-20", "--symbol", "DOGE"]),
    ],
)
def test_promote_refuses_bad_arguments_naming_them(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str], argument: str, args: list[str]
) -> None:
    argv = ["promote", "--symbol", BTC, "--reason", "operator test", *args]
    code, _, err = run(argv, capsys)
    assert code == 2
    assert argument in one_line_error(err)


def test_promote_lists_the_families_allowed(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["promote", "--symbol", BTC, "--family", "xgbost", "--as-of", "2024-02-20"]
    _, _, err = run([*argv, "--reason", "r"], capsys)
    line = one_line_error(err)
    assert all(f in line for f in ("xgboost", "lightgbm", "nhits", "patchtst", "ppo"))


def test_promote_of_a_model_that_is_not_registered_is_one_line(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["promote", "--symbol", BTC, "--family", "lightgbm", "--as-of", "2024-02-20"]
    code, _, err = run([*argv, "--reason", "r"], capsys)
    assert code == 1
    assert "not registered" in one_line_error(err)


@pytest.mark.parametrize("symbol", [BTC, ETH])
def test_rollback_with_nothing_to_roll_back_is_one_line(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str], symbol: str
) -> None:
    """BTC-USD has its first champion (nothing before it); ETH-USD has none."""
    code, _, err = run(["rollback", "--symbol", symbol, "--reason", "test"], capsys)
    assert code == 1
    assert symbol in one_line_error(err)


# --------------------------------------------------------------------------- settings, storage


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CLM_LONG_ONLY", "y"),
        ("CLM_START_DATE", "not-a-date"),
        ("CLM_END_DATE", "2023-01-01"),
        ("CLM_MODEL_PARAMS", "{xgboost: 1}"),
        ("CLM_FEE_BPS", "ten"),
    ],
)
def test_a_bad_setting_is_one_line_naming_it_before_any_work(
    env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv(variable, value)
    code, out, err = run(["status"], capsys)
    assert code == 2
    assert variable in one_line_error(err)
    assert out == ""


def test_a_database_path_that_is_a_directory_is_one_line(
    env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CLM_DB_PATH", str(env.parent))
    code, _, err = run(["status"], capsys)
    assert code == 2
    line = one_line_error(err)
    assert "CLM_DB_PATH" in line and str(env.parent) in line


def test_a_corrupted_database_file_fails_status_naming_the_file(
    env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write_bytes(np.random.default_rng(0).bytes(8192))
    code, out, err = run(["status"], capsys)
    assert code == 1
    assert str(env) in one_line_error(err)
    assert "no decision recorded" not in out


def test_a_truncated_database_file_fails_status_naming_the_file(
    decided: DuckDBStore, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = decided.path.read_bytes()
    decided.path.write_bytes(whole[: len(whole) // 2])
    code, out, err = run(["status"], capsys)
    assert code == 1
    assert str(decided.path) in one_line_error(err)
    assert "no decision recorded" not in out
