"""The HTTP endpoints and the CLI verbs, on a real ledger file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from proxy.cli import main
from proxy.db import create_engine
from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.api import routes


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


async def _fill(url: str, rows: list[LedgerRow]) -> None:
    writer = LedgerWriter(url, flush_interval=0.01)
    await writer.start()
    for row in rows:
        writer.submit(row)
    await writer.aclose()


def _expected_by_team(rows: list[LedgerRow]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for r in rows:
        if datetime(2026, 11, 1, tzinfo=UTC) <= r.started_at < datetime(2026, 11, 2, tzinfo=UTC):
            out[r.team] = out.get(r.team, Decimal(0)) + (r.cost_usd or 0)
    return out


async def test_http_spend_and_export(sqlite_url: str, rows: list[LedgerRow]) -> None:
    await _fill(sqlite_url, rows)
    engine = create_engine(sqlite_url)
    app = Starlette(routes=routes)
    app.state.reports_engine = engine
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            params = {"from": "2026-11-01", "to": "2026-11-02", "group_by": "team"}
            got = (await client.get("/spend", params=params)).json()
            by_team = {ln["team"]: Decimal(ln["cost_usd"]) for ln in got["lines"]}
            assert by_team == _expected_by_team(rows) and by_team
            assert got["source"] == "rollup"
            calls = (await client.get("/spend", params={**params, "source": "calls"})).json()
            assert (calls["source"], calls["lines"]) == ("calls", got["lines"])
            odd = {**params, "from": "2026-11-01T00:30", "source": "rollup"}
            bad = await client.get("/spend", params=odd)
            assert bad.status_code == 400 and "whole UTC hours" in bad.text
            bad = await client.get("/spend", params={"group_by": "colour"})
            assert bad.status_code == 400 and "unknown dimension" in bad.text
            resp = await client.get("/export", params={"format": "jsonl", "filter": "team=search"})
            assert resp.headers["content-type"] == "application/x-ndjson"
            lines = [json.loads(x) for x in resp.text.splitlines()]
            assert len(lines) == sum(r.team == "search" for r in rows) > 0
    finally:
        await engine.dispose()


def test_cli_spend_and_export(
    sqlite_url: str, rows: list[LedgerRow], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_fill(sqlite_url, rows))
    base = ["--database-url", sqlite_url, "--from", "2026-11-01", "--to", "2026-11-02"]
    assert main(["spend", *base, "--by", "team", "--csv"]) == 0
    got = {
        r["team"]: Decimal(r["cost_usd"])
        for r in csv.DictReader(io.StringIO(capsys.readouterr().out))
    }
    assert got == _expected_by_team(rows)
    assert main(["spend", *base, "--by", "team"]) == 0
    table = capsys.readouterr().out
    total = sum(_expected_by_team(rows).values(), Decimal(0))
    assert table.splitlines()[-1].split()[:2] == ["total", format(total, "f")]
    out = tmp_path / "focus.csv"
    assert main(["export", *base, "--format", "focus", "--rollup", "hour", "-o", str(out)]) == 0
    assert out.read_text().startswith("AvailabilityZone,BilledCost")
    assert main(["spend", *base, "--tz", "Nowhere/Else"]) == 2
    assert "unknown time zone" in capsys.readouterr().err


def _count(url: str) -> int:
    async def count() -> int:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                found = await conn.exec_driver_sql("SELECT count(*) FROM ledger_calls")
                return int(found.scalar())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def test_cli_ledger_rebuild_and_prune(
    sqlite_url: str, rows: list[LedgerRow], capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(_fill(sqlite_url, rows))
    db = ["--database-url", sqlite_url]
    spend = ["spend", *db, "--from", "2026-10-30", "--to", "2026-11-02", "--by", "team", "--json"]
    assert main([*spend, "--source", "calls"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert main(["ledger", "rebuild-rollups", *db, "--from", "2026-10-31T10:30Z"]) == 0
    assert capsys.readouterr().out.startswith(
        "rebuilt the hourly rollup from 2026-10-31T10:00:00+00:00 to 2026-11-04T"
    )
    old = sum(r.started_at < datetime(2026, 11, 1, tzinfo=UTC) for r in rows)
    assert main(["ledger", "prune", *db, "--before", "2026-11-01", "--dry-run"]) == 0
    assert f"total: {old} calls" in capsys.readouterr().out
    assert _count(sqlite_url) == len(rows)
    assert main(["ledger", "prune", *db, "--before", "2026-11-01"]) == 0
    assert f"total: {old} calls" in capsys.readouterr().out
    assert _count(sqlite_url) == len(rows) - old > 0
    # The pruned days are still in the report: the rollup answers it.
    assert main(spend) == 0
    assert json.loads(capsys.readouterr().out) == before
    assert main(["ledger", "rebuild-rollups", *db]) == 0
    assert "are gone (pruned)" not in capsys.readouterr().err
    assert main(["ledger", "rebuild-rollups", *db, "--from", "2026-01-01"]) == 0
    assert "are gone (pruned): their rollup is kept" in capsys.readouterr().err
    assert main(spend) == 0
    assert json.loads(capsys.readouterr().out) == before
