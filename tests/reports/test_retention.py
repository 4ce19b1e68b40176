"""Retention and partitions: old calls go (whole months on PostgreSQL, batches on SQLite),
the hourly rollup stays, and no row is ever refused for want of a partition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from proxy import retention, rollup
from proxy.config import parse_config
from proxy.errors import ConfigError
from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.api import line_json
from proxy.reports.query import SpendQuery, run_spend
from proxy.reports.selection import Selection

OCT30 = datetime(2026, 10, 30, tzinfo=UTC)
NOV1 = datetime(2026, 11, 1, tzinfo=UTC)
LEDGER = LedgerRow.__table__  # type: ignore[attr-defined]


async def _writer(url: str) -> LedgerWriter:
    writer = LedgerWriter(url, flush_interval=0.01, batch_size=1000)
    await writer.start()
    return writer


@pytest.fixture
async def sqlite_ledger(tmp_path: Path) -> AsyncIterator[LedgerWriter]:
    writer = await _writer(f"sqlite:///{tmp_path}/ledger.db")
    yield writer
    await writer.aclose()


@pytest.fixture
async def pg_ledger(pg_database_url: str) -> AsyncIterator[LedgerWriter]:
    writer = await _writer(pg_database_url)
    yield writer
    await writer.aclose()


async def _count(engine: Any, table: str = "ledger_calls") -> int:
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar())


async def _hourly(engine: Any) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        found = await conn.execute(select(rollup.HOURLY).order_by(rollup.HOURLY.c.bucket))
        return sorted(tuple(r) for r in found)


async def _report(engine: Any, source: str) -> list[dict[str, Any]]:
    query = SpendQuery(Selection(OCT30, NOV1 + timedelta(days=2)), ("team",), "day")
    return [line_json(ln, ("team",)) for ln in await run_spend(engine, query, source=source)]


@pytest.mark.parametrize("dry_run", [True, False])
async def test_sqlite_prunes_in_batches_and_keeps_the_rollup(
    sqlite_ledger: LedgerWriter,
    rows: list[LedgerRow],
    monkeypatch: pytest.MonkeyPatch,
    dry_run: bool,
) -> None:
    ledger = sqlite_ledger
    monkeypatch.setattr(retention, "DELETE_BATCH", 7)
    for row in rows:
        ledger.submit(row)
    await ledger.flush()
    engine = ledger.engine
    rollup_before, report_before = await _hourly(engine), await _report(engine, "calls")
    cutoff = NOV1 + timedelta(hours=10)
    old = sum(r.started_at < cutoff for r in rows)
    assert 7 < old < len(rows)
    # 10:20 is taken down to 10:00, so the hour stays whole in the calls
    pruned = await retention.prune(engine, cutoff + timedelta(minutes=20), dry_run=dry_run)
    assert (pruned.before, pruned.rows, pruned.partitions) == (cutoff, old, [])
    assert await _count(engine) == (len(rows) if dry_run else len(rows) - old)
    assert await _hourly(engine) == rollup_before
    # The pruned days are still reported, from the rollup, to the last digit.
    assert await _report(engine, "auto") == report_before


@pytest.mark.postgres
async def test_postgresql_partitions_by_month_and_drops_whole_months(
    pg_ledger: LedgerWriter, rows: list[LedgerRow]
) -> None:
    ledger = pg_ledger
    engine = ledger.engine
    far, old = datetime(2031, 5, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC)
    outliers = [  # years without a partition: DEFAULT takes them
        rows[0].model_copy(update={"request_id": rid, "started_at": at})
        for rid, at in (("far", far), ("old", old))
    ]
    for row in [*rows, *outliers]:
        ledger.submit(row)
    await ledger.flush()
    october = sum(r.started_at < NOV1 for r in rows)
    assert await _count(engine, "ledger_calls_default") >= october > 0
    # October's partition is made after its calls arrived: they move out of DEFAULT.
    mid_october = datetime(2026, 10, 15, tzinfo=UTC)
    made = await retention.ensure_partitions(engine, now=mid_october, ahead=1)
    assert "ledger_calls_p2026_10" in made
    assert await _count(engine, "ledger_calls_p2026_10") == october
    assert await _count(engine, "ledger_calls_default") == 2  # the 2031 and 2020 calls
    assert await _count(engine) == len(rows) + 2
    assert await retention.ensure_partitions(engine, now=mid_october, ahead=1) == []
    rollup_before, report_before = await _hourly(engine), await _report(engine, "calls")

    cutoff = NOV1 + timedelta(hours=5)  # November is only partly before: kept whole
    dry = await retention.prune(engine, cutoff, dry_run=True)
    assert (dry.partitions, dry.rows) == ([("ledger_calls_p2026_10", october)], 1)
    assert await _count(engine) == len(rows) + 2
    done = await retention.prune(engine, cutoff, detach=True)
    assert (done.partitions, done.rows) == ([("ledger_calls_p2026_10", october)], 1)
    assert await _count(engine) == len(rows) + 1 - october
    assert await _count(engine, "ledger_calls_archive_2026_10") == october  # kept aside
    async with engine.connect() as conn:
        early = select(func.count()).select_from(LEDGER).where(LEDGER.c.started_at < cutoff)
        nov = await conn.scalar(early)
    assert nov == sum(NOV1 <= r.started_at < cutoff for r in rows) > 0
    assert await _hourly(engine) == rollup_before
    assert await _report(engine, "auto") == report_before  # fmt: skip


async def test_the_writer_prunes_past_the_retention_period(database_url: str) -> None:
    now = datetime.now(UTC)
    writer = LedgerWriter(
        database_url, flush_interval=0.01, retention_days=32, maintenance_interval=0.05
    )
    await writer.start()
    try:
        for rid, at in (("old", now - timedelta(days=100)), ("new", now - timedelta(hours=1))):
            fields: dict[str, Any] = dict(
                request_id=rid, started_at=at, ended_at=at, team="search",
                endpoint="chat.completions", status_code=200, outcome="ok", latency_ms=1,
                cost_usd=Decimal("0.5"), list_cost_usd=Decimal("0.5"),
            )  # fmt: skip
            writer.submit(LedgerRow(**fields))
        await writer.flush()
        for _ in range(600):
            if await writer.count() == 1:
                break
            await asyncio.sleep(0.05)
        assert await writer.fetch("new") is not None and await writer.fetch("old") is None
        assert [r[9] for r in await _hourly(writer.engine)] == [1, 1]  # both still in the rollup
    finally:
        await writer.aclose()


def test_retention_config() -> None:
    storage = parse_config({"storage": {"ledger_retention_days": 400}}).storage
    assert storage.ledger_retention_days == 400
    assert parse_config({}).storage.ledger_retention_days is None
    with pytest.raises(ConfigError, match="ledger_retention_days"):
        parse_config({"storage": {"ledger_retention_days": 7}})
