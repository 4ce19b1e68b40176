"""The cost of one call: usage times rates, itemised per token kind.

Token accounting (see ``Usage``): reported totals are authoritative and subsets never bill a
token twice. Cache reads and writes are billed as reported (providers bill them as their
own categories); uncached input is what is left of the input total, clamped at 0 when a
provider reports subsets larger than the total. Reasoning and audio are carved out of the
output total (and audio out of the uncached input), never added to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from pricing.rates import RateTable
from pricing.usage import Usage

__all__ = ["BREAKDOWN_KEYS", "PricedCall", "itemise", "total"]

BREAKDOWN_KEYS = (
    "input",
    "cached_input",
    "cache_write",
    "cache_write_1h",
    "audio_input",
    "output",
    "reasoning",
    "audio_output",
    "request_fees",
)


@dataclass(frozen=True, slots=True)
class PricedCall:
    """The priced call: what the catalog says it cost, and what the team is charged.

    ``breakdown`` itemises ``list_cost`` per token kind (zero items left out) and sums to it
    exactly. ``cost`` is after the negotiated discount and the team's rate card.
    ``price_version`` names the catalog entry version used; ``rate_card`` the team card.
    """

    model: str
    price_version: str
    list_cost: Decimal
    cost: Decimal
    breakdown: Mapping[str, Decimal]
    service_tier: str = "standard"
    long_context_above: int | None = None
    rate_card: str | None = None
    retired: bool = False


def _n(count: int | None) -> int:
    return max(count or 0, 0)


def itemise(table: RateTable, usage: Usage) -> tuple[dict[str, Decimal], int | None]:
    """Line items of one call (non-zero only) and the long-context threshold it crossed."""
    cached = _n(usage.cached_input_tokens)
    writes = _n(usage.cache_write_tokens)
    writes_1h = _n(usage.cache_write_1h_tokens)
    audio_in = _n(usage.audio_input_tokens)
    cache_total = cached + writes + writes_1h
    if usage.input_tokens is None:  # unreported total: the reported parts are all we know
        input_total = cache_total + audio_in
    else:
        input_total = max(_n(usage.input_tokens), cache_total)
    rates, crossed = table.for_input(input_total)
    uncached = input_total - cache_total
    audio_in = min(audio_in, uncached)

    reasoning = _n(usage.reasoning_tokens)
    audio_out = _n(usage.audio_output_tokens)
    if usage.output_tokens is None:
        output_total = reasoning + audio_out
    else:
        output_total = _n(usage.output_tokens)
    reasoning = min(reasoning, output_total)
    audio_out = min(audio_out, output_total - reasoning)
    text_out = output_total - reasoning - audio_out
    if rates.reasoning is None:  # reasoning is billed as output: one line
        text_out, reasoning = text_out + reasoning, 0

    items = {
        "input": (uncached - audio_in) * rates.input,
        "cached_input": cached * rates.cached_input,
        "cache_write": writes * rates.cache_write,
        "cache_write_1h": writes_1h * rates.cache_write_1h,
        "audio_input": audio_in * rates.audio_input,
        "output": text_out * rates.output,
        "reasoning": reasoning * (rates.reasoning or Decimal(0)),
        "audio_output": audio_out * rates.audio_output,
        "request_fees": rates.per_request + _n(usage.web_search_calls) * rates.web_search,
    }
    return {key: value for key, value in items.items() if value}, crossed


def total(items: Mapping[str, Decimal]) -> Decimal:
    """The sum of line items, in breakdown order, so the breakdown sums to it exactly."""
    return sum((items[key] for key in BREAKDOWN_KEYS if key in items), Decimal(0))
