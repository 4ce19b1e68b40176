"""The normalised usage record."""

from __future__ import annotations

from pricing import Usage


def test_total_counts_unreported_as_zero() -> None:
    assert Usage(input_tokens=10, output_tokens=5).total_tokens == 15
    assert Usage(output_tokens=5).total_tokens == 5
    assert Usage().total_tokens == 0
