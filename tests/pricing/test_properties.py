"""Properties of every built-in price: never negative, monotonic, itemised exactly."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from pricing import Usage, load_catalog

CATALOG = load_catalog(
    None,
    teams={
        "discount": {"rate_card": {"discount_pct": "12.5"}},
        "markup": {"rate_card": {"markup_pct": 30}},
    },
)
MODELS = CATALOG.models()
AT = datetime(2026, 11, 30, tzinfo=UTC)
PARTS = (
    "uncached",
    "cached",
    "write",
    "write_1h",
    "audio_in",
    "text_out",
    "reasoning",
    "audio_out",
)
counts = st.integers(min_value=0, max_value=400_000)
parts = st.fixed_dictionaries({part: counts for part in PARTS})
tiers = st.sampled_from([None, "default", "batch", "flex", "priority"])
teams = st.sampled_from([None, "discount", "markup"])


def _usage(p: dict[str, int]) -> Usage:
    """A consistent Usage from disjoint parts (audio and uncached text are both uncached)."""
    return Usage(
        input_tokens=p["uncached"] + p["audio_in"] + p["cached"] + p["write"] + p["write_1h"],
        cached_input_tokens=p["cached"],
        cache_write_tokens=p["write"],
        cache_write_1h_tokens=p["write_1h"],
        audio_input_tokens=p["audio_in"],
        output_tokens=p["text_out"] + p["reasoning"] + p["audio_out"],
        reasoning_tokens=p["reasoning"],
        audio_output_tokens=p["audio_out"],
    )


def _cost(model: str, p: dict[str, int], tier: str | None, team: str | None) -> Decimal:
    priced = CATALOG.price(model, _usage(p), at=AT, service_tier=tier, team=team)
    assert priced is not None
    return priced.cost


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), parts, tiers, teams)
def test_never_negative_and_itemised_exactly(
    model: str, p: dict[str, int], tier: str | None, team: str | None
) -> None:
    priced = CATALOG.price(model, _usage(p), at=AT, service_tier=tier, team=team)
    assert priced is not None
    assert priced.list_cost >= 0 and priced.cost >= 0
    assert sum(priced.breakdown.values(), Decimal(0)) == priced.list_cost
    assert all(value > 0 for value in priced.breakdown.values())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(MODELS),
    parts,
    st.sampled_from(PARTS),
    st.integers(min_value=1, max_value=300_000),
    tiers,
    teams,
)
def test_monotonic_in_every_token_count(
    model: str, p: dict[str, int], part: str, extra: int, tier: str | None, team: str | None
) -> None:
    more = {**p, part: p[part] + extra}
    assert _cost(model, more, tier, team) >= _cost(model, p, tier, team)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(MODELS), parts, tiers, teams)
def test_worst_case_bounds_the_real_cost(
    model: str, p: dict[str, int], tier: str | None, team: str | None
) -> None:
    usage = _usage(p)
    assert usage.input_tokens is not None and usage.output_tokens is not None
    bound = CATALOG.worst_case_cost(
        model,
        input_tokens=usage.input_tokens,
        max_output_tokens=usage.output_tokens,
        at=AT,
        team=team,
        service_tier=tier,
    )
    assert bound is not None
    assert bound >= _cost(model, p, tier, team)
    # and the call may be billed at the standard tier even when another was asked for
    assert bound >= _cost(model, p, None, team)


@given(parts)
def test_unreported_is_not_zero_but_never_negative(p: dict[str, int]) -> None:
    usage = replace(_usage(p), input_tokens=None, output_tokens=None)
    priced = CATALOG.price("gpt-5.6", usage, at=AT)
    assert priced is not None and priced.list_cost >= 0
