"""A real PostgreSQL server for a test, from Debian's ``postgresql`` package, in a temporary
directory, on loopback.

The instance tests run Dagster on the same server software a production deployment uses:
a fake or an in-process stand-in would not show that dagster-postgres, its SQLAlchemy driver
and the project's ``dagster.postgres.yaml`` work together. The server's data directory and
unix socket live in a directory of their own (pytest's temporary paths are too deep for a
socket's 107-byte limit, and ``/tmp/pytest-of-root`` is closed to other users), it listens
on 127.0.0.1 only, and it is stopped, and checked to be gone, when the test ends.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import psycopg2
from psycopg2 import sql

from clm_assets_tests.ui.deployment import free_port, wait_for

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
SERVER_USER = "nobody"
"""Who runs the server when the tests run as root: ``initdb`` and ``postgres`` refuse root."""
ADMIN = "clm"
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    # a test's data is thrown away: durability costs time and buys nothing
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}


class PostgresMissingError(RuntimeError):
    """Debian's PostgreSQL server binaries are not installed."""


@dataclass
class PostgresServer:
    """A running server: where to reach it, and how long it took to start and stop."""

    host: str
    port: int
    user: str
    password: str
    db_name: str
    start_s: float
    stop_s: float | None = None
    """Set when the server has stopped."""

    def env(self) -> dict[str, str]:
        """The ``CLM_PG_*`` variables ``dagster.postgres.yaml`` reads."""
        return {
            "CLM_PG_HOST": self.host,
            "CLM_PG_PORT": str(self.port),
            "CLM_PG_USER": self.user,
            "CLM_PG_PASSWORD": self.password,
            "CLM_PG_DB": self.db_name,
        }

    def connect(self) -> Any:
        """A psycopg2 connection to the test database, over TCP with the password: the way
        Dagster connects, so a query here reads what Dagster stored."""
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=self.db_name,
            connect_timeout=5,
        )


def server_binaries() -> Path:
    """The newest ``/usr/lib/postgresql/<N>/bin`` holding ``initdb`` and ``postgres``."""
    found = [
        d / "bin"
        for d in (DEBIAN_BINARIES.iterdir() if DEBIAN_BINARIES.is_dir() else [])
        if re.fullmatch(r"\d+", d.name) and (d / "bin" / "initdb").is_file()
    ]
    if not found:
        raise PostgresMissingError(
            f"no PostgreSQL server binaries under {DEBIAN_BINARIES}/<version>/bin: the "
            "instance tests need Debian's `postgresql` package (.ci/run installs it; locally "
            "`apt-get install postgresql`)"
        )
    return max(found, key=lambda b: int(b.parent.name))


@contextlib.contextmanager
def running_postgres(db_name: str = "dagster") -> Iterator[PostgresServer]:
    """Start a server with an empty database ``db_name`` that user ``clm`` reaches over
    TCP on 127.0.0.1 with a password; stop it, check that none of its processes is left
    and remove its files on exit."""
    bindir = server_binaries()
    started = time.monotonic()
    # /tmp: short enough for a socket path, and open to the server's user (TMPDIR may not be)
    root = Path(tempfile.mkdtemp(prefix="clm-pg-", dir="/tmp"))
    owner = _server_owner()
    try:
        if owner is not None:  # the server's user must own its directory and reach it
            os.chown(root, owner.pw_uid, owner.pw_gid)
        password = secrets.token_hex(16)
        _initdb(bindir, root, password, owner)
        pg = PostgresServer("127.0.0.1", free_port(), ADMIN, password, db_name, start_s=0.0)
        server = _start(bindir, root, pg.port, owner)
        try:
            _wait_until_accepting(pg, server, root)
            _create_database(pg)
            pg.start_s = time.monotonic() - started
            yield pg
        finally:
            stopping = time.monotonic()
            _stop(server)
            pg.stop_s = time.monotonic() - stopping
    finally:
        shutil.rmtree(root)


def _server_owner() -> pwd.struct_passwd | None:
    """The unprivileged user to run as, or None when the tests already run as one."""
    return pwd.getpwnam(SERVER_USER) if os.geteuid() == 0 else None


def _as(owner: pwd.struct_passwd | None) -> dict[str, Any]:
    """``subprocess`` arguments that run a command as ``owner``, without root's groups."""
    if owner is None:
        return {}
    return {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}


def _initdb(bindir: Path, root: Path, password: str, owner: pwd.struct_passwd | None) -> None:
    """A cluster whose superuser ``clm`` needs its password over TCP (so that the test
    checks Dagster passes it on) and none on the unix socket."""
    pwfile = root / "pwfile"
    pwfile.write_text(password)
    if owner is not None:
        os.chown(pwfile, owner.pw_uid, owner.pw_gid)
    try:
        subprocess.run(
            [
                bindir / "initdb", "-D", root / "data", "-U", ADMIN, f"--pwfile={pwfile}",
                "--auth-local=trust", "--auth-host=scram-sha-256",
                "--encoding=UTF8", "--no-locale", "--no-sync",
            ],
            cwd=root, check=True, capture_output=True, text=True, timeout=120, **_as(owner),
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"initdb failed:\n{exc.stdout}\n{exc.stderr}") from None
    finally:
        pwfile.unlink()


def _start(
    bindir: Path, root: Path, port: int, owner: pwd.struct_passwd | None
) -> subprocess.Popen:
    """The postmaster as a child of this process, in a session of its own, logging to
    ``root/postgres.log``; its socket is in ``root`` (not /var/run/postgresql)."""
    settings = [arg for name, value in SERVER_SETTINGS.items() for arg in ("-c", f"{name}={value}")]
    with (root / "postgres.log").open("w") as log:
        return subprocess.Popen(
            [bindir / "postgres", "-D", root / "data", "-p", str(port), "-k", root, *settings],
            cwd=root,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **_as(owner),
        )


def _wait_until_accepting(pg: PostgresServer, server: subprocess.Popen, root: Path) -> None:
    def accepting() -> bool:
        if server.poll() is not None:
            raise RuntimeError(
                f"postgres exited with {server.returncode}:\n{_read(root / 'postgres.log')}"
            )
        try:
            psycopg2.connect(
                host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                dbname="postgres", connect_timeout=2,
            ).close()  # fmt: skip
        except psycopg2.OperationalError:
            return False
        return True

    wait_for(accepting, START_TIMEOUT_S, f"postgres to accept connections on port {pg.port}")


def _create_database(pg: PostgresServer) -> None:
    conn = psycopg2.connect(
        host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname="postgres"
    )
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(pg.db_name)))
    finally:
        conn.close()


def _stop(server: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT: open sessions are ended, not waited for), else SIGKILL of the
    whole session; then no process of it may remain (the postmaster's children included)."""
    session = server.pid
    if server.poll() is None:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(session, signal.SIGKILL)
            server.wait(timeout=STOP_TIMEOUT_S)
    wait_for(
        lambda: not _members(session), STOP_TIMEOUT_S, f"postgres processes {_members(session)}"
    )


def _members(session: int) -> list[int]:
    """Processes of ``session`` still alive (zombies are dead)."""
    alive = []
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getsid(proc.pid) == session and proc.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(proc.pid)
    return alive


def _read(path: Path) -> str:
    return path.read_text()[-3000:] if path.exists() else ""
