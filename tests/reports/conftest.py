"""A ledger on SQLite and on a real PostgreSQL, filled with realistic priced rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.sample import sample_rows

START = datetime(2026, 10, 30, tzinfo=UTC)
SPAN = timedelta(days=5)  # crosses the month boundary and Paris' DST end (Oct 25 is before)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/ledger.db"
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[LedgerWriter]:
    writer = LedgerWriter(database_url, flush_interval=0.01, batch_size=1000)
    await writer.start()
    yield writer
    await writer.aclose()


@pytest.fixture
def rows() -> list[LedgerRow]:
    return list(sample_rows(600, START, SPAN, seed=7))


@pytest.fixture
async def filled(ledger: LedgerWriter, rows: list[LedgerRow]) -> LedgerWriter:
    for row in rows:
        ledger.submit(row)
    await ledger.flush()
    return ledger
