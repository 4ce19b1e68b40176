"""A real spendgate server for end-to-end tests: uvicorn on a free port, in a thread.

In-process clients (starlette's TestClient, httpx's ASGITransport) buffer whole bodies, so
streaming and hang-ups need a real server. The server runs its own event loop in a thread;
tests use the official SDKs against ``base_url`` and read the ledger back from the database.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

import uvicorn
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from proxy.app import create_app
from proxy.config import Config, parse_config
from proxy.db import create_engine
from proxy.ledger import LedgerRow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProxyServer:
    """``with ProxyServer(raw_config) as proxy: proxy.base_url``."""

    def __init__(
        self,
        raw: Mapping[str, Any],
        *,
        env: Mapping[str, str] | None = None,
        telemetry: Any = None,
    ) -> None:
        raw = dict(raw)
        server = dict(raw.get("server") or {})
        server.setdefault("host", "127.0.0.1")
        server.setdefault("port", free_port())
        raw["server"] = server
        storage = dict(raw.get("storage") or {})
        storage.setdefault("ledger_flush_interval", 0.01)
        storage.setdefault("spill_path", None)
        raw["storage"] = storage
        self.config: Config = parse_config(raw, env=env or {})
        self.base_url = f"http://127.0.0.1:{self.config.server.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(
                create_app(self.config, telemetry=telemetry),
                host="127.0.0.1",
                port=self.config.server.port,
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> ProxyServer:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("spendgate test server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(30)

    # -- reading the ledger back -------------------------------------------------------
    def rows(self) -> list[LedgerRow]:
        return read_ledger(self.config.storage.database_url)

    def wait_rows(self, n: int, timeout: float = 10.0) -> list[LedgerRow]:
        """Wait until the ledger holds at least ``n`` rows (the writer flushes in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.rows()
            if len(rows) >= n or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def wait_row(self, request_id: str, timeout: float = 10.0) -> LedgerRow:
        deadline = time.monotonic() + timeout
        while True:
            for row in self.rows():
                if row.request_id == request_id:
                    return row
            if time.monotonic() > deadline:
                raise AssertionError(f"no ledger row for {request_id}")
            time.sleep(0.02)


def read_ledger(database_url: str) -> list[LedgerRow]:
    async def fetch() -> list[LedgerRow]:
        engine = create_engine(database_url)
        try:
            async with AsyncSession(engine) as session:
                result = await session.exec(select(LedgerRow).order_by(LedgerRow.started_at))
                return list(result.all())
        except Exception as exc:  # table not created yet
            if "no such table" in str(exc) or "does not exist" in str(exc):
                return []
            raise
        finally:
            await engine.dispose()

    return asyncio.run(fetch())
