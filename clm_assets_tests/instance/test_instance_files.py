"""The two instance configs at the repository root: ``dagster.yaml`` (local storage under
DAGSTER_HOME) and ``dagster.postgres.yaml`` (PostgreSQL). A setting changed in one and not
in the other would make production behave unlike every test and demo, so they must differ
in their storage and nothing else."""

from __future__ import annotations

from pathlib import Path

import yaml

from clm_assets.settings import PROJECT_ROOT

LOCAL, POSTGRES = PROJECT_ROOT / "dagster.yaml", PROJECT_ROOT / "dagster.postgres.yaml"


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_postgres_config_is_the_local_one_plus_its_storage() -> None:
    local, postgres = _load(LOCAL), _load(POSTGRES)
    assert "storage" not in local
    postgres.pop("storage")
    assert postgres == local


def test_the_postgres_storage_is_read_from_the_environment_with_the_psycopg2_driver() -> None:
    db = _load(POSTGRES)["storage"]["postgres"]["postgres_db"]
    assert db.pop("scheme") == "postgresql+psycopg2"  # not SQLAlchemy 2.1's psycopg 3 default
    assert db == {
        "username": {"env": "CLM_PG_USER"},
        "password": {"env": "CLM_PG_PASSWORD"},
        "hostname": {"env": "CLM_PG_HOST"},
        "db_name": {"env": "CLM_PG_DB"},
        "port": {"env": "CLM_PG_PORT"},
    }
