"""The in-process store (``memory://``): the embedded default for a single worker.

It is the reference semantics of the Lua scripts, in Python: each method runs without an
``await`` between reading and writing, so on one event loop it is atomic exactly as a Lua
script is on Redis. Counters die with the process; a fresh store starts unseeded, so the
first reservation triggers a rebuild from the ledger just as a flushed Redis does.
Expired buckets and rate buckets are swept lazily on access and every few thousand calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from budgets.ratelimit import gcra_admit, gcra_state
from budgets.store import (
    NO_LIMIT,
    Amounts,
    Charge,
    ReserveOp,
    ReserveResult,
    RestoreMode,
    SettleOp,
    SettleResult,
)

__all__ = ["MemoryStore"]

_SWEEP_EVERY = 4096


@dataclass(slots=True)
class _Bucket:
    settled: list[int] = field(default_factory=lambda: [0, 0, 0])
    held: list[int] = field(default_factory=lambda: [0, 0, 0])
    holds: dict[str, tuple[Amounts, int]] = field(default_factory=dict)  # rid -> (amounts, exp)
    alerts: set[str] = field(default_factory=set)
    expires_at_ms: int = 0  # 0: never

    def purge(self, now_ms: int) -> None:
        for rid, (amounts, expires_at) in list(self.holds.items()):
            if expires_at <= now_ms:
                del self.holds[rid]
                for unit in range(3):
                    self.held[unit] -= amounts[unit]


class MemoryStore:
    """Budget counters in a dict, for one process."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._rates: dict[str, tuple[float, int]] = {}  # key -> (tat, expires_at_ms)
        self._seeded = False
        self._calls = 0

    def _bucket(self, key: str, now_ms: int, ttl_ms: int, *, create: bool = True) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is not None and bucket.expires_at_ms and bucket.expires_at_ms <= now_ms:
            bucket = None
        if bucket is None:
            bucket = _Bucket()
            if create:
                self._buckets[key] = bucket
        if ttl_ms:
            bucket.expires_at_ms = now_ms + ttl_ms
        return bucket

    def _tat(self, key: str, now_ms: int) -> float | None:
        entry = self._rates.get(key)
        if entry is None or entry[1] <= now_ms:
            return None
        return entry[0]

    def _sweep(self, now_ms: int) -> None:
        self._calls += 1
        if self._calls % _SWEEP_EVERY:
            return
        for key in [
            k for k, b in self._buckets.items() if b.expires_at_ms and b.expires_at_ms <= now_ms
        ]:
            del self._buckets[key]
        for key in [k for k, (_, exp) in self._rates.items() if exp <= now_ms]:
            del self._rates[key]

    async def reserve(self, op: ReserveOp) -> ReserveResult:
        """See ``BudgetStore.reserve``."""
        if not self._seeded:
            return ReserveResult("unseeded")
        now = op.now_ms
        self._sweep(now)
        used: list[Amounts] = []
        for index, spec in enumerate(op.buckets):
            bucket = self._buckets.get(spec.key)
            if bucket is not None:
                bucket.purge(now)
                if bucket.expires_at_ms and bucket.expires_at_ms <= now:
                    bucket = None
            settled = bucket.settled if bucket else [0, 0, 0]
            held = bucket.held if bucket else [0, 0, 0]
            totals = [settled[u] + held[u] for u in range(3)]
            for unit in range(3):
                limit = spec.limits[unit]
                if limit != NO_LIMIT and totals[unit] + op.demand[unit] > limit:
                    return ReserveResult("budget", index=index, unit=unit, spent=totals[unit])
            used.append(
                (totals[0] + op.demand[0], totals[1] + op.demand[1], totals[2] + op.demand[2])
            )
        tats: list[float] = []
        for index, rate in enumerate(op.rates):
            new_tat, retry_ms = gcra_admit(
                self._tat(rate.key, now), now, op.demand[rate.unit], rate
            )
            if new_tat is None:
                return ReserveResult("rate", index=index, retry_after_ms=retry_ms)
            tats.append(new_tat)
        for spec in op.buckets:
            bucket = self._bucket(spec.key, now, spec.ttl_ms)
            bucket.holds[op.rid] = (op.demand, op.expires_at_ms)
            for unit in range(3):
                bucket.held[unit] += op.demand[unit]
        states: list[tuple[int, int]] = []
        for rate, tat in zip(op.rates, tats, strict=True):
            self._rates[rate.key] = (tat, int(tat) + 1000)
            states.append(gcra_state(tat, now, rate))
        return ReserveResult("ok", used=tuple(used), rates=tuple(states))

    async def settle(self, op: SettleOp) -> SettleResult:
        """See ``BudgetStore.settle``."""
        now = op.now_ms
        settled: list[Amounts] = []
        fired: list[str] = []
        for spec in op.buckets:
            bucket = self._bucket(spec.key, now, spec.ttl_ms)
            hold = bucket.holds.pop(op.rid, None)
            for unit in range(3):
                if hold is not None:
                    bucket.held[unit] -= hold[0][unit]
                bucket.settled[unit] += op.actual[unit]
            for mark in spec.alerts:
                if bucket.settled[mark.unit] >= mark.threshold and mark.field not in bucket.alerts:
                    bucket.alerts.add(mark.field)
                    fired.append(mark.field)
            settled.append((bucket.settled[0], bucket.settled[1], bucket.settled[2]))
        for rate in op.rates:
            delta = (op.actual[rate.unit] - op.reserved[rate.unit]) * rate.interval_ms
            tat = self._tat(rate.key, now)
            if tat is None and delta <= 0:
                continue
            new_tat = max((tat if tat is not None else now) + delta, float(now))
            self._rates[rate.key] = (new_tat, int(new_tat) + 1000)
        return SettleResult(tuple(settled), tuple(fired))

    async def charge(self, charges: Sequence[Charge], now_ms: int) -> None:
        """See ``BudgetStore.charge``."""
        for entry in charges:
            bucket = self._bucket(entry.key, now_ms, entry.ttl_ms)
            for unit in range(3):
                bucket.settled[unit] += entry.amounts[unit]

    async def restore(self, charges: Sequence[Charge], mode: RestoreMode, now_ms: int) -> bool:
        """See ``BudgetStore.restore``."""
        if mode == "if_unseeded" and self._seeded:
            return False
        for entry in charges:
            existing = self._buckets.get(entry.key)
            alive = existing is not None and not (
                existing.expires_at_ms and existing.expires_at_ms <= now_ms
            )
            if mode == "if_missing" and alive:
                continue
            bucket = self._bucket(entry.key, now_ms, entry.ttl_ms)
            bucket.settled = list(entry.amounts)
        self._seeded = True
        return True

    async def read(self, keys: Sequence[str], now_ms: int) -> list[tuple[Amounts, Amounts]]:
        """See ``BudgetStore.read``."""
        out: list[tuple[Amounts, Amounts]] = []
        for key in keys:
            bucket = self._buckets.get(key)
            if bucket is None or (bucket.expires_at_ms and bucket.expires_at_ms <= now_ms):
                out.append(((0, 0, 0), (0, 0, 0)))
                continue
            bucket.purge(now_ms)
            s, h = bucket.settled, bucket.held
            out.append(((s[0], s[1], s[2]), (h[0], h[1], h[2])))
        return out

    def clear(self) -> None:
        """Forget everything, as a restarted process would (tests simulate a lost store)."""
        self._buckets.clear()
        self._rates.clear()
        self._seeded = False

    async def aclose(self) -> None:
        """Nothing to release."""
