"""Rebuilding counters from the ledger, which is the truth.

Redis may lose its data (restart without persistence, failover to an empty replica, eviction,
``FLUSHALL``). The store then reports itself *unseeded* (its marker key is gone) and the next
reservation rebuilds the counters of the current periods from the ledger before it is admitted.
The proxy supplies the ledger side as a ``SpendSource``: one async call per (scope, period)
returning the spend per counter value since the window started.

Spend is attributed to the window a call was *admitted* in (the ledger's ``started_at``), which
is also where a settlement lands. Calls settled between the ledger query and the restore are
counted twice until the period ends (conservative); calls in flight keep their holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol
from zoneinfo import ZoneInfo

from budgets.money import to_nanos
from budgets.period import Period, window
from budgets.policy import Policy, Scope, value_matches
from budgets.store import Charge, bucket_key

__all__ = ["Spend", "SpendQuery", "SpendSource", "restore_plan"]


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """Spend of calls that started in ``[start, end)``, grouped by the value of ``scope``.

    ``start`` is ``None`` for lifetime budgets (all history) and ``end`` is ``None`` for "now".
    For ``scope`` tag, ``tag_key`` names the tag and values are ``"key=value"``; for global the
    only value is ``""``. Team/project/key/end_user/model values are the ledger's columns.
    """

    scope: Scope
    start: datetime | None
    end: datetime | None = None
    tag_key: str | None = None


@dataclass(frozen=True, slots=True)
class Spend:
    """What the ledger holds for one counter value: USD (after team adjustment), tokens, calls."""

    usd: Decimal
    tokens: int
    requests: int


class SpendSource(Protocol):
    """The ledger, as seen by budgets: an async callable answering one ``SpendQuery``."""

    async def __call__(self, query: SpendQuery) -> Mapping[str, Spend]:
        """Return spend per counter value (values with no spend may be omitted)."""
        ...


def _tag_key(policy: Policy) -> str | None:
    return policy.match.partition("=")[0] if policy.scope is Scope.TAG and policy.match else None


async def restore_plan(
    policies: Iterable[Policy],
    source: SpendSource,
    *,
    now: float,
    tz: ZoneInfo,
    grace_s: float,
) -> list[Charge]:
    """Ask ``source`` for the current window of every (scope, period) the policies use."""
    groups: dict[tuple[Scope, Period, str | None], list[Policy]] = {}
    for policy in policies:
        groups.setdefault((policy.scope, policy.period, _tag_key(policy)), []).append(policy)
    charges: dict[str, Charge] = {}
    for (scope, period, tag_key), members in groups.items():
        win = window(period, now, tz)
        spend = await source(SpendQuery(scope=scope, start=win.start, tag_key=tag_key))
        for value, amount in spend.items():
            if not any(value_matches(scope, p.match, value) for p in members):
                continue
            key = bucket_key(period, win.label, scope, value)
            charges[key] = Charge(
                key,
                (to_nanos(amount.usd), amount.tokens, amount.requests),
                win.ttl_ms(now, grace_s),
            )
    return list(charges.values())
