"""The ledger writer against SQLite and a real PostgreSQL: exact, once, and never lost."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlmodel import col, select

from proxy.db import async_url, redact_url
from proxy.ledger import LedgerRow, LedgerWriter, Outcome, UsageSource
from tests.services.postgres import EmbeddedPostgres

T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def make_row(request_id: str, **overrides: Any) -> LedgerRow:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "started_at": T0,
        "ended_at": T0 + timedelta(milliseconds=850),
        "team": "search",
        "endpoint": "/v1/chat/completions",
        "provider": "openai",
        "model_requested": "gpt-4o",
        "model_served": "gpt-4o-2024-08-06",
        "status_code": 200,
        "outcome": Outcome.OK,
        "usage_source": UsageSource.PROVIDER,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cost_usd": Decimal("0.006"),
        "latency_ms": 850,
    }
    return LedgerRow(**(fields | overrides))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[LedgerWriter]:
    w = LedgerWriter(database_url, flush_interval=0.01)
    await w.start()
    yield w
    await w.aclose()


async def test_round_trip_is_exact(writer: LedgerWriter) -> None:
    tiny, large = Decimal("0.000000123456789012"), Decimal("123456789012.123456789012345678")
    row = make_row(
        "req-1",
        started_at=datetime(2025, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))),
        ended_at=T0 + timedelta(seconds=1),
        project="ranker",
        key_id="key_123",
        end_user="user-9",
        tags={"env": "prod", "feature": "rerank"},
        stream=True,
        input_tokens=1200,
        cached_input_tokens=0,  # reported as zero: not the same as unknown
        reasoning_tokens=None,
        list_cost_usd=large,
        cost_usd=tiny,
        cost_input_usd=Decimal("0"),
        cost_output_usd=Decimal("-0.5"),
        price_version="2025-02-01",
        ttft_ms=120,
        trace_id="0af7651916cd43dd8448eb211c80319c",
        span_id="b7ad6b7169203331",
        upstream_request_id="chatcmpl-abc",
    )
    writer.submit(row)
    await writer.flush()
    got = await writer.fetch("req-1")
    assert got is not None
    assert got.cost_usd == tiny and str(got.cost_usd) == str(tiny)
    assert got.list_cost_usd == large and got.cost_output_usd == Decimal("-0.5")
    assert got.cost_cached_input_usd is None
    assert got.started_at == T0.replace(microsecond=0) and got.started_at.tzinfo is not None
    assert got.started_at.utcoffset() == timedelta(0)
    assert got.ended_at == T0 + timedelta(seconds=1)
    assert got.tags == {"env": "prod", "feature": "rerank"}
    assert (got.cached_input_tokens, got.reasoning_tokens) == (0, None)
    assert (got.stream, got.outcome, got.usage_source) == (True, "ok", "provider")
    assert (got.trace_id, got.span_id, got.ttft_ms) == (row.trace_id, row.span_id, 120)
    assert await writer.fetch("missing") is None


async def test_time_range_query_uses_utc_instants(writer: LedgerWriter) -> None:
    for i in range(5):
        writer.submit(make_row(f"r{i}", started_at=T0 + timedelta(hours=i)))
    await writer.flush()
    since = (T0 + timedelta(hours=2)).astimezone(timezone(timedelta(hours=-5)))
    query = select(LedgerRow.request_id).where(col(LedgerRow.started_at) >= since)
    async with writer.engine.connect() as conn:
        assert sorted((await conn.scalars(query)).all()) == ["r2", "r3", "r4"]


async def test_same_request_id_is_stored_once(writer: LedgerWriter) -> None:
    writer.submit(make_row("dup", cost_usd=Decimal("1")))
    writer.submit(make_row("dup", cost_usd=Decimal("2")))  # same batch
    await writer.flush()
    writer.submit(make_row("dup", cost_usd=Decimal("3")))  # a later batch
    await writer.flush()
    assert await writer.count() == 1
    got = await writer.fetch("dup")
    assert got is not None and got.cost_usd == Decimal("1")  # the first write wins


async def test_concurrent_submits_land_once_in_few_statements(database_url: str) -> None:
    writer = LedgerWriter(database_url, batch_size=500)
    await writer.start()
    inserts = 0

    def count_inserts(*args: Any) -> None:
        nonlocal inserts
        # the calls' insert (PostgreSQL: inside the statement that also rolls them up)
        inserts += "INSERT INTO ledger_calls" in str(args[2])

    event.listen(writer.engine.sync_engine, "before_cursor_execute", count_inserts)

    async def call(task: int) -> None:
        for i in range(100):
            writer.submit(make_row(f"t{task}-{i}"))
            await asyncio.sleep(0)

    await asyncio.gather(*(call(t) for t in range(50)))
    await writer.flush()
    assert writer.backlog == 0
    assert await writer.count() == 5000
    async with writer.engine.connect() as conn:
        ids = (await conn.scalars(select(LedgerRow.request_id))).all()
    assert sorted(ids) == sorted(f"t{t}-{i}" for t in range(50) for i in range(100))
    assert inserts <= 20, "rows should be written in multi-row batches"
    await writer.aclose()


async def test_submit_from_a_cancelled_task_is_kept(writer: LedgerWriter) -> None:
    started = asyncio.Event()

    async def request() -> None:
        try:
            started.set()
            await asyncio.sleep(3600)
        finally:
            writer.submit(make_row("cancelled", outcome=Outcome.CLIENT_CANCELLED))

    task = asyncio.create_task(request())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.flush()
    got = await writer.fetch("cancelled")
    assert got is not None and got.outcome == "client_cancelled"


async def test_accepting_turns_false_at_max_backlog(database_url: str) -> None:
    writer = LedgerWriter(database_url, max_backlog=10)
    for i in range(9):
        writer.submit(make_row(f"b{i}"))  # queued before start: nothing written yet
    assert writer.accepting and writer.backlog == 9
    writer.submit(make_row("b9"))
    assert not writer.accepting and writer.backlog == 10
    writer.submit(make_row("b10"))  # a call already under way still gets its row kept
    assert writer.backlog == 11
    await writer.start()
    await writer.flush()
    assert writer.accepting and writer.backlog == 0
    assert await writer.count() == 11
    await writer.aclose()


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"started_at": datetime(2025, 1, 1)}, ValueError),
        ({"cost_usd": 0.1}, TypeError),
        ({"cost_usd": Decimal("NaN")}, TypeError),
        ({"input_tokens": -1}, ValueError),
        ({"outcome": None}, ValueError),
        ({"team": None}, ValueError),
        ({"tags": {"n": 1}}, TypeError),
    ],
)
def test_malformed_rows_are_refused_at_submit(overrides: dict[str, Any], error: type) -> None:
    writer = LedgerWriter("sqlite://")
    with pytest.raises(error):
        writer.submit(make_row("bad", **overrides))
    assert writer.backlog == 0


async def test_an_unknown_outcome_is_kept_with_a_warning(
    writer: LedgerWriter, caplog: pytest.LogCaptureFixture
) -> None:
    outcome = f"unauthorized_{uuid.uuid4().hex[:8]}"  # warned once per process and value
    writer.submit(make_row("odd", outcome=outcome))
    await writer.flush()
    got = await writer.fetch("odd")
    assert got is not None and got.outcome == outcome
    assert f"{outcome!r} is not one of" in caplog.text


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    writer = LedgerWriter(f"sqlite:///{tmp_path}/wal.db")
    await writer.start()
    async with writer.engine.connect() as conn:
        assert (await conn.scalar(text("PRAGMA journal_mode"))) == "wal"
    await writer.aclose()


def test_urls_get_async_drivers_and_lose_passwords_in_logs() -> None:
    assert str(async_url("sqlite:///x.db")) == "sqlite+aiosqlite:///x.db"
    assert async_url("postgresql://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgres://u@h/db").drivername == "postgresql+asyncpg"
    assert async_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert redact_url("postgresql://u:s3cret@h:5432/db") == "postgresql://u:***@h:5432/db"
    with pytest.raises(ValueError, match="invalid database URL") as raised:
        async_url("not a url s3cret")
    assert "s3cret" not in str(raised.value)


# -- faults: a dedicated embedded server that the test stops and starts ------------------------


def _with_password(server: EmbeddedPostgres) -> str:
    # Trust auth ignores the password; it is there to prove that logs never show it.
    return server.url.replace("postgres@", "postgres:s3cret@")


async def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.mark.postgres
async def test_rows_survive_the_database_going_down(
    pg_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LedgerWriter(_with_password(pg_server), flush_interval=0.01, retry_max_delay=0.2)
    await writer.start()
    for i in range(100):
        writer.submit(make_row(f"before-{i}"))
    await writer.flush()

    await asyncio.to_thread(pg_server.stop)
    with caplog.at_level(logging.WARNING, logger="proxy.ledger"):
        for i in range(300):
            writer.submit(make_row(f"during-{i}"))
        await _wait_for(lambda: "retry 3 in" in caplog.text)  # down for a while
        assert writer.backlog == 300
        await asyncio.to_thread(pg_server.start)
        async with asyncio.timeout(15):
            await writer.flush()

    assert writer.backlog == 0
    assert await writer.count() == 400
    assert "s3cret" not in caplog.text and "***" in caplog.text
    assert "ledger writes resumed" in caplog.text
    await writer.aclose()


@pytest.mark.postgres
async def test_close_while_down_spills_and_next_start_replays_once(
    pg_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    spill = tmp_path / "ledger-spill.jsonl"
    writer = LedgerWriter(pg_server.url, spill_path=str(spill), retry_max_delay=0.2)
    await writer.start()
    writer.submit(make_row("written-early"))
    await writer.flush()

    await asyncio.to_thread(pg_server.stop)
    tiny = Decimal("0.000000123456789012")
    for i in range(50):
        writer.submit(make_row(f"late-{i}", cost_usd=tiny))
    writer.submit(make_row("written-early"))  # a duplicate of a stored row, replayed harmlessly
    await writer.aclose(timeout=0.5)
    assert writer.backlog == 0

    lines = [json.loads(line) for line in spill.read_text().splitlines()]
    assert len(lines) == 51
    assert lines[0]["cost_usd"] == "1.23456789012E-7"  # exact, as a string
    writer.submit(make_row("after-close"))  # a call that ended after shutdown
    assert len(spill.read_text().splitlines()) == 52

    await asyncio.to_thread(pg_server.start)
    replayer = LedgerWriter(pg_server.url, spill_path=str(spill))
    await replayer.start()
    assert not spill.exists()
    assert await replayer.count() == 52  # written-early + 50 late + after-close
    got = await replayer.fetch("late-7")
    assert got is not None and got.cost_usd == tiny and got.started_at == T0
    await replayer.aclose()


@pytest.mark.postgres
async def test_a_row_the_database_refuses_does_not_block_the_rest(
    pg_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spill = tmp_path / "spill.jsonl"
    writer = LedgerWriter(pg_database_url, spill_path=str(spill))
    await writer.start()
    for i in range(20):
        # PostgreSQL text cannot hold NUL, which a client can send in OpenAI's `user` field.
        writer.submit(make_row(f"r{i}", end_user="bad\x00user" if i == 7 else "ok"))
    await writer.flush()
    assert await writer.count() == 19
    rejected = Path(f"{spill}.rejected").read_text().splitlines()
    assert [json.loads(line)["request_id"] for line in rejected] == ["r7"]
    assert "r7 refused by the database" in caplog.text
    await writer.aclose()
