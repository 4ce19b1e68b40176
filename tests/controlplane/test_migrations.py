"""Migrations: a fresh database, and one made by an earlier spendgate, upgrade in place."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, inspect
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from proxy.controlplane import models
from proxy.db import create_engine
from proxy.ledger import LedgerRow
from proxy.migrations import BASELINE, current_revision, head_revision, upgrade

CP_TABLES = ["cp_audit", "cp_budgets", "cp_keys", "cp_projects", "cp_rate_limits", "cp_teams"]


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
    match the control-plane models (a model change without a migration fails here)."""
    migrated = create_engine(database_url)
    try:
        assert await upgrade(migrated) == (None, head_revision())
        async with migrated.connect() as conn:
            got = await conn.run_sync(_shape, ["ledger_calls", *CP_TABLES])
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
            want = await conn.run_sync(_shape, ["ledger_calls", *CP_TABLES])
        await reference.dispose()
    else:
        reference = create_engine(reference_url)
        async with reference.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
            want = await conn.run_sync(_shape, ["ledger_calls", *CP_TABLES])
        await reference.dispose()
    assert models.TeamRow.__tablename__ in want
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
