"""The proxy's in-memory copy of the database's keys and policies; no DB read per request.

Each replica reloads everything (one query per table) every ``refresh_s`` seconds and at once
when told a change happened: by its own admin API directly, by other replicas through Redis
pub/sub on ``CHANNEL`` when ``storage.redis_url`` is set. So a revoked key is refused by every
replica within about the pub/sub delivery time plus one reload (milliseconds), and at worst
within ``refresh_s`` if a notice is lost (Redis down, a subscriber reconnecting). While the
database is unreachable the last good copy keeps serving; expiry is still checked per request
against the clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from proxy.auth import Identity
from proxy.controlplane.models import KeyRow

__all__ = ["CHANNEL", "ChangeFeed", "identities"]

log = logging.getLogger("spendgate.controlplane")

CHANNEL = "spendgate:controlplane:changed"


def identities(rows: Iterable[KeyRow]) -> dict[str, Identity]:
    """Key hash -> identity, for the current secret and any previous one still in its grace."""
    out: dict[str, Identity] = {}
    for row in rows:
        expires = row.expires_at.timestamp() if row.expires_at is not None else None
        base = dict(
            team=row.team,
            key_id=row.id,
            project=row.project,
            tags=tuple(sorted((row.tags or {}).items())),
            models=tuple(row.allowed_models) if row.allowed_models is not None else None,
        )
        out[row.key_hash] = Identity(**base, expires_at=expires)  # type: ignore[arg-type]
        if row.previous_hash and row.previous_valid_until is not None:
            grace_end = row.previous_valid_until.timestamp()
            until = grace_end if expires is None else min(expires, grace_end)
            out[row.previous_hash] = Identity(**base, expires_at=until)  # type: ignore[arg-type]
    return out


class ChangeFeed:
    """Runs ``reload`` every ``refresh_s`` and whenever a change notice arrives.

    ``changed()`` reloads here and publishes the notice for the other replicas.
    """

    def __init__(
        self,
        reload: Callable[[], Awaitable[None]],
        *,
        redis_url: str | None,
        refresh_s: float,
    ) -> None:
        self._reload = reload
        self._refresh_s = refresh_s
        self._redis_url = redis_url if redis_url and not redis_url.startswith("memory") else None
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: Any = None
        self._origin = os.urandom(8).hex()
        self.subscribed = asyncio.Event()

    async def start(self) -> None:
        await self._reload()
        self._tasks.append(asyncio.create_task(self._refresh_loop(), name="spendgate-cp-refresh"))
        if self._redis_url:
            from redis.asyncio import Redis

            self._redis = Redis.from_url(self._redis_url)
            self._tasks.append(asyncio.create_task(self._listen(), name="spendgate-cp-listen"))

    async def changed(self) -> None:
        """A change was committed here: reload now and tell the other replicas."""
        await self._reload()
        if self._redis is not None:
            try:
                await self._redis.publish(CHANNEL, self._origin)
            except Exception as exc:  # the periodic refresh still bounds the delay
                log.warning("could not publish a control-plane change to Redis: %s", exc)

    async def _refresh_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._refresh_s)
            self._wake.clear()
            try:
                await self._reload()
            except Exception as exc:  # keep serving the last good copy
                log.warning("control-plane reload failed (keeping the last copy): %s", exc)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(CHANNEL)
                self.subscribed.set()
                self._wake.set()  # notices may have been missed while disconnected
                backoff = 0.1
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("control-plane subscription lost (%s); retrying", exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None
