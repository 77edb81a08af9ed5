"""Live latencies of the loop nobody presses a button in: bar close -> features stored by
the ``data_freshness`` sensor's run, and degradation alarm -> new promotion decision;
against the same runs executed directly in this process.

``run()`` replays ``clm_assets_tests/test_live_loop.py``'s scenario with its machinery
(``clm_assets.live.loop``): the replay exchange serves a synthetic BTC-USDT market at 1800x
real time (an hour of bars every 2 s) whose planted signal reverses a day before the
virtual start; ``bootstrap`` stores the history and promotes a first xgboost champion in
this process; then a real ``dagster-daemon`` in a temp ``DAGSTER_HOME`` (the project's
``dagster.yaml``) ticks the sensors every 5 s (``CLM_DEGRADATION_THRESHOLD=10``, as in the
test, so the reversal is detected within a day) until the degradation retrain has stored
its decision or ``deadline_s`` passes; the daemon is stopped and the instance read:

* freshness: for every successful ``data_freshness`` run, the real time from the close of
  the newest bar it stored (``clm/newest_source_bar`` + 1 h, mapped through the virtual
  clock) to the end of its features step and to the end of the run (live_performance,
  the paper trade, comes after the features), split into bar close -> run created (tick
  wait and sensor evaluation), created -> started (queue and launch) and the run itself;
* alarm: the alarm bar's close -> the first ``performance_degradation`` tick that saw it
  (its tick record in the instance) -> the retrain run created (the tick's skip reasons
  meanwhile say what it waited for) -> started -> ended (its promotion decision stored).

Baselines, measured right after in the same process, same instance, same DuckDB file, the
replay still serving: the last freshness run's selection and partition range executed
directly with ``execute_in_process`` (best of 2; it rewrites the same partitions), and
the retrain's partition executed the same way once (it retrains that as-of again). The
ratios (sensor-driven latency / direct run) are the cost of waiting for a tick and of
launching a run process. ~3-4 minutes on 2 idle cores, most of it the bootstrap.
``python benchmarks/bench_live.py`` prints a table.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import pandas as pd

from clm_assets.live.loop import (
    SYMBOL,
    Scenario,
    bootstrap,
    live_env,
    start_replay,
    stop_group,  # INT, TERM, KILL until gone
)
from clm_assets.sensors.retraining import SELECTION as RETRAIN

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HOUR = pd.Timedelta(hours=1)
RealTime = Callable[[pd.Timestamp], float]
"""Maps a virtual (market) time to the epoch second it happened at in real time."""
SCENARIO = Scenario(
    flip_at=pd.Timestamp("2024-02-23", tz="UTC"),
    strength=0.8,
    speed=1800.0,
    families="xgboost",
    retrain_cron="0 0 * * 1",
    sensor_interval_s=5,
)
"""The e2e test's scenario: losing bars a day before the daemon starts, one family."""

WARNINGS_ONLY = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}

TARGETS = [
    # an hourly bar is 3600 s: features a minute after its close are 1/60 of a bar late
    ("bar close -> features stored, median (s)", "features_latency_median_s", "<=", 60.0),
    ("alarm bar close -> decision stored (s)", "alarm_to_decision_s", "<=", 300.0),
    ("freshness latency / direct run (tick + launch)", "freshness_vs_direct", "<=", 5.0),
]


@contextlib.contextmanager
def patched_environ(env: dict[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` for the block (Settings and the instance read it), then the
    previous environment back: other benchmarks run in this process."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """stdout and stderr of the block into ``log``."""
    with log.open("w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        yield


def _runs(instance: dg.DagsterInstance, trigger: str) -> list[dg.RunRecord]:
    return list(instance.get_run_records(dg.RunsFilter(tags={"clm/trigger": trigger})))


def _decided(instance: dg.DagsterInstance) -> dg.RunRecord | None:
    for record in _runs(instance, "performance_degradation"):
        if record.dagster_run.status == dg.DagsterRunStatus.SUCCESS:
            return record
    return None


def run_daemon(
    instance: dg.DagsterInstance, env: dict[str, str], log: Path, deadline_s: float
) -> tuple[dg.RunRecord | None, float]:
    """The daemon until the degradation retrain succeeded or the deadline: its retrain
    record (None when it did not finish in time) and the seconds the daemon ran."""
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [BIN / "dagster-daemon", "run", "-m", "clm_assets.definitions"],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started = time.monotonic()
        try:
            while (retrain := _decided(instance)) is None:
                if daemon.poll() is not None:
                    raise RuntimeError(f"dagster-daemon exited:\n{log.read_text()[-3000:]}")
                if time.monotonic() - started > deadline_s:
                    break
                time.sleep(1)
            ran_s = time.monotonic() - started
        finally:
            # the daemon's code server and any run it launched are in its process group;
            # none may outlive it (they would write into the temp dir being removed)
            stop_group(daemon.pid)
            daemon.wait(timeout=60)
    return retrain, ran_s


def sensor_ticks(instance: dg.DagsterInstance, name: str) -> list:
    """Every tick of the sensor ``name``, oldest first."""
    for state in instance.all_instigator_state():
        if state.instigator_name == name:
            ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id)
            return sorted(ticks, key=lambda t: t.timestamp)
    return []


def alarm_seen(instance: dg.DagsterInstance, retrain: dg.RunRecord) -> tuple[float, list[str]]:
    """When the degradation sensor first reported the alarm (a skipped tick naming it, or
    the tick that requested the retrain), and the distinct reasons it waited, in order."""
    first, waits = None, []
    for tick in sensor_ticks(instance, "performance_degradation"):
        requested = retrain.dagster_run.run_id in tick.run_ids
        reason = tick.skip_reason or ""
        if first is None and (requested or "alarm (" in reason):
            first = tick.timestamp
        if first is not None and "); " in reason:
            wait = reason.rsplit("); ", 1)[1]
            wait = wait.split(" up to ")[0].split("as-of ")[0].strip() or wait
            if wait not in waits:
                waits.append(wait)
        if requested:
            break
    return (retrain.create_timestamp.timestamp() if first is None else first), waits


def _step_end(instance: dg.DagsterInstance, run_id: str, step: str) -> float | None:
    for stat in instance.get_run_step_stats(run_id):
        if stat.step_key == step:
            return stat.end_time
    return None


def freshness_latencies(instance: dg.DagsterInstance, real_time: RealTime) -> list[dict]:
    """Per successful freshness run: seconds from its newest bar's close to each stage."""
    out = []
    for record in _runs(instance, "data_freshness"):
        if record.dagster_run.status != dg.DagsterRunStatus.SUCCESS:
            continue
        tags = record.dagster_run.tags
        closed = real_time(pd.Timestamp(tags["clm/newest_source_bar"]) + HOUR)
        created = record.create_timestamp.timestamp()
        features_end = _step_end(instance, record.dagster_run.run_id, "features__features")
        out.append(
            {
                "to_created_s": created - closed,
                "created_to_start_s": record.start_time - created,
                "run_s": record.end_time - record.start_time,
                "to_features_s": features_end - closed,
                "to_run_end_s": record.end_time - closed,
            }
        )
    return out


def direct_freshness(defs: dg.Definitions, instance: dg.DagsterInstance, tags: dict) -> float:
    """The freshness run's selection and range, executed in this process: its wall time."""
    from clm_assets.sensors.freshness import SELECTION

    job = defs.resolve_implicit_global_asset_job_def()
    ranged = {k: v for k, v in tags.items() if k.startswith("dagster/asset_partition_range")}
    t0 = time.perf_counter()
    job.execute_in_process(
        instance=instance,
        asset_selection=SELECTION,
        tags={**ranged, "clm/trigger": "bench_live direct"},
        run_config=WARNINGS_ONLY,
        raise_on_error=True,
    )
    return time.perf_counter() - t0


def direct_retrain(defs: dg.Definitions, instance: dg.DagsterInstance, key: str) -> float:
    """The retrain's partition (every family, evaluation, promotion), in this process."""
    job = defs.resolve_implicit_global_asset_job_def()
    t0 = time.perf_counter()
    job.execute_in_process(
        instance=instance,
        partition_key=key,
        asset_selection=list(RETRAIN.resolve(defs.resolve_asset_graph())),
        tags={"clm/trigger": "bench_live direct"},
        run_config=WARNINGS_ONLY,
        raise_on_error=True,
    )
    return time.perf_counter() - t0


def run(deadline_s: float = 300.0) -> dict:
    from clm_assets.definitions import build_definitions
    from clm_assets.settings import Settings

    result: dict = {"speed": SCENARIO.speed, "sensor_interval_s": SCENARIO.sensor_interval_s}
    with tempfile.TemporaryDirectory(prefix="bench_live_") as d, start_replay(SCENARIO) as replay:
        tmp = Path(d)
        env = {**live_env(SCENARIO, replay.api_url, tmp), "CLM_DEGRADATION_THRESHOLD": "10"}
        home = Path(env["DAGSTER_HOME"])
        home.mkdir()
        (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
        with patched_environ(env), dg.DagsterInstance.get() as instance:
            t0 = time.perf_counter()
            with quiet(tmp / "bootstrap.log"):  # its runs log every event at DEBUG
                bootstrap(SCENARIO, instance)
            result["bootstrap_s"] = time.perf_counter() - t0
            retrain, result["daemon_s"] = run_daemon(instance, env, tmp / "daemon.log", deadline_s)
            clock_now, real_now = replay.clock.now(), time.time()

            def real_time(virtual: pd.Timestamp) -> float:
                return real_now - (clock_now - virtual).total_seconds() / SCENARIO.speed

            defs = build_definitions(Settings.from_env())
            result.update(measure_freshness(defs, instance, real_time))
            if retrain is None:
                result["retrain"] = f"no decision within {deadline_s:.0f} s of daemon time"
                result.update(unfinished(instance))
            else:
                result.update(measure_alarm(defs, instance, retrain, real_time))
    return result


def unfinished(instance: dg.DagsterInstance) -> dict:
    """Where the loop stood at the deadline: the runs by trigger and status, and the
    degradation sensor's last skip reason."""
    runs: dict[str, int] = {}
    for record in instance.get_run_records():
        key = f"{record.dagster_run.tags.get('clm/trigger')} {record.dagster_run.status.value}"
        runs[key] = runs.get(key, 0) + 1
    ticks = sensor_ticks(instance, "performance_degradation")
    reason = (ticks[-1].skip_reason or "(requested)") if ticks else "(no tick)"
    return {"runs_at_deadline": runs, "last_degradation_tick": reason[:400]}


def measure_freshness(
    defs: dg.Definitions, instance: dg.DagsterInstance, real_time: RealTime
) -> dict:
    """Latencies of the sensor's runs, and the newest of them run directly (best of 2)."""
    fresh = freshness_latencies(instance, real_time)
    if not fresh:
        return {"freshness_runs": 0}
    out = _freshness_summary(fresh)
    newest = max(
        (r for r in _runs(instance, "data_freshness")
         if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS),
        key=lambda r: r.end_time,
    )  # fmt: skip
    tags = newest.dagster_run.tags
    out["direct_freshness_s"] = min(direct_freshness(defs, instance, tags) for _ in range(2))
    first, last = (tags[f"dagster/asset_partition_range_{k}"] for k in ("start", "end"))
    out["direct_freshness_range"] = f"days {first.split('|')[0]}..{last.split('|')[0]}"
    out["freshness_vs_direct"] = out["features_latency_median_s"] / out["direct_freshness_s"]
    return out


def measure_alarm(
    defs: dg.Definitions, instance: dg.DagsterInstance, retrain: dg.RunRecord, real_time: RealTime
) -> dict:
    """Latencies from the alarm to the decision, and the retrain's partition run directly."""
    out = _alarm_summary(retrain, real_time, *alarm_seen(instance, retrain))
    key = retrain.dagster_run.tags["dagster/partition"]
    out["direct_retrain_s"] = direct_retrain(defs, instance, key)
    out["alarm_vs_direct"] = out["requested_to_decision_s"] / out["direct_retrain_s"]
    return out


def _freshness_summary(fresh: list[dict]) -> dict:
    med = {k: statistics.median(f[k] for f in fresh) for k in fresh[0]}
    return {
        "freshness_runs": len(fresh),
        "features_latency_median_s": med["to_features_s"],
        "features_latency_max_s": max(f["to_features_s"] for f in fresh),
        "run_end_latency_median_s": med["to_run_end_s"],
        "close_to_created_median_s": med["to_created_s"],
        "created_to_start_median_s": med["created_to_start_s"],
        "freshness_run_median_s": med["run_s"],
    }


def _alarm_summary(
    retrain: dg.RunRecord, real_time: RealTime, seen: float, waits: list[str]
) -> dict:
    tags = retrain.dagster_run.tags
    fired_at = pd.Timestamp(tags["clm/fired_at"])
    closed = real_time(fired_at + HOUR)
    created = retrain.create_timestamp.timestamp()
    return {
        "alarm_to_seen_s": seen - closed,
        "seen_to_requested_s": created - seen,
        "waited_for": waits,
        "retrain": tags["dagster/partition"],
        "alarm_rule": f"{tags['clm/rule']} {tags['clm/statistic']} > {tags['clm/threshold']}",
        "alarm_bars_after_flip": (fired_at - SCENARIO.flip_at) / HOUR,
        "alarm_to_requested_s": created - closed,
        "requested_to_start_s": retrain.start_time - created,
        "retrain_run_s": retrain.end_time - retrain.start_time,
        "requested_to_decision_s": retrain.end_time - created,
        "alarm_to_decision_s": retrain.end_time - closed,
    }


def _row(label: str, value: float | None) -> None:
    print(f"  {label:<60}{'-' if value is None else format(value, '.1f'):>8}")


def print_table(r: dict) -> None:
    print(
        f"live loop, {SYMBOL} synthetic replay at {r['speed']:g}x, sensors every "
        f"{r['sensor_interval_s']} s, real dagster-daemon; bootstrap {r['bootstrap_s']:.0f} s, "
        f"daemon {r['daemon_s']:.0f} s (real seconds below)"
    )
    print(f"bar close -> features stored ({r['freshness_runs']} data_freshness runs, medians):")
    _row("bar close -> run created (tick wait + sensor)", r.get("close_to_created_median_s"))
    _row("run created -> started (queue + launch)", r.get("created_to_start_median_s"))
    _row("run start -> end (raw, features, live_performance)", r.get("freshness_run_median_s"))
    _row("bar close -> features step done", r.get("features_latency_median_s"))
    _row("  max over runs", r.get("features_latency_max_s"))
    _row("bar close -> run end (paper trade stored)", r.get("run_end_latency_median_s"))
    if "freshness_vs_direct" in r:
        label = f"DIRECT: same run in-process ({r['direct_freshness_range']})"
        _row(label, r["direct_freshness_s"])
        print(f"  features latency / direct run: {r['freshness_vs_direct']:.1f}x")
    if "alarm_to_decision_s" not in r:
        print(f"degradation alarm -> decision: {r['retrain']}; runs {r['runs_at_deadline']}")
        print(f"  last performance_degradation tick: {r['last_degradation_tick']}")
        return
    print(
        f"degradation alarm -> decision ({r['alarm_rule']}, {r['alarm_bars_after_flip']:.0f} "
        f"bars after the reversal, retrain {r['retrain']}):"
    )
    _row("alarm bar close -> first sensor tick reporting it", r["alarm_to_seen_s"])
    _row("first report -> retrain requested", r["seen_to_requested_s"])
    if r["waited_for"]:
        print(f"    meanwhile the ticks said: {' | '.join(r['waited_for'])}")
    _row("alarm bar close -> retrain requested", r["alarm_to_requested_s"])
    _row("requested -> started (queue + launch)", r["requested_to_start_s"])
    _row("run start -> decision stored (train, evaluate, promote)", r["retrain_run_s"])
    _row("alarm bar close -> decision stored", r["alarm_to_decision_s"])
    _row("DIRECT: same retrain partition in-process", r["direct_retrain_s"])
    print(f"  requested -> decision / direct run: {r['alarm_vs_direct']:.1f}x")


if __name__ == "__main__":
    print_table(run())
