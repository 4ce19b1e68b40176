"""The budget engine over both stores: one suite, parametrised over memory and Redis."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from budgets import (
    AlertEvent,
    BudgetExceeded,
    Budgets,
    Demand,
    Policy,
    RateLimited,
    Subject,
    parse_policies,
    parse_rate_limits,
    to_nanos,
)
from tests.budgets.conftest import Backend, Clock, Ledger

SEARCH = Subject(team="search", project="ranker", key_id="k1", end_user="u1", model="gpt-4o")
JAN = datetime(2025, 1, 15, 12, tzinfo=UTC)


def team_budget(limit: str, **extra: object) -> tuple[Policy, ...]:
    item = {"scope": "team", "match": "search", "period": "month", "limit_usd": limit, **extra}
    return parse_policies([item])


async def settled_usd(budgets: Budgets, subject: Subject = SEARCH) -> Decimal:
    counters = await budgets.read(subject)
    return sum((Decimal(s[0]) / 10**9 for s, _ in counters.values()), Decimal(0))


async def test_the_race_two_processes_never_overrun_a_hard_budget(backend: Backend) -> None:
    """200 concurrent calls from two Budgets over one store against $0.50.

    Each reserves its worst case ($0.01) and settles between $0.004 and $0.01, so at most 50
    worst cases fit at once and the settled total must stay <= $0.50, exactly.
    """
    policies = team_budget("0.50")
    one = Budgets(await backend.open(), policies)
    two = Budgets(await backend.open(), policies)
    rng = random.Random(4)
    actuals = [Decimal(rng.randint(4000, 10000)) / 1_000_000 for _ in range(200)]
    charged: list[Decimal] = []
    blocked: list[BudgetExceeded] = []

    async def call(i: int) -> None:
        budgets = one if i % 2 else two
        try:
            async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.01"), tokens=100)) as r:
                r.mark_sent()
                await asyncio.sleep(rng.random() / 200)
                await r.settle(cost=actuals[i], tokens=80)
                charged.append(actuals[i])
        except BudgetExceeded as exc:
            blocked.append(exc)

    await asyncio.gather(*(call(i) for i in range(200)))
    total = sum(charged, Decimal(0))
    assert total <= Decimal("0.50")
    assert len(charged) >= 50 and blocked  # released surplus let more than 50 through
    assert await settled_usd(one) == total
    assert blocked[0].scope == "team" and blocked[0].limit == Decimal("0.50")
    assert "resets at 2" in str(blocked[0]) or blocked[0].period_resets_at is not None


async def test_under_reservation_is_the_only_overshoot(backend: Backend) -> None:
    budgets = Budgets(await backend.open(), team_budget("1"))
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.60"), tokens=10)) as r:
        await r.settle(cost=Decimal("0.70"), tokens=12)  # usage exceeded the estimate
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.30"), tokens=10)) as r:
        await r.settle(cost=Decimal("0.30"), tokens=10)
    # settled 1.00: overshoot 0 here; the next worst case no longer fits
    assert await settled_usd(budgets) == Decimal("1.00")
    with pytest.raises(BudgetExceeded) as caught:
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.01"), tokens=1)):
            pass
    assert caught.value.spent == Decimal("1.00")
    assert r.remaining_usd == Decimal(0)


async def test_leaving_without_settle_charges_only_what_was_sent(backend: Backend) -> None:
    budgets = Budgets(await backend.open(), team_budget("1"))
    demand = Demand(cost=Decimal("0.25"), tokens=10)
    async with budgets.reserve(SEARCH, demand):
        pass  # never sent: released
    with pytest.raises(RuntimeError):
        async with budgets.reserve(SEARCH, demand) as r:
            r.mark_sent()
            raise RuntimeError("upstream stream broke")  # sent: charged in full
    assert await settled_usd(budgets) == Decimal("0.25")
    async with budgets.reserve(SEARCH, demand) as r:
        assert r.remaining_usd == Decimal("0.50")  # 1 - 0.25 settled - 0.25 held
        await r.settle(cost=Decimal("0.1"), tokens=5)
        assert r.remaining_usd == Decimal("0.65")
        with pytest.raises(RuntimeError, match="already settled"):
            await r.settle(cost=Decimal("0.1"), tokens=5)


async def test_period_boundary_in_a_non_utc_zone(backend: Backend) -> None:
    # 22:59:59 UTC on 30 March 2024 is 23:59:59 in Berlin; a second later a new day starts.
    clock = Clock(datetime(2024, 3, 30, 22, 59, 0, tzinfo=UTC))
    policies = parse_policies([{"scope": "key", "period": "day", "limit_usd": "0.10"}])
    budgets = Budgets(await backend.open(), policies, timezone="Europe/Berlin", clock=clock)
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.10"), tokens=1)) as r:
        await r.settle(cost=Decimal("0.10"), tokens=1)
    clock.advance(59)
    with pytest.raises(BudgetExceeded) as caught:
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.01"), tokens=1)):
            pass
    berlin = ZoneInfo("Europe/Berlin")
    assert caught.value.period_resets_at == datetime(2024, 3, 31, tzinfo=berlin)
    assert "resets at 2024-03-31T00:00:00+01:00" in str(caught.value)
    clock.advance(1)  # 23:00:00 UTC = midnight in Berlin
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.10"), tokens=1)) as r:
        await r.settle(cost=Decimal("0.05"), tokens=1)
    assert await settled_usd(budgets) == Decimal("0.05")


async def test_a_window_boundary_within_a_second_starts_the_new_window(backend: Backend) -> None:
    """Plans are reused for up to a second, never across the end of one of their windows."""
    clock = Clock(datetime(2024, 3, 30, 23, 59, 59, 500_000, tzinfo=UTC))
    policies = parse_policies([{"scope": "key", "period": "day", "limit_usd": "0.10"}])
    budgets = Budgets(await backend.open(), policies, clock=clock)
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.10"), tokens=1)) as r:
        await r.settle(cost=Decimal("0.10"), tokens=1)
    clock.advance(0.4)  # 23:59:59.9, same day: full
    with pytest.raises(BudgetExceeded):
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.01"), tokens=1)):
            pass
    clock.advance(0.2)  # 00:00:00.1 the next day, 0.6 s after the plan was built: empty
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.10"), tokens=1)) as r:
        await r.settle(cost=Decimal("0.03"), tokens=1)
    assert await settled_usd(budgets) == Decimal("0.03")


async def test_changing_the_limit_mid_period_keeps_the_spend(backend: Backend) -> None:
    budgets = Budgets(await backend.open(), team_budget("1"))
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.6"), tokens=1)) as r:
        await r.settle(cost=Decimal("0.6"), tokens=1)
    await budgets.update(team_budget("0.5"))  # lowered below the spend: blocks at once
    with pytest.raises(BudgetExceeded) as caught:
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.01"), tokens=1)):
            pass
    assert (caught.value.limit, caught.value.spent) == (Decimal("0.5"), Decimal("0.6"))
    await budgets.update(team_budget("2"))  # raised: the same spend, more room
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("1.4"), tokens=1)) as r:
        assert r.remaining_usd == Decimal(0)
        await r.settle(cost=Decimal("1"), tokens=1)
    assert await settled_usd(budgets) == Decimal("1.6")


async def test_changing_the_period_mid_period_fills_the_new_window_from_the_ledger(
    backend: Backend, ledger: Ledger
) -> None:
    clock = Clock(JAN)
    budgets = Budgets(await backend.open(), team_budget("10"), clock=clock, spend_source=ledger)
    for day_offset, usd in ((-3 * 86400, "4"), (0, "1.5")):
        clock.now = JAN.timestamp() + day_offset
        async with budgets.reserve(SEARCH, Demand(cost=Decimal(usd), tokens=1)) as r:
            await r.settle(cost=Decimal(usd), tokens=1)
            ledger.record(clock.now, SEARCH, Decimal(usd), 1)
    day = parse_policies([{"scope": "team", "match": "search", "period": "day", "limit_usd": "2"}])
    await budgets.update(day)  # month -> day: today's window holds today's $1.50, not $5.50
    assert await settled_usd(budgets) == Decimal("1.5")
    with pytest.raises(BudgetExceeded):
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.6"), tokens=1)):
            pass
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.5"), tokens=1)):
        pass


async def test_soft_budget_alerts_once_per_threshold_per_period(backend: Backend) -> None:
    clock = Clock(JAN)
    events: list[AlertEvent] = []
    policies = team_budget("1", mode="soft", alert_at=[0.5, 1.0])
    one = Budgets(await backend.open(), policies, clock=clock, on_alert=events.append)
    two = Budgets(await backend.open(), policies, clock=clock, on_alert=events.append)

    async def spend(budgets: Budgets) -> None:
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.2"), tokens=1)) as r:
            await r.settle(cost=Decimal("0.2"), tokens=1)

    await asyncio.gather(*(spend(one if i % 2 else two) for i in range(10)))  # $2: soft, admitted
    assert sorted(e.threshold for e in events) == [Decimal("0.5"), Decimal("1.0")]
    assert {e.policy for e in events} == {"team:search:month"}
    assert all(e.unit == "usd" and e.limit == Decimal(1) for e in events)
    clock.now = datetime(2025, 2, 1, tzinfo=UTC).timestamp()  # next month: re-armed
    await asyncio.gather(*(spend(one) for _ in range(3)))
    assert len(events) == 3 and events[-1].threshold == Decimal("0.5")


async def test_async_alert_callback_does_not_block(backend: Backend) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow(event: AlertEvent) -> None:
        started.set()
        await release.wait()

    budgets = Budgets(await backend.open(), team_budget("1", alert_at=[0.1]), on_alert=slow)
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.2"), tokens=1)) as r:
        await r.settle(cost=Decimal("0.2"), tokens=1)
    await asyncio.wait_for(started.wait(), 1)
    release.set()
    await budgets.aclose()


async def test_tpm_is_shared_and_settlement_refunds_unused_tokens(backend: Backend) -> None:
    clock = Clock(JAN)
    limits = parse_rate_limits([{"scope": "key", "tpm": 1000}])
    one = Budgets(await backend.open(), (), limits, clock=clock)
    two = Budgets(await backend.open(), (), limits, clock=clock)
    first = await one.acquire(SEARCH, Demand(cost=Decimal(0), tokens=600))
    assert first.headers["x-ratelimit-remaining-tokens"] == "400"
    with pytest.raises(RateLimited) as caught:
        async with two.reserve(SEARCH, Demand(cost=Decimal(0), tokens=600)):
            pass
    assert caught.value.limit_kind == "tokens"
    assert caught.value.headers["retry-after-ms"] == "12000"  # 200 tokens at 1000/min
    assert caught.value.headers["retry-after"] == "12"
    await first.settle(cost=Decimal(0), tokens=100)  # 500 come back
    async with two.reserve(SEARCH, Demand(cost=Decimal(0), tokens=600)) as r:
        assert r.headers["x-ratelimit-remaining-tokens"] == "300"


async def test_rpm_refills_over_the_minute(backend: Backend) -> None:
    clock = Clock(JAN)
    limits = parse_rate_limits([{"scope": "team", "match": "search", "rpm": 2}])
    budgets = Budgets(await backend.open(), (), limits, clock=clock)
    for _ in range(2):
        async with budgets.reserve(SEARCH, Demand(cost=Decimal(0), tokens=1)) as r:
            r.mark_sent()
    with pytest.raises(RateLimited) as caught:
        async with budgets.reserve(SEARCH, Demand(cost=Decimal(0), tokens=1)):
            pass
    assert caught.value.retry_after_s == 30 and caught.value.limit_kind == "requests"
    clock.advance(30)
    async with budgets.reserve(SEARCH, Demand(cost=Decimal(0), tokens=1)) as r:
        assert r.headers["x-ratelimit-remaining-requests"] == "0"


async def test_lost_counters_are_rebuilt_from_the_ledger(
    lossy_backend: Backend, ledger: Ledger
) -> None:
    clock = Clock(JAN)
    store = await lossy_backend.open()
    budgets = Budgets(store, team_budget("1"), clock=clock, spend_source=ledger)
    for _ in range(3):
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.3"), tokens=5)) as r:
            await r.settle(cost=Decimal("0.25"), tokens=5)
            ledger.record(clock(), SEARCH, Decimal("0.25"), 5)
    await lossy_backend.lose_everything()  # FLUSHALL mid-run
    with pytest.raises(BudgetExceeded) as caught:  # 0.75 rebuilt + 0.3 > 1
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.3"), tokens=5)):
            pass
    assert caught.value.spent == Decimal("0.75")
    assert ledger.queries[-1].start == datetime(2025, 1, 1, tzinfo=ZoneInfo("UTC"))
    (counter,) = (await budgets.read(SEARCH)).values()
    assert counter == ((to_nanos(Decimal("0.75")), 15, 3), (0, 0, 0))


async def test_without_a_ledger_lost_counters_start_from_zero(lossy_backend: Backend) -> None:
    budgets = Budgets(await lossy_backend.open(), team_budget("1"))
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("1"), tokens=5)) as r:
        await r.settle(cost=Decimal("1"), tokens=5)
    await lossy_backend.lose_everything()
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("1"), tokens=5)):
        pass


async def test_explicit_rebuild_overwrites_drifted_counters(
    backend: Backend, ledger: Ledger
) -> None:
    budgets = Budgets(await backend.open(), team_budget("1"))
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("0.9"), tokens=5)) as r:
        await r.settle(cost=Decimal("0.9"), tokens=5)
    ledger.record(JAN.timestamp() - 10**9, SEARCH, Decimal("0.2"), 1)  # out of the window
    ledger.record(budgets.clock(), SEARCH, Decimal("0.4"), 1)
    assert await budgets.rebuild(ledger) == 1
    assert await settled_usd(budgets) == Decimal("0.4")


async def test_an_abandoned_reservation_expires_after_its_ttl(backend: Backend) -> None:
    clock = Clock(JAN)
    policies = team_budget("1")
    crashed = Budgets(await backend.open(), policies, clock=clock, reservation_ttl_s=10)
    alive = Budgets(await backend.open(), policies, clock=clock, reservation_ttl_s=10)
    await crashed.acquire(SEARCH, Demand(cost=Decimal("0.8"), tokens=1))  # never settled
    with pytest.raises(BudgetExceeded):
        async with alive.reserve(SEARCH, Demand(cost=Decimal("0.5"), tokens=1)):
            pass
    clock.advance(10)
    async with alive.reserve(SEARCH, Demand(cost=Decimal("0.5"), tokens=1)) as r:
        assert r.remaining_usd == Decimal("0.5")


async def test_every_applying_scope_is_checked_in_one_step(backend: Backend) -> None:
    policies = parse_policies(
        [
            {"scope": "global", "period": "lifetime", "limit_requests": 100},
            {"scope": "team", "match": "search", "period": "month", "limit_usd": 5},
            {"scope": "project", "match": "ranker", "period": "week", "limit_usd": 5},
            {"scope": "end_user", "period": "day", "limit_tokens": 1000},
            {"scope": "tag", "match": "env=prod", "period": "hour", "limit_usd": 5},
            {"scope": "model", "match": "gpt-4o*", "period": "day", "limit_usd": "0.5"},
        ]
    )
    budgets = Budgets(await backend.open(), policies)
    subject = Subject(team="search", project="ranker", end_user="u1", tags={"env": "prod"},
                      model="gpt-4o")  # fmt: skip
    async with budgets.reserve(subject, Demand(cost=Decimal("0.4"), tokens=900)) as r:
        assert r.remaining_usd == Decimal("0.1")  # the model budget is the tightest
        await r.settle(cost=Decimal("0.1"), tokens=600)
    with pytest.raises(BudgetExceeded) as caught:
        async with budgets.reserve(subject, Demand(cost=Decimal("0.1"), tokens=500)):
            pass
    assert (caught.value.scope, caught.value.unit, caught.value.limit) == (
        "end_user",
        "tokens",
        1000,
    )
    assert len(await budgets.read(subject)) == 6
    other = Subject(team="ads", model="o3")  # only the global budget applies
    async with budgets.reserve(other, Demand(cost=Decimal("100"), tokens=10**6)) as r:
        assert r.remaining_usd is None


async def test_reservation_cap_bounds_a_huge_worst_case(backend: Backend) -> None:
    budgets = Budgets(await backend.open(), team_budget("1"), reservation_cap_usd=Decimal("0.5"))
    async with budgets.reserve(SEARCH, Demand(cost=Decimal("40"), tokens=10)) as r:
        assert r.reserved[0] == to_nanos(Decimal("0.5"))
        await r.settle(cost=Decimal("0.6"), tokens=10)  # overshoot <= actual - cap


async def test_no_applying_policy_means_no_store_call() -> None:
    class Exploding:
        def __getattr__(self, name: str) -> object:
            raise AssertionError(f"store.{name} called")

    budgets = Budgets(Exploding(), team_budget("1"))  # type: ignore[arg-type]
    async with budgets.reserve(Subject(team="ads"), Demand(cost=Decimal(1), tokens=1)) as r:
        await r.settle(cost=Decimal(1), tokens=1)
    assert r.remaining_usd is None


async def test_sub_nano_costs_round_up_never_down(backend: Backend) -> None:
    budgets = Budgets(await backend.open(), team_budget("1"))
    for _ in range(3):
        async with budgets.reserve(SEARCH, Demand(cost=Decimal("1E-10"), tokens=1)) as r:
            await r.settle(cost=Decimal("1.5E-9"), tokens=1)
    ((settled, _),) = (await budgets.read(SEARCH)).values()
    assert settled == (6, 3, 3)  # 2 nano each: 1.5 rounded up
