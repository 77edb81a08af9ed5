"""The live loop end to end: a real ``dagster-daemon`` in a temporary DAGSTER_HOME against
the replay exchange on loopback (a SYNTHETIC market whose planted signal reverses), after
the ``make live`` bootstrap. Nobody launches a run: the freshness sensor stores the new
bars and paper-trades the champion on them, the degradation sensor sees the reversal, and
its retrain run records a new promotion decision.

The test prints what it measured (``-s`` shows it): the latency from a bar's close at the
exchange to its features stored, the bars from the reversal to the alarm, and the time from
the alarm's run request to the decision.

Fault injected on the way (the fault suite's case of the daemon killed with a sensor's run in
flight): once a freshness run is in progress, the daemon's whole process group (daemon, code
server and whatever run worker it holds) is SIGKILLed and a new daemon started. Afterwards
no run key ran twice, the run in flight either finished or was marked failed by run
monitoring (never left STARTED), and the stored bars have no duplicate and no hole.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from clm_assets.live.loop import SYMBOL, Scenario, bootstrap, live_env, start_replay
from clm_assets.registry.promotion import history
from clm_assets.storage.duckdb_store import DuckDBStore

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SCENARIO = Scenario(
    flip_at=pd.Timestamp("2024-02-23", tz="UTC"),  # a day of losing bars before the daemon
    strength=0.8,
    speed=1800.0,
    families="xgboost",
    retrain_cron="0 0 * * 1",  # Mondays: 2024-02-26 falls inside the test, so both run
    sensor_interval_s=5,
)
DEADLINE_S = 500  # 113-256 s on 2 idle cores (5 runs); make test runs this module alone


def _runs(instance: dg.DagsterInstance, trigger: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(tags={"clm/trigger": trigger})))


def _start_daemon(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [BIN / "dagster-daemon", "run", "-m", "clm_assets.definitions"],
        env={**os.environ, **env},
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _in_flight(instance: dg.DagsterInstance, bootstrapped: set[str]) -> dg.RunRecord | None:
    """A freshness run in progress, after one has already succeeded (the loop is running)."""
    runs = [
        r for r in _runs(instance, "data_freshness") if r.dagster_run.run_id not in bootstrapped
    ]
    if not any(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs):
        return None
    started = [r for r in runs if r.dagster_run.status == dg.DagsterRunStatus.STARTED]
    return started[0] if started else None


def _done(instance: dg.DagsterInstance) -> dg.RunRecord | None:
    """The successful degradation retrain, once its decision is stored."""
    for record in _runs(instance, "performance_degradation"):
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            return record
        if record.dagster_run.status == dg.DagsterRunStatus.FAILURE:
            raise AssertionError(f"the degradation retrain failed: {record.dagster_run.run_id}")
    return None


def test_the_loop_runs_on_its_own_from_new_bars_to_a_new_decision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with start_replay(SCENARIO) as replay:
        env = live_env(SCENARIO, replay.api_url, tmp_path)
        env["CLM_DEGRADATION_THRESHOLD"] = "10"  # a mechanics test: detect within a day
        home = Path(env["DAGSTER_HOME"])
        home.mkdir()
        # run monitoring polls every 2 s here, and frees a dead run's pool slot 2 s after
        config = (ROOT / "dagster.yaml").read_text()
        for setting in ("poll_interval_seconds", "free_slots_after_run_end_seconds"):
            assert f"{setting}: 30" in config
            config = config.replace(f"{setting}: 30", f"{setting}: 2")
        (home / "dagster.yaml").write_text(config)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with dg.DagsterInstance.get() as instance:
            as_of = bootstrap(SCENARIO, instance)
            bootstrapped = {r.dagster_run.run_id for r in instance.get_run_records()}
            daemon = _start_daemon(env, tmp_path / "daemon.log")
            try:
                deadline = time.monotonic() + DEADLINE_S
                killed = None
                while (retrain := _done(instance)) is None:
                    assert daemon.poll() is None, (tmp_path / "daemon.log").read_text()[-3000:]
                    assert time.monotonic() < deadline, _status(instance, tmp_path)
                    if killed is None and (in_flight := _in_flight(instance, bootstrapped)):
                        os.killpg(daemon.pid, signal.SIGKILL)
                        daemon.wait(timeout=30)
                        killed = in_flight.dagster_run.run_id
                        daemon = _start_daemon(env, tmp_path / "daemon2.log")
                    time.sleep(0.5 if killed is None else 2)
                assert killed is not None, "no freshness run was caught in flight"
                while not (ghost := instance.get_run_by_id(killed)).is_finished:
                    assert time.monotonic() < deadline, f"run {killed} left {ghost.status}"
                    time.sleep(1)
            finally:
                os.killpg(daemon.pid, signal.SIGTERM)
                daemon.wait(timeout=60)
            if ghost.status == dg.DagsterRunStatus.FAILURE:  # its worker died with the daemon
                (failure,) = instance.all_logs(killed, of_type=dg.DagsterEventType.RUN_FAILURE)
                assert "is gone" in (failure.dagster_event.message or "")
            killed_at = instance.get_run_record_by_id(killed).create_timestamp.timestamp()
            keys = [
                r.dagster_run.tags["dagster/run_key"] for r in _runs(instance, "data_freshness")
            ]
            print(f"\ndaemon SIGKILLed with run {killed} in flight: it ended {ghost.status.value}")
            clock_now, real_now = replay.clock.now(), time.time()
            fresh = [
                r
                for r in _runs(instance, "data_freshness")
                if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            ]
            assert all(r.dagster_run.run_id not in bootstrapped for r in fresh)
    # new bars were stored by runs nobody launched
    assert fresh, "no data_freshness run succeeded"
    store = DuckDBStore(tmp_path / "clm.duckdb")
    # the daemon killed mid-run: nothing ran twice, nothing is missing or duplicated
    assert len(keys) == len(set(keys))
    assert any(r.create_timestamp.timestamp() > killed_at for r in fresh)  # it carried on
    bars = store.query("SELECT open_time FROM market_data.raw_ohlcv ORDER BY open_time")
    assert bars["open_time"].is_unique
    assert (bars["open_time"].diff().dropna() == pd.Timedelta(hours=1)).all()
    newest = store.query("SELECT max(open_time) AS t FROM features.features")["t"].iloc[0]
    assert newest >= SCENARIO.virtual_start
    # the alarm came after the reversal, and its retrain recorded a decision for its as-of
    tags = retrain.dagster_run.tags
    fired_at = pd.Timestamp(tags["clm/fired_at"])
    assert fired_at > SCENARIO.flip_at
    as_of_key = retrain.dagster_run.tags["dagster/partition"]
    with store.connect() as conn:
        decided = history(conn, SYMBOL)
    retrained = pd.to_datetime(as_of_key.split("|")[0], format="%Y-%m-%d-%H:%M", utc=True)
    assert decided["as_of"].iloc[0] == as_of  # the bootstrap's
    assert retrained in set(decided["as_of"])  # (a scheduled Monday retrain may be there too)
    assert retrained + pd.Timedelta(hours=4) > fired_at  # it saw the bars of the alarm
    _report(fresh, retrain, fired_at, clock_now, real_now)


def _real_time(virtual: pd.Timestamp, clock_now: pd.Timestamp, real_now: float) -> float:
    return real_now - (clock_now - virtual).total_seconds() / SCENARIO.speed


def _report(fresh, retrain, fired_at, clock_now, real_now) -> None:
    """What the note quotes: measured here, on this machine, in this run."""
    latency = []
    for record in fresh:
        bar_close = pd.Timestamp(record.dagster_run.tags["clm/newest_source_bar"]) + pd.Timedelta(
            hours=1
        )
        latency.append(record.end_time - _real_time(bar_close, clock_now, real_now))
    alarm_close = _real_time(fired_at + pd.Timedelta(hours=1), clock_now, real_now)
    run_tags = retrain.dagster_run.tags
    requested = retrain.create_timestamp.timestamp()
    print(
        f"\nlive loop: {len(fresh)} freshness runs; bar close -> features stored: median "
        f"{np.median(latency):.1f} s, max {max(latency):.1f} s (real seconds)\n"
        f"reversal {SCENARIO.flip_at} -> alarm at bar {fired_at} "
        f"({(fired_at - SCENARIO.flip_at) / pd.Timedelta(hours=1):.0f} bars), rule "
        f"{run_tags['clm/rule']} {run_tags['clm/statistic']} > {run_tags['clm/threshold']}\n"
        f"alarm bar closed -> retrain requested: {requested - alarm_close:.1f} s; "
        f"requested -> decision stored: {retrain.end_time - requested:.1f} s"
    )


def _status(instance: dg.DagsterInstance, tmp: Path) -> str:
    runs = [
        (r.dagster_run.tags.get("clm/trigger"), r.dagster_run.status.value)
        for r in instance.get_run_records()
    ]
    ticks = tmp / "daemon.log"
    return f"timed out; runs {runs}; daemon log tail:\n{ticks.read_text()[-3000:]}"
