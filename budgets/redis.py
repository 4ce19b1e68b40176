"""The shared store (``redis://``): counters every worker and replica sees.

Each operation is ONE round trip: an ``EVALSHA`` of a versioned Lua script shipped as package
data (``budgets/lua/*_v1.lua``), loaded once at open and re-loaded transparently after a
Redis restart (``NOSCRIPT``). A script whose behaviour changes gets a new file name, so
replicas of two versions never disagree about what one name does.

Key layout (``ns`` is the namespace, default ``spendgate``)::

    {ns}:seeded                                  marker: counters were (re)built; absent = lost
    {ns}:b:<period>:<window>:<scope>:<value>     hash: usd tok req (settled), husd htok hreq
                                                 (held), r:<rid> (one hold), a:... (alert fired)
    {ns}:b:...:holds                             zset: rid scored by its expiry (ms)
    {ns}:rl:<scope>:<rpm|tpm>:<value>            string: GCRA theoretical arrival time (ms)

Every key carries the same hash tag ``{ns}``, so on Redis Cluster they all live in ONE slot and
a script may touch the team, key, tag and global counters of one request together. The cost:
budget traffic of a deployment goes to one shard (tens of thousands of reserve+settle pairs per
second on one core), and the namespace cannot be spread across shards. Deployments that need
more run several namespaces (e.g. one per tenant group); a per-team tag would break the
atomicity of global and tag budgets, which span teams.

Redis connection errors and timeouts become ``StoreUnavailable`` here, once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from budgets.errors import StoreUnavailable
from budgets.store import (
    Amounts,
    BucketSpec,
    Charge,
    ReserveOp,
    ReserveResult,
    RestoreMode,
    SettleOp,
    SettleResult,
)

__all__ = ["SCRIPTS", "RedisStore"]

SCRIPTS = ("reserve_v1", "settle_v1", "restore_v1", "charge_v1", "read_v1")
_STATUS = {0: "ok", 1: "budget", 2: "rate", 3: "unseeded"}


def _load(name: str) -> str:
    return (files("budgets") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@dataclass(slots=True)
class _Pending:
    name: str
    keys: list[str]
    args: list[Any]
    future: asyncio.Future[Any]


def _triple(row: Sequence[Any]) -> Amounts:
    return (int(row[0]), int(row[1]), int(row[2]))


@asynccontextmanager
async def _unavailable() -> AsyncIterator[None]:
    """Translate redis transport failures into ``StoreUnavailable`` at this one boundary."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise StoreUnavailable(f"budget store unreachable: {exc}") from exc


class RedisStore:
    """Budget counters in Redis (standalone, Sentinel-fronted or Cluster with one hash tag)."""

    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self._client = client
        self._prefix = f"{{{namespace}}}:"
        self._scripts = {name: client.register_script(_load(name)) for name in SCRIPTS}
        self._queue: list[_Pending] = []
        self._busy = False  # a round trip is in flight: new calls queue for the next one
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, namespace: str, socket_timeout: float) -> RedisStore:
        """Connect and load every script once; an unreachable Redis is not fatal here.

        Start-up must not depend on Redis being up (fail_open would be pointless otherwise),
        so a failed ``SCRIPT LOAD`` is left to ``EVALSHA``'s ``NOSCRIPT`` fallback later.
        """
        client = aioredis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            # One immediate retry heals a pooled connection broken by a Redis restart;
            # more (with backoff) would stall every request while Redis is down.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=0,
        )
        store = cls(client, namespace)
        try:
            for script in store._scripts.values():
                script.sha = await client.script_load(script.script)
        except (RedisConnectionError, RedisTimeoutError, OSError):
            pass
        return store

    def _key(self, key: str) -> str:
        return self._prefix + key

    def _bucket_keys(self, buckets: Sequence[BucketSpec]) -> list[str]:
        keys: list[str] = []
        for spec in buckets:
            keys += (self._key(spec.key), self._key(spec.key) + ":holds")
        return keys

    async def _run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run one script; calls made while a round trip is in flight share the next one.

        Auto-pipelining: under load, the reserves and settles of concurrent requests go to
        Redis as one pipeline (one write, one read) instead of one round trip each, which
        is most of the client's CPU per call. Alone, a call goes out at once, as before.
        """
        async with _unavailable():
            if not self._busy:
                self._busy = True
                try:
                    return await self._call(name, keys, args)
                finally:
                    self._release()
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            self._queue.append(_Pending(name, keys, args, future))
            return await future

    def _release(self) -> None:
        """The round trip in flight is done: send what queued meanwhile, as one pipeline."""
        if self._queue:
            self._flusher = asyncio.create_task(self._flush())
        else:
            self._busy = False

    async def _flush(self) -> None:
        batch, self._queue = self._queue, []
        try:
            if len(batch) == 1:
                one = batch[0]
                results: list[Any] = [await self._call(one.name, one.keys, one.args)]
            else:
                results = await self._pipeline(batch)
        except BaseException as exc:  # every waiter sees the failure
            results = [exc] * len(batch)
        finally:
            self._flusher = None
            self._release()
        for pending, result in zip(batch, results, strict=True):
            if pending.future.done():
                continue  # its caller was cancelled
            if isinstance(result, BaseException):
                pending.future.set_exception(result)
            else:
                pending.future.set_result(result)

    async def _call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def _pipeline(self, batch: list[_Pending]) -> list[Any]:
        """EVALSHA each in one pipeline; a script Redis lost (restart) is re-run alone."""
        pipe = self._client.pipeline(transaction=False)
        for p in batch:  # a Script's sha is computed locally when it is registered
            pipe.evalsha(self._scripts[p.name].sha, len(p.keys), *p.keys, *p.args)
        results: list[Any] = await pipe.execute(raise_on_error=False)
        for i, (p, result) in enumerate(zip(batch, results, strict=True)):
            if isinstance(result, NoScriptError):
                results[i] = await self._call(p.name, p.keys, p.args)  # reloads the script
        return results

    async def reserve(self, op: ReserveOp) -> ReserveResult:
        """See ``BudgetStore.reserve`` (``reserve_v1.lua``)."""
        keys = [self._key("seeded"), *self._bucket_keys(op.buckets)]
        keys += [self._key(rate.key) for rate in op.rates]
        args: list[Any] = [op.now_ms, op.rid, op.expires_at_ms, *op.demand]
        args += [len(op.buckets), len(op.rates)]
        for spec in op.buckets:
            args += [*spec.limits, spec.ttl_ms]
        for rate in op.rates:
            args += [rate.unit, repr(rate.interval_ms), rate.window_ms]
        reply = cast(list[Any], await self._run("reserve_v1", keys, args))
        status = _STATUS[int(reply[0])]
        if status == "ok":
            used = tuple(_triple(row) for row in reply[1])
            rates = tuple((int(r[0]), int(r[1])) for r in reply[2])
            return ReserveResult("ok", used=used, rates=rates)
        if status == "budget":
            return ReserveResult(
                "budget", index=int(reply[1]) - 1, unit=int(reply[2]) - 1, spent=int(reply[3])
            )
        if status == "rate":
            return ReserveResult("rate", index=int(reply[1]) - 1, retry_after_ms=int(reply[2]))
        return ReserveResult("unseeded")

    async def settle(self, op: SettleOp) -> SettleResult:
        """See ``BudgetStore.settle`` (``settle_v1.lua``)."""
        keys = self._bucket_keys(op.buckets) + [self._key(rate.key) for rate in op.rates]
        args: list[Any] = [op.now_ms, op.rid, *op.actual, *op.reserved]
        args += [len(op.buckets), len(op.rates)]
        for spec in op.buckets:
            args += [spec.ttl_ms, len(spec.alerts)]
            for mark in spec.alerts:
                args += [mark.field, mark.unit, mark.threshold]
        for rate in op.rates:
            args += [rate.unit, repr(rate.interval_ms)]
        settled, fired = cast(list[Any], await self._run("settle_v1", keys, args))
        return SettleResult(
            tuple(_triple(row) for row in settled),
            tuple(f.decode() if isinstance(f, bytes) else str(f) for f in fired),
        )

    async def charge(self, charges: Sequence[Charge], now_ms: int) -> None:
        """See ``BudgetStore.charge`` (``charge_v1.lua``)."""
        if not charges:
            return
        args: list[Any] = []
        for entry in charges:
            args += [*entry.amounts, entry.ttl_ms]
        await self._run("charge_v1", [self._key(c.key) for c in charges], args)

    async def restore(self, charges: Sequence[Charge], mode: RestoreMode, now_ms: int) -> bool:
        """See ``BudgetStore.restore`` (``restore_v1.lua``)."""
        args: list[Any] = [mode]
        for entry in charges:
            args += [*entry.amounts, entry.ttl_ms]
        keys = [self._key("seeded"), *(self._key(c.key) for c in charges)]
        return bool(await self._run("restore_v1", keys, args))

    async def read(self, keys: Sequence[str], now_ms: int) -> list[tuple[Amounts, Amounts]]:
        """See ``BudgetStore.read`` (``read_v1.lua``)."""
        full: list[str] = []
        for key in keys:
            full += (self._key(key), self._key(key) + ":holds")
        rows = cast(list[Any], await self._run("read_v1", full, [now_ms]))
        return [(_triple(row[:3]), _triple(row[3:])) for row in rows]

    async def aclose(self) -> None:
        """Close the connection pool (after the round trip in flight, if any)."""
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._client.aclose()
