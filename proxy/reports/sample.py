"""Realistic ledger rows for benchmarks, tests and demos, priced by the real catalog.

Rows are generated lazily from a seed (the same seed gives the same rows) and priced by the
same ``Catalog.price`` and breakdown the proxy uses, so exports and reports see what a
running proxy would have written: several teams with rate cards, cached and reasoning
tokens, errors, blocked calls and the odd unpriced model.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from pricing import Catalog, Usage, load_catalog
from proxy.ledger import LedgerRow
from proxy.metering import _breakdown_columns

__all__ = ["SAMPLE_TEAMS", "sample_catalog", "sample_rows"]

SAMPLE_TEAMS: dict[str, object] = {
    "search": {"rate_card": {"discount_pct": 10}},
    "research": {"rate_card": {"markup_pct": 8}},
}
_TEAMS = ("search", "research", "support", "growth")
_MODELS = (
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18"),
    ("openai", "gpt-4o", "gpt-4o-2024-08-06"),
    ("openai", "o4-mini", "o4-mini-2025-04-16"),
    ("anthropic", "claude-sonnet-4-5", "claude-sonnet-4-5-20250929"),
    ("gemini", "gemini-2.5-flash", "gemini-2.5-flash"),
    ("local", "llama-3.1-8b", "llama-3.1-8b"),  # not in the catalog: unpriced
)
_OUTCOMES = (("ok", 200),) * 18 + (("upstream_error", 500), ("budget_blocked", 429))


def sample_catalog() -> Catalog:
    """The built-in catalog with :data:`SAMPLE_TEAMS`' rate cards."""
    return load_catalog(None, teams=SAMPLE_TEAMS)


def sample_rows(
    count: int, start: datetime, span: timedelta, *, seed: int = 0, catalog: Catalog | None = None
) -> Iterator[LedgerRow]:
    """``count`` rows with ``started_at`` spread over ``[start, start + span)``, in order."""
    rng = random.Random(seed)
    catalog = catalog or sample_catalog()
    step = span / max(count, 1)
    for i in range(count):
        at = start + step * i + timedelta(microseconds=rng.randrange(1000))
        provider, model, served = rng.choice(_MODELS)
        team = rng.choice(_TEAMS)
        outcome, status = rng.choice(_OUTCOMES)
        fields: dict[str, Any] = {}
        usage = None
        if outcome != "budget_blocked":
            prompt = rng.randrange(20, 20_000)
            cached = rng.choice((0, 0, prompt // 2))
            output = rng.randrange(1, 2_000)
            reasoning = output // 3 if model.startswith("o") else None
            usage = Usage(
                input_tokens=prompt,
                cached_input_tokens=cached,
                output_tokens=output,
                reasoning_tokens=reasoning,
            )
            fields = {
                "input_tokens": prompt,
                "cached_input_tokens": cached,
                "output_tokens": output,
                "reasoning_tokens": reasoning,
            }
        priced = catalog.price(model, usage, at=at, team=team) if usage is not None else None
        if usage is None:
            money: dict[str, Any] = {"list_cost_usd": Decimal(0), "cost_usd": Decimal(0)}
        elif priced is None:
            money = {"list_cost_usd": None, "cost_usd": None}
        else:
            money = {"list_cost_usd": priced.list_cost, "cost_usd": priced.cost}
            money |= _breakdown_columns(priced)
            money |= {"price_version": priced.price_version, "rate_card": priced.rate_card}
        latency = rng.randrange(80, 9000)
        yield LedgerRow(
            request_id=f"req_{seed:04d}_{i:010d}",
            started_at=at,
            ended_at=at + timedelta(milliseconds=latency),
            team=team,
            project=rng.choice((None, "ranker", "chat", "etl")),
            key_id=f"key_{team}_{rng.randrange(3)}",
            end_user=rng.choice((None, "u-1", "u-2", "u-3")),
            tags=rng.choice(({}, {"env": "prod"}, {"env": "dev", "feature": "rerank"})),
            provider=provider,
            endpoint="chat.completions",
            model_requested=model,
            model_served=served if outcome == "ok" else None,
            stream=rng.random() < 0.5,
            status_code=status,
            outcome=outcome,
            error_type=None if outcome == "ok" else f"http_{status}",
            usage_source="provider" if usage is not None else "none",
            unpriced=usage is not None and priced is None,
            latency_ms=latency,
            ttft_ms=latency // 4,
            upstream_request_id=f"up_{i}" if outcome == "ok" else None,
            **fields,
            **money,
        )
