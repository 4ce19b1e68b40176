"""Fixtures for the budgets suite: one parametrised backend (memory, Redis), a clock, a ledger."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import pytest

from budgets import BudgetStore, Spend, SpendQuery, Subject, open_store
from budgets.memory import MemoryStore


class Clock:
    """An injectable clock: epoch seconds that a test moves by hand."""

    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Backend:
    """Opens stores that share state, as two processes sharing one Redis do."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind = kind
        self.url = url
        self.namespace = f"t{uuid.uuid4().hex[:12]}"
        self._memory = MemoryStore()
        self._opened: list[BudgetStore] = []

    async def open(self) -> BudgetStore:
        if self.kind == "memory":
            return self._memory
        store = await open_store(self.url, namespace=self.namespace, socket_timeout=0.3)
        self._opened.append(store)
        return store

    async def lose_everything(self) -> None:
        """FLUSHALL (a private server) or a restarted process (memory)."""
        if self.kind == "memory":
            self._memory.clear()
            return
        import redis.asyncio as aioredis

        client = aioredis.from_url(self.url)
        try:
            await client.flushall()
        finally:
            await client.aclose()

    async def aclose(self) -> None:
        for store in self._opened:
            await store.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Memory, or the session's shared Redis under a fresh key namespace."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_url")
    backend = Backend(request.param, url)
    yield backend
    await backend.aclose()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def lossy_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    """Like ``backend``, but Redis is a private server the test may flush."""
    url = "memory://" if request.param == "memory" else request.getfixturevalue("redis_server").url
    backend = Backend(request.param, url)
    yield backend
    await backend.aclose()


@dataclass
class Ledger:
    """A fake ledger: one row per settled call, and a ``SpendSource`` over it."""

    rows: list[tuple[float, Subject, Decimal, int]] = field(default_factory=list)
    queries: list[SpendQuery] = field(default_factory=list)

    def record(self, at: float, subject: Subject, usd: Decimal, tokens: int) -> None:
        self.rows.append((at, subject, usd, tokens))

    async def __call__(self, query: SpendQuery) -> Mapping[str, Spend]:
        self.queries.append(query)
        out: dict[str, Spend] = {}
        start = query.start.timestamp() if query.start else float("-inf")
        for at, subject, usd, tokens in self.rows:
            if at < start:
                continue
            if query.scope == "global":
                value: str | None = ""
            elif query.scope == "tag":
                tag = subject.tags.get(query.tag_key or "")
                value = None if tag is None else f"{query.tag_key}={tag}"
            else:
                attr = {"key": "key_id"}.get(str(query.scope), str(query.scope))
                value = getattr(subject, attr)
            if value is None:
                continue
            prior = out.get(value, Spend(Decimal(0), 0, 0))
            out[value] = Spend(prior.usd + usd, prior.tokens + tokens, prior.requests + 1)
        return out


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()
