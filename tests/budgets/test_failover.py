"""Redis stopped mid-run: fail_open counts locally and replays, fail_closed refuses (503)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from budgets import BudgetExceeded, Budgets, Demand, StoreUnavailable, open_store, parse_policies
from tests.budgets.conftest import Clock, Ledger
from tests.budgets.test_engine import JAN, SEARCH, settled_usd, team_budget
from tests.services.redis import RedisServer

pytestmark = pytest.mark.redis


async def spend(budgets: Budgets, usd: str) -> None:
    async with budgets.reserve(SEARCH, Demand(cost=Decimal(usd), tokens=1)) as r:
        r.mark_sent()
        await r.settle(cost=Decimal(usd), tokens=1)


async def test_fail_open_counts_locally_and_replays_when_redis_returns(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    clock = Clock(JAN)
    store = await open_store(server.url, namespace="fo", socket_timeout=0.3)
    budgets = Budgets(store, team_budget("1"), clock=clock, fail_mode="open")
    try:
        await spend(budgets, "0.4")
        in_flight = await budgets.acquire(SEARCH, Demand(cost=Decimal("0.1"), tokens=1))
        server.stop()
        await in_flight.settle(cost=Decimal("0.1"), tokens=1)  # journaled, not lost
        # Admitted against the last count seen ($0.50) plus what is counted here.
        for _ in range(5):
            await spend(budgets, "0.1")
        with pytest.raises(BudgetExceeded):
            await spend(budgets, "0.1")
        server.start()
        clock.advance(budgets.store_retry_s)
        with pytest.raises(BudgetExceeded) as caught:  # replayed first: Redis holds $1.00
            await spend(budgets, "0.1")
        assert caught.value.spent == Decimal("1.0")
        assert await budgets.reconcile()
        assert await settled_usd(budgets) == Decimal("1.0")
    finally:
        await store.aclose()
        server.stop()


async def test_fail_closed_refuses_while_redis_is_down(redis_server: RedisServer) -> None:
    clock = Clock(JAN)
    ledger = Ledger()
    store = await open_store(redis_server.url, namespace="fc", socket_timeout=0.3)
    policies = parse_policies(
        [{"scope": "team", "match": "search", "period": "month", "limit_usd": 1,
          "fail_mode": "closed"}]
    )  # fmt: skip
    budgets = Budgets(store, policies, clock=clock, fail_mode="open", spend_source=ledger)
    try:
        await spend(budgets, "0.3")
        ledger.record(clock(), SEARCH, Decimal("0.3"), 1)
        in_flight = await budgets.acquire(SEARCH, Demand(cost=Decimal("0.2"), tokens=1))
        redis_server.stop()
        with pytest.raises(StoreUnavailable) as caught:
            await spend(budgets, "0.1")
        assert caught.value.status_code == 503
        await in_flight.settle(cost=Decimal("0.2"), tokens=1)  # the call happened: journaled
        ledger.record(clock(), SEARCH, Decimal("0.2"), 1)
        clock.advance(budgets.store_retry_s)
        with pytest.raises(StoreUnavailable):  # retried after store_retry_s, still down
            await spend(budgets, "0.1")
        redis_server.start()  # came back EMPTY (no persistence): rebuilt from the ledger
        clock.advance(budgets.store_retry_s)
        await spend(budgets, "0.1")
        assert await settled_usd(budgets) == Decimal("0.6")
    finally:
        await store.aclose()


async def test_open_store_does_not_need_redis_up(tmp_path: Path) -> None:
    server = RedisServer(tmp_path)  # never started
    store = await open_store(server.url, namespace="x", socket_timeout=0.2)
    budgets = Budgets(store, team_budget("1"), fail_mode="open")
    try:
        await spend(budgets, "0.1")
        server.start()
        budgets.clock = lambda: 10**10  # far past store_retry_s
        await spend(budgets, "0.1")
    finally:
        await store.aclose()
        server.stop()


async def test_concurrent_requests_replay_each_deferred_settlement_once(tmp_path: Path) -> None:
    """When Redis returns, every waiting request sees something to replay; only one may."""
    server = RedisServer(tmp_path, persistent=True)
    server.start()
    clock = Clock(JAN)
    store = await open_store(server.url, namespace="fr", socket_timeout=0.3)
    budgets = Budgets(store, team_budget("10"), clock=clock, fail_mode="open")
    try:
        held = [
            await budgets.acquire(SEARCH, Demand(cost=Decimal("0.5"), tokens=1)) for _ in range(4)
        ]
        server.stop()
        for r in held:  # each settlement fails and is kept to replay whole
            r.mark_sent()
            await r.settle(cost=Decimal("0.25"), tokens=1)
        server.start()
        clock.advance(budgets.store_retry_s)
        await asyncio.gather(*(spend(budgets, "0.01") for _ in range(20)))
        assert await budgets.reconcile()
        assert await settled_usd(budgets) == Decimal("1.20")  # 4 x 0.25 + 20 x 0.01, once each
    finally:
        await store.aclose()
        server.stop()
