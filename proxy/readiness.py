"""What ``/readyz`` answers: should a load balancer send this replica calls right now?

Not ready while draining (SIGTERM), or while the ledger backlog is full (new calls would be
refused). The ledger database and, when configured, Redis are probed too, and what their
loss means follows ``budget_settings.fail_mode``:

- ``open`` (the default): a replica with the database down still takes calls, its ledger
  writer keeps the rows queued and retries, and Redis down falls back to local counting.
  Readiness stays 200 (``"degraded"``): every replica shares the same database, so failing
  readiness on a database blip would take the whole fleet out of every Service at once and
  turn a blip into an outage.
- ``closed``: the operator prefers refusing to serving unmetered or unbudgeted, so a
  database or Redis that does not answer makes the replica not ready.

Probes are cached for a second and shared by concurrent callers, so a flood of probes does
not become a flood of database connections. The body names what is down, never a URL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlalchemy import text

from proxy.db import describe_error
from proxy.ledger import LedgerWriter
from proxy.lifecycle import Lifecycle

__all__ = ["Readiness"]

log = logging.getLogger("spendgate")


class Readiness:
    """Probes the replica's dependencies for ``/readyz``; see the module docstring."""

    def __init__(
        self,
        ledger: LedgerWriter,
        lifecycle: Lifecycle,
        *,
        redis_url: str | None,
        fail_open: bool,
        timeout: float = 1.0,
        cache_seconds: float = 1.0,
    ) -> None:
        self.ledger = ledger
        self.lifecycle = lifecycle
        self.fail_open = fail_open
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._redis: Any = None
        if redis_url and not redis_url.startswith("memory://"):
            import redis.asyncio

            self._redis = redis.asyncio.Redis.from_url(
                redis_url, socket_connect_timeout=timeout, socket_timeout=timeout
            )
        self._probed: tuple[float, dict[str, str]] | None = None
        self._probing: asyncio.Task[dict[str, str]] | None = None
        self._last_down: dict[str, str] = {}

    async def check(self) -> tuple[bool, dict[str, Any]]:
        """``(ready, body)`` for ``/readyz``."""
        deps = await self._dependencies()
        down = [name for name, state in deps.items() if state == "down"]
        if self.lifecycle.draining:
            ready, status = False, "draining"
        elif not self.ledger.accepting:
            ready, status = False, "ledger backlog full"
        elif down and not self.fail_open:
            ready, status = False, "not ready"
        else:
            ready, status = True, "degraded" if down else "ready"
        body = {"status": status, **deps, "ledger_backlog": self.ledger.backlog}
        return ready, body

    async def aclose(self) -> None:
        if self._probing is not None:
            self._probing.cancel()
        if self._redis is not None:
            await self._redis.aclose()

    async def _dependencies(self) -> dict[str, str]:
        now = time.monotonic()
        if self._probed is not None and now - self._probed[0] < self.cache_seconds:
            return self._probed[1]
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._probe())
        # shield: one caller hanging up must not cancel the probe the others wait on
        deps = await asyncio.shield(self._probing)
        self._probed = (time.monotonic(), deps)
        return deps

    async def _probe(self) -> dict[str, str]:
        checks = {"database": self._ping_database()}
        if self._redis is not None:
            checks["redis"] = self._ping_redis()
        results = await asyncio.gather(*checks.values(), return_exceptions=True)
        deps = {}
        for name, result in zip(checks, results, strict=True):
            if isinstance(result, BaseException):
                deps[name] = "down"
                reason = "timed out" if isinstance(result, TimeoutError) else describe_error(result)
                if self._last_down.get(name) != reason:
                    log.warning("readiness: %s is down (%s)", name, reason)
                self._last_down[name] = reason
            else:
                deps[name] = "ok"
                if self._last_down.pop(name, None) is not None:
                    log.warning("readiness: %s is back", name)
        return deps

    async def _ping_database(self) -> None:
        async def ping() -> None:
            async with self.ledger.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        await asyncio.wait_for(ping(), self.timeout)

    async def _ping_redis(self) -> None:
        await asyncio.wait_for(self._redis.ping(), self.timeout)
