"""A real two-node Ray cluster on loopback for tests, started and stopped by this process.

Both nodes are ``ray start --block`` processes of this venv's ``ray`` script, each in its
own process group, with token authentication on (a fresh token in a file, named by
``RAY_AUTH_TOKEN_PATH``) and their own temp dir under ``/tmp`` (Ray's socket paths live
there and are limited to ~107 characters, so pytest's deep ``tmp_path`` will not do).
Every port Ray would otherwise take from a fixed default (GCS 6379, client server 10001,
dashboard agent 52365, workers 10002-19999) is a free port or a random one, so the cluster
coexists with other Ray sessions on the machine. (Ray itself replaces ``127.0.0.1`` by the
host's address: ``ray.nodes()`` shows that one.)

It is stopped by SIGTERM, then SIGKILL, of the nodes' process groups and of every process
descended from them (Ray's workers make process groups of their own), never by
``ray stop``: that kills every Ray process of the user, other tests' sessions included.
Stopping checks that no process the cluster started survives.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 90.0
"""How long to wait for every node to be alive (two take ~18 s on 2 lightly loaded cores)."""
STOP_GRACE_S = 1.0
"""How long SIGTERM gets before SIGKILL: ``ray start --block`` shuts its node down
gracefully for 20 s and more, which a throwaway test cluster does not need."""


@dataclass(frozen=True)
class LocalCluster:
    """A running cluster: where to connect and the auth env a driver needs."""

    address: str
    """``127.0.0.1:<gcs port>``, for ``ray.init(address=...)``."""
    auth_env: dict[str, str]
    """``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH``: what the nodes run with."""
    temp_dir: Path


def free_port() -> int:
    """A TCP port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _node_ports() -> list[str]:
    """Flags for the ports every node binds (free ones, and random worker ports)."""
    return [
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--node-manager-port={free_port()}",
        f"--object-manager-port={free_port()}",
        "--min-worker-port=0",  # 0/0: random ports instead of a range shared with others
        "--max-worker-port=0",
    ]


@contextlib.contextmanager
def local_ray_cluster(nodes: int = 2) -> Iterator[LocalCluster]:
    """Start a head and ``nodes - 1`` more nodes (1 CPU each) on 127.0.0.1; yield when all
    are alive; stop them all and assert nothing survived."""
    ray_bin = Path(sys.executable).parent / "ray"
    temp = Path(tempfile.mkdtemp(prefix="clmray", dir="/tmp"))
    token_path = temp / "auth_token"
    token_path.write_text(secrets.token_hex(32))
    token_path.chmod(0o600)
    auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
    env = {**os.environ, **auth_env, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_AUTH_TOKEN", None)  # the file is the one source of the token
    env.pop("RAY_ADDRESS", None)
    port = free_port()
    address = f"127.0.0.1:{port}"
    common = [
        "--block",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--num-gpus=0",
        "--object-store-memory=100000000",
        "--disable-usage-stats",
        "--include-log-monitor=false",  # one Python process less: no driver reads the logs
    ]
    commands = [
        [
            str(ray_bin),
            "start",
            "--head",
            f"--port={port}",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
            *common,
            *_node_ports(),
        ]
    ]
    commands += [
        [str(ray_bin), "start", f"--address={address}", *common, *_node_ports()]
        for _ in range(nodes - 1)
    ]
    procs: list[subprocess.Popen[bytes]] = []
    probe = None
    try:
        # The probe first: its imports overlap the nodes' start. It retries until the GCS
        # answers, while the other nodes are started only once the head listens (their own
        # wait for the GCS is ~20 s, which a loaded machine can exceed).
        probe = _start_probe(address, nodes, env, temp)
        for i, command in enumerate(commands):
            node_dir = temp / f"n{i}"  # one temp dir per node: they share one host
            node_dir.mkdir()
            with (node_dir / "start.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [*command, f"--temp-dir={node_dir}"],
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            if i == 0:
                _wait_for_port(port, procs[0], temp)
        _wait_probe(probe, address, nodes, procs, temp)
        yield LocalCluster(address=address, auth_env=auth_env, temp_dir=temp)
    finally:
        if probe is not None and probe.poll() is None:
            _kill_probe(probe)
        survivors = _stop(procs)
        shutil.rmtree(temp, ignore_errors=True)
    assert not survivors, f"Ray processes survived the cluster's stop: {survivors}"


def _start_probe(
    address: str, nodes: int, env: dict[str, str], temp: Path
) -> subprocess.Popen[bytes]:
    """A child driver that waits until ``ray.nodes()`` shows ``nodes`` alive nodes. A child,
    because a driver in this process would leave Ray's per-process state (the cached token
    among it) to the test that follows."""
    code = (
        "import ray, sys, time\n"
        f"deadline = time.monotonic() + {START_TIMEOUT_S}\n"
        "while True:\n"
        "    try:\n"
        f"        ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False)\n"
        "        break\n"
        "    except ConnectionError:\n"
        "        ray.shutdown()\n"
        "        if time.monotonic() > deadline: raise\n"
        f"while sum(n['Alive'] for n in ray.nodes()) < {nodes}:\n"
        "    if time.monotonic() > deadline: sys.exit(f'alive: {ray.nodes()}')\n"
        "    time.sleep(0.2)\n"
    )
    # a short GCS wait per attempt: the loop above retries until the deadline
    probe_env = {**env, "RAY_gcs_server_port_wait_time_s": "2"}
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=probe_env,
        cwd=temp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_port(port: int, head: subprocess.Popen[bytes], temp: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if head.poll() is not None:
            raise AssertionError(f"ray head exited ({head.returncode}):\n{log_tail(temp)}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.2)
    raise AssertionError(f"ray head did not listen on {port}:\n{log_tail(temp)}")


def _wait_probe(
    probe: subprocess.Popen[bytes],
    address: str,
    nodes: int,
    procs: list[subprocess.Popen[bytes]],
    temp: Path,
) -> None:
    try:
        out, _ = probe.communicate(timeout=START_TIMEOUT_S + 30)
    except subprocess.TimeoutExpired:
        out = _kill_probe(probe)
    exited = [f"node {i} ({p.returncode})" for i, p in enumerate(procs) if p.poll() is not None]
    if probe.returncode != 0 or exited:
        raise AssertionError(
            f"Ray cluster at {address} did not get {nodes} alive nodes (probe exit "
            f"{probe.returncode}; exited: {exited}):\n{out.decode(errors='replace')[-2000:]}\n"
            f"{log_tail(temp)}"
        )


def _kill_probe(probe: subprocess.Popen[bytes]) -> bytes:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(probe.pid, signal.SIGKILL)
    return probe.communicate()[0]


def log_tail(temp: Path, chars: int = 3000) -> str:
    """The end of each node's start log and of Ray's raylet / gcs logs, for a failure."""
    parts = []
    for path in sorted(temp.glob("n*/start.log")) + sorted(
        temp.glob("n*/session_latest/logs/*.err")
    ):
        with contextlib.suppress(OSError):
            text = path.read_text(errors="replace").strip()
            if text:
                parts.append(f"--- {path.relative_to(temp)}\n{text[-chars:]}")
    return "\n".join(parts) or "(no Ray logs)"


def _stop(procs: list[subprocess.Popen[bytes]]) -> list[str]:
    """SIGTERM every node's process group, SIGKILL what is left after a short grace, and
    return the processes the cluster started that are still alive (ought to be none).

    Ray's workers put themselves in process groups of their own, so besides the groups,
    every descendant of the nodes (pid and start time, from /proc) is tracked and killed."""
    groups = [p.pid for p in procs]
    started = _tree(groups)
    for pgid in reversed(groups):  # the other nodes first, the head last
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
    started.update(_tree(groups))  # anything spawned meanwhile
    deadline = time.monotonic() + STOP_GRACE_S
    while _alive(started) and time.monotonic() < deadline:
        for proc in procs:
            proc.poll()  # reap the group leaders
        time.sleep(0.1)
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    for pid in _alive(started):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    deadline = time.monotonic() + 5.0
    while _alive(started) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [f"{pid} {_cmdline(pid)}" for pid in _alive(started)]


def _stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, ppid, pgid, start time) of a process from /proc, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1]), int(fields[2]), int(fields[19])


def _tree(groups: list[int]) -> dict[int, int]:
    """pid -> start time of every live process in ``groups`` or descended from one."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None and stat[0] != "Z":
            stats[int(entry)] = stat
    found = {pid: st[3] for pid, st in stats.items() if st[2] in groups}
    grew = True
    while grew:
        grew = False
        for pid, (_, ppid, _, start) in stats.items():
            if pid not in found and ppid in found:
                found[pid] = start
                grew = True
    return found


def _alive(pids: dict[int, int]) -> list[int]:
    """Those of ``pids`` still running (same pid and start time, not a zombie)."""
    alive = []
    for pid, start in pids.items():
        stat = _stat(pid)
        if stat is not None and stat[0] != "Z" and stat[3] == start:
            alive.append(pid)
    return alive


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    return "?"
