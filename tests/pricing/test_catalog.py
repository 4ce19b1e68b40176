"""Resolving model names, caps, listing, and worst-case reservations."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing import Catalog, builtin_catalog

AT = datetime(2026, 11, 30, tzinfo=UTC)
D = Decimal


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("gpt-4o", "gpt-4o"),
        ("GPT-4o", "gpt-4o"),
        (" gpt-4o ", "gpt-4o"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # an entry of its own beats the snapshot rule
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),  # the longest id wins
        ("openai/gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-5-chat-latest", "gpt-5"),
        ("gpt-4o-realtime-preview", None),
        ("gpt-4o-mini-search-preview", None),
        ("unknown", None),
        ("anthropic/", None),
    ],
)
def test_resolve(name: str, canonical: str | None) -> None:
    assert builtin_catalog().resolve(name) == canonical


def test_builtin_is_loaded_once_and_versioned() -> None:
    assert builtin_catalog() is builtin_catalog()
    assert builtin_catalog().version == "2026-11-30"
    models = builtin_catalog().models()
    assert models == sorted(models)
    assert {"gpt-4o", "gpt-5-nano", "o4-mini", "text-embedding-3-large"} <= set(models)


def test_max_output_tokens() -> None:
    catalog = builtin_catalog()
    assert catalog.max_output_tokens("gpt-4o-2024-08-06") == 16384
    assert catalog.max_output_tokens("text-embedding-3-small") is None
    assert catalog.max_output_tokens("nope") is None


WORST = [
    pytest.param(
        "gpt-4o",
        1000,
        500,
        None,
        # dearest input rate is the input rate 2.5 (cache reads are cheaper):
        # 1000 * 2.5/1M + 500 * 10/1M = 0.0025 + 0.005
        D("0.0075"),
        id="openai",
    ),
    pytest.param(
        "gpt-5",
        1000,
        1000,
        "flex",
        # the dearer of standard and flex: standard 1000 * 1.25/1M + 1000 * 10/1M
        D("0.01125"),
        id="requested-tier-never-lowers-the-bound",
    ),
    pytest.param(
        "gpt-5",
        -5,
        0,
        None,
        # negative estimates count as 0
        D("0"),
        id="negative-estimate",
    ),
]


@pytest.mark.parametrize(("model", "inputs", "outputs", "tier", "expected"), WORST)
def test_worst_case(
    model: str, inputs: int, outputs: int, tier: str | None, expected: Decimal
) -> None:
    bound = builtin_catalog().worst_case_cost(
        model, input_tokens=inputs, max_output_tokens=outputs, at=AT, service_tier=tier
    )
    assert bound == expected


def test_alias_patterns(synthetic: Catalog) -> None:
    assert synthetic.resolve("llama-3.1-70b-instruct-awq") == "llama-3.1-70b"
    assert synthetic.resolve("llama-3.1-8b") is None
    assert synthetic.entry("think-1") is not None
