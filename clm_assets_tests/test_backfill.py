"""End-to-end: two months × two symbols backfilled from the CLI in one run, equal to
partitions run one by one. (A backfill launched through the webserver and completed by the
daemon is driven from the browser in ``clm_assets_tests/ui``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from clm_assets.definitions import build_definitions
from clm_assets.settings import Settings
from clm_assets.storage.duckdb_store import DuckDBStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SELECTION = ["market_data/raw_ohlcv", "features/features"]
FIRST, LAST = "2024-01-01", "2024-03-01"  # 61 daily partitions (2024 is a leap year)


def _env(tmp: Path, name: str) -> dict[str, str]:
    home = tmp / f"home_{name}"
    home.mkdir()
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": "BTC-USDT,ETH-USDT",
        "CLM_START_DATE": FIRST,
        "CLM_END_DATE": "2024-03-02",
        "CLM_DB_PATH": str(tmp / f"{name}.duckdb"),
    }


def _table(db: str, table: str) -> pd.DataFrame:
    return DuckDBStore(db).query(f"SELECT * FROM {table} ORDER BY symbol, open_time")


@pytest.fixture(scope="module")
def cli_backfill(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    env = _env(tmp_path_factory.mktemp("cli"), "cli")
    subprocess.run(
        [
            str(BIN / "dagster"), "asset", "materialize", "-m", "clm_assets.definitions",
            "--select", ",".join(SELECTION),
            "--partition-range", f"{FIRST}|BTC-USDT...{LAST}|ETH-USDT",
        ],
        env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    return env


def test_cli_backfill_is_one_run_with_every_bar(cli_backfill: dict[str, str]) -> None:
    raw = _table(cli_backfill["CLM_DB_PATH"], "market_data.raw_ohlcv")
    features = _table(cli_backfill["CLM_DB_PATH"], "features.features")
    assert len(raw) == len(features) == 61 * 24 * 2
    assert not raw.duplicated(["symbol", "open_time"]).any()
    with dg.DagsterInstance.from_config(cli_backfill["DAGSTER_HOME"]) as instance:
        assert len(instance.get_run_records()) == 1


def test_backfill_rows_equal_partitions_materialized_alone(
    cli_backfill: dict[str, str], tmp_path: Path
) -> None:
    db = str(tmp_path / "alone.duckdb")
    settings = Settings.from_env({**cli_backfill, "CLM_DB_PATH": db})
    job = build_definitions(settings).resolve_implicit_global_asset_job_def()
    keys = ["2024-01-31|ETH-USDT", "2024-02-14|BTC-USDT", "2024-03-01|ETH-USDT"]
    with dg.DagsterInstance.ephemeral() as instance:
        # features need their 30 warm-up days and the next day (labels) in raw_ohlcv: the
        # warm-up days in one ranged run, the compared day and the next one each alone
        raw = [dg.AssetKey.from_user_string(SELECTION[0])]
        for key in keys:
            day, symbol = key.split("|")
            before = pd.Timestamp(day) - pd.Timedelta(days=1)
            warmup = before - pd.Timedelta(days=29)
            job.execute_in_process(
                instance=instance,
                asset_selection=raw,
                tags={
                    "dagster/asset_partition_range_start": f"{warmup:%Y-%m-%d}|{symbol}",
                    "dagster/asset_partition_range_end": f"{before:%Y-%m-%d}|{symbol}",
                },
            )
            last = min(pd.Timestamp(day) + pd.Timedelta(days=1), pd.Timestamp(LAST))
            for d in pd.date_range(pd.Timestamp(day), last):
                job.execute_in_process(
                    instance=instance, asset_selection=raw, partition_key=f"{d:%Y-%m-%d}|{symbol}"
                )
            job.execute_in_process(
                instance=instance,
                asset_selection=[dg.AssetKey.from_user_string(SELECTION[1])],
                partition_key=key,
            )
    for table in ("market_data.raw_ohlcv", "features.features"):
        backfilled = _table(cli_backfill["CLM_DB_PATH"], table)
        alone = _table(db, table)
        days = {tuple(k.split("|")) for k in keys}
        own = [
            (f"{t:%Y-%m-%d}", s) in days
            for t, s in zip(alone["open_time"], alone["symbol"], strict=True)
        ]
        alone = alone[own].reset_index(drop=True)
        merged = backfilled.merge(alone[["symbol", "open_time"]], on=["symbol", "open_time"])
        assert len(alone) == 3 * 24
        pd.testing.assert_frame_equal(merged, alone, check_exact=True)
