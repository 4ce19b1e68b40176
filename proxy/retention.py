"""Keeping the ledger's storage bounded: monthly partitions on PostgreSQL, and pruning.

On PostgreSQL ``ledger_calls`` is range-partitioned by ``started_at``, one partition per UTC
month (``ledger_calls_p2026_11``), plus ``ledger_calls_default`` so that no row is ever
refused. Partitions are made for this month and the next :data:`PARTITIONS_AHEAD` at start
and hourly after (:func:`ensure_partitions`). A partition is created on its own and then
attached, which locks the parent less than ``CREATE TABLE ... PARTITION OF`` (writers and
readers carry on); rows of that month already in the default partition move into it first.

Pruning (:func:`prune`) drops whole months on PostgreSQL, a partition at a time, and deletes
on SQLite in batches of :data:`DELETE_BATCH` rows, one short transaction each, so neither
holds a long lock nor loads rows. The hourly rollup is kept: pruned months stay reportable.

Maintenance DDL waits at most :data:`LOCK_TIMEOUT` for its locks, so a long export never
makes the writers queue behind it; it is retried at the next run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from proxy.db import describe_error, sqlite_time
from proxy.rollup import floor_hour

__all__ = [
    "DELETE_BATCH",
    "PARTITIONS_AHEAD",
    "Pruned",
    "apply_retention",
    "create_partitions",
    "ensure_partitions",
    "is_partitioned",
    "month_start",
    "partition_months",
    "prune",
]

log = logging.getLogger(__name__)

PARTITIONS_AHEAD = 3
DELETE_BATCH = 10_000
LOCK_TIMEOUT = "3s"
DEFAULT_PARTITION = "ledger_calls_default"
_NAME = re.compile(r"^ledger_calls_p(\d{4})_(\d{2})$")
_MAINTENANCE_LOCK = 0x5E9D6A7F  # pg_try_advisory_xact_lock: one replica at a time


def month_start(at: datetime) -> datetime:
    """The first instant of the UTC month holding ``at``."""
    return at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return month.replace(year=index // 12, month=index % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"ledger_calls_p{month.year:04d}_{month.month:02d}"


# -- synchronous, on a Connection (the migration runs these too) -----------------------------


def is_partitioned(conn: Connection) -> bool:
    """Whether ``ledger_calls`` is a partitioned table (PostgreSQL after migration 0003)."""
    if conn.dialect.name != "postgresql":
        return False
    found = conn.exec_driver_sql(
        "SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('ledger_calls')"
    ).first()
    return found is not None


def partition_months(conn: Connection) -> dict[datetime, str]:
    """The monthly partitions attached to ``ledger_calls``: month start -> table name."""
    names = conn.exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('ledger_calls')"
    ).scalars()
    months = {}
    for name in names:
        if m := _NAME.match(name):
            months[datetime(int(m[1]), int(m[2]), 1, tzinfo=UTC)] = name
    return months


def create_partitions(conn: Connection, months: Iterable[datetime]) -> list[str]:
    """Create and attach the partitions of ``months`` that are missing; returns their names.

    A month's rows already in the default partition are moved into the new one (ATTACH
    would refuse otherwise). Runs in the caller's transaction.
    """
    existing = partition_months(conn)
    made = []
    for month in sorted({month_start(m) for m in months} - set(existing)):
        name = partition_name(month)
        lo, hi = month.isoformat(), _add_months(month, 1).isoformat()
        conn.exec_driver_sql(
            f"CREATE TABLE {name} (LIKE ledger_calls INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        conn.exec_driver_sql(
            f"WITH moved AS (DELETE FROM {DEFAULT_PARTITION} WHERE started_at >= '{lo}' "
            f"AND started_at < '{hi}' RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        )
        conn.exec_driver_sql(
            f"ALTER TABLE ledger_calls ATTACH PARTITION {name} FOR VALUES FROM ('{lo}') TO ('{hi}')"
        )
        made.append(name)
    return made


def _ensure(conn: Connection, now: datetime, ahead: int) -> list[str]:
    if not is_partitioned(conn):
        return []
    conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    if not conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({_MAINTENANCE_LOCK})").scalar():
        return []  # another replica is at it
    this = month_start(now)
    return create_partitions(conn, (_add_months(this, k) for k in range(ahead + 1)))


async def ensure_partitions(
    engine: AsyncEngine, now: datetime | None = None, ahead: int = PARTITIONS_AHEAD
) -> list[str]:
    """Make sure this month's and the next ``ahead`` months' partitions exist (PostgreSQL;
    nothing on SQLite). Returns the partitions created."""
    if engine.dialect.name != "postgresql":
        return []
    async with engine.begin() as conn:
        made = await conn.run_sync(_ensure, now or datetime.now(UTC), ahead)
    if made:
        log.info("ledger: created partitions %s", ", ".join(made))
    return made


# -- pruning ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Pruned:
    """What :func:`prune` removed (or, in a dry run, would remove)."""

    before: datetime
    partitions: list[tuple[str, int]] = field(default_factory=list)  # (table, calls)
    rows: int = 0  # calls deleted row by row (SQLite; PostgreSQL's default partition)
    detached: bool = False

    @property
    def calls(self) -> int:
        return self.rows + sum(n for _, n in self.partitions)


async def prune(
    engine: AsyncEngine, before: datetime, *, dry_run: bool = False, detach: bool = False
) -> Pruned:
    """Remove the calls that started before ``before`` (taken down to a whole UTC hour).

    PostgreSQL drops each monthly partition that ends by then (``detach`` keeps it as a
    plain table renamed ``ledger_calls_archive_YYYY_MM``), and deletes older rows of the
    default partition; a month only partly before the cutoff is kept whole. SQLite deletes
    in batches. The hourly rollup is not touched.
    """
    cutoff = floor_hour(before)
    out = Pruned(cutoff, detached=detach)
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            partitioned = await conn.run_sync(is_partitioned)
            months = await conn.run_sync(partition_months) if partitioned else {}
        for month, name in sorted(months.items()):
            if _add_months(month, 1) > cutoff:
                continue
            async with engine.begin() as conn:
                await conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                found = await conn.exec_driver_sql(f"SELECT count(*) FROM {name}")
                calls = int(found.scalar() or 0)
                if not dry_run:
                    await _drop(conn, name, month, detach)
            out.partitions.append((name, calls))
        table = DEFAULT_PARTITION if partitioned else "ledger_calls"
        out.rows = await _delete_rows(engine, table, cutoff, dry_run)
    else:
        out.rows = await _delete_rows(engine, "ledger_calls", cutoff, dry_run)
    return out


async def apply_retention(engine: AsyncEngine, days: int) -> Pruned | None:
    """Prune the calls older than ``days`` days, logging what went; None if it failed (it
    is logged, and the next run tries again)."""
    try:
        pruned = await prune(engine, datetime.now(UTC) - timedelta(days=days))
    except Exception as exc:
        log.warning("ledger: pruning failed (%s)", describe_error(exc))
        return None
    if pruned.calls:
        log.warning(
            "ledger: pruned %d calls before %s (retention %d days)",
            *(pruned.calls, pruned.before.isoformat(), days),
        )
    return pruned


async def _drop(conn: AsyncConnection, name: str, month: datetime, detach: bool) -> None:
    await conn.exec_driver_sql(f"ALTER TABLE ledger_calls DETACH PARTITION {name}")
    if detach:
        archive = f"ledger_calls_archive_{month.year:04d}_{month.month:02d}"
        await conn.exec_driver_sql(f"ALTER TABLE {name} RENAME TO {archive}")
        log.warning("ledger: detached %s as %s", name, archive)
    else:
        await conn.exec_driver_sql(f"DROP TABLE {name}")
        log.warning("ledger: dropped partition %s (retention)", name)


async def _delete_rows(engine: AsyncEngine, table: str, cutoff: datetime, dry_run: bool) -> int:
    pg = engine.dialect.name == "postgresql"
    bound: object = cutoff if pg else sqlite_time(cutoff)
    if dry_run:
        async with engine.connect() as conn:
            found = await conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE started_at < :cutoff"), {"cutoff": bound}
            )
            return int(found.scalar() or 0)
    if pg:
        delete = (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
            f"WHERE started_at < :cutoff LIMIT {DELETE_BATCH}))"
        )
    else:
        delete = (
            f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
            f"WHERE started_at < :cutoff LIMIT {DELETE_BATCH})"
        )
    total = 0
    while True:
        async with engine.begin() as conn:
            deleted = (await conn.execute(text(delete), {"cutoff": bound})).rowcount
        total += deleted
        if deleted < DELETE_BATCH:
            return total
        await asyncio.sleep(0)  # let the ledger writer in between batches
