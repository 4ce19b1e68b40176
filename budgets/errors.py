"""Errors raised by the budgets layer.

::

    BudgetError                      base; never raised itself
    ├── BudgetConfigError            a policy or rate limit in the config is invalid (at start-up)
    ├── Rejected                     the request must not be forwarded (HTTP 429)
    │   ├── BudgetExceeded           a hard budget has no room left for the worst case
    │   └── RateLimited              an RPM/TPM limit is exhausted; retry after ``retry_after_s``
    └── StoreUnavailable             the store is unreachable and the budget fails closed (503)

Each error that reaches a client knows its HTTP status and an OpenAI-shaped ``error.type``;
the proxy renders them in the caller's wire format. Store back-end exceptions (redis
``ConnectionError``, ``TimeoutError``, ``OSError``) are translated to ``StoreUnavailable`` once,
in ``budgets/redis.py``, so nothing above the store sees a redis type.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

__all__ = [
    "BudgetConfigError",
    "BudgetError",
    "BudgetExceeded",
    "RateLimited",
    "Rejected",
    "StoreUnavailable",
]


class BudgetError(Exception):
    """Base of every error raised by ``budgets``."""

    status_code: int = 500
    error_type: str = "server_error"


class BudgetConfigError(BudgetError, ValueError):
    """A budget or rate-limit declaration is invalid; the message names the item and key."""


class Rejected(BudgetError):
    """The request was refused before it reached the provider."""

    status_code = 429


def _amount(value: Decimal | int, unit: str) -> str:
    return f"${value}" if unit == "usd" else f"{value} {unit}"


class BudgetExceeded(Rejected):
    """A hard budget cannot fit this request's worst-case demand.

    ``limit`` and ``spent`` are in ``unit``: ``Decimal`` USD for ``"usd"``, ``int`` for
    ``"tokens"`` and ``"requests"``. ``spent`` includes reservations of calls still in flight,
    which is what the admission decision used. ``period_resets_at`` is ``None`` for lifetime
    budgets. Clients must not retry (the proxy sends ``x-should-retry: false``).
    """

    error_type = "budget_exceeded"

    def __init__(
        self,
        *,
        scope: str,
        match: str | None,
        value: str,
        limit: Decimal | int,
        spent: Decimal | int,
        unit: str,
        period: str,
        period_resets_at: datetime | None,
    ) -> None:
        self.scope = scope
        self.match = match
        self.value = value
        self.limit = limit
        self.spent = spent
        self.unit = unit
        self.period = period
        self.period_resets_at = period_resets_at
        who = "global" if scope == "global" else f"{scope} {value!r}"
        resets = (
            f"; resets at {period_resets_at.isoformat()}"
            if period_resets_at is not None
            else "; lifetime budget, does not reset"
        )
        super().__init__(
            f"{period} budget for {who} exceeded: limit {_amount(limit, unit)}, "
            f"spent {_amount(spent, unit)}{resets}"
        )


class RateLimited(Rejected):
    """An RPM or TPM limit has no room; ``headers`` carry ``retry-after`` and ``x-ratelimit-*``."""

    error_type = "rate_limit_exceeded"

    def __init__(
        self,
        *,
        retry_after_s: float,
        limit_kind: str,
        scope: str,
        value: str,
        headers: dict[str, str],
    ) -> None:
        self.retry_after_s = retry_after_s
        self.limit_kind = limit_kind
        self.scope = scope
        self.value = value
        self.headers = headers
        super().__init__(
            f"rate limit of {limit_kind} per minute for {scope} {value!r} reached; "
            f"retry after {retry_after_s:.3f}s"
        )


class StoreUnavailable(BudgetError):
    """The budget store is unreachable and the applying policies fail closed."""

    status_code = 503
    error_type = "budget_store_unavailable"
