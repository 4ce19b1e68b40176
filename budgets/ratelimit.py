"""Requests- and tokens-per-minute limits as GCRA buckets, and the headers clients read.

GCRA (the generic cell rate algorithm) keeps ONE number per bucket, the theoretical arrival
time ``tat``: the instant the bucket would be full again. A bucket of ``limit`` units per
``window`` refills one unit every ``interval = window / limit``; a request of ``cost`` units is
admitted when ``max(tat, now) + cost * interval - now <= window`` (the bucket holds at most a
full window, so bursts up to the limit pass, as OpenAI's own limits behave). Unlike a sliding
log it is O(1) in memory and work, and unlike fixed windows it has no boundary double-burst.

TPM buckets are charged the reserved worst case at admission and corrected at settlement
(a refund of unused tokens, or an extra charge when usage exceeded the estimate), so a shared
Redis bucket limits every replica together. A request larger than a whole window is admitted
only when the bucket is full, rather than never.

The same arithmetic runs in ``memory.py`` and in ``lua/reserve_v1.lua``/``settle_v1.lua``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from budgets.store import RateSpec

__all__ = ["gcra_admit", "gcra_state", "headers"]


def gcra_admit(
    tat: float | None, now: float, cost: int, spec: RateSpec
) -> tuple[float | None, int]:
    """Return ``(new_tat, 0)`` if ``cost`` units fit, else ``(None, retry_after_ms)``."""
    base = now if tat is None or tat < now else tat
    new = base + cost * spec.interval_ms
    if new - now > spec.window_ms and base > now:
        return None, math.ceil(min(new - spec.window_ms - now, base - now))
    return new, 0


def gcra_state(tat: float, now: float, spec: RateSpec) -> tuple[int, int]:
    """``(remaining units, ms until full)`` of a bucket whose ``tat`` is given."""
    ahead = max(0.0, tat - now)
    remaining = max(0, math.floor((spec.window_ms - ahead) / spec.interval_ms + 1e-9))
    return remaining, math.ceil(ahead)


def _duration(ms: int) -> str:
    """Format like OpenAI's ``x-ratelimit-reset-*`` values: ``20ms``, ``1.5s``, ``6m0s``."""
    if ms < 1000:
        return f"{ms}ms"
    minutes, ms_left = divmod(ms, 60_000)
    seconds = f"{ms_left / 1000:g}s"
    return f"{minutes}m{seconds}" if minutes else seconds


def headers(
    specs: Sequence[RateSpec], states: Sequence[tuple[int, int]], retry_after_ms: int | None = None
) -> dict[str, str]:
    """OpenAI-style ``x-ratelimit-*`` headers from the tightest bucket of each kind.

    With ``retry_after_ms`` (a refusal) adds ``retry-after`` (whole seconds, rounded up) and
    ``retry-after-ms``, which the official SDKs honour.
    """
    out: dict[str, str] = {}
    tightest: dict[str, tuple[int, int, int]] = {}
    for spec, (remaining, reset_ms) in zip(specs, states, strict=True):
        kind = "tokens" if spec.unit == 1 else "requests"
        if kind not in tightest or remaining < tightest[kind][1]:
            tightest[kind] = (spec.limit, remaining, reset_ms)
    for kind in ("requests", "tokens"):
        if kind in tightest:
            limit, remaining, reset_ms = tightest[kind]
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(remaining)
            out[f"x-ratelimit-reset-{kind}"] = _duration(reset_ms)
    if retry_after_ms is not None:
        out["retry-after"] = str(max(1, math.ceil(retry_after_ms / 1000)))
        out["retry-after-ms"] = str(retry_after_ms)
    return out
