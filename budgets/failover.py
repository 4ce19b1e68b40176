"""Fail-open bookkeeping: admit and count in this process while the store is unreachable.

While the store is down (and for ``retry_s`` after each failure, so a dead Redis costs one
timeout per interval, not one per request) reservations are admitted against a local
``MemoryStore`` seeded with the last counts this process saw, so a hard budget still bounds
what ONE process admits during an outage: the overshoot is at most what the other processes
admit meanwhile. What is settled locally goes to a journal; settlements of reservations made
in the store before it failed are kept whole. When the store answers again, both are
replayed (``charge_v1``, ``settle_v1``) before the next reservation, which lifts the stale
holds too. If the store came back empty it is rebuilt from the ledger afterwards, which wins.
Alerts fired by a replay are not re-sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from budgets.memory import MemoryStore
from budgets.store import (
    Amounts,
    BucketSpec,
    BudgetStore,
    Charge,
    ReserveOp,
    ReserveResult,
    SettleOp,
    SettleResult,
)

__all__ = ["Failover"]

log = logging.getLogger("spendgate.budgets")


class Failover:
    """The local side of ``fail_mode="open"``: last counts seen, a local store, a journal."""

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self._down_until = 0.0
        self._local = MemoryStore()
        self._journal: dict[str, Charge] = {}
        self._unsettled: list[SettleOp] = []
        self._last_seen: dict[str, Amounts] = {}
        self._replaying = asyncio.Lock()

    def store_may_answer(self, now: float) -> bool:
        """Whether to try the store now (it is up, or the retry interval has passed)."""
        return now >= self._down_until

    def store_failed(self, now: float) -> None:
        """Skip the store for ``retry_s`` seconds."""
        if self.store_may_answer(now):
            log.warning("budget store unreachable; retrying in %.1fs", self.retry_s)
        self._down_until = now + self.retry_s

    @property
    def pending(self) -> bool:
        """Whether anything counted locally still has to reach the store."""
        return bool(self._journal or self._unsettled)

    def seen(self, buckets: Sequence[BucketSpec], amounts: Sequence[Amounts]) -> None:
        """Remember the latest counts the store reported (seeds for local admission)."""
        for spec, counts in zip(buckets, amounts, strict=True):
            self._last_seen[spec.key] = counts

    async def reserve(self, op: ReserveOp) -> ReserveResult:
        """Admit ``op`` against the last counts seen plus what this process counted since."""
        seeds = [
            Charge(spec.key, self._last_seen[spec.key], spec.ttl_ms)
            for spec in op.buckets
            if spec.key in self._last_seen
        ]
        await self._local.restore(seeds, "if_missing", op.now_ms)
        return await self._local.reserve(op)

    async def settle(self, op: SettleOp) -> SettleResult:
        """Settle a locally admitted reservation and journal its actual amounts."""
        result = await self._local.settle(op)
        for spec in op.buckets:
            prior = self._journal.get(spec.key)
            total = op.actual
            if prior is not None:
                old = prior.amounts
                total = (old[0] + total[0], old[1] + total[1], old[2] + total[2])
            self._journal[spec.key] = Charge(spec.key, total, spec.ttl_ms)
        return result

    def defer(self, op: SettleOp) -> None:
        """Keep a store reservation's settlement that failed, to replay it whole."""
        self._unsettled.append(op)

    async def replay(self, store: BudgetStore, now_ms: int) -> None:
        """Send what was counted locally to ``store``; raises ``StoreUnavailable`` if still down."""
        # One replay at a time: concurrent requests all see ``pending`` when the store comes
        # back, and two replays would send the same settlement twice.
        async with self._replaying:
            if not self.pending:
                return  # another request replayed it while this one waited
            while self._unsettled:
                await store.settle(self._unsettled[0])
                self._unsettled.pop(0)
            pending = list(self._journal.values())
            if pending:
                await store.charge(pending, now_ms)
            for entry in pending:
                if self._journal.get(entry.key) is entry:
                    del self._journal[entry.key]
            self._local.clear()
            log.warning("budget store is back: replayed %d locally counted counters", len(pending))
