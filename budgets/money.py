"""USD amounts as integer nano-dollars, the unit of every counter.

Counters add with ``HINCRBY``/``int`` so they stay exact; ``Decimal`` lives above them.
``to_nanos`` is the ONLY place a ``Decimal`` becomes an integer and it rounds UP, so the
store never under-charges by a rounding step (tensorzero's ``decimal_cost_to_nano_cost``).
``from_nanos`` is its exact inverse for display. Redis Lua numbers are doubles, so a single
counter is exact up to 2**53 nano-USD (about $9 million per scope and period), checked here.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, Decimal

__all__ = ["MAX_NANOS", "NANOS_PER_USD", "from_nanos", "to_nanos"]

NANOS_PER_USD = 1_000_000_000
MAX_NANOS = 2**53


def to_nanos(usd: Decimal) -> int:
    """Convert USD to integer nano-USD, rounding up; negative or non-finite is a ValueError."""
    if not usd.is_finite():
        raise ValueError(f"amount must be finite, got {usd}")
    if usd < 0:
        raise ValueError(f"amount must not be negative, got {usd}")
    nanos = int((usd * NANOS_PER_USD).to_integral_value(rounding=ROUND_CEILING))
    if nanos > MAX_NANOS:
        raise ValueError(f"amount {usd} exceeds the largest exact counter value")
    return nanos


def from_nanos(nanos: int) -> Decimal:
    """Convert integer nano-USD back to an exact ``Decimal`` USD amount, without trailing zeros."""
    usd = Decimal(nanos).scaleb(-9)
    return usd.quantize(Decimal(1)) if usd == usd.to_integral_value() else usd.normalize()
