"""Migrations: a fresh database, and one made by an earlier spendgate, upgrade in place."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from proxy import rollup
from proxy.controlplane import models
from proxy.db import create_engine
from proxy.ledger import LedgerRow
from proxy.migrations import BASELINE, current_revision, downgrade, head_revision, upgrade
from proxy.reports.query import SpendQuery, plan_source, run_spend
from proxy.retention import is_partitioned, partition_months

CP_TABLES = ["cp_audit", "cp_budgets", "cp_keys", "cp_projects", "cp_rate_limits", "cp_teams"]
LEDGER_TABLES = ["ledger_calls", "ledger_hourly"]


def _shape(conn: Connection, tables: list[str]) -> dict[str, Any]:
    """Columns (name, type class, nullable), primary keys and indexes of ``tables``."""
    insp = inspect(conn)
    out: dict[str, Any] = {}
    for table in tables:
        out[table] = {
            "columns": [
                (c["name"], type(c["type"]).__name__, c["nullable"])
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted(
                (i["name"], tuple(i["column_names"])) for i in insp.get_indexes(table)
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"])) for u in insp.get_unique_constraints(table)
            ),
        }
    return out


async def test_migrated_schema_is_exactly_what_the_models_create(
    database_url: str, tmp_path: Any
) -> None:
    """Revision 0001 must be the ledger exactly as create_all made it, and the head must
    match the models (a model change without a migration fails here). On PostgreSQL the
    one difference is the point of revision 0003: ledger_calls is partitioned by month, so
    its primary key holds the partition key."""
    migrated = create_engine(database_url)
    try:
        assert await upgrade(migrated) == (None, head_revision())
        async with migrated.connect() as conn:
            got = await conn.run_sync(_shape, [*LEDGER_TABLES, *CP_TABLES])
            partitioned = await conn.run_sync(is_partitioned)
    finally:
        await migrated.dispose()
    reference_url = (
        f"sqlite:///{tmp_path / 'reference.db'}"
        if database_url.startswith("sqlite")
        else database_url
    )
    if reference_url == database_url:  # PostgreSQL: compare against a schema of its own
        reference = create_engine(database_url)
        async with reference.begin() as conn:
            await conn.exec_driver_sql("CREATE SCHEMA ref")
            await conn.exec_driver_sql("SET search_path TO ref")
            await conn.run_sync(SQLModel.metadata.create_all)
            want = await conn.run_sync(_shape, [*LEDGER_TABLES, *CP_TABLES])
        await reference.dispose()
        assert partitioned
        assert got["ledger_calls"]["pk"] == ["request_id", "started_at"]
        want["ledger_calls"]["pk"] = ["request_id", "started_at"]
    else:
        reference = create_engine(reference_url)
        async with reference.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
            want = await conn.run_sync(_shape, [*LEDGER_TABLES, *CP_TABLES])
        await reference.dispose()
        assert not partitioned
    assert models.TeamRow.__tablename__ in want and want["ledger_hourly"]["columns"]
    assert got == want


async def test_a_pre_migration_ledger_is_stamped_upgraded_and_its_rows_kept(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    started = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    try:
        # The previous schema: the ledger table exactly as LedgerWriter.start() made it.
        async with engine.begin() as conn:
            await conn.run_sync(
                LedgerRow.metadata.create_all,
                tables=[LedgerRow.__table__],  # type: ignore[attr-defined]
            )
            await conn.execute(
                insert(LedgerRow.__table__),  # type: ignore[attr-defined]
                [
                    {
                        "request_id": "old-1",
                        "started_at": started,
                        "ended_at": started,
                        "team": "search",
                        "tags": {"env": "prod"},
                        "endpoint": "chat.completions",
                        "stream": False,
                        "status_code": 200,
                        "outcome": "ok",
                        "usage_source": "provider",
                        "cost_usd": Decimal("0.000123456789"),
                        "unpriced": False,
                        "latency_ms": 12,
                    }
                ],
            )
        assert await current_revision(engine) is None
        before, after = await upgrade(engine)
        assert (before, after) == (None, head_revision())
        assert await upgrade(engine) == (after, after)  # idempotent
        async with AsyncSession(engine) as session:
            rows = (await session.exec(select(LedgerRow))).all()
            assert [(r.request_id, r.team, r.cost_usd, r.tags, r.started_at) for r in rows] == [
                ("old-1", "search", Decimal("0.000123456789"), {"env": "prod"}, started)
            ]
            assert (await session.exec(select(models.TeamRow))).all() == []
    finally:
        await engine.dispose()
    assert BASELINE == "0001"


def _call(request_id: str, started: datetime, team: str, cost: str | None) -> dict[str, Any]:
    return {
        "request_id": request_id, "started_at": started, "ended_at": started, "team": team,
        "project": None, "tags": {}, "endpoint": "chat.completions", "stream": False,
        "status_code": 200, "outcome": "ok", "usage_source": "provider", "unpriced": cost is None,
        "cost_usd": None if cost is None else Decimal(cost), "input_tokens": 7,
        "latency_ms": 5,
    }  # fmt: skip


OLD_CALLS = [
    _call("m1", datetime(2025, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "search", "0.1"),
    _call("m2", datetime(2026, 1, 1, 0, 0, tzinfo=UTC), "search", "0.0000000000000000000000001"),
    _call("m3", datetime(2026, 1, 1, 0, 30, tzinfo=UTC), "search", None),
    _call("m4", datetime(2026, 3, 15, 8, 0, tzinfo=UTC), "research", "2.5"),
]


async def test_an_existing_ledger_is_partitioned_and_rolled_up_by_0003(database_url: str) -> None:
    """A ledger at revision 0002 with calls in several months: after 0003 its calls are all
    there (in their months' partitions on PostgreSQL, none in DEFAULT) and the rollup holds
    them, exactly; downgrading gives the plain table back with every call."""
    engine = create_engine(database_url)
    try:
        assert await upgrade(engine, "0002") == (None, "0002")
        async with engine.begin() as conn:
            await conn.execute(insert(LedgerRow.__table__), OLD_CALLS)  # type: ignore[attr-defined]
        # Reports work before the upgrade too, from the calls.
        by_team = SpendQuery(group_by=("team",))
        assert (await plan_source(engine, by_team))[0] == "calls"
        before = await run_spend(engine, by_team)
        assert await upgrade(engine) == ("0002", head_revision())
        assert (await plan_source(engine, by_team))[0] == "rollup"
        assert await run_spend(engine, by_team) == before
        async with engine.connect() as conn:
            stored = (await conn.execute(select(LedgerRow.request_id))).scalars().all()
            hourly = (
                await conn.execute(
                    select(
                        rollup.HOURLY.c.bucket, rollup.HOURLY.c.team,
                        rollup.dimension("project"), rollup.HOURLY.c.requests,
                        rollup.HOURLY.c.unpriced, rollup.HOURLY.c.cost_usd,
                        rollup.HOURLY.c.input_tokens,
                    ).order_by(rollup.HOURLY.c.bucket)
                )
            ).all()  # fmt: skip
            if database_url.startswith("postgresql"):
                months = await conn.run_sync(partition_months)
                in_default = await conn.exec_driver_sql("SELECT count(*) FROM ledger_calls_default")
                assert in_default.scalar() == 0
                assert {m.date().isoformat() for m in months} >= {
                    "2025-12-01", "2026-01-01", "2026-02-01", "2026-03-01"
                }  # fmt: skip
        assert sorted(stored) == ["m1", "m2", "m3", "m4"]
        assert [tuple(r) for r in hourly] == [
            (datetime(2025, 12, 31, 23, tzinfo=UTC), "search", None, 1, 0, Decimal("0.1"), 7),
            # m2 and m3 share an hour; m3 is unpriced, so it adds no money
            (datetime(2026, 1, 1, 0, tzinfo=UTC), "search", None, 2, 1,
             Decimal("0.0000000000000000000000001"), 14),
            (datetime(2026, 3, 15, 8, tzinfo=UTC), "research", None, 1, 0, Decimal("2.5"), 7),
        ]  # fmt: skip
        assert await downgrade(engine, "0002") == (head_revision(), "0002")
        async with engine.connect() as conn:
            back = (await conn.execute(select(LedgerRow.request_id))).scalars().all()
            assert not await conn.run_sync(is_partitioned)
        assert sorted(back) == ["m1", "m2", "m3", "m4"]
    finally:
        await engine.dispose()
