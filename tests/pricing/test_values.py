"""Exact numbers and dates from raw config."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from pricing import PricingError
from pricing.values import as_date, as_decimal, as_int, as_mapping, as_str, safe_load, utc


def test_yaml_floats_are_exact_decimals() -> None:
    loaded = safe_load("a: 0.15\nb: 1_000.5\nc: 3\nd: '0.1'\ne: .inf\n")
    assert loaded == {"a": Decimal("0.15"), "b": Decimal("1000.5"), "c": 3, "d": "0.1", "e": ".inf"}
    assert isinstance(loaded["a"], Decimal)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (Decimal("0.15"), Decimal("0.15")),
        (0.15, Decimal("0.15")),
        (3, Decimal(3)),
        (" 1_0.5 ", Decimal("10.5")),
    ],
)
def test_as_decimal(raw: object, expected: Decimal) -> None:
    assert as_decimal(raw, "x") == expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (True, "expected a number"),
        ([1], "expected a number"),
        ("abc", "not a number"),
        (".inf", "not a number"),
        ("inf", "not a finite number"),
        (-1, "negative"),
    ],
)
def test_as_decimal_rejects(raw: object, message: str) -> None:
    with pytest.raises(PricingError, match=message):
        as_decimal(raw, "gpt-x: field 'input'")


def test_negative_allowed_when_asked() -> None:
    assert as_decimal("-1", "x", allow_negative=True) == Decimal(-1)


@pytest.mark.parametrize("raw", [True, "1.5", [], None])
def test_as_int_rejects(raw: object) -> None:
    with pytest.raises(PricingError, match="integer"):
        as_int(raw, "cap")


def test_as_int() -> None:
    assert as_int("128000", "cap") == 128000
    assert as_int(Decimal("5.0"), "cap") == 5


def test_strings_and_mappings() -> None:
    assert as_str(" a ", "x") == "a"
    with pytest.raises(PricingError):
        as_str("  ", "x")
    with pytest.raises(PricingError):
        as_mapping([1], "x")
    with pytest.raises(PricingError):
        as_mapping({1: 2}, "x")


def test_dates() -> None:
    midnight = datetime(2026, 1, 2, tzinfo=UTC)
    assert as_date(date(2026, 1, 2), "x") == midnight
    assert as_date("2026-01-02", "x") == midnight
    assert as_date("2026-01-02T01:00:00+01:00", "x") == midnight
    assert as_date(datetime(2026, 1, 2), "x") == midnight
    assert utc(datetime(2026, 1, 2, 1, tzinfo=timezone(timedelta(hours=1)))) == midnight
    for bad in ("yesterday", 20260102):
        with pytest.raises(PricingError, match="expected a date"):
            as_date(bad, "x")
