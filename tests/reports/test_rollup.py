"""The hourly rollup: kept exactly by the writer, read by reports, rebuilt from the calls."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import delete, func, select, update

from proxy import rollup
from proxy.db import append_jsonl, create_engine
from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.api import line_json
from proxy.reports.query import SpendQuery, plan_source, run_spend
from proxy.reports.sample import sample_rows
from proxy.reports.selection import ReportError, Selection, parse_filters, parse_instant
from tests.reports.conftest import SPAN, START

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")  # leaves DST on 2026-11-01, inside the sample
KOLKATA = ZoneInfo("Asia/Kolkata")  # +05:30
KATHMANDU = ZoneInfo("Asia/Kathmandu")  # +05:45
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # +11 in November, +10:30 from April


def _json(lines: Any, group_by: tuple[str, ...]) -> list[dict[str, Any]]:
    return [line_json(line, group_by) for line in lines]


@pytest.mark.parametrize(
    ("group_by", "granularity", "zone", "filters", "start", "end", "source"),
    [
        (("team", "model"), "day", UTC, (), None, None, "rollup"),
        (("team",), "month", PARIS, (), "2026-10-31", "2026-11-03", "rollup"),
        (("project", "provider"), "hour", NEW_YORK, (), None, None, "rollup"),
        (("key", "outcome"), "day", NEW_YORK, ("project=ranker", "project=etl"), None, None,
         "rollup"),
        (("endpoint",), None, UTC, ("team=search", "team=growth", "outcome=ok"), None, None,
         "rollup"),
        (("model",), "day", LORD_HOWE, (), "2026-11-01", "2026-11-03", "rollup"),
        ((), None, KOLKATA, (), None, None, "rollup"),  # no buckets: the zone does not matter
        (("team",), "hour", UTC, ("key=key_search_1",), "2026-11-01T06:00Z", "2026-11-02T07:00Z",
         "rollup"),
        (("team",), "day", KOLKATA, (), None, None, "calls"),
        (("team", "project"), "hour", KATHMANDU, (), None, None, "calls"),
        (("team",), "hour", UTC, (), "2026-11-01T06:30Z", None, "calls"),
        (("tag:env",), "day", UTC, (), None, None, "calls"),
        (("team",), None, UTC, ("end_user=u-1",), None, None, "calls"),
        (("model_served",), "month", UTC, (), None, None, "calls"),
    ],
)  # fmt: skip
async def test_rollup_and_calls_give_the_same_report(
    filled: LedgerWriter,
    group_by: tuple[str, ...],
    granularity: str | None,
    zone: Any,
    filters: tuple[str, ...],
    start: str | None,
    end: str | None,
    source: str,
) -> None:
    sel = Selection(parse_instant(start, zone), parse_instant(end, zone), parse_filters(filters))
    query = SpendQuery(sel, group_by, granularity, zone)
    chosen, reason = await plan_source(filled.engine, query)
    assert chosen == source, reason
    from_calls = await run_spend(filled.engine, query, source="calls")
    assert from_calls  # not vacuous
    auto = await run_spend(filled.engine, query)
    # Exactly: the same Decimals, down to their digits as the API prints them.
    assert _json(auto, group_by) == _json(from_calls, group_by)
    if source == "rollup":
        from_rollup = await run_spend(filled.engine, query, source="rollup")
        assert _json(from_rollup, group_by) == _json(from_calls, group_by)
    else:
        with pytest.raises(ReportError, match="rollup cannot answer"):
            await run_spend(filled.engine, query, source="rollup")


async def _hourly(engine: Any) -> list[tuple[Any, ...]]:
    hourly = rollup.HOURLY
    async with engine.connect() as conn:
        rows = await conn.execute(select(hourly).order_by(*hourly.primary_key.columns))
        return [tuple(r) for r in rows]


async def _totals(engine: Any) -> tuple[Any, ...]:
    hourly = rollup.HOURLY
    async with engine.connect() as conn:
        got = await conn.execute(
            select(
                func.sum(hourly.c.requests),
                rollup.money_sum("cost_usd", conn.dialect.name),
                rollup.money_sum("list_cost_usd", conn.dialect.name),
                func.sum(hourly.c.output_tokens),
            )
        )
        requests, cost, list_cost, output = got.one()
    return int(requests), cost, list_cost, int(output)


def _expected_totals(rows: list[LedgerRow]) -> tuple[Any, ...]:
    return (
        len(rows),
        sum((r.cost_usd or Decimal(0) for r in rows), Decimal(0)),
        sum((r.list_cost_usd or Decimal(0) for r in rows), Decimal(0)),
        sum(r.output_tokens or 0 for r in rows),
    )


def _hand(rid: str, at: datetime, **kw: Any) -> LedgerRow:
    fields: dict[str, Any] = dict(
        request_id=rid, started_at=at, ended_at=at, team="search", endpoint="chat.completions",
        status_code=200, outcome="ok", latency_ms=1, input_tokens=10, output_tokens=3,
        cost_usd=Decimal("0.001"), list_cost_usd=Decimal("0.002"),
    )  # fmt: skip
    return LedgerRow(**(fields | kw))


async def test_the_writer_keeps_the_rollup_hand_worked(ledger: LedgerWriter) -> None:
    hour = datetime(2026, 11, 2, 9, tzinfo=UTC)
    rows = [
        _hand("h1", hour + timedelta(minutes=1)),
        _hand("h2", hour + timedelta(minutes=59, seconds=59), cost_usd=Decimal("0.0000001")),
        # project "" and project NULL are different groups; so is an error
        _hand("h3", hour + timedelta(minutes=2), project=""),
        _hand("h4", hour + timedelta(minutes=3), outcome="upstream_error", status_code=500,
              cost_usd=Decimal(0), list_cost_usd=Decimal(0), output_tokens=None),
        _hand("h5", hour + timedelta(hours=1), unpriced=True, cost_usd=None, list_cost_usd=None,
              model_requested="llama"),
    ]  # fmt: skip
    for row in rows:  # one batch each: h2 adds to h1's rollup row
        ledger.submit(row)
        await ledger.flush()
    got = [(r[0], r[2], r[4], r[7], r[8], r[9], r[10], r[11], r[12], r[13]) for r in
           await _hourly(ledger.engine)]  # fmt: skip
    # (bucket, project, model, outcome, nulls, requests, errors, unpriced, cost, list cost);
    # nulls: 1 project, 2 key, 4 model, 8 provider
    assert got == [
        (hour, "", "", "ok", 14, 1, 0, 0, Decimal("0.001"), Decimal("0.002")),
        (hour, "", "", "ok", 15, 2, 0, 0, Decimal("0.0010001"), Decimal("0.004")),
        (hour, "", "", "upstream_error", 15, 1, 1, 0, Decimal("0"), Decimal("0")),
        (hour + timedelta(hours=1), "", "llama", "ok", 11, 1, 0, 1, Decimal("0"), Decimal("0")),
    ]
    report = await run_spend(ledger.engine, SpendQuery(group_by=("project",)), source="rollup")
    assert [(ln.group, ln.requests, ln.cost_usd) for ln in report] == [
        (("",), 1, Decimal("0.001")),
        ((None,), 4, Decimal("0.0010001")),
    ]


async def test_replayed_rows_count_once(
    database_url: str, rows: list[LedgerRow], tmp_path: Path
) -> None:
    """The writer retries a batch after an ambiguous failure and replays its spill file at
    start: rows already stored (same request id and start time) add nothing, in the ledger
    and in the rollup. On PostgreSQL that is the (request_id, started_at) key."""
    spill = str(tmp_path / "spill.jsonl")
    writer = LedgerWriter(database_url, flush_interval=0.01, spill_path=spill)
    await writer.start()
    for row in rows[:400]:
        writer.submit(row)
    await writer.flush()
    for row in rows[300:500]:  # 100 again, 100 new
        writer.submit(row)
    await writer.flush()
    await writer.aclose()
    # A spill file left by a crash after its rows were written: all of them, plus the rest.
    append_jsonl(spill, [{c: getattr(r, c) for c in LedgerRow.model_fields} for r in rows])
    writer = LedgerWriter(database_url, flush_interval=0.01, spill_path=spill)
    await writer.start()
    try:
        assert not os.path.exists(spill)
        assert await writer.count() == len(rows)
        assert await _totals(writer.engine) == _expected_totals(rows)
    finally:
        await writer.aclose()


async def test_rebuild_recomputes_a_range_and_keeps_pruned_hours(
    filled: LedgerWriter, rows: list[LedgerRow]
) -> None:
    engine = filled.engine
    before = await _hourly(engine)
    hourly = rollup.HOURLY
    nov2 = datetime(2026, 11, 2, tzinfo=UTC)
    async with engine.begin() as conn:  # damage two days
        await conn.execute(delete(hourly).where(hourly.c.bucket >= nov2))
        await conn.execute(update(hourly).values(requests=hourly.c.requests + 1))
    # Rebuilding Nov 2 onwards (rounded out to whole hours) leaves earlier hours as they are.
    done = await rollup.rebuild(engine, nov2 - timedelta(minutes=30))
    assert done.start == nov2 - timedelta(hours=1) and not done.clamped
    after = await _hourly(engine)
    assert [r for r in after if r[0] >= done.start] == [r for r in before if r[0] >= done.start]
    assert all(a[9] == b[9] + 1 for a, b in zip(after, before, strict=False) if a[0] < done.start)
    await rollup.rebuild(engine)
    assert await _hourly(engine) == before
    # Calls before Nov 1 are pruned: a full rebuild must not touch their hours.
    nov1 = datetime(2026, 11, 1, tzinfo=UTC)
    async with engine.begin() as conn:
        await conn.execute(delete(LedgerRow.__table__).where(LedgerRow.started_at < nov1))  # type: ignore[attr-defined]
    done = await rollup.rebuild(engine, datetime(2026, 1, 1, tzinfo=UTC))
    assert done.clamped and done.start is not None and done.start >= nov1 - timedelta(hours=1)
    assert await _hourly(engine) == before
    assert await _totals(engine) == _expected_totals(rows)


def _writer_process(url: str, seed: int, go: Path, shared: int) -> subprocess.Popen[str]:
    script = Path(__file__).with_name("writer_process.py")
    return subprocess.Popen(
        [sys.executable, str(script), url, str(seed), str(go), str(shared)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def test_writers_in_several_processes_lose_no_increment(
    database_url: str, tmp_path: Path
) -> None:
    """Three proxy processes write at once into the same hours and groups (and each also
    replays the same 300 rows): the rollup ends up exactly the sum of the calls stored,
    with no deadlock and no lost or doubled increment."""
    setup = LedgerWriter(database_url, maintenance_interval=None)
    await setup.start()  # the schema, once
    await setup.aclose()
    go = tmp_path / "go"
    procs = [_writer_process(database_url, seed, go, 300) for seed in (1, 2, 3)]
    time.sleep(0.5)
    go.touch()
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outputs
    expected = {r.request_id: r for seed in (0, 1, 2, 3) for r in _process_rows(seed, 300)}
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            stored = await conn.scalar(select(func.count()).select_from(LedgerRow.__table__))  # type: ignore[attr-defined]
        assert stored == len(expected)
        assert await _totals(engine) == _expected_totals(list(expected.values()))
    finally:
        await engine.dispose()


def _process_rows(seed: int, shared: int) -> list[LedgerRow]:
    """What writer_process.py writes: seed 0 is the part every process shares."""
    count = shared if seed == 0 else 1500
    return list(sample_rows(count, START, SPAN / 10, seed=seed))
