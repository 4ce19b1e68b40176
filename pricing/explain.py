"""``spendgate prices show`` and ``prices quote``: a price and a cost, explained in text.

Pure formatting over a Catalog, so the CLI and the admin API print the same thing.
"""

from __future__ import annotations

from datetime import datetime

from pricing.catalog import Catalog
from pricing.cost import BREAKDOWN_KEYS
from pricing.rates import TOKEN_KEYS, Rates
from pricing.usage import Usage

__all__ = ["quote", "show"]


def _per_million(rates: Rates) -> str:
    parts = []
    for key in TOKEN_KEYS:
        value = getattr(rates, key)
        if value is not None:
            parts.append(f"{key} {value.scaleb(6).normalize():f}")
    for key in ("per_request", "web_search"):
        if getattr(rates, key):
            parts.append(f"{key} ${getattr(rates, key).normalize():f}")
    return ", ".join(parts)


def show(catalog: Catalog, model: str, *, at: datetime) -> str | None:
    """The resolved entry, the version in effect at ``at`` and its rates (USD per 1M)."""
    entry = catalog.entry(model)
    if entry is None:
        return None
    version = entry.version_at(at)
    lines = [
        f"{model} -> {entry.id}" + (" (retired)" if entry.retired else ""),
        f"catalog {catalog.version}, price_version {version.label}",
        f"source: {version.source}",
        f"caps: input {entry.max_input_tokens}, output {entry.max_output_tokens}",
    ]
    if entry.aliases:
        lines.append("aliases: " + ", ".join(entry.aliases))
    for tier, table in version.tiers.items():
        lines.append(f"{tier}: {_per_million(table.base)}")
        for above, rates in table.long_context:
            lines.append(f"{tier} above {above} input tokens: {_per_million(rates)}")
    history = ", ".join(v.label for v in entry.versions)
    lines.append(f"versions: {history}")
    return "\n".join(lines)


def quote(
    catalog: Catalog,
    model: str,
    usage: Usage,
    *,
    at: datetime,
    team: str | None = None,
    service_tier: str | None = None,
) -> str | None:
    """The cost of a hypothetical call, itemised per token kind, with list and team cost."""
    priced = catalog.price(model, usage, at=at, team=team, service_tier=service_tier)
    if priced is None:
        return None
    lines = [f"{priced.model} ({priced.price_version}, {priced.service_tier})"]
    if priced.long_context_above is not None:
        lines.append(f"long-context rates: input above {priced.long_context_above} tokens")
    for key in BREAKDOWN_KEYS:
        if key in priced.breakdown:
            lines.append(f"  {key:<15} ${priced.breakdown[key].normalize():f}")
    lines.append(f"  {'list cost':<15} ${priced.list_cost.normalize():f}")
    if priced.cost != priced.list_cost or priced.rate_card:
        card = f" (rate card {priced.rate_card})" if priced.rate_card else ""
        lines.append(f"  {'cost':<15} ${priced.cost.normalize():f}{card}")
    return "\n".join(lines)
