"""End-to-end: two months × two symbols backfilled from the CLI and through the webserver's
GraphQL API (with the daemon), in a handful of runs, equal to partitions run one by one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _graphql(port: int, query: str, variables: dict | None = None) -> dict:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        payload = json.loads(response.read())
    assert "errors" not in payload, payload
    return payload["data"]


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, dict[str, str]]]:
    """``dagster dev`` (webserver + daemon) on loopback with a persistent DAGSTER_HOME."""
    tmp = tmp_path_factory.mktemp("ui")
    env, port = _env(tmp, "ui"), _free_port()
    log = (tmp / "dagster_dev.log").open("w")
    command = [str(BIN / "dagster"), "dev", "-m", "clm_assets.definitions"]
    proc = subprocess.Popen(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((tmp / "dagster_dev.log").read_text()[-3000:]) from None
                time.sleep(1)
        yield port, env
    finally:
        # What Ctrl-C sends: the daemon stops at once; the webserver may linger, so it gets
        # SIGTERM, then SIGKILL (the whole group, so nothing outlives the test).
        for sig, grace in ((signal.SIGINT, 10), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        log.close()


def test_webserver_lists_the_assets(dagster_dev: tuple[int, dict[str, str]]) -> None:
    port, _ = dagster_dev
    data = _graphql(
        port,
        "{ assetNodes { assetKey { path } groupName description "
        "partitionDefinition { description } } }",
    )
    nodes = {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}
    assert set(SELECTION) <= set(nodes)
    assert nodes["market_data/raw_ohlcv"]["groupName"] == "market_data"
    assert nodes["features/features"]["groupName"] == "features"
    assert "Closed OHLCV candles" in nodes["market_data/raw_ohlcv"]["description"]
    assert nodes["features/features"]["partitionDefinition"] is not None
    repos = _graphql(
        port,
        "{ repositoriesOrError { ... on RepositoryConnection { nodes { sensors { name } } } } }",
    )["repositoriesOrError"]["nodes"]
    sensors = {s["name"] for repo in repos for s in repo["sensors"]}
    assert {"data_freshness", "scheduled_retraining", "performance_degradation"} <= sensors


def test_graphql_backfill_takes_a_few_runs_and_matches_the_cli(
    dagster_dev: tuple[int, dict[str, str]], cli_backfill: dict[str, str]
) -> None:
    port, env = dagster_dev
    launched = _graphql(
        port,
        """mutation($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
            __typename ... on LaunchBackfillSuccess { backfillId }
            ... on PythonError { message } } }""",
        {
            "p": {
                "allPartitions": True,
                "assetSelection": [{"path": s.split("/")} for s in SELECTION],
            }
        },
    )["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 420
    while True:
        backfill = _graphql(
            port,
            """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
                ... on PartitionBackfill { status runs(limit: 1000) { runId status } } } }""",
            {"id": launched["backfillId"]},
        )["partitionBackfillOrError"]
        if backfill["status"] != "REQUESTED":
            break
        assert time.monotonic() < deadline, backfill
        time.sleep(2)
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert 1 <= len(backfill["runs"]) <= 4  # not 122 runs per asset
    for table in ("market_data.raw_ohlcv", "features.features"):
        pd.testing.assert_frame_equal(
            _table(env["CLM_DB_PATH"], table), _table(cli_backfill["CLM_DB_PATH"], table)
        )
