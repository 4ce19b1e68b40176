"""Override files, price versions added by an override, negotiated discounts, bad entries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from pricing import PricingError, Usage, load_catalog
from pricing.entry import parse_entry
from pricing.loader import catalog_from_raw
from pricing.values import safe_load

D = Decimal
USAGE = Usage(input_tokens=1000, output_tokens=500)  # gpt-4o: 0.0025 + 0.005 = 0.0075

OVERRIDE = """
version: acme-1
source: ignored at the top level
models:
  gpt-4o:
    max_output_tokens: 8000
    aliases: [house-model]
    source: "acme agreement, 2026-12"
    prices:
      effective_from: 2027-01-01
      input: 2
      output: 8
  house-llm:
    source: internal
    prices:
      - {effective_from: 2026-01-01, input: 1, output: 1, price_version: house-v1}
discounts:
  - {provider: openai, discount_pct: 20}
  - {models: [gpt-4o-2024-08-06], discount_pct: 25, effective_from: 2027-02-01}
  - {discount_pct: 5, effective_until: 2026-01-01, source: old agreement}
"""


@pytest.fixture
def override(tmp_path: Path) -> Path:
    path = tmp_path / "prices.yaml"
    path.write_text(OVERRIDE, encoding="utf-8")
    return path


def test_override_adds_a_version_without_rewriting_the_past(override: Path) -> None:
    catalog = load_catalog(override)
    assert catalog.version == "2026-11-30+acme-1"
    before = catalog.price("gpt-4o", USAGE, at=datetime(2026, 12, 31, 23, 59, tzinfo=UTC))
    after = catalog.price("gpt-4o", USAGE, at=datetime(2027, 1, 1, tzinfo=UTC))
    assert before is not None and after is not None
    assert (before.list_cost, before.price_version) == (D("0.0075"), "gpt-4o@2024-08-06")
    # 1000 * 2/1M + 500 * 8/1M = 0.002 + 0.004
    assert (after.list_cost, after.price_version) == (D("0.006"), "gpt-4o@2027-01-01+acme-1")
    assert catalog.max_output_tokens("house-model") == 8000
    assert catalog.resolve("gpt-4o-2024-11-20") == "gpt-4o"
    house = catalog.price("house-llm", USAGE, at=datetime(2026, 6, 1))
    assert house is not None and house.price_version == "house-v1"


@pytest.mark.parametrize(
    ("model", "usage", "at", "team", "expected"),
    [
        # provider-wide 20% and the team's 10%: 0.0075 * 0.8 * 0.9
        pytest.param("gpt-4o", USAGE, datetime(2026, 6, 1), "search", D("0.0054"), id="stacked"),
        # the model-specific 25% beats the provider-wide 20%, using the 2027 price:
        # (1000 * 2/1M + 500 * 8/1M) * 0.75 = 0.006 * 0.75
        pytest.param("gpt-4o", USAGE, datetime(2027, 3, 1), None, D("0.0045"), id="specific"),
        # global 5% until 2026-01-01: haiku 1000 * 1/1M + 500 * 5/1M = 0.0035, * 0.95
        pytest.param(
            "claude-haiku-4-5", USAGE, datetime(2025, 12, 1), None, D("0.003325"), id="global"
        ),
        pytest.param(
            "claude-haiku-4-5", USAGE, datetime(2026, 1, 1), None, D("0.0035"), id="expired"
        ),
    ],
)
def test_negotiated_discounts(
    override: Path, model: str, usage: Usage, at: datetime, team: str | None, expected: Decimal
) -> None:
    catalog = load_catalog(override, teams={"search": {"rate_card": {"discount_pct": 10}}})
    priced = catalog.price(model, usage, at=at, team=team)
    assert priced is not None
    assert priced.cost == expected
    assert priced.list_cost == sum(priced.breakdown.values(), D(0))


def test_load_without_file_is_builtin() -> None:
    assert load_catalog(None).version == "2026-11-30"


def test_override_without_version(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text("", encoding="utf-8")
    assert load_catalog(path).version == "2026-11-30+override"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models:\n  gpt-4o: {prices: 3}\n", "must be a list"),
        ("models:\n  gpt-4o: {prices: [{effective_from: never}]}\n", "expected a date"),
        ("currency: EUR\n", "currency must be USD"),
        ("bogus: 1\n", "unknown top-level keys"),
        ("discounts: [{discount_pct: 5, models: [nope]}]\n", "unknown model"),
    ],
)
def test_bad_override(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PricingError, match=message):
        load_catalog(path)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "expected a mapping"),
        ({"bogus": 1}, "unknown keys"),
        ({"prices": []}, "non-empty list"),
        ({"prices": [{"input": 1}]}, "needs 'effective_from'"),
        (
            {"prices": [{"effective_from": "2026-01-01", "input": 1, "output": 1}]},
            "needs a 'source'",
        ),
        ({"source": "s", "prices": [{"effective_from": "2026-01-01", "x": 1}]}, "unknown keys"),
        ({"source": "s", "aliases": "a", "prices": [{"effective_from": "2026-01-01"}]}, "rate"),
        (
            {
                "source": "s",
                "prices": {"effective_from": "2026-01-01", "input": 1, "output": 1},
                "aliases": "a",
            },
            "'aliases' must be a list",
        ),
        (
            {
                "source": "s",
                "prices": {
                    "effective_from": "2026-01-01",
                    "input": 1,
                    "output": 1,
                    "tiers": {"premium": {}},
                },
            },
            "unknown service tier",
        ),
        (
            {
                "source": "s",
                "prices": [
                    {"effective_from": "2026-01-01", "input": 1, "output": 1},
                    {"effective_from": "2026-01-01T00:00:00Z", "input": 2, "output": 2},
                ],
            },
            "overlapping price versions, two start at 2026-01-01$",
        ),
    ],
)
def test_bad_entries(raw: object, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        parse_entry("gpt-x", raw)


def test_entry_metadata() -> None:
    entry = parse_entry(
        "old-1",
        {
            "source": "s",
            "retired": "2026-03-01",
            "aliases": ["Old-One"],
            "notes": "gone",
            "prices": [
                {"effective_from": "2026-01-01T12:00:00Z", "input": 1, "output": 1},
                {"effective_from": "2025-01-01", "input": 2, "output": 2},
            ],
        },
    )
    assert entry.retired and entry.retired_on == datetime(2026, 3, 1, tzinfo=UTC)
    assert entry.aliases == ("old-one",)
    assert [v.label for v in entry.versions] == ["old-1@2025-01-01", "old-1@2026-01-01"]
    # before the first version, the first applies; at 11:59 on the day, still the older one
    assert entry.version_at(datetime(2020, 1, 1)).label == "old-1@2025-01-01"
    assert entry.version_at(datetime(2026, 1, 1, 11, 59)).label == "old-1@2025-01-01"
    assert entry.version_at(datetime(2026, 1, 1, 12, 0)).label == "old-1@2026-01-01"


def test_overlap_at_a_time_of_day() -> None:
    raw = {
        "source": "s",
        "prices": [
            {"effective_from": "2026-01-01T12:00:00Z", "input": 1, "output": 1},
            {"effective_from": "2026-01-01T12:00:00Z", "input": 2, "output": 2},
        ],
    }
    with pytest.raises(PricingError, match="2026-01-01T12:00:00"):
        parse_entry("gpt-x", raw)


@pytest.mark.parametrize(
    ("discounts", "message"),
    [
        ("{provider: openai}", "must be a list|expected a list"),
        ("[{provider: openai}]", "needs discount_pct"),
        ("[{discount_pct: 5, bogus: 1}]", "unknown keys"),
        ("[{discount_pct: 5, models: gpt-4o}]", "must be a list"),
    ],
)
def test_bad_discounts(discounts: str, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        catalog_from_raw(safe_load(f"discounts: {discounts}\n"))
