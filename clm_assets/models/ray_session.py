"""The Ray a PPO fit runs on: a private local session, or a cluster worker's own connection.

:class:`RaySession` refuses to start when Ray is already initialized in this process (it
will not share or shut down someone else's session). Otherwise it starts a new local
instance (``num_cpus`` at most the machine's, no GPUs, no dashboard, a private temp dir
under ``/tmp``). :meth:`RaySession.close` shuts Ray down, waits for the processes this
session started to exit (identified by pid and start time read from ``/proc``), SIGKILLs
stragglers, removes the temp dir, and raises ``ModelError`` if any process survived.

Inside a Ray task (a fit sent to a cluster by :mod:`clm_assets.models.cluster`) Ray is
already initialized in worker mode: that connection belongs to the cluster, and PPO, which
samples and learns in its own process, needs nothing more from it. :func:`fit_session`
then returns a :class:`WorkerRay`, which starts nothing and shuts nothing down.

:class:`QuietLoggers` holds Ray's loggers at ERROR while the session runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable

from clm_assets.models.base import ModelError

RAY_EXIT_WAIT_S = 15.0
"""How long :meth:`RaySession.close` waits for Ray's processes before SIGKILLing them."""


class RaySession:
    """One private local Ray session: ``start`` it, then always ``close`` it (``finally``).

    Constructing it starts nothing yet: it refuses if Ray is already up, creates the
    private temp dir and notes the processes that exist before Ray starts.
    """

    def __init__(self) -> None:
        import ray

        if ray.is_initialized():
            raise ModelError(
                "ppo: Ray is already initialized in this process; PPOModel.fit runs its own "
                "local Ray session and will not share or shut down another one"
            )
        self.temp_dir = tempfile.mkdtemp(prefix="clmppo", dir="/tmp")  # short: socket paths
        """The private Ray temp dir (removed by :meth:`close`)."""
        self._before = set(_descendants(os.getpid()))
        self._pids: dict[int, int] = {}
        self._quiet = QuietLoggers("ray", "ray.rllib", "ray.tune")

    def start(self, num_cpus: int) -> None:
        """Quiet Ray's loggers and start a new private local Ray instance."""
        import ray

        self._quiet.__enter__()
        refresh_auth()  # not a token cached from another Ray this process talked to
        ray.init(
            address="local",  # always a new private local instance, never RAY_ADDRESS
            num_cpus=min(num_cpus, os.cpu_count() or 1),
            num_gpus=0,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=False,
            object_store_memory=80 * 1024**2,
            logging_level=logging.ERROR,
            _temp_dir=self.temp_dir,
        )
        self._pids.update(_new_descendants(self._before))

    def close(self, stop_first: Callable[[], object] | None = None) -> None:
        """Call ``stop_first`` (errors ignored), shut Ray down, wait for the processes this
        session started to exit and remove the temp dir; raise if any process survived."""
        import ray

        try:
            self._pids.update(_new_descendants(self._before))  # workers started after init
            if stop_first is not None:
                with contextlib.suppress(Exception):
                    stop_first()
            ray.shutdown()  # ours: the session refuses to start when Ray was already up
        finally:
            self._quiet.__exit__(None, None, None)
            leaked = _wait_gone(self._pids, RAY_EXIT_WAIT_S)
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        if leaked:
            raise ModelError(f"ppo: Ray processes survived ray.shutdown(): {leaked}")


class WorkerRay:
    """Ray as a cluster task finds it (worker mode): the same ``start`` / ``close`` protocol
    as :class:`RaySession`, but the connection is the worker's, so neither starts nor shuts
    Ray down; it only stops the algorithm and removes its private temp dir."""

    def __init__(self) -> None:
        self.temp_dir = tempfile.mkdtemp(prefix="clmppo", dir="/tmp")
        """A private temp dir for the checkpoint (removed by :meth:`close`)."""
        self._quiet = QuietLoggers("ray", "ray.rllib", "ray.tune")

    def start(self, num_cpus: int) -> None:
        """Quiet Ray's loggers; ``num_cpus`` is the task's business on a cluster."""
        self._quiet.__enter__()

    def close(self, stop_first: Callable[[], object] | None = None) -> None:
        """Call ``stop_first`` (errors ignored) and remove the temp dir; Ray stays up."""
        try:
            if stop_first is not None:
                with contextlib.suppress(Exception):
                    stop_first()
        finally:
            self._quiet.__exit__(None, None, None)
            shutil.rmtree(self.temp_dir, ignore_errors=True)


def refresh_auth() -> None:
    """Make Ray read its auth mode and token afresh from the environment as it is now.

    Ray reads both once per process and caches them (its config and the C++ token loader),
    and a local ``ray.init`` leaves ``RAY_AUTH_MODE=token`` in ``os.environ``. A process that
    talked to one Ray (a cluster, with that cluster's token) and then starts or joins another
    would present the stale token and be refused after ~20 s of retries. Call it only while
    Ray is not initialized in this process; it resets what Ray's own CLI and tests reset.
    """
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")  # first: a draining gRPC thread must not reload in token mode
    AuthenticationTokenLoader.instance().reset_cache()


def in_ray_worker() -> bool:
    """True inside a Ray task or actor, where Ray is initialized in worker mode."""
    import ray

    return ray.is_initialized() and ray.get_runtime_context().worker.mode == ray.WORKER_MODE


def fit_session() -> RaySession | WorkerRay:
    """The Ray a fit runs on: the worker's own inside a cluster task, else a private local
    session (which refuses when a driver in this process already started Ray)."""
    return WorkerRay() if in_ray_worker() else RaySession()


class QuietLoggers:
    """Raise the given loggers to ERROR for the duration (RLlib warns on every build)."""

    def __init__(self, *names: str) -> None:
        self._loggers = [logging.getLogger(n) for n in names]
        self._levels: list[int] = []

    def __enter__(self) -> QuietLoggers:
        self._levels = [lg.level for lg in self._loggers]
        for lg in self._loggers:
            lg.setLevel(logging.ERROR)
        return self

    def __exit__(self, *exc: object) -> None:
        for lg, level in zip(self._loggers, self._levels, strict=False):
            lg.setLevel(level)


# -- process leak tracking -------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, str, int] | None:
    """(ppid, state, starttime) of a live process from /proc, or None."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """pid -> starttime of every live (non-zombie) descendant of ``root``."""
    children: dict[int, list[int]] = {}
    starts: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is None or stat[1] == "Z":
            continue
        children.setdefault(stat[0], []).append(int(entry))
        starts[int(entry)] = stat[2]
    found: dict[int, int] = {}
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found[child] = starts[child]
                stack.append(child)
    return found


def _new_descendants(before: set[int]) -> dict[int, int]:
    return {pid: s for pid, s in _descendants(os.getpid()).items() if pid not in before}


def _alive(pids: dict[int, int]) -> list[int]:
    alive = []
    for pid, start in pids.items():
        stat = _proc_stat(pid)
        if stat is not None and stat[1] != "Z" and stat[2] == start:
            alive.append(pid)
    return alive


def _wait_gone(pids: dict[int, int], timeout: float) -> list[int]:
    """Wait for the given processes to exit; SIGKILL stragglers (they are the Ray
    processes this session started, identified by pid and start time). Returns survivors."""
    deadline = time.monotonic() + timeout
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    stragglers = _alive(pids)
    for pid in stragglers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    if stragglers:
        logging.getLogger(__name__).warning("ppo: killed Ray processes %s", stragglers)
    return _alive(pids)
