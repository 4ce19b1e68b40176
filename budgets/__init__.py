"""Budgets and rate limits that hold under concurrency, across processes and replicas.

The proxy builds a ``Budgets`` once at start-up from parsed policies and an opened store, and
on every request reserves the priced worst case before forwarding, then settles the actual::

    store = await open_store("redis://localhost:6379/0")
    budgets = Budgets(store, parse_policies(raw), parse_rate_limits(raw_rl), timezone="UTC")
    async with budgets.reserve(subject, Demand(cost=worst_case, tokens=max_tokens)) as r:
        r.mark_sent()
        ...
        await r.settle(cost=actual, tokens=used)

Layers: ``budgets`` may import ``pricing`` and never ``proxy``.
"""

from __future__ import annotations

from budgets.alerts import AlertEvent, WebhookAlerts
from budgets.engine import Budgets
from budgets.errors import (
    BudgetConfigError,
    BudgetError,
    BudgetExceeded,
    RateLimited,
    Rejected,
    StoreUnavailable,
)
from budgets.money import from_nanos, to_nanos
from budgets.period import Period
from budgets.policy import (
    FailMode,
    Mode,
    Policy,
    RateLimitPolicy,
    Scope,
    parse_policies,
    parse_rate_limits,
)
from budgets.rebuild import Spend, SpendQuery, SpendSource
from budgets.reservation import Reservation
from budgets.store import BudgetStore, open_store
from budgets.subject import Demand, Subject
from budgets.utilization import BudgetUtilization, Utilization

__all__ = [
    "AlertEvent",
    "BudgetConfigError",
    "BudgetError",
    "BudgetExceeded",
    "BudgetStore",
    "BudgetUtilization",
    "Budgets",
    "Demand",
    "FailMode",
    "Mode",
    "Period",
    "Policy",
    "RateLimitPolicy",
    "RateLimited",
    "Rejected",
    "Reservation",
    "Scope",
    "Spend",
    "SpendQuery",
    "SpendSource",
    "StoreUnavailable",
    "Subject",
    "Utilization",
    "WebhookAlerts",
    "from_nanos",
    "open_store",
    "parse_policies",
    "parse_rate_limits",
    "to_nanos",
]
