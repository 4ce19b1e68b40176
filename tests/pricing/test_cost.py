"""Cost of one call with the built-in catalog, worked out by hand and compared exactly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing import Catalog, PricedCall, Usage, builtin_catalog

AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
D = Decimal


def _price(model: str, usage: Usage, **kwargs: object) -> PricedCall:
    priced = builtin_catalog().price(model, usage, at=kwargs.pop("at", AT), **kwargs)  # type: ignore[arg-type]
    assert priced is not None
    assert sum(priced.breakdown.values(), D(0)) == priced.list_cost
    return priced


CASES = [
    pytest.param(
        "gpt-4o",
        Usage(input_tokens=1000, output_tokens=500),
        # 1000 * 2.5/1M + 500 * 10/1M = 0.0025 + 0.005
        D("0.0075"),
        {"input": D("0.0025"), "output": D("0.005")},
        id="openai-plain",
    ),
    pytest.param(
        "gpt-4o",
        Usage(input_tokens=1000, cached_input_tokens=200, output_tokens=500),
        # uncached 800 * 2.5/1M = 0.002; cached 200 * 1.25/1M = 0.00025; 500 * 10/1M = 0.005
        D("0.00725"),
        {"input": D("0.002"), "cached_input": D("0.00025"), "output": D("0.005")},
        id="openai-cached",
    ),
    pytest.param(
        "gpt-5",
        Usage(
            input_tokens=10_000, cached_input_tokens=4000, output_tokens=3000, reasoning_tokens=2000
        ),
        # 6000 * 1.25/1M = 0.0075; 4000 * 0.125/1M = 0.0005;
        # output 3000 (reasoning 2000 included, billed at the output rate) * 10/1M = 0.03
        D("0.038"),
        {"input": D("0.0075"), "cached_input": D("0.0005"), "output": D("0.03")},
        id="openai-cached-and-reasoning",
    ),
    pytest.param(
        "text-embedding-3-small",
        Usage(input_tokens=5000, output_tokens=0),
        # 5000 * 0.02/1M = 0.0001
        D("0.0001"),
        {"input": D("0.0001")},
        id="embedding",
    ),
    pytest.param(
        "gpt-4o-mini-2024-07-18",
        Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        # dated snapshot -> gpt-4o-mini: 1M * 0.15/1M + 1M * 0.6/1M = 0.15 + 0.6
        D("0.75"),
        {"input": D("0.15"), "output": D("0.6")},
        id="dated-snapshot",
    ),
    pytest.param(
        "openai/gpt-4.1-nano",
        Usage(input_tokens=40, cached_input_tokens=0, output_tokens=10),
        # 40 * 0.1/1M = 0.000004; 10 * 0.4/1M = 0.000004
        D("0.000008"),
        {"input": D("0.000004"), "output": D("0.000004")},
        id="provider-prefix",
    ),
    pytest.param(
        "gpt-4o",
        Usage(input_tokens=100, cached_input_tokens=150, output_tokens=0),
        # cached larger than the total: uncached clamps to 0, cache read billed as reported:
        # 150 * 1.25/1M = 0.0001875
        D("0.0001875"),
        {"cached_input": D("0.0001875")},
        id="clamped-uncached",
    ),
    pytest.param(
        "gpt-4o",
        Usage(),
        # nothing reported: nothing billed
        D("0"),
        {},
        id="empty-usage",
    ),
]


@pytest.mark.parametrize(("model", "usage", "expected", "breakdown"), CASES)
def test_list_cost(
    model: str, usage: Usage, expected: Decimal, breakdown: dict[str, Decimal]
) -> None:
    priced = _price(model, usage)
    assert priced.list_cost == expected
    assert priced.cost == expected
    assert dict(priced.breakdown) == breakdown


TIER_CASES = [
    pytest.param(
        "gpt-4.1",
        "batch",
        Usage(input_tokens=1000, output_tokens=1000),
        # batch = half of 2 / 8: 1000 * 1/1M + 1000 * 4/1M = 0.001 + 0.004
        D("0.005"),
        "batch",
        id="batch",
    ),
    pytest.param(
        "gpt-5-mini",
        "flex",
        Usage(input_tokens=2000, output_tokens=1000),
        # flex = batch rates 0.125 / 1: 2000 * 0.125/1M + 1000 * 1/1M = 0.00025 + 0.001
        D("0.00125"),
        "flex",
        id="flex",
    ),
    pytest.param(
        "gpt-4o",
        "priority",
        Usage(input_tokens=1000, output_tokens=500),
        # no priority rates in the catalog: standard, and the PricedCall says so
        D("0.0075"),
        "standard",
        id="tier-without-rates",
    ),
    pytest.param(
        "gpt-4o",
        "default",
        Usage(input_tokens=1000, output_tokens=500),
        # OpenAI reports "default" for the standard tier
        D("0.0075"),
        "standard",
        id="default-is-standard",
    ),
]


@pytest.mark.parametrize(("model", "tier", "usage", "expected", "billed_tier"), TIER_CASES)
def test_service_tier(
    model: str, tier: str, usage: Usage, expected: Decimal, billed_tier: str
) -> None:
    priced = _price(model, usage, service_tier=tier)
    assert (priced.list_cost, priced.service_tier) == (expected, billed_tier)


def test_price_change_on_a_date_keeps_the_past() -> None:
    usage = Usage(input_tokens=1_000_000, output_tokens=100_000)
    before = _price("o3", usage, at=datetime(2025, 6, 9, 23, 59, tzinfo=UTC))
    after = _price("o3", usage, at=datetime(2025, 6, 10, tzinfo=UTC))
    # launch prices: 1M * 10/1M + 100k * 40/1M = 10 + 4
    assert (before.list_cost, before.price_version) == (D("14"), "o3@2025-04-16")
    # after the 80% cut: 1M * 2/1M + 100k * 8/1M = 2 + 0.8
    assert (after.list_cost, after.price_version) == (D("2.8"), "o3@2025-06-10")


def test_unknown_model_is_none() -> None:
    assert builtin_catalog().price("no-such-model", Usage(input_tokens=1), at=AT) is None
    assert (
        builtin_catalog().worst_case_cost("nope", input_tokens=1, max_output_tokens=1, at=AT)
        is None
    )


MORE_CASES = [
    pytest.param(
        "claude-sonnet-4-5-20250929",
        Usage(
            input_tokens=10_000,
            cached_input_tokens=2000,
            cache_write_tokens=3000,
            cache_write_1h_tokens=4000,
            output_tokens=500,
        ),
        # uncached 10000-2000-3000-4000 = 1000 * 3/1M = 0.003; reads 2000 * 0.3/1M = 0.0006;
        # 5m writes 3000 * 3.75/1M = 0.01125; 1h writes 4000 * 6/1M = 0.024;
        # output 500 * 15/1M = 0.0075; total 0.04635
        D("0.04635"),
        {
            "input": D("0.003"),
            "cached_input": D("0.0006"),
            "cache_write": D("0.01125"),
            "cache_write_1h": D("0.024"),
            "output": D("0.0075"),
        },
        id="anthropic-5m-and-1h-writes-and-reads",
    ),
    pytest.param(
        "claude-haiku-4-5",
        Usage(input_tokens=1000, output_tokens=2000, reasoning_tokens=1500),
        # 1000 * 1/1M = 0.001; output 2000 (thinking included) * 5/1M = 0.01
        D("0.011"),
        {"input": D("0.001"), "output": D("0.01")},
        id="anthropic-thinking",
    ),
    pytest.param(
        "models/gemini-2.5-flash",
        Usage(input_tokens=1000, output_tokens=1000, reasoning_tokens=800),
        # output = candidates 200 + thoughts 800, all at the output rate:
        # 1000 * 0.3/1M = 0.0003; 1000 * 2.5/1M = 0.0025
        D("0.0028"),
        {"input": D("0.0003"), "output": D("0.0025")},
        id="gemini-thoughts",
    ),
    pytest.param(
        "gemini-2.5-flash",
        Usage(input_tokens=1000, audio_input_tokens=400, output_tokens=100),
        # text 600 * 0.3/1M = 0.00018; audio 400 * 1/1M = 0.0004; 100 * 2.5/1M = 0.00025
        D("0.00083"),
        {"input": D("0.00018"), "audio_input": D("0.0004"), "output": D("0.00025")},
        id="gemini-audio-input",
    ),
    pytest.param(
        "gemini-2.5-pro",
        Usage(input_tokens=200_000, output_tokens=1000),
        # exactly at the threshold is not above it: 200000 * 1.25/1M = 0.25; 1000 * 10/1M = 0.01
        D("0.26"),
        {"input": D("0.25"), "output": D("0.01")},
        id="long-context-at-threshold",
    ),
    pytest.param(
        "gemini-2.5-pro",
        Usage(input_tokens=200_001, output_tokens=1000),
        # above 200k every kind moves up: 200001 * 2.5/1M = 0.5000025; 1000 * 15/1M = 0.015
        D("0.5150025"),
        {"input": D("0.5000025"), "output": D("0.015")},
        id="long-context-just-above",
    ),
    pytest.param(
        "gpt-5.6",
        Usage(
            input_tokens=300_000,
            cached_input_tokens=50_000,
            cache_write_tokens=50_000,
            output_tokens=10_000,
        ),
        # above 272k: uncached 200000 * 8/1M = 1.6; reads 50000 * 0.8/1M = 0.04;
        # writes 50000 * 10/1M = 0.5; output 10000 * 30/1M = 0.3
        D("2.44"),
        {
            "input": D("1.6"),
            "cached_input": D("0.04"),
            "cache_write": D("0.5"),
            "output": D("0.3"),
        },
        id="long-context-moves-cache-rates-too",
    ),
    pytest.param(
        "gemini-2.5-pro",
        Usage(input_tokens=100, output_tokens=100, web_search_calls=2),
        # 100 * 1.25/1M = 0.000125; 100 * 10/1M = 0.001; 2 searches * 0.035 = 0.07
        D("0.071125"),
        {"input": D("0.000125"), "output": D("0.001"), "request_fees": D("0.07")},
        id="per-call-fees",
    ),
    pytest.param(
        "claude-3-5-haiku-20241022",
        Usage(input_tokens=1_000_000, output_tokens=1_000_000),
        # retired, still priced: 0.8 + 4
        D("4.8"),
        {"input": D("0.8"), "output": D("4")},
        id="retired-model",
    ),
]


@pytest.mark.parametrize(("model", "usage", "expected", "breakdown"), MORE_CASES)
def test_more_list_costs(
    model: str, usage: Usage, expected: Decimal, breakdown: dict[str, Decimal]
) -> None:
    priced = _price(model, usage)
    assert (priced.list_cost, dict(priced.breakdown)) == (expected, breakdown)


def test_long_context_and_retired_are_reported() -> None:
    assert _price("gemini-2.5-pro", Usage(input_tokens=200_001)).long_context_above == 200_000
    assert _price("gemini-2.5-pro", Usage(input_tokens=200_000)).long_context_above is None
    assert _price("claude-3-5-haiku", Usage()).retired
    assert not _price("claude-haiku-4-5", Usage()).retired


def test_anthropic_batch() -> None:
    usage = Usage(input_tokens=10_000, cached_input_tokens=4000, output_tokens=1000)
    priced = _price("claude-opus-4-5", usage, service_tier="batch")
    # half price: 6000 * 2.5/1M = 0.015; 4000 * 0.25/1M = 0.001; 1000 * 12.5/1M = 0.0125
    assert priced.list_cost == D("0.0285")


SYNTHETIC_CASES = [
    pytest.param(
        "think-1",
        Usage(input_tokens=100, output_tokens=1000, reasoning_tokens=600, audio_output_tokens=300),
        # 100 * 1/1M = 0.0001; reasoning 600 * 3/1M = 0.0018; audio 300 * 10/1M = 0.003;
        # text output 1000-600-300 = 100 * 2/1M = 0.0002; per request 0.01
        D("0.0151"),
        {
            "input": D("0.0001"),
            "reasoning": D("0.0018"),
            "audio_output": D("0.003"),
            "output": D("0.0002"),
            "request_fees": D("0.01"),
        },
        id="reasoning-rate-of-its-own",
    ),
    pytest.param(
        "think-1",
        Usage(output_tokens=100, reasoning_tokens=600, audio_output_tokens=300),
        # subsets never exceed the reported total: reasoning 100 * 3/1M, nothing else
        D("0.0103"),
        {"reasoning": D("0.0003"), "request_fees": D("0.01")},
        id="output-subsets-clamped",
    ),
    pytest.param(
        "think-1",
        Usage(cached_input_tokens=10, audio_input_tokens=5, reasoning_tokens=7),
        # totals unreported: the parts are the totals. cached 10 and audio 5 at the input
        # rate 1/1M = 0.000015; reasoning 7 * 3/1M = 0.000021; fee 0.01
        D("0.010036"),
        {
            "cached_input": D("0.00001"),
            "audio_input": D("0.000005"),
            "reasoning": D("0.000021"),
            "request_fees": D("0.01"),
        },
        id="unreported-totals",
    ),
    pytest.param(
        "llama-3.1-70b-instruct",
        Usage(input_tokens=1_000_000, output_tokens=100_000),
        # 2 GPUs * 2.5/h = 5/h; input 5 / 10M tokens = 0.0000005 per token -> 0.5;
        # output 5 / 1M tokens = 0.000005 per token -> 100000 * 0.000005 = 0.5
        D("1.0"),
        {"input": D("0.5"), "output": D("0.5")},
        id="self-hosted-via-pattern-alias",
    ),
]


@pytest.mark.parametrize(("model", "usage", "expected", "breakdown"), SYNTHETIC_CASES)
def test_synthetic_costs(
    synthetic: Catalog, model: str, usage: Usage, expected: Decimal, breakdown: dict[str, Decimal]
) -> None:
    priced = synthetic.price(model, usage, at=AT)
    assert priced is not None
    assert (priced.list_cost, dict(priced.breakdown)) == (expected, breakdown)
    assert sum(priced.breakdown.values(), D(0)) == priced.list_cost
