"""Team rate cards and negotiated discounts, worked out by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from pricing import PricingError, Usage, load_catalog

D = Decimal
AT = datetime(2026, 11, 30, tzinfo=UTC)
USAGE = Usage(input_tokens=1000, output_tokens=500)  # gpt-4o list: 0.0025 + 0.005 = 0.0075

TEAMS = {
    "search": {"rate_card": {"discount_pct": 10}},
    "research": {
        "rate_card": [
            {"effective_from": "2026-01-01", "markup_pct": 15},
            {
                "effective_from": "2026-07-01",
                "markup_pct": "20",
                "models": {"gpt-4o-2024-08-06": {"input": 2, "output": 8}},
            },
        ]
    },
    "nocard": {"budget_owner": "x"},
}


@pytest.mark.parametrize(
    ("team", "at", "expected", "card"),
    [
        # 0.0075 * (1 - 10/100) = 0.00675
        pytest.param("search", AT, D("0.00675"), "search", id="discount"),
        # 0.0075 * (1 + 15/100) = 0.008625
        pytest.param(
            "research", datetime(2026, 3, 1), D("0.008625"), "research@2026-01-01", id="markup"
        ),
        # before the card's first version: list price
        pytest.param("research", datetime(2025, 12, 31), D("0.0075"), None, id="before-card"),
        # custom gpt-4o price from 2026-07-01 is final: 1000 * 2/1M + 500 * 8/1M = 0.002 + 0.004
        pytest.param("research", AT, D("0.006"), "research@2026-07-01", id="custom-price"),
        pytest.param("nocard", AT, D("0.0075"), None, id="team-without-card"),
        pytest.param(None, AT, D("0.0075"), None, id="no-team"),
    ],
)
def test_team_cost(team: str | None, at: datetime, expected: Decimal, card: str | None) -> None:
    catalog = load_catalog(None, teams=TEAMS)
    priced = catalog.price("gpt-4o", USAGE, at=at, team=team)
    assert priced is not None
    assert priced.list_cost == D("0.0075")
    assert (priced.cost, priced.rate_card) == (expected, card)
    assert catalog.teams() == ["research", "search"]


def test_worst_case_applies_the_team_factor() -> None:
    catalog = load_catalog(None, teams=TEAMS)
    # (1000 * 2.5/1M + 500 * 10/1M) * 1.15 = 0.0075 * 1.15
    bound = catalog.worst_case_cost(
        "gpt-4o", input_tokens=1000, max_output_tokens=500, at=datetime(2026, 3, 1), team="research"
    )
    assert bound == D("0.008625")
    # the custom price replaces the list: 1000 * 2/1M + 500 * 8/1M
    bound = catalog.worst_case_cost(
        "gpt-4o", input_tokens=1000, max_output_tokens=500, at=AT, team="research"
    )
    assert bound == D("0.006")


@pytest.mark.parametrize(
    ("teams", "message"),
    [
        ({"t": {"rate_card": {"discount_pct": 10, "markup_pct": 5}}}, "not both"),
        ({"t": {"rate_card": {"discount_pct": 120}}}, "above 100"),
        ({"t": {"rate_card": {"discount_pct": -1}}}, "negative"),
        ({"t": {"rate_card": {"bogus": 1}}}, "unknown rate_card keys"),
        ({"t": {"rate_card": {"models": {"nope": {"input": 1, "output": 1}}}}}, "unknown model"),
        (
            {
                "t": {
                    "rate_card": [
                        {"effective_from": "2026-01-01"},
                        {"effective_from": "2026-01-01"},
                    ]
                }
            },
            "two rate_card versions",
        ),
    ],
)
def test_bad_rate_cards(teams: dict[str, object], message: str) -> None:
    with pytest.raises(PricingError, match=message):
        load_catalog(None, teams=teams)
