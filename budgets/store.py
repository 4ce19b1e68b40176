"""The budget store: one Protocol, two back-ends chosen by URL.

``memory://`` keeps counters in this process (the embedded default, one worker);
``redis://`` (or ``rediss://``, ``unix://``) shares them among every worker and replica.
Both implement the same five operations with the same semantics, and one test suite runs
against both. A store knows nothing about policies or periods: ``Budgets`` turns a request
into counter keys and limits (``BucketSpec``, ``RateSpec``) and the store applies them
atomically.

Counters ("buckets") hold three units in a fixed order: nano-USD, tokens, requests. Each
bucket keeps what was *settled* and what is *held* by live reservations; a reservation is
admitted only if, for every hard limit, ``settled + held + demand <= limit``. Reservations
expire (``expires_at_ms``): an expired reservation is dropped from ``held`` the next time its
bucket is touched, so a crashed process cannot hold budget forever.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "NO_LIMIT",
    "AlertMark",
    "Amounts",
    "BucketSpec",
    "BudgetStore",
    "Charge",
    "RateSpec",
    "ReserveOp",
    "ReserveResult",
    "RestoreMode",
    "SettleOp",
    "SettleResult",
    "bucket_key",
    "open_store",
    "rate_key",
]

Amounts = tuple[int, int, int]
"""(nano-USD, tokens, requests): the unit order of every counter."""

NO_LIMIT = -1
RestoreMode = Literal["if_unseeded", "if_missing", "overwrite"]


def bucket_key(period: str, label: str, scope: str, value: str) -> str:
    """The key of one budget counter; the value goes last, so it may contain ``:``."""
    return f"b:{period}:{label}:{scope}:{value}"


def rate_key(scope: str, value: str, kind: str) -> str:
    """The key of one GCRA bucket; ``kind`` is ``rpm`` or ``tpm``."""
    return f"rl:{scope}:{kind}:{value}"


@dataclass(frozen=True, slots=True)
class AlertMark:
    """Fire ``field`` once when the bucket's settled ``unit`` reaches ``threshold``."""

    field: str
    unit: int
    threshold: int


@dataclass(frozen=True, slots=True)
class BucketSpec:
    """One counter touched by a request: its key, lifetime, hard limits and alert marks."""

    key: str
    ttl_ms: int
    limits: Amounts = (NO_LIMIT, NO_LIMIT, NO_LIMIT)
    alerts: tuple[AlertMark, ...] = ()


@dataclass(frozen=True, slots=True)
class RateSpec:
    """One GCRA bucket: ``limit`` units per ``window_ms``; ``unit`` 1 is tokens, 2 requests."""

    key: str
    unit: int
    limit: int
    window_ms: int = 60_000

    @property
    def interval_ms(self) -> float:
        """Time one unit takes to refill."""
        return self.window_ms / self.limit


@dataclass(frozen=True, slots=True)
class ReserveOp:
    """Admit ``demand`` against every bucket and rate limit, or change nothing."""

    rid: str
    now_ms: int
    expires_at_ms: int
    demand: Amounts
    buckets: tuple[BucketSpec, ...]
    rates: tuple[RateSpec, ...]


@dataclass(frozen=True, slots=True)
class ReserveResult:
    """``ok``; or which bucket/unit (``budget``) or rate limit (``rate``) refused; or
    ``unseeded`` (the store lost its counters, or never had them: rebuild, then retry)."""

    status: Literal["ok", "budget", "rate", "unseeded"]
    index: int = -1
    unit: int = -1
    spent: int = 0
    retry_after_ms: int = 0
    used: tuple[Amounts, ...] = ()
    rates: tuple[tuple[int, int], ...] = ()  # (remaining, ms until full) per RateSpec


@dataclass(frozen=True, slots=True)
class SettleOp:
    """Replace reservation ``rid``'s hold with the ``actual`` amounts (which may exceed it)."""

    rid: str
    now_ms: int
    reserved: Amounts
    actual: Amounts
    buckets: tuple[BucketSpec, ...]
    rates: tuple[RateSpec, ...]


@dataclass(frozen=True, slots=True)
class SettleResult:
    """Settled totals per bucket after the call, and the alert marks that fired just now."""

    settled: tuple[Amounts, ...]
    fired: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Charge:
    """Amounts for one bucket, used to replay counted-while-down spend and to restore counters."""

    key: str
    amounts: Amounts
    ttl_ms: int


class BudgetStore(Protocol):
    """Where counters live. Every method is one atomic step (one round trip on Redis).

    Unreachable back-ends raise ``StoreUnavailable``; nothing else leaks a back-end type.
    """

    async def reserve(self, op: ReserveOp) -> ReserveResult:
        """Admit or refuse ``op`` atomically, purging expired reservations of its buckets."""
        ...

    async def settle(self, op: SettleOp) -> SettleResult:
        """Settle a reservation; always charges ``actual``, even if the hold already expired."""
        ...

    async def charge(self, charges: Sequence[Charge], now_ms: int) -> None:
        """Add settled amounts without a reservation (fail-open spend replayed later)."""
        ...

    async def restore(self, charges: Sequence[Charge], mode: RestoreMode, now_ms: int) -> bool:
        """Set settled counters from the ledger and mark the store seeded.

        ``if_unseeded``: only if the store is not seeded (one rebuild after a loss wins);
        ``if_missing``: only buckets that do not exist yet (a new period was introduced);
        ``overwrite``: every given bucket. Held reservations are kept. Returns whether
        anything was written.
        """
        ...

    async def read(self, keys: Sequence[str], now_ms: int) -> list[tuple[Amounts, Amounts]]:
        """``(settled, held)`` per bucket key, for visibility and tests."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def open_store(
    url: str, *, namespace: str = "spendgate", socket_timeout: float = 0.5
) -> BudgetStore:
    """Open the store named by ``url``: ``memory://`` or ``redis://host:port/db``.

    ``namespace`` prefixes every Redis key (and is its Cluster hash tag); ``socket_timeout``
    bounds how long a request waits on an unresponsive Redis before the fail mode applies.
    """
    scheme = url.partition("://")[0].lower()
    if scheme == "memory":
        from budgets.memory import MemoryStore

        return MemoryStore()
    if scheme in ("redis", "rediss", "unix"):
        from budgets.redis import RedisStore

        return await RedisStore.open(url, namespace=namespace, socket_timeout=socket_timeout)
    raise ValueError(f"unsupported budget store URL scheme {scheme!r} (memory://, redis://)")
