from __future__ import annotations

from decimal import Decimal

import pytest

from budgets.money import MAX_NANOS, from_nanos, to_nanos


@pytest.mark.parametrize(
    ("usd", "nanos"),
    [
        pytest.param("0", 0, id="zero"),
        pytest.param("0.000000001", 1, id="one-nano"),
        pytest.param("0.0000000001", 1, id="sub-nano-rounds-up"),
        pytest.param("0.0000000010000001", 2, id="just-over-one-nano-rounds-up"),
        # 1234 input tokens at $2.50/M + 56 output at $10/M = 0.003085 + 0.00056
        pytest.param("0.003645", 3_645_000, id="gpt-4o-call"),
        pytest.param("500", 500_000_000_000, id="team-budget"),
    ],
)
def test_to_nanos_rounds_up(usd: str, nanos: int) -> None:
    assert to_nanos(Decimal(usd)) == nanos


def test_round_trip_is_exact() -> None:
    assert from_nanos(to_nanos(Decimal("0.003645"))) == Decimal("0.003645")
    assert from_nanos(1) == Decimal("0.000000001")


@pytest.mark.parametrize("bad", ["-0.01", "NaN", "Infinity"])
def test_negative_or_non_finite_is_an_error(bad: str) -> None:
    with pytest.raises(ValueError):
        to_nanos(Decimal(bad))


def test_counter_range_is_checked() -> None:
    assert to_nanos(from_nanos(MAX_NANOS)) == MAX_NANOS
    with pytest.raises(ValueError, match="largest exact"):
        to_nanos(from_nanos(MAX_NANOS + 1))
