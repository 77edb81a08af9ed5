"""How ``WatchedRunLauncher`` tells a live run worker from a gone one: by process id, and a
recycled id is not the worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil

from clm_assets.instance.run_launcher import _alive, _kill_if_alive


def test_a_running_process_that_predates_its_event_is_alive() -> None:
    assert _alive(os.getpid(), time.time())


def test_a_process_created_after_the_event_is_a_recycled_id_not_the_worker() -> None:
    created = psutil.Process(os.getpid()).create_time()
    assert not _alive(os.getpid(), created - 60)


def test_an_orphan_is_killed_and_then_gone() -> None:
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    assert _alive(orphan.pid, time.time())
    assert _kill_if_alive(orphan.pid, time.time())  # SIGKILL, and waits for it to end
    assert not _alive(orphan.pid, time.time())
    assert not _kill_if_alive(orphan.pid, time.time())
