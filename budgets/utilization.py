"""How much of each budget is used now: a snapshot for a metrics gauge, kept off the request path.

A metrics callback runs synchronously (on a Prometheus scrape, or in the OTLP exporter's
thread), so it must not touch the store. ``BudgetUtilization`` keeps a snapshot instead: a
background task re-reads every reported counter with one store call every ``interval_s``
(which also picks up other replicas' spend and a new window), and ``Budgets`` hands it each
settle's totals (``on_settled``: a dict lookup per counter), so this process's own spend shows
at once. ``points()`` only reads the snapshot.

Which counters are reported, so that label cardinality stays bounded by configuration: a
``global`` budget; a budget whose ``match`` is a literal value (``team: search``); and for a
glob or absent ``match``, each *known* value it accepts. The caller says what is known (the
teams, projects, key ids and key tags of configured keys); end users and free-form tags are
never enumerated. At most ``max_series`` series are kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from budgets.errors import StoreUnavailable
from budgets.money import from_nanos, to_nanos
from budgets.period import window
from budgets.policy import Policy, Scope, value_matches
from budgets.store import Amounts, BucketSpec, bucket_key

if TYPE_CHECKING:
    from budgets.engine import Budgets

__all__ = ["BudgetUtilization", "Utilization"]

log = logging.getLogger("spendgate.budgets")

UNITS = ("usd", "tokens", "requests")
_GLOB = frozenset("*?[")

KnownValues = Callable[[], Mapping[Scope, Collection[str]]]


@dataclass(frozen=True, slots=True)
class Utilization:
    """One budget limit for one counter value: what is settled in the current window."""

    policy: str
    scope: str
    value: str
    period: str
    mode: str
    unit: str
    limit: Decimal | int
    spent: Decimal | int
    fraction: float
    """``spent / limit`` (may exceed 1); a limit of 0 counts as used up (1.0)."""


@dataclass(frozen=True, slots=True)
class _Series:
    policy: Policy
    value: str
    key: str
    unit: int
    limit: int  # counter units: nano-USD, tokens or requests


def _candidates(policy: Policy, known: Mapping[Scope, Collection[str]]) -> Iterable[str]:
    if policy.scope is Scope.GLOBAL:
        return ("",)
    if policy.match is not None and not _GLOB & set(policy.match):
        return (policy.match,)
    return sorted(
        v for v in known.get(policy.scope, ()) if value_matches(policy.scope, policy.match, v)
    )


class BudgetUtilization:
    """The snapshot behind ``spendgate.budget.utilization``; see the module docstring."""

    def __init__(
        self,
        budgets: Budgets,
        known: KnownValues | None = None,
        *,
        max_series: int = 1000,
    ) -> None:
        self._budgets = budgets
        self._known = known
        self._max_series = max_series
        # One tuple, swapped whole, so a reader in another thread sees a consistent pair.
        self._state: tuple[tuple[_Series, ...], dict[str, Amounts]] = ((), {})
        self._pending: tuple[frozenset[str], dict[str, Amounts]] | None = None
        self._truncated_logged = False
        self._task: asyncio.Task[None] | None = None

    # -- refreshing (on the event loop) ------------------------------------------------

    def _series(self, now: float) -> list[_Series]:
        budgets = self._budgets
        known = self._known() if self._known is not None else {}
        out: list[_Series] = []
        for policy in budgets.policies:
            label = window(policy.period, now, budgets.tz).label
            for value in _candidates(policy, known):
                key = bucket_key(policy.period, label, policy.scope, value)
                for unit, limit in policy.limits():
                    units = limit if isinstance(limit, int) else to_nanos(limit)
                    out.append(_Series(policy, value, key, unit, units))
        if len(out) > self._max_series:
            if not self._truncated_logged:
                log.warning(
                    "budget utilization: %d series, reporting the first %d",
                    len(out),
                    self._max_series,
                )
                self._truncated_logged = True
            del out[self._max_series :]
        return out

    async def refresh(self) -> None:
        """Re-read every reported counter with one store call (raises ``StoreUnavailable``)."""
        now = self._budgets.clock()
        series = self._series(now)
        keys = list(dict.fromkeys(s.key for s in series))
        pending: dict[str, Amounts] = {}
        self._pending = (frozenset(keys), pending)
        try:
            rows = await self._budgets.store.read(keys, int(now * 1000)) if keys else []
        finally:
            self._pending = None
        settled = {key: s for key, (s, _held) in zip(keys, rows, strict=True)}
        # A settle that landed while the read was in flight may be newer than what it read;
        # counters only grow within a window, so the larger figure is the newer one.
        for key, amounts in pending.items():
            old = settled[key]
            settled[key] = (
                max(old[0], amounts[0]),
                max(old[1], amounts[1]),
                max(old[2], amounts[2]),
            )
        self._state = (tuple(series), settled)

    def settled(self, buckets: Sequence[BucketSpec], totals: Sequence[Amounts]) -> None:
        """``Budgets.on_settled``: take a settle's totals for the counters reported here."""
        current = self._state[1]
        pending = self._pending
        for bucket, amounts in zip(buckets, totals, strict=False):
            if bucket.key in current:
                current[bucket.key] = amounts
            if pending is not None and bucket.key in pending[0]:
                pending[1][bucket.key] = amounts

    async def _run(self, interval_s: float) -> None:
        while True:
            try:
                await self.refresh()
            except StoreUnavailable as exc:
                log.debug("budget utilization not refreshed: %s", exc)
            except Exception:
                log.exception("budget utilization refresh failed")
            await asyncio.sleep(interval_s)

    def start(self, interval_s: float) -> None:
        """Refresh now and then every ``interval_s`` seconds, until ``aclose``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(interval_s), name="budget-utilization")

    async def aclose(self) -> None:
        """Stop the refresh task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- reading (any thread) ----------------------------------------------------------

    def points(self) -> list[Utilization]:
        """The snapshot; no I/O. Two policies on one counter, unit and mode keep the tighter."""
        series, settled = self._state
        out: dict[tuple[str, str, str, str], Utilization] = {}
        for s in series:
            spent_units = settled.get(s.key, (0, 0, 0))[s.unit]
            fraction = spent_units / s.limit if s.limit else 1.0
            unit = UNITS[s.unit]
            point = Utilization(
                policy=s.policy.name,
                scope=str(s.policy.scope),
                value=s.value,
                period=str(s.policy.period),
                mode=str(s.policy.mode),
                unit=unit,
                limit=from_nanos(s.limit) if s.unit == 0 else s.limit,
                spent=from_nanos(spent_units) if s.unit == 0 else spent_units,
                fraction=fraction,
            )
            ident = (point.policy, point.value, point.unit, point.mode)
            if ident not in out or out[ident].fraction < fraction:
                out[ident] = point
        return list(out.values())
