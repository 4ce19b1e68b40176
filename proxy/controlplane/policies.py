"""Budgets and rate limits set at run time, and each team's current spend against them.

A policy row targets one scope value: the global scope, a team, a project of a team, or a
key. Setting a policy for a target and period that already has one replaces it, so ``budgets
set`` is idempotent. The proxy turns the rows into ``budgets.Policy`` objects with the same
parser as the YAML ones, so both behave identically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from budgets import (
    Period,
    Policy,
    RateLimitPolicy,
    Scope,
    SpendQuery,
    SpendSource,
    parse_policies,
    parse_rate_limits,
)
from budgets.period import window
from proxy.controlplane import keys as keymod
from proxy.controlplane.errors import Forbidden, Invalid, Missing
from proxy.controlplane.models import BudgetRow, KeyRow, ProjectRow, RateLimitRow
from proxy.controlplane.schemas import (
    Budget,
    BudgetSet,
    RateLimit,
    RateLimitSet,
    SpendLine,
    TeamSpend,
)
from proxy.controlplane.store import Principal, Store, now

__all__ = ["PolicyStore", "to_policies"]


def _budget(row: BudgetRow) -> Budget:
    return Budget(
        id=row.id,
        scope=row.scope,  # type: ignore[arg-type]
        match=row.match or None,
        team=row.team,
        period=row.period,  # type: ignore[arg-type]
        limit_usd=row.limit_usd,
        limit_tokens=row.limit_tokens,
        limit_requests=row.limit_requests,
        mode=row.mode,  # type: ignore[arg-type]
        alert_at=[Decimal(a) for a in row.alert_at or []],
        source="api",
    )


def _config_budget(i: int, p: Policy) -> Budget:
    return Budget(
        id=f"cfg-budget-{i}",
        scope=p.scope.value,
        match=p.match,
        team=p.match if p.scope is Scope.TEAM else None,
        period=p.period.value,
        limit_usd=p.limit_usd,
        limit_tokens=p.limit_tokens,
        limit_requests=p.limit_requests,
        mode=p.mode.value,
        alert_at=list(p.alert_at),
        source="config",
    )


def _rate_limit(row: RateLimitRow) -> RateLimit:
    return RateLimit(
        id=row.id,
        scope=row.scope,  # type: ignore[arg-type]
        match=row.match or None,
        team=row.team,
        rpm=row.rpm,
        tpm=row.tpm,
        source="api",
    )


def to_policies(
    budgets: Sequence[BudgetRow], rate_limits: Sequence[RateLimitRow]
) -> tuple[tuple[Policy, ...], tuple[RateLimitPolicy, ...]]:
    """Rows as runtime policies, through the YAML parser (one set of rules for both)."""
    raw_budgets: list[dict[str, Any]] = []
    for b in budgets:
        item: dict[str, Any] = {"scope": b.scope, "period": b.period, "mode": b.mode}
        if b.match:
            item["match"] = b.match
        for name in ("limit_usd", "limit_tokens", "limit_requests"):
            if getattr(b, name) is not None:
                item[name] = getattr(b, name)
        if b.alert_at:
            item["alert_at"] = list(b.alert_at)
        raw_budgets.append(item)
    raw_limits: list[dict[str, Any]] = []
    for r in rate_limits:
        limit: dict[str, Any] = {"scope": r.scope}
        if r.match:
            limit["match"] = r.match
        limit.update({k: v for k, v in (("rpm", r.rpm), ("tpm", r.tpm)) if v is not None})
        raw_limits.append(limit)
    return parse_policies(raw_budgets), parse_rate_limits(raw_limits)


class PolicyStore:
    """Run-time budgets and rate limits, beside the YAML ones (listed read-only)."""

    def __init__(
        self,
        store: Store,
        *,
        config_budgets: Sequence[Policy] = (),
        config_rate_limits: Sequence[RateLimitPolicy] = (),
        timezone: str = "UTC",
        spend_source: SpendSource | None = None,
    ) -> None:
        self.store = store
        self.config_budgets = tuple(config_budgets)
        self.config_rate_limits = tuple(config_rate_limits)
        self.tz = ZoneInfo(timezone)
        self.spend_source = spend_source

    async def _target(
        self, s: AsyncSession, who: Principal, data: BudgetSet | RateLimitSet
    ) -> tuple[str | None, str]:
        """``(owning team, match)`` of the policy's target, checked to exist and be visible."""
        if data.scope == "global":
            if who.team is not None:
                raise Forbidden("only the global admin key can set global policies")
            return None, ""
        if data.scope == "key":
            if data.key_id is None:
                raise Invalid("key_id: required for scope key", field="key_id")
            row = await s.get(KeyRow, data.key_id)
            if row is None or not who.sees(row.team):
                raise Missing(f"no key with id {data.key_id!r}", field="key_id")
            return row.team, row.id
        if data.team is None:
            raise Invalid(f"team: required for scope {data.scope}", field="team")
        await self.store._team_row(s, who, data.team)
        if data.scope == "team":
            return data.team, data.team
        if data.project is None:
            raise Invalid("project: required for scope project", field="project")
        if await s.get(ProjectRow, (data.team, data.project)) is None:
            raise Missing(f"no project {data.project!r} in team {data.team!r}", field="project")
        return data.team, data.project

    # -- budgets -------------------------------------------------------------------------

    async def set_budget(self, who: Principal, data: BudgetSet) -> tuple[Budget, bool]:
        """Create or replace; returns the budget and whether it was created."""
        if (data.limit_usd, data.limit_tokens, data.limit_requests) == (None, None, None):
            raise Invalid(
                "limit_usd: one of limit_usd, limit_tokens, limit_requests is required",
                field="limit_usd",
            )
        at = now()
        async with self.store.session() as s:
            team, match = await self._target(s, who, data)
            existing = (
                await s.exec(
                    select(BudgetRow).where(
                        BudgetRow.scope == data.scope,
                        BudgetRow.match == match,
                        BudgetRow.period == data.period,
                    )
                )
            ).first()
            before = _budget(existing) if existing is not None else None
            row = existing or BudgetRow(
                id=keymod.new_id("bud"),
                scope=data.scope,
                match=match,
                period=data.period,
                created_at=at,
            )
            row.team, row.scope, row.match, row.period = team, data.scope, match, data.period
            row.limit_usd = data.limit_usd
            row.limit_tokens, row.limit_requests = data.limit_tokens, data.limit_requests
            row.mode = data.mode
            row.alert_at = [format(a, "f") for a in sorted(set(data.alert_at))]
            row.updated_at = at
            s.add(row)
            after = _budget(row)
            self.store._audit(s, who, "budget.set", team, row.id, before=before, after=after)
            await self.store._commit(s, "the budget")
            return after, existing is None

    async def list_budgets(self, who: Principal, team: str | None = None) -> list[Budget]:
        if team is not None and not who.sees(team):
            raise Missing(f"no team named {team!r}", field="team")
        team = team or who.team
        async with self.store.session() as s:
            stmt = select(BudgetRow).order_by(BudgetRow.scope, BudgetRow.match, BudgetRow.period)
            if team is not None:
                stmt = stmt.where(BudgetRow.team == team)
            out = [_budget(r) for r in (await s.exec(stmt)).all()]
        for i, p in enumerate(self.config_budgets):
            record = _config_budget(i, p)
            if team is None or record.team == team:
                out.append(record)
        return out

    async def delete_budget(self, who: Principal, budget_id: str) -> None:
        if budget_id.startswith("cfg-"):
            raise Forbidden(f"budget {budget_id!r} is declared in the config file (read-only)")
        async with self.store.session() as s:
            row = await s.get(BudgetRow, budget_id)
            if row is None or not (who.team is None or row.team == who.team):
                raise Missing(f"no budget with id {budget_id!r}", field="budget_id")
            await s.delete(row)
            self.store._audit(s, who, "budget.delete", row.team, row.id, before=_budget(row))
            await self.store._commit(s, "deleting the budget")

    # -- rate limits ---------------------------------------------------------------------

    async def set_rate_limit(self, who: Principal, data: RateLimitSet) -> tuple[RateLimit, bool]:
        if data.rpm is None and data.tpm is None:
            raise Invalid("rpm: one of rpm, tpm is required", field="rpm")
        at = now()
        async with self.store.session() as s:
            team, match = await self._target(s, who, data)
            existing = (
                await s.exec(
                    select(RateLimitRow).where(
                        RateLimitRow.scope == data.scope, RateLimitRow.match == match
                    )
                )
            ).first()
            before = _rate_limit(existing) if existing is not None else None
            row = existing or RateLimitRow(
                id=keymod.new_id("rl"), scope=data.scope, match=match, created_at=at
            )
            row.team, row.scope, row.match = team, data.scope, match
            row.rpm, row.tpm, row.updated_at = data.rpm, data.tpm, at
            s.add(row)
            after = _rate_limit(row)
            self.store._audit(s, who, "rate_limit.set", team, row.id, before=before, after=after)
            await self.store._commit(s, "the rate limit")
            return after, existing is None

    async def list_rate_limits(self, who: Principal) -> list[RateLimit]:
        async with self.store.session() as s:
            stmt = select(RateLimitRow).order_by(RateLimitRow.scope, RateLimitRow.match)
            if who.team is not None:
                stmt = stmt.where(RateLimitRow.team == who.team)
            out = [_rate_limit(r) for r in (await s.exec(stmt)).all()]
        for i, r in enumerate(self.config_rate_limits):
            team = r.match if r.scope is Scope.TEAM else None
            if who.sees(team):
                out.append(
                    RateLimit(
                        id=f"cfg-rate-limit-{i}",
                        scope=r.scope.value,
                        match=r.match,
                        team=team,
                        rpm=r.rpm,
                        tpm=r.tpm,
                        source="config",
                    )
                )
        return out

    async def delete_rate_limit(self, who: Principal, limit_id: str) -> None:
        if limit_id.startswith("cfg-"):
            raise Forbidden(f"rate limit {limit_id!r} is declared in the config file (read-only)")
        async with self.store.session() as s:
            row = await s.get(RateLimitRow, limit_id)
            if row is None or not (who.team is None or row.team == who.team):
                raise Missing(f"no rate limit with id {limit_id!r}", field="rate_limit_id")
            await s.delete(row)
            before = _rate_limit(row)
            self.store._audit(s, who, "rate_limit.delete", row.team, row.id, before=before)
            await self.store._commit(s, "deleting the rate limit")

    async def runtime_policies(self) -> tuple[tuple[Policy, ...], tuple[RateLimitPolicy, ...]]:
        """The YAML policies followed by the database's, for ``Budgets.update``."""
        async with self.store.session() as s:
            budgets = (await s.exec(select(BudgetRow).order_by(BudgetRow.id))).all()
            limits = (await s.exec(select(RateLimitRow).order_by(RateLimitRow.id))).all()
        policies, rate_limits = to_policies(budgets, limits)
        return self.config_budgets + policies, self.config_rate_limits + rate_limits

    # -- spend ---------------------------------------------------------------------------

    async def team_spend(self, who: Principal, team: str) -> TeamSpend:
        """The ledger's spend in each budget's current window, and what is left of it.

        From the ledger, the truth, so it is the same whichever replica answers; calls in
        flight are not in it yet (the live counters hold them as reservations).
        """
        await self.store.get_team(who, team)
        if self.spend_source is None:
            raise Invalid("spend is not available without a ledger", field="team")
        at = now().timestamp()
        budgets = [b for b in await self.list_budgets(who, team) if b.scope != "global"]
        cache: dict[tuple[str, str], Mapping[str, Any]] = {}

        async def spend(scope: str, period: str) -> tuple[Any, Mapping[str, Any]]:
            win = window(Period(period), at, self.tz)
            if (scope, period) not in cache:
                cache[scope, period] = await self.spend_source(  # type: ignore[misc]
                    SpendQuery(scope=Scope(scope), start=win.start)
                )
            return win, cache[scope, period]

        lines = []
        for b in budgets:
            win, values = await spend(b.scope, b.period)
            got = values.get(b.match or team)
            used = got.usd if got is not None else Decimal(0)
            lines.append(
                SpendLine(
                    budget_id=b.id,
                    scope=b.scope,
                    match=b.match,
                    period=b.period,
                    window_start=win.start,
                    spent_usd=used,
                    spent_tokens=got.tokens if got is not None else 0,
                    requests=got.requests if got is not None else 0,
                    limit_usd=b.limit_usd,
                    remaining_usd=max(b.limit_usd - used, Decimal(0))
                    if b.limit_usd is not None
                    else None,
                    limit_tokens=b.limit_tokens,
                    limit_requests=b.limit_requests,
                )
            )
        _, month = await spend("team", "month")
        got = month.get(team)
        return TeamSpend(
            team=team,
            month_to_date_usd=got.usd if got is not None else Decimal(0),
            budgets=lines,
        )
