"""Auto-pipelining in the Redis store: concurrent calls share round trips, each gets its own
answer, a script Redis forgot is reloaded, and a failure reaches every waiter."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from budgets import Budgets, Demand, StoreUnavailable, Subject, open_store, parse_policies
from budgets.redis import RedisStore
from tests.services.redis import RedisServer

pytestmark = pytest.mark.redis

POLICIES = parse_policies(
    [{"scope": "team", "period": "month", "limit_usd": "1000", "mode": "hard"}]
)


class CountingPipelines:
    """Counts the pipelines a store sends (by wrapping its client's ``pipeline``)."""

    def __init__(self, store: RedisStore) -> None:
        self.sizes: list[int] = []
        client = store._client
        original = client.pipeline

        def pipeline(*args: object, **kwargs: object) -> object:
            pipe = original(*args, **kwargs)  # type: ignore[arg-type]
            execute = pipe.execute

            async def counted(*a: object, **k: object) -> object:
                self.sizes.append(len(pipe.command_stack))
                return await execute(*a, **k)  # type: ignore[arg-type]

            pipe.execute = counted  # type: ignore[method-assign]
            return pipe

        client.pipeline = pipeline  # type: ignore[method-assign]


async def test_concurrent_calls_share_round_trips_and_get_their_own_answers(
    redis_server: RedisServer,
) -> None:
    store = await open_store(redis_server.url, namespace="pipe", socket_timeout=2.0)
    assert isinstance(store, RedisStore)
    counting = CountingPipelines(store)
    budgets = Budgets(store, POLICIES)
    costs = [Decimal(i) / 1000 for i in range(1, 101)]

    async def call(team: str, cost: Decimal) -> Decimal | None:
        r = await budgets.acquire(Subject(team=team), Demand(cost=Decimal("1"), tokens=10))
        r.mark_sent()
        await r.settle(cost=cost, tokens=1)
        return r.remaining_usd

    await asyncio.gather(*(call(f"t{i % 4}", c) for i, c in enumerate(costs)))
    assert counting.sizes and max(counting.sizes) > 1  # batched
    for t in range(4):
        counters = await budgets.read(Subject(team=f"t{t}"))
        ((settled, held),) = counters.values()
        expected = sum(c for i, c in enumerate(costs) if i % 4 == t)
        assert Decimal(settled[0]) / 10**9 == expected  # every settle landed once
        assert held == (0, 0, 0)  # and released its hold
    await store.aclose()


async def test_a_script_redis_forgot_is_reloaded_inside_a_pipeline(
    redis_server: RedisServer,
) -> None:
    store = await open_store(redis_server.url, namespace="pipe", socket_timeout=2.0)
    budgets = Budgets(store, POLICIES)
    client = aioredis.from_url(redis_server.url)
    await client.script_flush()  # as after a Redis restart
    await client.aclose()

    async def call() -> None:
        r = await budgets.acquire(Subject(team="a"), Demand(cost=Decimal("1"), tokens=1))
        r.mark_sent()
        await r.settle(cost=Decimal("0.5"), tokens=1)

    await asyncio.gather(*(call() for _ in range(20)))
    ((settled, _),) = (await budgets.read(Subject(team="a"))).values()
    assert Decimal(settled[0]) / 10**9 == 10
    await store.aclose()


async def test_a_dead_redis_fails_every_waiter_as_unavailable(redis_server: RedisServer) -> None:
    store = await open_store(redis_server.url, namespace="pipe", socket_timeout=0.5)
    budgets = Budgets(store, POLICIES, fail_mode="closed")
    await budgets.read(Subject(team="a"))  # connected
    redis_server.stop()
    results = await asyncio.gather(
        *(
            budgets.acquire(Subject(team="a"), Demand(cost=Decimal("1"), tokens=1))
            for _ in range(20)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreUnavailable) for r in results), results
    await store.aclose()
