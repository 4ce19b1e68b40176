"""LiteLLM's price map converted to our catalog, exactly, and loadable."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pricing import Usage
from pricing.litellm_import import dump_catalog, import_litellm
from pricing.loader import catalog_from_raw
from pricing.validate import check_text
from pricing.values import safe_load

LITELLM: dict[str, object] = {
    "sample_spec": {"input_cost_per_token": 0},
    "gpt-5.4": {
        "litellm_provider": "openai",
        "mode": "chat",
        "max_input_tokens": 1050000,
        "max_output_tokens": 128000,
        "input_cost_per_token": 2.5e-06,
        "output_cost_per_token": 1.5e-05,
        "cache_read_input_token_cost": 2.5e-07,
        "input_cost_per_token_above_272k_tokens": 5e-06,
        "output_cost_per_token_above_272k_tokens": 2.25e-05,
        "input_cost_per_token_batches": 1.25e-06,
        "output_cost_per_token_batches": 7.5e-06,
        "input_cost_per_token_priority": 5e-06,
        "input_cost_per_image": 0.01,
        "supports_vision": True,
    },
    "gemini/gemini-2.5-pro": {
        "litellm_provider": "gemini",
        "input_cost_per_token": 1.25e-06,
        "output_cost_per_token": 1e-05,
        "search_context_cost_per_query": {
            "search_context_size_low": 0.03,
            "search_context_size_medium": 0.035,
        },
        "deprecation_date": "2026-06-17",
    },
    "vertex_ai/gemini-2.5-pro": {
        "litellm_provider": "vertex_ai",
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 1e-05,
    },
    "gemini-2.5-pro": {
        "litellm_provider": "gemini",
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 1e-05,
    },
    "future-1": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 1e-06,
        "deprecation_date": "2099-01-01",
        "search_context_cost_per_query": {"search_context_size_high": 0.05},
        "cache_read_input_token_cost": None,
    },
    "odd-date": {
        "input_cost_per_token": 1e-06,
        "output_cost_per_token": 1e-06,
        "deprecation_date": "soon",
    },
    "negative": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06},
    "dall-e-3": {"litellm_provider": "openai", "output_cost_per_image": 0.04},
    "not-a-model": 3,
}


def _imported(providers: frozenset[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    data = json.loads(json.dumps(LITELLM), parse_float=Decimal)
    result = import_litellm(
        data, source="litellm test", effective_from=date(2026, 11, 30), providers=providers
    )
    return result.document, result.skipped


def test_conversion_is_exact_and_loadable() -> None:
    document, skipped = _imported()
    text = dump_catalog(document)
    assert "&id" not in text  # no YAML anchors
    assert check_text(text).ok, check_text(text).render()
    reloaded = safe_load(text)
    assert reloaded["models"]["gpt-5.4"] == {
        "max_input_tokens": 1050000,
        "max_output_tokens": 128000,
        "provider": "openai",
        "prices": [
            {
                "effective_from": date(2026, 11, 30),
                "source": "litellm test",
                "input": Decimal("2.5"),
                "output": 15,
                "cached_input": Decimal("0.25"),
                "long_context": [{"above": 272000, "input": 5, "output": Decimal("22.5")}],
                "tiers": {
                    "batch": {"input": Decimal("1.25"), "output": Decimal("7.5")},
                    "priority": {"input": 5},
                },
            }
        ],
    }
    gemini = reloaded["models"]["gemini-2.5-pro"]
    assert gemini["retired"] == date(2026, 6, 17)
    assert gemini["prices"][0]["web_search"] == Decimal("0.035")
    assert reloaded["models"]["future-1"]["prices"][0]["web_search"] == Decimal("0.05")
    assert "retired" not in reloaded["models"]["future-1"]
    assert skipped == [
        "gpt-5.4: ignored input_cost_per_image",
        "vertex_ai/gemini-2.5-pro: skipped, 'gemini-2.5-pro' already imported",
        "gemini-2.5-pro: skipped, 'gemini-2.5-pro' already imported",
        "odd-date: ignored deprecation_date 'soon'",
        "negative: skipped, negative: input_cost_per_token: negative value -0.000001 "
        "(a price can not be negative)",
        "dall-e-3: skipped, no input/output token price",
    ]
    catalog = catalog_from_raw(reloaded)
    priced = catalog.price("gpt-5.4", Usage(input_tokens=300_000), at=datetime(2027, 1, 1))
    # above 272k: 300000 * 5/1M
    assert priced is not None and priced.list_cost == Decimal("1.5")


def test_provider_filter_and_float_input() -> None:
    document, _ = _imported(providers=frozenset({"vertex_ai"}))
    assert list(document["models"]) == ["gemini-2.5-pro"]
    floats = import_litellm(
        {"m": {"input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}},
        source="s",
        effective_from=date(2026, 1, 1),
    )
    prices = floats.document["models"]["m"]["prices"][0]
    assert (prices["input"], prices["output"]) == (Decimal("0.15"), Decimal("0.6"))
