"""Backtests from stored bytes, promotion decisions and the registry CLI, end to end on the
real sample with small windows (XGBoost and LightGBM keep it fast)."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from clm_assets.backtest.walkforward import walk_forward
from clm_assets.backtest.window import LeakageError
from clm_assets.cli import main as clm
from clm_assets.definitions import build_definitions
from clm_assets.features.schema import HorizonMismatchError
from clm_assets.registry.decisions import AUTOMATIC_ACTIONS
from clm_assets.registry.promotion import champion, history
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets.storage.models import ModelChecksumError, read_model
from clm_assets.storage.slices import MissingPartitionsError
from clm_assets_tests.conftest import materialize, partition_metadata

FAST = {
    "xgboost": {"n_estimators": 30, "nthread": 1},
    "lightgbm": {"n_estimators": 30, "num_threads": 1},
}
GBDT = ["xgboost", "lightgbm"]
LOOSE = {
    "min_record_days": 0.0,
    "min_dsr": 0.0,
    "max_drawdown": 1.0,
    "min_trades": 0,
    "min_paired_psr": 0.0,
    "min_paired_days": 0.0,
}


def _settings(db: Path, **kw) -> Settings:
    values: dict = {
        "db_path": db,
        "reports_dir": db.parent / "reports",
        "train_days": 20,
        "eval_days": 5,
        "model_params": FAST,
    }
    values.update(kw)
    return Settings(**values)


@pytest.fixture(scope="module")
def base_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("evaluation") / "clm.duckdb"
    settings = _settings(db)
    materialize(settings, ["market_data/raw_ohlcv"], "2018-10-01", "2018-12-31")
    materialize(settings, ["features/features"], "2018-11-01", "2018-12-31")
    materialize(settings, [f"models/{f}" for f in GBDT], "2018-12-29", "2018-12-31")
    return db


@pytest.fixture
def db(base_db: Path, tmp_path: Path) -> Path:
    """A private copy: each test decides its own promotions."""
    copy = tmp_path / "clm.duckdb"
    shutil.copy(base_db, copy)
    return copy


def _run(settings: Settings, selection: list[str], key: str, gates: dict | None = None):
    """One run; ``gates`` is launchpad config of the promotion resource."""
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    if gates is not None:
        run_config["resources"] = {"promotion": {"config": gates}}
    with dg.DagsterInstance.ephemeral() as instance:
        return (
            build_definitions(settings)
            .resolve_implicit_global_asset_job_def()
            .execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey.from_user_string(s) for s in selection],
                partition_key=key,
                run_config=run_config,
            )
        )


def test_backtest_metrics_come_from_the_stored_returns(db: Path) -> None:
    settings = _settings(db)
    result = _run(settings, ["evaluation/backtest_xgboost"], "2018-12-31|BTC-USD")
    meta = result.asset_materializations_for_node("evaluation__backtest_xgboost")[0].metadata
    store = DuckDBStore(db)
    per_bar = store.query("SELECT * FROM evaluation.backtest_xgboost ORDER BY open_time")
    ev = store.query("SELECT * FROM registry.evaluations WHERE family = 'xgboost'").iloc[0]
    # 5 evaluation days of hourly bars, the first one fills at the second bar's open
    assert len(per_bar) == 5 * 24 - 1 == ev["bars"]
    assert per_bar["open_time"].min() == pd.Timestamp("2018-12-27 01:00", tz="UTC")
    returns = per_bar["return"].to_numpy()
    independent = returns.mean() / returns.std(ddof=1) * np.sqrt(8760)
    assert ev["sharpe"] == pytest.approx(independent, rel=1e-9)
    assert meta["sharpe"].value == pytest.approx(independent, rel=1e-9)
    assert np.isclose(np.prod(1 + returns), per_bar["equity"].iloc[-1])
    assert "data:image/png;base64," in meta["equity_curve"].value
    assert "| sharpe |" in meta["metrics"].value
    tearsheet = Path(meta["tearsheet"].value)
    html = tearsheet.read_text()
    assert tearsheet.exists() and "<svg" in html and "<script src=" not in html


def test_each_partition_of_a_multi_as_of_run_shows_its_own_metrics(db: Path) -> None:
    """One step evaluates three as-ofs; each partition's materialization in the instance
    carries the version and Sharpe of its own registry row, not the last partition's."""
    settings = _settings(db)
    metas = partition_metadata(settings, "evaluation/backtest_xgboost", "2018-12-29", "2018-12-31")
    rows = DuckDBStore(db).query(
        "SELECT as_of, version, sharpe, costs->>'fee_bps' AS fee FROM registry.evaluations "
        "WHERE family = 'xgboost'"
    )
    assert rows["version"].nunique() == 3
    assert len(metas) == 3
    for key, meta in metas.items():
        row = rows[rows["as_of"].astype(str).str.startswith(key.split("|")[0])].iloc[0]
        assert meta["version"].value == row["version"]
        assert meta["sharpe"].value == pytest.approx(row["sharpe"], rel=1e-12)
        assert meta["config"].value["costs"]["fee_bps"] == 10.0 == float(row["fee"])


def test_evaluating_with_other_windows_than_training_is_refused(db: Path) -> None:
    """The models were trained for 5-day evaluation windows; a 10-day window reaches back
    into their training labels and must not be scored (it would be in sample)."""
    with pytest.raises(LeakageError, match=r"trained on bars 2018-12-06.*2018-12-25T23:00"):
        _run(_settings(db, eval_days=10), ["evaluation/backtest_xgboost"], "2018-12-31|BTC-USD")
    assert not DuckDBStore(db).table_exists("registry", "evaluations")


def test_features_relabelled_for_another_horizon_are_not_scored(db: Path) -> None:
    """The features were re-built with another CLM_LABEL_HORIZON than the stored models
    were trained for: their accuracy would be measured against a target they never had."""
    with DuckDBStore(db).connect() as conn:
        conn.execute("UPDATE features.features SET label_horizon = 6")
    with pytest.raises(HorizonMismatchError, match=r"labelled 6 bars ahead but 4 bars"):
        _run(_settings(db), ["evaluation/backtest_xgboost"], "2018-12-31|BTC-USD")
    assert not DuckDBStore(db).table_exists("registry", "evaluations")


def test_corrupted_model_is_never_evaluated(db: Path) -> None:
    with DuckDBStore(db).connect() as conn:
        conn.execute("UPDATE models.xgboost SET blob = blob || '\\x00'::BLOB")
    with pytest.raises(ModelChecksumError):
        _run(_settings(db), ["evaluation/backtest_xgboost"], "2018-12-31|BTC-USD")
    assert not DuckDBStore(db).table_exists("registry", "evaluations")


def test_evaluation_window_without_bars_is_an_error(db: Path) -> None:
    with DuckDBStore(db).connect() as conn:
        conn.execute("DELETE FROM features.features WHERE open_time >= '2018-12-30'")
    with pytest.raises(MissingPartitionsError, match=r"2018-12-30\|BTC-USD"):
        _run(_settings(db), ["evaluation/backtest_lightgbm"], "2018-12-31|BTC-USD")


def test_a_refusal_is_recorded_with_gate_values_and_is_idempotent(db: Path) -> None:
    settings = _settings(db)
    strict = {"min_record_days": 30.0}  # the records here are a few days long
    selection = [f"evaluation/backtest_{f}" for f in GBDT] + ["promotion/promoted_model"]
    _run(settings, selection, "2018-12-31|BTC-USD", strict)
    _run(settings, ["promotion/promoted_model"], "2018-12-31|BTC-USD", strict)
    with DuckDBStore(db).connect() as conn:
        decisions = history(conn, "BTC-USD")
        assert champion(conn, "BTC-USD") is None
    assert list(decisions["action"]) == ["NO_CHAMPION"]  # one row after two runs
    reports = decisions.iloc[0]["gate_reports"]
    assert set(reports) >= set(GBDT)
    assert "no evaluation for this partition): nhits, patchtst, ppo" in decisions.iloc[0]["reason"]
    statuses = DuckDBStore(db).query(
        "SELECT family, status FROM registry.model_versions WHERE as_of = '2018-12-31'"
    )
    assert set(statuses["status"]) == {"REJECTED"}


def test_promote_then_status_rollback_and_report_through_the_cli(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(db)
    selection = [f"evaluation/backtest_{f}" for f in GBDT] + ["promotion/promoted_model"]
    for day in ("2018-12-29", "2018-12-30"):
        _run(settings, selection, f"{day}|BTC-USD", LOOSE)
    with DuckDBStore(db).connect() as conn:
        decisions = history(conn, "BTC-USD")
        second = champion(conn, "BTC-USD")
    assert list(decisions["action"]) == ["PROMOTED", "PROMOTED"]
    first = decisions.iloc[0]
    assert second is not None and second.as_of == pd.Timestamp("2018-12-30", tz="UTC")

    monkeypatch.setenv("CLM_DB_PATH", str(db))
    assert clm(["status", "--symbol", "BTC-USD"]) == 0
    out = capsys.readouterr().out
    assert f"champion: {second.family} version {second.version}" in out
    assert "gate dsr" in out

    assert clm(["rollback", "--symbol", "BTC-USD", "--reason", "test"]) == 0
    with DuckDBStore(db).connect() as conn:
        restored = champion(conn, "BTC-USD")
    assert (restored.family, restored.as_of) == (first["champion_family"], first["champion_as_of"])

    assert clm(["report", "--symbol", "BTC-USD"]) == 0
    assert "xgboost.html" in capsys.readouterr().out


def test_walk_forward_stitches_each_champion_over_the_bars_after_its_decision(
    db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = _settings(db)
    selection = [f"evaluation/backtest_{f}" for f in GBDT] + ["promotion/promoted_model"]
    for day in ("2018-12-29", "2018-12-30", "2018-12-31"):
        _run(settings, selection, f"{day}|BTC-USD", LOOSE)
    store = DuckDBStore(db)
    with store.connect() as conn:
        decisions = history(conn, "BTC-USD")
    ends = {pd.Timestamp(a): pd.Timestamp(a) + pd.Timedelta(days=1) for a in decisions["as_of"]}
    automatic = decisions[decisions["action"].isin(AUTOMATIC_ACTIONS)]
    record = walk_forward(store, "BTC-USD", "1h", automatic, ends, context=pd.Timedelta(days=22))

    assert [s.start for s in record.segments] == [
        pd.Timestamp("2018-12-30", tz="UTC"),
        pd.Timestamp("2018-12-31", tz="UTC"),
    ]
    assert record.result.n_bars == 2 * 24 - 1
    # the first day is traded by the champion decided at the end of 2018-12-29
    first = decisions.iloc[0]
    model = read_model(store, first["champion_family"], "BTC-USD", first["champion_as_of"]).load()
    features = store.query(
        "SELECT * FROM features.features WHERE open_time >= '2018-12-08' ORDER BY open_time"
    )
    expected = model.predict(features).set_index("open_time")["position"]
    held = pd.Series(record.result.position, index=record.result.open_time)
    day_one = held[held.index < pd.Timestamp("2018-12-31", tz="UTC")]
    # a position decided at a bar's close is held over the next bar
    np.testing.assert_array_equal(
        day_one.to_numpy(), expected.shift(1).reindex(day_one.index).to_numpy()
    )
    assert record.metrics["bh_total_return"] is not None

    monkeypatch.setenv("CLM_DB_PATH", str(db))
    monkeypatch.setenv("CLM_TRAIN_DAYS", "20")
    monkeypatch.setenv("CLM_EVAL_DAYS", "5")
    assert clm(["walkforward", "--symbol", "BTC-USD"]) == 0
    out = capsys.readouterr().out
    assert "2 segments" in out and "buy & hold" in out
