"""Model assets through real Dagster runs: every family trains, round-trips through DuckDB,
registers once, and refuses bad windows without registering anything."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from clm_assets.assets.training.assets import _training_frame
from clm_assets.definitions import build_definitions
from clm_assets.features.schema import HorizonMismatchError
from clm_assets.models.base import ModelError
from clm_assets.models.families import FAMILIES, model_class
from clm_assets.models.windows import horizon_days, windows_for
from clm_assets.resources.model_handler import ModelHandler
from clm_assets.resources.storage import StorageResource
from clm_assets.settings import Settings
from clm_assets.sources.intervals import INTERVALS
from clm_assets.storage.duckdb_store import DuckDBStore, SliceCell, TableSlice
from clm_assets.storage.models import ModelChecksumError
from clm_assets.storage.slices import MissingPartitionsError
from clm_assets_tests.conftest import materialize, partition_metadata

AS_OF = "2018-12-31|BTC-USD"
TINY = {
    "xgboost": {"n_estimators": 20, "nthread": 1},
    "lightgbm": {"n_estimators": 20, "num_threads": 1},
    "nhits": {"max_steps": 5, "input_size": 24},
    "patchtst": {"max_steps": 5, "input_size": 24},
    "ppo": {"iterations": 1, "train_batch_size": 256, "minibatch_size": 64, "window": 64},
}


def _settings(db: Path, **kw: object) -> Settings:
    values: dict = {"db_path": db, "train_days": 20, "eval_days": 5, "model_params": TINY}
    values.update(kw)
    return Settings(**values)


@pytest.fixture(scope="module")
def sample_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real BTC-USD bars and features for Nov–Dec 2018 (warm-up from October)."""
    db = tmp_path_factory.mktemp("training") / "clm.duckdb"
    settings = _settings(db)
    materialize(settings, ["market_data/raw_ohlcv"], "2018-10-01", "2018-12-31")
    materialize(settings, ["features/features"], "2018-11-01", "2018-12-31")
    return db


def _train(settings: Settings, family: str, key: str = AS_OF) -> dg.ExecuteInProcessResult:
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["models", family])],
            partition_key=key,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )


def _stored(db: Path, family: str):
    table = TableSlice(
        "models",
        family,
        (
            SliceCell(
                (("symbol", "BTC-USD"),),
                "as_of",
                pd.Timestamp("2018-12-31", tz="UTC"),
                pd.Timestamp("2019-01-01", tz="UTC"),
            ),
        ),
    )
    (artifact,) = ModelHandler().read(DuckDBStore(db), table).artifacts
    return artifact


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_trains_and_round_trips_through_duckdb(sample_db: Path, family: str) -> None:
    settings = _settings(sample_db)
    result = _train(settings, family)
    meta = result.asset_materializations_for_node(f"models__{family}")[0].metadata
    assert meta["rows"].value > 400
    assert meta["model_bytes"].value > 0

    artifact = _stored(sample_db, family)
    stored = artifact.load()
    wins = windows_for(
        pd.Timestamp("2019-01-01", tz="UTC"), 20, 5, settings.label_horizon, pd.Timedelta("1h")
    )
    # The window boundary: training ends an embargo of >= horizon bars before evaluation.
    assert (
        pd.Timestamp(artifact.card.train_end) + settings.label_horizon * pd.Timedelta("1h")
        < wins.eval_start
    )
    assert pd.Timestamp(artifact.card.train_start) >= wins.train_start

    # Same data + seed, trained here in memory, predicts exactly what the stored bytes do.
    frame = _training_frame(
        StorageResource(path=str(sample_db)), "BTC-USD", wins, AS_OF, settings.label_horizon
    )
    fresh = model_class(family)(params=TINY[family], seed=settings.model_seed)
    fresh.fit(frame, settings.label_horizon)
    assert fresh.card.data_hash == artifact.card.data_hash
    evaluation = DuckDBStore(sample_db).query(
        "SELECT * FROM features.features WHERE open_time >= ? ORDER BY open_time",
        [pd.Timestamp("2018-12-20").to_pydatetime()],
    )
    pd.testing.assert_frame_equal(stored.predict(evaluation), fresh.predict(evaluation))
    assert stored.predict(evaluation)["position"].notna().sum() > 100


def test_registry_has_one_row_per_partition_even_after_rematerializing(sample_db: Path) -> None:
    settings = _settings(sample_db)
    _train(settings, "xgboost")
    _train(settings, "xgboost")
    rows = DuckDBStore(sample_db).query(
        "SELECT * FROM registry.model_versions WHERE family = 'xgboost'"
    )
    assert len(rows) == 1
    row = rows.iloc[0]
    assert row["status"] == "TRAINING"
    assert row["model_sha256"] == _stored(sample_db, "xgboost").sha256
    assert row["data_hash"] and row["code_version"] and row["library_versions"]


def test_corrupted_model_bytes_are_refused(sample_db: Path, tmp_path: Path) -> None:
    _train(_settings(sample_db), "lightgbm")
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(sample_db.read_bytes())
    with DuckDBStore(copy).connect() as conn:
        conn.execute("UPDATE models.lightgbm SET blob = blob || '\\x00'::BLOB")
    with pytest.raises(ModelChecksumError, match="sha256"):
        _stored(copy, "lightgbm")


def test_missing_training_days_are_named_and_nothing_registered(sample_db: Path) -> None:
    settings = _settings(sample_db)
    with pytest.raises(MissingPartitionsError, match=r"2018-10-\d\d\|BTC-USD"):
        _train(settings, "xgboost", key="2018-11-10|BTC-USD")
    rows = DuckDBStore(sample_db).query(
        "SELECT * FROM registry.model_versions WHERE as_of = '2018-11-10'"
    )
    assert rows.empty


def test_each_partition_of_a_multi_as_of_run_shows_its_own_card(sample_db: Path) -> None:
    """One step trains two as-ofs; each partition's materialization in the instance names
    the version, window and settings of its own model, not the last one's."""
    settings = _settings(sample_db)
    metas = {
        key.split("|")[0]: meta
        for key, meta in partition_metadata(
            settings, "models/lightgbm", "2018-12-30", "2018-12-31"
        ).items()
    }
    rows = (
        DuckDBStore(sample_db)
        .query(
            "SELECT strftime(as_of, '%Y-%m-%d') AS day, version, rows, rows_unlabeled "
            "FROM registry.model_versions WHERE family = 'lightgbm'"
        )
        .set_index("day")
    )
    for day, meta in metas.items():
        assert meta["version"].value == rows.loc[day, "version"]
        assert meta["rows"].value == rows.loc[day, "rows"]
        assert meta["rows_unlabeled"].value == rows.loc[day, "rows_unlabeled"]
        assert meta["label_horizon"].value == settings.label_horizon
        assert meta["config"].value["training"]["seed"] == settings.model_seed
        assert meta["config"].value["settings"]["train_days"] == 20
    assert metas["2018-12-30"]["train_window"].value != metas["2018-12-31"]["train_window"].value


def test_features_labelled_for_another_horizon_are_refused(sample_db: Path) -> None:
    """CLM_LABEL_HORIZON changed after the features were built: the model would learn the
    old horizon's labels as if they were the new one's."""
    with pytest.raises(HorizonMismatchError, match=r"labelled 4 bars ahead but 6 bars"):
        _train(_settings(sample_db, label_horizon=6), "xgboost")


def test_horizon_longer_than_the_window_is_refused(tmp_path: Path) -> None:
    settings = _settings(tmp_path / "clm.duckdb", train_days=1, label_horizon=30)
    materialize(settings, ["market_data/raw_ohlcv"], "2018-11-01", "2018-12-31")
    materialize(settings, ["features/features"], "2018-12-01", "2018-12-31")
    with pytest.raises(ModelError, match="label horizon"):
        _train(settings, "xgboost")
    assert not DuckDBStore(settings.db_path).table_exists("registry", "model_versions")


def test_nan_features_in_the_window_name_the_partition(tmp_path: Path) -> None:
    """At the start of the data, features are still warming up: training there is refused."""
    settings = _settings(
        tmp_path / "clm.duckdb", start_date="2017-07-02", train_days=3, eval_days=1
    )
    materialize(
        settings, ["market_data/raw_ohlcv", "features/features"], "2017-07-02", "2017-07-09"
    )
    with pytest.raises(ModelError, match=r"xgboost 2017-07-08\|BTC-USD: .*NaN"):
        _train(settings, "xgboost", key="2017-07-08|BTC-USD")


@given(
    as_of=st.datetimes(min_value=pd.Timestamp("2019-01-01"), max_value=pd.Timestamp("2030-01-01")),
    train_days=st.integers(1, 400),
    eval_days=st.integers(1, 60),
    horizon=st.integers(1, 500),
    interval=st.sampled_from(list(INTERVALS)),
)
def test_training_never_overlaps_evaluation(as_of, train_days, eval_days, horizon, interval):
    bar = INTERVALS[interval]
    end = pd.Timestamp(as_of, tz="UTC").floor("D")
    w = windows_for(end, train_days, eval_days, horizon, bar)
    assert w.eval_end == end and w.train_start < w.train_end < w.eval_start < w.eval_end
    # the last training label looks `horizon` bars past the last training bar
    assert w.train_end - bar + horizon * bar < w.eval_start
    assert w.embargo == horizon_days(horizon, bar) * pd.Timedelta(days=1)
