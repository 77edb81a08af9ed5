"""A run launcher whose run workers the daemon's run monitoring can check.

Dagster's ``DefaultRunLauncher`` cannot tell whether a run's worker is alive, so run
monitoring skips every ``STARTED`` run it launched, and a run whose process is gone (the
``dagster asset materialize`` that ran it was SIGKILLed, or the machine's daemon, code
server and run worker were killed together) stays ``STARTED`` forever. Worse for clm: the
freshness sensor launches one run per symbol at a time, so such a ghost would stop a
symbol's data for good. A killed launcher also leaves its multiprocess step workers
orphaned: one that was writing goes on writing, and one that finished never exits.

Every run records the process ids that ran it in its own event log: ``RUN_START`` is
emitted by the run worker, ``STEP_WORKER_STARTED`` by each step process. This launcher
reads them. A worker counts as alive only if a process with that id exists, is not a
zombie, and was created before it emitted the event (a recycled id is a different
process). When the worker is gone, the step processes of that run that still live are
killed (their writes are DuckDB transactions: what they had not committed is rolled back,
what they had is whole) and the worker is reported ``FAILED``; run monitoring then marks
the run failed, within ``run_monitoring.poll_interval_seconds``.

Process ids are only meaningful on the host that runs the daemon: this is the launcher of
a single-host deployment (the DuckDB file has one writer on one machine anyway). Launchers
for containers or clusters bring their own health checks.
"""

from __future__ import annotations

import signal

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus

_WORKER_EVENTS = {DagsterEventType.RUN_START, DagsterEventType.STEP_WORKER_STARTED}
_CLOCK_SLACK_S = 1.0
"""A process's creation time is known to a clock tick; the event is written after it."""


class WatchedRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` launching, plus a liveness check of every run's processes."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        records = self._instance.all_logs(run.run_id, of_type=_WORKER_EVENTS)
        workers = [
            (r.dagster_event.pid, r.timestamp)
            for r in records
            if r.dagster_event is not None
            and r.dagster_event.event_type == DagsterEventType.RUN_START
            and r.dagster_event.pid is not None
        ]
        if not workers:  # STARTED is set by RUN_START itself; nothing to judge without it
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no RUN_START event recorded")
        pid, started = workers[-1]
        if _alive(pid, started):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is alive")
        steps = {
            r.dagster_event.pid: r.timestamp
            for r in records
            if r.dagster_event is not None
            and r.dagster_event.event_type == DagsterEventType.STEP_WORKER_STARTED
            and r.dagster_event.pid not in (None, pid)
        }
        killed = sorted(p for p, at in steps.items() if _kill_if_alive(p, at))
        orphans = f"; killed its orphaned step processes {killed}" if killed else ""
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"run worker pid {pid} is gone (killed or crashed){orphans}"
        )


def _process(pid: int, emitted_at: float) -> psutil.Process | None:
    """The process that emitted an event at ``emitted_at``, if it still runs."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if proc.create_time() > emitted_at + _CLOCK_SLACK_S:
            return None  # the id was recycled
        return proc
    except psutil.NoSuchProcess:
        return None


def _alive(pid: int, emitted_at: float) -> bool:
    return _process(pid, emitted_at) is not None


def _kill_if_alive(pid: int, emitted_at: float) -> bool:
    proc = _process(pid, emitted_at)
    if proc is None:
        return False
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    except psutil.NoSuchProcess:
        pass
    return True
