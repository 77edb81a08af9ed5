"""The production instance, end to end: ``dagster-daemon`` on ``dagster.postgres.yaml``
against a real PostgreSQL server (``postgres.py``), on a synthetic deployment of five days
× one symbol.

Nobody launches a run. A backfill of the first three days of ``market_data/raw_ohlcv`` is
submitted (what the UI's backfill dialog submits) before the daemon starts, so that the
backfill daemon's first pass (it passes every 30 s) launches its run; once its bars are
stored, the ``data_freshness`` sensor (running from the start, ``CLM_SENSORS_RUNNING=1``)
requests the two days still missing. Both land: read back through a
``DagsterInstance`` built from the same DAGSTER_HOME, and straight from PostgreSQL's own
``runs`` and ``bulk_actions`` tables, so the history really is in PostgreSQL; the bars are
in the DuckDB file.

The test prints what it measured (``-s`` shows it): the server's start and stop, the runs,
and the whole test's time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from dagster._core.execution.backfill import BulkActionStatus, PartitionBackfill
from dagster._core.utils import make_new_backfill_id

from clm_assets.definitions import build_definitions
from clm_assets.sensors import IN_PROCESS
from clm_assets.settings import PROJECT_ROOT, Settings
from clm_assets.storage.duckdb_store import DuckDBStore
from clm_assets_tests.instance.postgres import PostgresServer, running_postgres
from clm_assets_tests.ui.deployment import wait_for

BIN = Path(sys.executable).parent
SYMBOL = "BTC-USDT"
START, END = "2024-01-01", "2024-01-06"
"""Five daily partitions, all in the past: ``scheduled_retraining`` has no as-of left to
train and ``performance_degradation`` no champion to watch, so only ``data_freshness`` and
the backfill start runs."""
BACKFILLED = ("2024-01-01", "2024-01-02", "2024-01-03")
"""The history the backfill stores; ``data_freshness`` fetches what follows."""
RAW = dg.AssetKey(["market_data", "raw_ohlcv"])
FRESHNESS = {"clm/trigger": "data_freshness"}
DEADLINE_S = 180
"""Typically done in well under a minute; the margin is for a loaded shared machine."""
BARS_PER_DAY = 24


def _deployment(tmp: Path, pg: PostgresServer) -> dict[str, str]:
    """The daemon's environment: a DAGSTER_HOME whose dagster.yaml is the project's
    PostgreSQL config (run monitoring polling every 2 s instead of 30), the server's
    ``CLM_PG_*``, and the deployment's ``CLM_*`` (nothing of the developer's own)."""
    home = tmp / "home"
    home.mkdir()
    config = (PROJECT_ROOT / "dagster.postgres.yaml").read_text()
    assert "poll_interval_seconds: 30" in config
    (home / "dagster.yaml").write_text(
        config.replace("poll_interval_seconds: 30", "poll_interval_seconds: 2")
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLM_", "DAGSTER_"))}
    return {
        **env,
        **pg.env(),
        "DAGSTER_HOME": str(home),
        "CLM_SOURCE": "synthetic",
        "CLM_SYMBOLS": SYMBOL,
        "CLM_START_DATE": START,
        "CLM_END_DATE": END,
        "CLM_FAMILIES": "xgboost",  # fewer assets: a faster code location, same sensors
        "CLM_SENSORS_RUNNING": "1",
        "CLM_SENSOR_INTERVAL_S": "2",
        "CLM_DB_PATH": str(tmp / "clm.duckdb"),
        "CLM_REPORTS_DIR": str(tmp / "reports"),
    }


def _submit_backfill(instance: dg.DagsterInstance, settings: Settings) -> str:
    """What the UI's backfill dialog submits for raw_ohlcv × ``BACKFILLED`` × ``SYMBOL``
    (no public API or CLI submits an asset backfill in Dagster 1.13), with the sensors' run
    config: the steps run in the run's process, where a process per step would import the
    definitions again on two busy cores."""
    backfill = PartitionBackfill.from_asset_partitions(
        backfill_id=make_new_backfill_id(),
        asset_graph=build_definitions(settings).resolve_asset_graph(),
        partition_names=[f"{day}|{SYMBOL}" for day in BACKFILLED],
        asset_selection=[RAW],
        backfill_timestamp=time.time(),
        tags={},
        dynamic_partitions_store=instance,
        all_partitions=False,
        title=None,
        description=None,
        run_config=IN_PROCESS,
    )
    instance.add_backfill(backfill)
    return backfill.backfill_id


def _start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-w", PROJECT_ROOT / "workspace.yaml"],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _stop_group(daemon: subprocess.Popen) -> None:
    """SIGTERM to the daemon's whole group (daemon, code server, run workers), then SIGKILL
    to whatever is left of it: the instance is thrown away with the server."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        daemon.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGKILL)
    daemon.wait(timeout=30)


def _landed(
    instance: dg.DagsterInstance, backfill_id: str, daemon: subprocess.Popen, log: Path
) -> bool:
    """Whether the backfill is done and a freshness run has finished; the daemon must live."""
    assert daemon.poll() is None, f"the daemon exited:\n{log.read_text()[-3000:]}"
    backfill = instance.get_backfill(backfill_id)
    assert backfill is not None
    fresh = instance.get_run_records(dg.RunsFilter(tags=FRESHNESS))
    return backfill.status != BulkActionStatus.REQUESTED and any(
        r.dagster_run.is_finished for r in fresh
    )


def _runs_of(instance: dg.DagsterInstance, tags: dict[str, str]) -> list[dg.DagsterRun]:
    return [r.dagster_run for r in instance.get_run_records(dg.RunsFilter(tags=tags))]


def _materialized(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    events = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    return {
        e.dagster_event.partition
        for e in events
        if e.dagster_event is not None and e.dagster_event.asset_key == RAW
    }


def _bars_per_day(db: str) -> dict[str, int]:
    rows = DuckDBStore(db, read_only=True).query(
        "SELECT strftime(open_time, '%Y-%m-%d') AS day, count(*) AS n, "
        "count(DISTINCT open_time) AS distinct_bars FROM market_data.raw_ohlcv "
        f"WHERE symbol = '{SYMBOL}' GROUP BY day ORDER BY day"
    )
    assert (rows["n"] == rows["distinct_bars"]).all(), rows  # no bar stored twice
    return dict(zip(rows["day"], rows["n"], strict=True))


def test_a_backfill_and_a_sensor_run_land_in_the_postgres_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    began = time.monotonic()
    with running_postgres() as pg:
        env = _deployment(tmp_path, pg)
        for name, value in pg.env().items():  # this process's instance reads them too
            monkeypatch.setenv(name, value)
        log = tmp_path / "daemon.log"
        with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
            backfill_id = _submit_backfill(instance, Settings.from_env(env))
            daemon = _start_daemon(env, log)
            try:
                wait_for(
                    lambda: _landed(instance, backfill_id, daemon, log),
                    DEADLINE_S,
                    "the backfill to complete and a data_freshness run to finish",
                )
            finally:
                _stop_group(daemon)
            backfill = instance.get_backfill(backfill_id)
            backfilled = _runs_of(instance, {"dagster/backfill": backfill_id})
            fresh = _runs_of(instance, FRESHNESS)
            every_run = {r.run_id: r.status.value for r in instance.get_runs()}
            materialized = {r.run_id: _materialized(instance, r.run_id) for r in backfilled}
        with contextlib.closing(pg.connect()) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT run_id, status FROM runs")
            pg_runs = dict(cursor.fetchall())
            cursor.execute("SELECT status FROM bulk_actions WHERE key = %s", (backfill_id,))
            pg_backfill = cursor.fetchall()
    elapsed = time.monotonic() - began

    # (b) the backfill: complete, its runs succeeded, every partition written by them
    assert backfill is not None
    assert backfill.status == BulkActionStatus.COMPLETED_SUCCESS, log.read_text()[-3000:]
    assert backfilled, "the backfill launched no run"
    assert {r.status for r in backfilled} == {dg.DagsterRunStatus.SUCCESS}
    assert set().union(*materialized.values()) == {f"{d}|{SYMBOL}" for d in BACKFILLED}
    # (a) the sensor's run: it requested exactly the days after the backfilled ones
    assert fresh, "data_freshness launched no run"
    first = fresh[-1]  # the oldest: records come newest first
    assert first.status == dg.DagsterRunStatus.SUCCESS, log.read_text()[-3000:]
    assert first.tags["dagster/asset_partition_range_end"] == f"2024-01-05|{SYMBOL}"
    assert first.tags["clm/newest_stored_bar"] == "2024-01-03T23:00:00+00:00"
    # nothing else started a run, and PostgreSQL itself holds each run and the backfill
    assert set(every_run) == {r.run_id for r in backfilled} | {r.run_id for r in fresh}
    assert pg_runs == every_run
    assert pg_backfill == [(BulkActionStatus.COMPLETED_SUCCESS.value,)]
    # the bars of all five days are in DuckDB, once each
    days = pd.date_range(START, END, inclusive="left").strftime("%Y-%m-%d")
    assert _bars_per_day(env["CLM_DB_PATH"]) == dict.fromkeys(days, BARS_PER_DAY)
    features = DuckDBStore(env["CLM_DB_PATH"], read_only=True).query(
        "SELECT max(open_time) AS newest FROM features.features"
    )
    assert features["newest"].iloc[0] == pd.Timestamp("2024-01-05 23:00", tz="UTC")

    print(
        f"\npostgres: started in {pg.start_s:.1f} s, stopped in {pg.stop_s:.1f} s; "
        f"backfill {backfill_id}: runs {[r.run_id for r in backfilled]}; data_freshness "
        f"runs {[(r.run_id, r.status.value) for r in fresh]}; whole test {elapsed:.1f} s"
    )
