"""``Budgets``: turns a request into counter keys and limits, and applies them atomically.

On every request the proxy calls ``budgets.reserve(subject, demand)``. Here the subject is
matched against every policy and rate limit; each applying policy names a counter (scope,
value, period window) and many policies may share one (a hard USD and a soft token budget on
the same team and month count into one bucket). One store call then checks and holds them all.

**The bound.** A reservation is admitted only if, for every hard limit, settled + held + this
demand <= limit, and settling replaces the hold by the actual amount. So with worst-case
demands the settled total never exceeds the limit, across any number of processes sharing the
store. It can exceed it only by (a) what calls under-reserved (actual > demand: an estimate
was wrong, or ``reservation_cap_usd`` clipped the demand), (b) holds that expired
(``reservation_ttl_s``, default 900 s) while their call was still running or after its process
crashed mid-call, and (c) fail_open admissions while the store was unreachable (local counts
only). Holds expire rather than charge, because after a crash the ledger, not a guess, is the
truth: ``rebuild`` restores what was really spent.

**Changing policies mid-period** (``update``): a counter is keyed by scope, value, period and
window, never by the limit, so a new limit applies at once to what was already spent (raising
it re-admits, lowering it below the spend blocks the next request) and re-arms its alert
thresholds. A new period (month -> week) names new counters: with a ``spend_source`` they are
filled from the ledger for the current window (only those not already counted); without one
they start at zero, i.e. spend earlier in that window is not seen.

**Store unreachable.** ``fail_mode="closed"`` (or a policy's own ``fail_mode``) raises
``StoreUnavailable``. ``"open"`` admits against a local store seeded with the last counts this
process saw, journals what it settles, and replays the journal (``charge_v1``) when the store
answers again; the store is retried at most every ``store_retry_s`` while down.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal
from zoneinfo import ZoneInfo

from budgets.alerts import AlertEvent
from budgets.errors import BudgetExceeded, RateLimited, StoreUnavailable
from budgets.failover import Failover
from budgets.money import from_nanos, to_nanos
from budgets.period import Window, window
from budgets.policy import FailMode, Mode, Policy, RateLimitPolicy
from budgets.ratelimit import headers
from budgets.rebuild import SpendSource, restore_plan
from budgets.reservation import Reservation
from budgets.store import (
    NO_LIMIT,
    AlertMark,
    Amounts,
    BucketSpec,
    BudgetStore,
    RateSpec,
    ReserveOp,
    ReserveResult,
    SettleOp,
    bucket_key,
    rate_key,
)
from budgets.subject import Demand, Subject

__all__ = ["Budgets"]

log = logging.getLogger("spendgate.budgets")
UNITS = ("usd", "tokens", "requests")


@dataclass(slots=True)
class _Plan:
    """What one request touches, fixed at admission (a settle after a boundary lands here too)."""

    buckets: list[BucketSpec] = field(default_factory=list)
    rates: list[RateSpec] = field(default_factory=list)
    binding: dict[tuple[int, int], tuple[Policy, str, Window]] = field(default_factory=dict)
    marks: dict[str, tuple[Policy, str, Window, Decimal, int]] = field(default_factory=dict)
    usd_limits: list[tuple[int, int]] = field(default_factory=list)  # (bucket, limit nanos)
    fail_closed: bool = False
    first_end: float = math.inf  # when the earliest of its windows ends (epoch seconds)


def _limit_units(unit: int, limit: Decimal | int) -> int:
    return to_nanos(limit) if isinstance(limit, Decimal) else limit


class Budgets:
    """Budget and rate-limit enforcement over one store; see the module docstring."""

    def __init__(
        self,
        store: BudgetStore,
        policies: Iterable[Policy] = (),
        rate_limits: Iterable[RateLimitPolicy] = (),
        *,
        timezone: str = "UTC",
        clock: Callable[[], float] = time.time,
        on_alert: Callable[[AlertEvent], object] | None = None,
        fail_mode: Literal["open", "closed"] = "open",
        spend_source: SpendSource | None = None,
        reservation_ttl_s: float = 900.0,
        reservation_cap_usd: Decimal | None = None,
        store_retry_s: float = 1.0,
    ) -> None:
        self.store = store
        self.policies = tuple(policies)
        self.rate_limits = tuple(rate_limits)
        self.tz = ZoneInfo(timezone)
        self.clock = clock
        self.on_alert = on_alert
        self.fail_mode = FailMode(fail_mode)
        self.spend_source = spend_source
        self.reservation_ttl_s = reservation_ttl_s
        self.reservation_cap_usd = reservation_cap_usd
        self.store_retry_s = store_retry_s
        # Keys outlive their window by the TTL so late settlements land in their own window.
        self._grace_s = reservation_ttl_s + 60.0
        self._failover = Failover(store_retry_s)
        self._seed_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[object]] = set()
        # (subject, policies) -> (built at, valid until, plan); see _plan
        self._plans: dict[tuple[object, ...], tuple[float, float, _Plan]] = {}
        self.on_settled: Callable[[Sequence[BucketSpec], Sequence[Amounts]], None] | None = None
        """Called with each settle's counters and their totals (``BudgetUtilization.settled``)."""

    # -- public API --------------------------------------------------------------------

    def reserve(self, subject: Subject, demand: Demand) -> Reservation:
        """An ``async with`` handle that reserves ``demand`` on entry (see ``Reservation``)."""
        return Reservation(self, subject, demand)

    async def acquire(self, subject: Subject, demand: Demand) -> Reservation:
        """Reserve now and return the handle; the caller must ``await r.aclose()`` or settle."""
        return await self.reserve(subject, demand).__aenter__()

    async def update(
        self,
        policies: Iterable[Policy] | None = None,
        rate_limits: Iterable[RateLimitPolicy] | None = None,
    ) -> None:
        """Replace policies and/or rate limits at run time (see "Changing policies")."""
        if rate_limits is not None:
            self.rate_limits = tuple(rate_limits)
        if policies is None:
            return
        new = tuple(policies)
        old_periods = {(p.scope, p.period, p.match) for p in self.policies}
        self.policies = new
        added = [p for p in new if (p.scope, p.period, p.match) not in old_periods]
        if added and self.spend_source is not None:
            await self._restore(added, self.spend_source, "if_missing")

    async def rebuild(self, spend_source: SpendSource | None = None) -> int:
        """Set the current periods' counters from the ledger; returns how many were written."""
        source = spend_source or self.spend_source
        if source is None:
            raise ValueError("rebuild needs a spend_source")
        return await self._restore(self.policies, source, "overwrite")

    async def reconcile(self) -> bool:
        """Replay spend counted locally while the store was down; True if nothing is pending."""
        if not self._failover.pending:
            return True
        try:
            await self._failover.replay(self.store, self._now_ms())
        except StoreUnavailable:
            return False
        return True

    async def read(self, subject: Subject) -> dict[str, tuple[Amounts, Amounts]]:
        """``(settled, held)`` of every budget counter applying to ``subject`` now."""
        plan = self._plan(subject, self.clock())
        keys = [b.key for b in plan.buckets]
        return dict(zip(keys, await self.store.read(keys, self._now_ms()), strict=True))

    async def aclose(self) -> None:
        """Wait for pending alert callbacks (the store is closed by its owner)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- planning ----------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _plan(self, subject: Subject, now: float) -> _Plan:
        """The plan for ``subject`` at ``now``, reused for up to a second within its windows.

        Planning (time-zone windows, keys, limits) was most of the in-process cost of a
        budgeted call; a plan is never mutated after it is built, so calls share it. The TTLs
        it carries may be up to a second long, against a grace of minutes.
        """
        key = (
            id(self.policies),
            id(self.rate_limits),
            subject.team,
            subject.project,
            subject.key_id,
            subject.end_user,
            subject.model,
            tuple(sorted(subject.tags.items())) if subject.tags else (),
        )
        cached = self._plans.get(key)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2]
        plan = self._build_plan(subject, now)
        if len(self._plans) >= 4096:
            self._plans.clear()  # subjects include end users: keep the cache bounded
        self._plans[key] = (now, min(now + 1.0, plan.first_end), plan)
        return plan

    def _build_plan(self, subject: Subject, now: float) -> _Plan:
        plan = _Plan()
        index: dict[str, int] = {}
        for policy in self.policies:
            value = policy.value_for(subject)
            if value is None:
                continue
            win = window(policy.period, now, self.tz)
            if win.end is not None:
                plan.first_end = min(plan.first_end, win.end.timestamp())
            key = bucket_key(policy.period, win.label, policy.scope, value)
            if key not in index:
                index[key] = len(plan.buckets)
                plan.buckets.append(BucketSpec(key, win.ttl_ms(now, self._grace_s)))
            i = index[key]
            spec = plan.buckets[i]
            limits = list(spec.limits)
            alerts = list(spec.alerts)
            for unit, limit in policy.limits():
                units = _limit_units(unit, limit)
                if unit == 0:
                    plan.usd_limits.append((i, units))
                if policy.mode is Mode.HARD and (limits[unit] == NO_LIMIT or units < limits[unit]):
                    limits[unit] = units
                    plan.binding[(i, unit)] = (policy, value, win)
                for fraction in policy.alert_at:
                    mark = f"a:{unit}:{units}:{fraction}"
                    alerts.append(AlertMark(mark, unit, math.ceil(units * fraction)))
                    plan.marks[mark] = (policy, value, win, fraction, units)
            plan.buckets[i] = BucketSpec(
                key, spec.ttl_ms, (limits[0], limits[1], limits[2]), tuple(alerts)
            )
            mode = policy.fail_mode or self.fail_mode
            plan.fail_closed |= mode is FailMode.CLOSED
        rates: dict[str, RateSpec] = {}
        for rule in self.rate_limits:
            value = rule.value_for(subject)
            if value is None:
                continue
            for kind, rate_unit, per_minute in (("rpm", 2, rule.rpm), ("tpm", 1, rule.tpm)):
                if per_minute is not None:
                    key = rate_key(rule.scope, value, kind)
                    if key not in rates or per_minute < rates[key].limit:
                        rates[key] = RateSpec(key, rate_unit, per_minute)
            plan.fail_closed |= self.fail_mode is FailMode.CLOSED
        plan.rates = list(rates.values())
        return plan

    # -- admission ---------------------------------------------------------------------

    async def _admit(self, r: Reservation) -> None:
        now = self.clock()
        plan = self._plan(r.subject, now)
        if not plan.buckets and not plan.rates:
            return
        cost = r.demand.cost
        if self.reservation_cap_usd is not None:
            cost = min(cost, self.reservation_cap_usd)
        now_ms = int(now * 1000)
        op = ReserveOp(
            rid=uuid.uuid4().hex,
            now_ms=now_ms,
            expires_at_ms=now_ms + int(self.reservation_ttl_s * 1000),
            demand=(to_nanos(cost), r.demand.tokens, 1),
            buckets=tuple(plan.buckets),
            rates=tuple(plan.rates),
        )
        result, r.local = await self._reserve(op, plan, now)
        if result.status == "budget":
            raise self._exceeded(plan, result)
        if result.status == "rate":
            rate = plan.rates[result.index]
            retry_ms = result.retry_after_ms
            raise RateLimited(
                retry_after_s=retry_ms / 1000,
                limit_kind="tokens" if rate.unit == 1 else "requests",
                scope=rate.key.split(":")[1],
                value=rate.key.split(":", 3)[3],
                headers=headers([rate], [(0, retry_ms)], retry_after_ms=retry_ms),
            )
        r.rid, r._plan, r._reserved = op.rid, plan, op.demand
        r.headers = headers(plan.rates, result.rates)
        r.remaining_usd = self._remaining(plan, result.used)
        if not r.local:
            self._failover.seen(plan.buckets, result.used)

    async def _reserve(self, op: ReserveOp, plan: _Plan, now: float) -> tuple[ReserveResult, bool]:
        """Reserve in the store, or (fail_open) locally; the flag says which."""
        if self._failover.store_may_answer(now):
            try:
                if self._failover.pending:
                    await self._failover.replay(self.store, op.now_ms)
                result = await self.store.reserve(op)
                if result.status == "unseeded":
                    await self._seed(now)
                    result = await self.store.reserve(op)
                return result, False
            except StoreUnavailable:
                self._failover.store_failed(now)
        if plan.fail_closed:
            raise StoreUnavailable("budget store unreachable and the budget fails closed")
        return await self._failover.reserve(op), True

    async def _seed(self, now: float) -> None:
        async with self._seed_lock:
            if self.spend_source is None:
                log.warning("budget counters are empty and no spend source is set: from zero")
                await self.store.restore([], "if_unseeded", int(now * 1000))
                return
            try:
                charges = await restore_plan(
                    self.policies, self.spend_source, now=now, tz=self.tz, grace_s=self._grace_s
                )
            except Exception as exc:
                raise StoreUnavailable(f"cannot rebuild budget counters: {exc}") from exc
            if await self.store.restore(charges, "if_unseeded", int(now * 1000)):
                log.warning("budget counters rebuilt from the ledger: %d counters", len(charges))

    async def _restore(
        self,
        policies: Sequence[Policy],
        source: SpendSource,
        mode: Literal["if_missing", "overwrite"],
    ) -> int:
        now = self.clock()
        charges = await restore_plan(policies, source, now=now, tz=self.tz, grace_s=self._grace_s)
        await self.store.restore(charges, mode, int(now * 1000))
        return len(charges)

    def _exceeded(self, plan: _Plan, result: ReserveResult) -> BudgetExceeded:
        policy, value, win = plan.binding[(result.index, result.unit)]
        unit = UNITS[result.unit]
        limit: Decimal | int
        spent: Decimal | int
        if result.unit == 0:
            assert policy.limit_usd is not None
            limit, spent = policy.limit_usd, from_nanos(result.spent)
        else:
            given = policy.limit_tokens if result.unit == 1 else policy.limit_requests
            assert given is not None
            limit, spent = given, result.spent
        return BudgetExceeded(
            scope=str(policy.scope),
            match=policy.match,
            value=value,
            limit=limit,
            spent=spent,
            unit=unit,
            period=str(policy.period),
            period_resets_at=win.end,
        )

    @staticmethod
    def _remaining(plan: _Plan, used: Sequence[Amounts]) -> Decimal | None:
        if not plan.usd_limits:
            return None
        return from_nanos(min(max(0, limit - used[i][0]) for i, limit in plan.usd_limits))

    # -- settlement --------------------------------------------------------------------

    async def _settle(self, r: Reservation, actual: Amounts) -> None:
        plan = r._plan
        assert plan is not None
        now = self.clock()
        op = SettleOp(
            r.rid, int(now * 1000), r.reserved, actual, tuple(plan.buckets), tuple(plan.rates)
        )
        if r.local:
            result = await self._failover.settle(op)
        else:
            try:
                result = await self.store.settle(op)
            except StoreUnavailable:
                self._failover.store_failed(now)
                self._failover.defer(op)
                return
            self._failover.seen(plan.buckets, result.settled)
        if self.on_settled is not None:
            self.on_settled(plan.buckets, result.settled)
        if plan.usd_limits:
            r.remaining_usd = self._remaining(plan, result.settled)
        for mark in result.fired:
            self._fire(plan, mark, result.settled, now)

    def _fire(self, plan: _Plan, mark: str, settled: Sequence[Amounts], now: float) -> None:
        policy, value, win, fraction, units = plan.marks[mark]
        unit = int(mark.split(":")[1])
        spent_units = next(
            s[unit]
            for b, s in zip(plan.buckets, settled, strict=True)
            if any(a.field == mark for a in b.alerts)
        )
        limit: Decimal | int = from_nanos(units) if unit == 0 else units
        spent: Decimal | int = from_nanos(spent_units) if unit == 0 else spent_units
        event = AlertEvent(
            policy=policy.name,
            scope=str(policy.scope),
            value=value,
            period=str(policy.period),
            period_start=win.start,
            period_end=win.end,
            mode=str(policy.mode),
            unit=UNITS[unit],
            threshold=fraction,
            limit=limit,
            spent=spent,
            at=datetime.fromtimestamp(now, UTC),
        )
        log.warning(
            "budget alert: %s %s reached %s of %s (%s spent)",
            policy.name,
            value,
            fraction,
            limit,
            spent,
            extra={"budget_alert": event.to_json()},
        )
        if self.on_alert is None:
            return
        try:
            outcome = self.on_alert(event)
        except Exception:
            log.exception("budget on_alert callback failed")
            return
        if inspect.isawaitable(outcome):
            task: asyncio.Task[object] = asyncio.ensure_future(outcome)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
