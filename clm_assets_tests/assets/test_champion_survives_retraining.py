"""Re-materializing the champion's partition keeps the champion (issue 7, defect 1).

The registry keeps a decided status only for the same version (sha256 of the bytes), so
training must give the same bytes for the same data, config and seed. Before the fix every
family's bytes held a timing (and the neural and PPO archives file times or OS entropy): a
retraining, by the schedule, a sensor or a user in the UI, reset the champion to TRAINING
and left the symbol with no champion, silently.

Real in-process Dagster runs on the bundled BTC-USD sample with tiny model parameters.
Each family in turn is made champion and its partition re-materialized; at the end the
whole partition (all five families, as the periodic retrain does) is re-materialized.
"""

from __future__ import annotations

import dagster as dg
import pandas as pd
import pytest

from clm_assets.definitions import build_definitions
from clm_assets.models.families import FAMILIES
from clm_assets.registry.promotion import champion, promote_manual
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.conftest import materialize
from clm_assets_tests.factories import FAST_PARAMS

SYMBOL = "BTC-USD"
AS_OF = pd.Timestamp("2018-12-31", tz="UTC")
KEY = f"2018-12-31|{SYMBOL}"


def _train(settings: Settings, families: list[str]) -> None:
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    with dg.DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey(["models", f]) for f in families],
            partition_key=KEY,
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
    assert result.success


def _registry(settings: Settings) -> pd.DataFrame:
    rows = DuckDBStore(settings.db_path).query(
        "SELECT family, version, status, train_seconds, rows, rows_unlabeled "
        "FROM registry.model_versions WHERE symbol = ? ORDER BY family",
        [SYMBOL],
    )
    return rows.set_index("family")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, pd.DataFrame]:
    """Features for December 2018 and the five models of the 2018-12-31 partition."""
    db = tmp_path_factory.mktemp("champion") / "clm.duckdb"
    settings = Settings(db_path=db, train_days=10, eval_days=3, model_params=FAST_PARAMS)
    materialize(settings, ["market_data/raw_ohlcv"], "2018-11-10", "2018-12-31")
    materialize(settings, ["features/features"], "2018-12-10", "2018-12-31")
    _train(settings, list(FAMILIES))
    return settings, _registry(settings)


def test_registry_records_timing_beside_the_bytes(trained) -> None:
    _, first = trained
    assert sorted(first.index) == sorted(FAMILIES)
    assert (first["status"] == "TRAINING").all()
    assert (first["train_seconds"] > 0).all()  # measured, kept outside the hashed bytes
    assert (first["rows"] > 100).all() and (first["rows_unlabeled"] >= 0).all()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_champion_keeps_its_status_when_its_partition_is_retrained(trained, family) -> None:
    settings, first = trained
    with DuckDBStore(settings.db_path).transaction() as conn:
        promote_manual(conn, SYMBOL, family, AS_OF, "test: champion under retraining", force=True)
    _train(settings, [family])
    after = _registry(settings)
    assert after.loc[family, "version"] == first.loc[family, "version"]
    assert after.loc[family, "status"] == "PRODUCTION"
    with DuckDBStore(settings.db_path).connect() as conn:
        ref = champion(conn, SYMBOL)
    assert ref is not None and (ref.family, ref.version) == (family, first.loc[family, "version"])


def test_retraining_the_whole_partition_keeps_every_version_and_status(trained) -> None:
    """After the loop above the last family is champion and the others RETIRED; the
    periodic retrain of all five changes none of it."""
    settings, first = trained
    before = _registry(settings)
    assert (before["status"] == "PRODUCTION").sum() == 1
    _train(settings, list(FAMILIES))
    after = _registry(settings)
    pd.testing.assert_series_equal(after["version"], first["version"])
    pd.testing.assert_series_equal(after["status"], before["status"])
