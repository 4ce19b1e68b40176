"""The reservation handle: reserve the worst case, then settle to the actual, exactly once.

``async with budgets.reserve(subject, demand) as r:`` admits the request (or raises) on entry.
Inside, the proxy forwards the call, calls ``r.mark_sent()`` once the request has reached the
provider, and ``await r.settle(cost=..., tokens=...)`` with the actual usage. Leaving the block
without settling charges the full reservation if the request was sent (the provider may have
billed it; assume it did) and releases it otherwise; an exception inside follows the same rule
and still propagates. Settling more than was reserved charges the extra: usage can exceed an
estimate, and only ever charging more keeps the ledger and the counters honest.

For streams whose body outlives the handler, use ``r = await budgets.acquire(...)`` and
``await r.aclose()`` from the stream's background task instead of ``async with``.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from types import TracebackType
from typing import TYPE_CHECKING

from budgets.money import to_nanos
from budgets.store import Amounts
from budgets.subject import Demand, Subject

if TYPE_CHECKING:
    from budgets.engine import Budgets, _Plan

__all__ = ["Reservation"]


class Reservation:
    """One admitted request's hold on every budget and rate limit that applies to it."""

    def __init__(self, budgets: Budgets, subject: Subject, demand: Demand) -> None:
        self.subject = subject
        self.demand = demand
        self.rid = ""
        self.remaining_usd: Decimal | None = None
        """Tightest applying USD budget's remaining (after this call, once settled)."""
        self.headers: dict[str, str] = {}
        """``x-ratelimit-*`` headers of the applying rate limits, for the response."""
        self.local = False
        """Admitted while the store was unreachable (fail_open); counted in this process."""
        self._budgets = budgets
        self._plan: _Plan | None = None
        self._reserved: Amounts = (0, 0, 0)
        self._admitted = False
        self._sent = False
        self._done = False

    @property
    def reserved(self) -> Amounts:
        """The held (nano-USD, tokens, requests)."""
        return self._reserved

    async def __aenter__(self) -> Reservation:
        await self._budgets._admit(self)
        self._admitted = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def mark_sent(self) -> None:
        """Record that the request reached the provider, so an unsettled exit charges it."""
        self._sent = True

    async def settle(self, *, cost: Decimal, tokens: int) -> None:
        """Charge the actual ``cost`` and ``tokens``; the surplus returns, an excess is added."""
        if self._done:
            raise RuntimeError("reservation already settled")
        if tokens < 0:
            raise ValueError(f"tokens must be >= 0, got {tokens}")
        await self._finish((to_nanos(cost), tokens, 1))

    async def release(self) -> None:
        """Give the whole reservation back: the request was never forwarded."""
        if not self._done:
            await self._finish((0, 0, 0))

    async def aclose(self) -> None:
        """Finish an unsettled reservation: charge it in full if sent, else release it."""
        if self._done or not self._admitted:
            return
        await self._finish(self._reserved if self._sent else (0, 0, 0))

    async def _finish(self, actual: Amounts) -> None:
        self._done = True
        if self._plan is None:  # nothing applied: no store round trip was made
            return
        # Shielded: a cancelled request must still settle (or the hold waits for its TTL).
        await asyncio.shield(self._budgets._settle(self, actual))
