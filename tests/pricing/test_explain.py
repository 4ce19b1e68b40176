"""``prices show`` and ``prices quote`` output."""

from __future__ import annotations

from datetime import UTC, datetime

from pricing import Catalog, Usage, builtin_catalog, load_catalog
from pricing.explain import quote, show

AT = datetime(2026, 11, 30, tzinfo=UTC)


def test_show() -> None:
    text = show(builtin_catalog(), "claude-3-5-haiku-20241022", at=AT)
    assert text is not None
    lines = text.splitlines()
    assert lines[:2] == [
        "claude-3-5-haiku-20241022 -> claude-3-5-haiku (retired)",
        "catalog 2026-11-30, price_version claude-3-5-haiku@2024-10-22",
    ]
    assert "standard: input 0.8, cached_input 0.08, cache_write 1, cache_write_1h 1.6" in text
    assert "aliases: claude-3-5-haiku-latest, claude-haiku-3-5, claude-haiku-3.5" in text
    assert lines[-1] == "versions: claude-3-5-haiku@2024-10-22"
    assert show(builtin_catalog(), "nope", at=AT) is None


def test_show_long_context_and_fees() -> None:
    text = show(builtin_catalog(), "gemini-2.5-pro", at=AT)
    assert text is not None
    assert "standard: input 1.25, cached_input 0.125" in text
    assert "web_search $0.035" in text
    assert "standard above 200000 input tokens: input 2.5" in text


def test_show_reasoning_rate(synthetic: Catalog) -> None:
    text = show(synthetic, "think-1", at=AT)
    assert text is not None
    assert "reasoning 3" in text and "per_request $0.01" in text


def test_quote() -> None:
    usage = Usage(input_tokens=250_000, cached_input_tokens=10_000, output_tokens=1000)
    text = quote(builtin_catalog(), "claude-sonnet-4-5", usage, at=AT)
    # above 200k: 240000 * 6/1M = 1.44; 10000 * 0.6/1M = 0.006; 1000 * 22.5/1M = 0.0225
    assert text == "\n".join(
        [
            "claude-sonnet-4-5 (claude-sonnet-4-5@2025-09-29, standard)",
            "long-context rates: input above 200000 tokens",
            "  input           $1.44",
            "  cached_input    $0.006",
            "  output          $0.0225",
            "  list cost       $1.4685",
        ]
    )
    assert quote(builtin_catalog(), "nope", usage, at=AT) is None


def test_quote_with_team() -> None:
    catalog = load_catalog(None, teams={"search": {"rate_card": {"discount_pct": 10}}})
    text = quote(
        catalog, "gpt-4o", Usage(input_tokens=1000, output_tokens=500), at=AT, team="search"
    )
    # 0.0075 * 0.9
    assert text is not None
    assert text.splitlines()[-1] == "  cost            $0.00675 (rate card search)"
