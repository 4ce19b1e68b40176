"""Spend reports equal the ledger's rows summed exactly, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.query import SpendQuery, bucket_start, run_spend
from proxy.reports.selection import (
    ReportError,
    Selection,
    dimension_value,
    parse_filters,
    parse_instant,
    parse_zone,
)

PARIS = ZoneInfo("Europe/Paris")
KOLKATA = ZoneInfo("Asia/Kolkata")


def _row(rid: str, at: datetime, team: str, cost: str, **kw: Any) -> LedgerRow:
    fields: dict[str, Any] = dict(
        request_id=rid, started_at=at, ended_at=at + timedelta(seconds=1), team=team,
        endpoint="chat.completions", provider="openai", model_requested="gpt-4o",
        status_code=200, outcome="ok", latency_ms=1000, input_tokens=10, output_tokens=5,
        cost_usd=Decimal(cost), list_cost_usd=Decimal(cost),
    )  # fmt: skip
    return LedgerRow(**(fields | kw))


HAND = [
    _row("r1", datetime(2026, 11, 1, 23, 30, tzinfo=UTC), "search", "0.0055"),
    _row("r2", datetime(2026, 11, 2, 0, 30, tzinfo=UTC), "search", "0.001"),
    _row(
        "r3",
        datetime(2026, 11, 2, 1, 0, tzinfo=UTC),
        "research",
        "0.25",
        outcome="upstream_error",
        status_code=500,
    ),
]


async def _fill(ledger: LedgerWriter, rows: list[LedgerRow]) -> None:
    for row in rows:
        ledger.submit(row)
    await ledger.flush()


def _simple(lines: Any) -> list[tuple[Any, ...]]:
    return [
        (ln.bucket.isoformat() if ln.bucket else None, *ln.group, ln.cost_usd, ln.requests,
         ln.errors)
        for ln in lines
    ]  # fmt: skip


async def test_hand_worked_days_in_two_zones(ledger: LedgerWriter) -> None:
    await _fill(ledger, HAND)
    # Paris is UTC+1 in November: r1 (23:30Z on the 1st) is 00:30 on the 2nd there, so all
    # three calls fall on Nov 2: search 0.0055 + 0.001 = 0.0065 (2 calls), research 0.25
    # (1 call, 1 error).
    paris = SpendQuery(Selection(), ("team",), "day", PARIS)
    assert _simple(await run_spend(ledger.engine, paris)) == [
        ("2026-11-02T00:00:00+01:00", "research", Decimal("0.25"), 1, 1),
        ("2026-11-02T00:00:00+01:00", "search", Decimal("0.0065"), 2, 0),
    ]
    # In UTC r1 stays on Nov 1.
    utc = SpendQuery(Selection(), ("team",), "day", UTC)
    assert _simple(await run_spend(ledger.engine, utc)) == [
        ("2026-11-01T00:00:00+00:00", "search", Decimal("0.0055"), 1, 0),
        ("2026-11-02T00:00:00+00:00", "research", Decimal("0.25"), 1, 1),
        ("2026-11-02T00:00:00+00:00", "search", Decimal("0.001"), 1, 0),
    ]
    # "Nov 2" as a range: in Paris [Nov 1 23:00Z, Nov 2 23:00Z) holds r1; in UTC it does not.
    day_paris = Selection(parse_instant("2026-11-02", PARIS), parse_instant("2026-11-03", PARIS))
    total = await run_spend(ledger.engine, SpendQuery(day_paris))
    assert _simple(total) == [(None, Decimal("0.2565"), 3, 1)]  # 0.0055 + 0.001 + 0.25
    day_utc = Selection(parse_instant("2026-11-02", UTC), parse_instant("2026-11-03", UTC))
    total = await run_spend(ledger.engine, SpendQuery(day_utc))
    assert _simple(total) == [(None, Decimal("0.251"), 2, 1)]  # 0.001 + 0.25


async def test_empty_range_has_no_lines(ledger: LedgerWriter) -> None:
    await _fill(ledger, HAND)
    empty = Selection(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 2, 1, tzinfo=UTC))
    assert await run_spend(ledger.engine, SpendQuery(empty, ("team",), "day")) == []
    assert await run_spend(ledger.engine, SpendQuery(empty)) == []


def _expected(rows: list[LedgerRow], query: SpendQuery) -> dict[Any, dict[str, Any]]:
    """The report worked out row by row in Python, independently of the report code."""
    sel = query.selection
    out: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {"cost": Decimal(0), "list": Decimal(0), "in": 0, "out": 0, "n": 0, "err": 0}
    )
    by_dim = defaultdict(set)
    for d, v in sel.filters:
        by_dim[d].add(v)
    for row in rows:
        if (sel.start and row.started_at < sel.start) or (sel.end and row.started_at >= sel.end):
            continue
        record = row.model_dump()
        if any(dimension_value(d, record) not in vs for d, vs in by_dim.items()):
            continue
        bucket = None
        if query.granularity:
            bucket = bucket_start(row.started_at, query.granularity, query.zone).isoformat()
        acc = out[(bucket, *(dimension_value(d, record) for d in query.group_by))]
        acc["cost"] += row.cost_usd or 0
        acc["list"] += row.list_cost_usd or 0
        acc["in"] += row.input_tokens or 0
        acc["out"] += row.output_tokens or 0
        acc["n"] += 1
        acc["err"] += row.outcome != "ok"
    return dict(out)


@pytest.mark.parametrize(
    ("group_by", "granularity", "zone", "filters", "start", "end"),
    [
        (("team", "model"), "day", UTC, (), None, None),
        (("team",), "month", PARIS, (), "2026-10-31", "2026-11-03"),
        (("project", "tag:env"), "hour", KOLKATA, (), None, None),  # a half-hour offset
        (("provider", "outcome"), None, UTC, ("team=search", "team=growth"), None, None),
        (("key", "end_user"), "day", PARIS, ("tag:env=prod",), "2026-11-01", None),
        (("endpoint",), None, UTC, ("model=gpt-4o", "outcome=ok"), None, "2026-11-02T06:00"),
    ],
)
async def test_report_equals_the_ledger_summed_exactly(
    filled: LedgerWriter,
    rows: list[LedgerRow],
    group_by: tuple[str, ...],
    granularity: str | None,
    zone: Any,
    filters: tuple[str, ...],
    start: str | None,
    end: str | None,
) -> None:
    sel = Selection(parse_instant(start, zone), parse_instant(end, zone), parse_filters(filters))
    query = SpendQuery(sel, group_by, granularity, zone)
    lines = await run_spend(filled.engine, query)
    got = {
        (ln.bucket.isoformat() if ln.bucket else None, *ln.group): {
            "cost": ln.cost_usd, "list": ln.list_cost_usd, "in": ln.tokens["input_tokens"],
            "out": ln.tokens["output_tokens"], "n": ln.requests, "err": ln.errors,
        }
        for ln in lines
    }  # fmt: skip
    expected = _expected(rows, query)
    assert len(got) == len(lines) and expected  # no duplicate groups; not vacuous
    assert got == expected


def test_bucket_start_respects_dst_and_offsets() -> None:
    # Paris leaves DST on 2026-10-25 at 03:00 CEST (01:00Z): the day holds 25 hours and
    # starts at 00:00+02:00 (2026-10-24T22:00Z).
    at = datetime(2026, 10, 25, 20, 0, tzinfo=UTC)
    assert bucket_start(at, "day", PARIS).isoformat() == "2026-10-25T00:00:00+02:00"
    assert bucket_start(at, "hour", PARIS).isoformat() == "2026-10-25T21:00:00+01:00"
    assert bucket_start(at, "month", PARIS).isoformat() == "2026-10-01T00:00:00+02:00"
    # Kolkata is UTC+05:30: 20:00Z is 01:30 on the 26th, so the hour starts at 19:30Z.
    assert bucket_start(at, "hour", KOLKATA).isoformat() == "2026-10-26T01:00:00+05:30"


def test_bad_arguments_are_report_errors() -> None:
    with pytest.raises(ReportError, match="time zone"):
        parse_zone("Mars/Olympus")
    with pytest.raises(ReportError, match="dimension"):
        parse_filters(["colour=red"])
    with pytest.raises(ReportError, match="granularity"):
        SpendQuery(granularity="week")
    with pytest.raises(ReportError, match="ends before"):
        Selection(datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC))
