"""The budget-utilization snapshot over both stores: what it reports, and how it stays fresh."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from budgets import (
    Budgets,
    BudgetStore,
    BudgetUtilization,
    Demand,
    Scope,
    StoreUnavailable,
    Subject,
    Utilization,
    open_store,
    parse_policies,
)
from budgets.store import Amounts
from tests.budgets.conftest import Backend, Clock

JAN = datetime(2025, 1, 15, 12, tzinfo=UTC)
SEARCH = Subject(team="search", project="ranker", key_id="k1", end_user="u1", tags={"env": "prod"})
ADS = Subject(team="ads", project="bid", key_id="k2", end_user="u2", tags={"env": "dev"})
KNOWN = {
    Scope.TEAM: {"search", "ads"},
    Scope.PROJECT: {"ranker", "bid"},
    Scope.KEY: {"k1", "k2"},
    Scope.TAG: {"env=prod", "env=dev"},
}


async def spend(budgets: Budgets, subject: Subject, usd: str, tokens: int = 0) -> None:
    async with budgets.reserve(subject, Demand(cost=Decimal(usd), tokens=tokens)) as r:
        r.mark_sent()
        await r.settle(cost=Decimal(usd), tokens=tokens)


def by_value(points: Sequence[Utilization], unit: str = "usd") -> dict[tuple[str, str], float]:
    return {(p.policy, p.value): p.fraction for p in points if p.unit == unit}


async def test_reports_configured_and_known_values_only(backend: Backend) -> None:
    policies = parse_policies(
        [
            {"scope": "global", "period": "month", "limit_usd": 100},
            {"scope": "team", "match": "search", "period": "month", "limit_usd": 10},
            {"scope": "team", "period": "day", "limit_usd": 4},  # each team
            {"scope": "key", "match": "k*", "period": "day", "limit_tokens": 1000},
            {"scope": "tag", "match": "env=*", "period": "month", "limit_usd": 20},
            {"scope": "end_user", "period": "day", "limit_usd": 1, "mode": "soft"},  # unbounded
            {"scope": "end_user", "match": "u1", "period": "day", "limit_usd": 2, "mode": "soft"},
        ]
    )
    clock = Clock(JAN)
    budgets = Budgets(await backend.open(), policies, clock=clock)
    view = BudgetUtilization(budgets, lambda: KNOWN)
    await spend(budgets, SEARCH, "2.5", tokens=300)
    await spend(budgets, ADS, "1", tokens=50)
    await view.refresh()
    points = view.points()
    assert by_value(points) == {
        ("global:*:month", ""): 0.035,
        ("team:search:month", "search"): 0.25,
        ("team:*:day", "ads"): 0.25,
        ("team:*:day", "search"): 0.625,
        ("tag:env=*:month", "env=dev"): 0.05,
        ("tag:env=*:month", "env=prod"): 0.125,
        ("end_user:u1:day", "u1"): 1.25,  # a literal match is reported; a soft limit overrun
    }
    assert by_value(points, "tokens") == {("key:k*:day", "k1"): 0.3, ("key:k*:day", "k2"): 0.05}
    (team,) = [p for p in points if p.policy == "team:search:month"]
    assert (team.scope, team.period, team.mode) == ("team", "month", "hard")
    assert (team.limit, team.spent) == (Decimal(10), Decimal("2.5"))
    assert not any(p.value == "u2" for p in points)


async def test_own_spend_shows_at_once_and_other_replicas_after_refresh(backend: Backend) -> None:
    policies = parse_policies(
        [{"scope": "team", "match": "search", "period": "month", "limit_usd": "0.5"}]
    )
    here = Budgets(await backend.open(), policies)
    there = Budgets(await backend.open(), policies)  # another replica on the same store
    view = BudgetUtilization(here)
    here.on_settled = view.settled
    await view.refresh()
    assert by_value(view.points()) == {("team:search:month", "search"): 0.0}
    await spend(here, SEARCH, "0.1")
    assert by_value(view.points()) == {("team:search:month", "search"): 0.2}  # no store read
    await spend(there, SEARCH, "0.2")
    if backend.kind == "redis":  # a replica's spend is seen on the next refresh
        assert by_value(view.points()) == {("team:search:month", "search"): 0.2}
    await view.refresh()
    assert by_value(view.points()) == {("team:search:month", "search"): 0.6}


async def test_new_window_and_new_policies_are_picked_up_by_refresh(backend: Backend) -> None:
    clock = Clock(JAN)
    policies = parse_policies(
        [{"scope": "team", "match": "search", "period": "month", "limit_usd": 1}]
    )
    budgets = Budgets(await backend.open(), policies, clock=clock)
    view = BudgetUtilization(budgets)
    budgets.on_settled = view.settled
    await spend(budgets, SEARCH, "0.4")
    await view.refresh()
    assert by_value(view.points()) == {("team:search:month", "search"): 0.4}
    clock.advance(31 * 86400)  # February: a new window starts from zero
    await spend(budgets, SEARCH, "0.1")  # lands in February's counter, not yet reported
    assert by_value(view.points()) == {("team:search:month", "search"): 0.4}
    await view.refresh()
    assert by_value(view.points()) == {("team:search:month", "search"): 0.1}
    await budgets.update(
        parse_policies([{"scope": "team", "match": "search", "period": "month", "limit_usd": 2}])
    )
    await view.refresh()
    assert by_value(view.points()) == {("team:search:month", "search"): 0.05}


async def test_units_modes_zero_limits_and_the_series_cap(backend: Backend) -> None:
    policies = parse_policies(
        [
            {
                "scope": "team",
                "match": "search",
                "period": "day",
                "limit_usd": 1,
                "limit_requests": 4,
            },
            {"scope": "team", "match": "search", "period": "day", "limit_usd": 2},  # looser
            {"scope": "team", "match": "search", "period": "day", "limit_usd": 1, "mode": "soft"},
            {"scope": "project", "match": "ranker", "period": "day", "limit_tokens": 0},
        ]
    )
    budgets = Budgets(await backend.open(), policies[1:2])  # admits; the view reads all four
    await spend(budgets, SEARCH, "0.5", tokens=0)
    budgets.policies = policies
    view = BudgetUtilization(budgets)
    await view.refresh()
    got = {(p.policy, p.unit, p.mode): p.fraction for p in view.points()}
    assert got == {
        ("team:search:day", "usd", "hard"): 0.5,  # of the tighter $1 hard limit
        ("team:search:day", "requests", "hard"): 0.25,
        ("team:search:day", "usd", "soft"): 0.5,
        ("project:ranker:day", "tokens", "hard"): 1.0,  # a zero limit is used up
    }
    capped = BudgetUtilization(budgets, max_series=2)
    await capped.refresh()
    assert len(capped.points()) == 2


class GatedRead:
    """A real store whose ``read`` waits until the test opens the gate."""

    def __init__(self, store: BudgetStore) -> None:
        self.store = store
        self.reading = asyncio.Event()
        self.gate = asyncio.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def read(self, keys: Sequence[str], now_ms: int) -> list[tuple[Amounts, Amounts]]:
        rows = await self.store.read(keys, now_ms)
        self.reading.set()
        await self.gate.wait()
        return rows


async def test_a_settle_during_a_refresh_is_not_lost(backend: Backend) -> None:
    policies = parse_policies(
        [{"scope": "team", "match": "search", "period": "month", "limit_usd": 1}]
    )
    store = await backend.open()
    budgets = Budgets(store, policies)
    view = BudgetUtilization(budgets)
    budgets.on_settled = view.settled
    await spend(budgets, SEARCH, "0.1")
    gated = GatedRead(store)
    budgets.store = gated  # type: ignore[assignment]
    refresh = asyncio.create_task(view.refresh())
    await gated.reading.wait()  # the read has its figures ($0.10) ...
    budgets.store = store
    await spend(budgets, SEARCH, "0.3")  # ... and this settle lands before it returns
    gated.gate.set()
    await refresh
    assert by_value(view.points()) == {("team:search:month", "search"): 0.4}


async def test_background_refresh_and_close(backend: Backend) -> None:
    policies = parse_policies(
        [{"scope": "team", "match": "search", "period": "month", "limit_usd": 1}]
    )
    here = Budgets(await backend.open(), policies)
    there = Budgets(await backend.open(), policies)
    view = BudgetUtilization(here)
    view.start(0.01)
    await spend(there, SEARCH, "0.7")
    for _ in range(500):
        if by_value(view.points()) == {("team:search:month", "search"): 0.7}:
            break
        await asyncio.sleep(0.01)
    assert by_value(view.points()) == {("team:search:month", "search"): 0.7}
    await view.aclose()
    await view.aclose()  # idempotent


@pytest.mark.redis
async def test_store_down_keeps_the_last_snapshot(redis_server) -> None:
    store = await open_store(redis_server.url, socket_timeout=0.3)
    try:
        policies = parse_policies(
            [{"scope": "team", "match": "search", "period": "month", "limit_usd": 1}]
        )
        budgets = Budgets(store, policies)
        view = BudgetUtilization(budgets)
        await spend(budgets, SEARCH, "0.2")
        await view.refresh()
        redis_server.stop()
        with pytest.raises(StoreUnavailable):
            await view.refresh()
        assert by_value(view.points()) == {("team:search:month", "search"): 0.2}
    finally:
        await store.aclose()
