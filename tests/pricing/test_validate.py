"""``prices check``: every problem in one readable report."""

from __future__ import annotations

import pytest

from pricing.validate import check_builtin, check_document, check_text

GOOD = """
version: t
models:
  a:
    source: s
    aliases: [a-latest, "a-*"]
    prices: [{effective_from: 2026-01-01, input: 1, output: 2}]
  a-mini:
    source: s
    prices: [{effective_from: 2026-01-01, input: 1, output: 2}]
  b:
    source: s
    prices: [{effective_from: 2026-01-01, input: 1, output: 2}]
"""


def test_builtin_passes() -> None:
    report = check_builtin()
    assert report.ok, report.render()
    assert report.models >= 35
    assert report.render().endswith("OK")


def test_warnings_do_not_fail() -> None:
    report = check_text(GOOD)
    assert report.ok
    assert report.render().splitlines() == [
        "catalog t: 3 models, 0 error(s), 1 warning(s)",
        "  warning a: pattern 'a-*' also matches model 'a-mini' (exact ids win)",
        "OK",
    ]


NEGATIVE = """
models:
  a:
    source: s
    prices: [{effective_from: 2026-01-01, input: -0.5, output: 2}]
"""
OVERLAP = """
models:
  a:
    source: s
    prices:
      - {effective_from: 2026-01-01, input: 1, output: 2}
      - {effective_from: 2026-01-01, input: 2, output: 3}
"""
SHADOWS = """
models:
  a: {source: s, aliases: [b, x], prices: [{effective_from: 2026-01-01, input: 1, output: 2}]}
  b: {source: s, aliases: [b, x], prices: [{effective_from: 2026-01-01, input: 1, output: 2}]}
"""
SUSPICIOUS = """
models:
  a:
    source: s
    prices:
      - effective_from: 2026-01-01
        input: 1
        cached_input: 10
        output: 2
        long_context: [{above: 100, input: 0.5}]
"""


@pytest.mark.parametrize(
    ("text", "ok", "lines"),
    [
        (
            NEGATIVE,
            False,
            [
                "  error   a: a (2026-01-01): field 'input': negative value -0.5"
                " (a price can not be negative)"
            ],
        ),
        (OVERLAP, False, ["  error   a: a: overlapping price versions, two start at 2026-01-01"]),
        (
            SHADOWS,
            False,
            [
                "  error   a: alias 'b' shadows model 'b'",
                "  error   b: alias 'b' repeats the model id",
                "  error   b: alias 'x' is also an alias of 'a'",
            ],
        ),
        (
            SUSPICIOUS,
            True,
            [
                "  warning a@2026-01-01 (standard): cache reads cost more than input",
                "  warning a@2026-01-01 (standard):"
                " long_context above 100 is cheaper than below it",
            ],
        ),
        ("models: [a]\n", False, ["  error   models: models: expected a mapping, got ['a']"]),
        ("- 1\n", False, ["  error   catalog: catalog: expected a mapping, got [1]"]),
        (
            "currency: EUR\nbogus: 1\ndiscounts: 5\n",
            False,
            [
                "  error   catalog: unknown top-level key 'bogus'",
                "  error   catalog: currency must be USD",
                "  error   discounts: discounts:"
                " expected a list of {discount_pct, provider?, models?, ...}",
            ],
        ),
        ("a: [", False, None),
    ],
)
def test_reports(text: str, ok: bool, lines: list[str] | None) -> None:
    report = check_text(text)
    assert report.ok is ok
    rendered = report.render().splitlines()
    assert rendered[-1] == ("OK" if ok else "FAILED")
    if lines is not None:
        assert rendered[1:-1] == lines
    else:
        assert rendered[1].startswith("  error   file: ")


def test_override_is_checked_against_the_builtin() -> None:
    report = check_text("models:\n  gpt-4o-mini: {aliases: [gpt-4o]}\n", as_override=True)
    assert not report.ok
    assert "alias 'gpt-4o' shadows model 'gpt-4o'" in report.render()
    assert check_text("version: x\n", as_override=True).ok
    assert not check_text("models:\n  gpt-4o: {prices: 1}\n", as_override=True).ok


def test_document_form() -> None:
    assert check_document({"version": 1}).version == "1"
