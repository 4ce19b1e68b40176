"""The hourly rollup ``ledger_hourly``: spend per UTC hour and the dimensions reports use most.

One row per UTC hour and (team, project, key_id, model_requested, provider, endpoint,
outcome), holding the sums of cost, list cost and every token kind, and the counts of calls,
errors and unpriced calls. The ledger writer updates it in the transaction that inserts the
calls, from the rows that insert actually added, so a replayed batch counts once
(:func:`write_sql`). Spend reports read it instead of the calls when they can
(:mod:`proxy.reports.query`); :func:`rebuild` recomputes it from the calls.

NULL cannot take part in a primary key's equality, so a NULL dimension is stored as ``''``
with its bit set in ``nulls``; :func:`dimension` turns it back into NULL.

Concurrent writers (several proxies on one database) add with ``x = x + excluded.x`` under
the row lock of an upsert, and insert their groups in key order so two batches never wait on
each other in a cycle. On SQLite, which has no decimal type, money is decimal text added by
``spendgate_dec_add``/``spendgate_dec_sum`` (:mod:`proxy.db`); writers are serialised there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    case,
    column,
    func,
    literal_column,
    null,
    select,
    table,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

from proxy.db import ExactDecimal, UTCDateTime, sqlite_time

__all__ = [
    "DIMENSIONS",
    "HOURLY",
    "MONEY",
    "TOKENS",
    "Rebuilt",
    "backfill_sql",
    "dimension",
    "floor_hour",
    "money_sum",
    "rebuild",
    "write_sql",
]

DIMENSIONS = ("team", "project", "key_id", "model_requested", "provider", "endpoint", "outcome")
NULL_BITS = {"project": 1, "key_id": 2, "model_requested": 4, "provider": 8}  # nullable ones
COUNTS = ("requests", "errors", "unpriced")
MONEY = ("cost_usd", "list_cost_usd")
TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "audio_input_tokens",
    "audio_output_tokens",
)
KEY = (*DIMENSIONS, "nulls")
HOURLY = Table(
    "ledger_hourly",
    SQLModel.metadata,
    Column("bucket", UTCDateTime(), nullable=False),  # the UTC hour's start
    *(Column(name, String(), nullable=False) for name in DIMENSIONS),
    Column("nulls", SmallInteger(), nullable=False),
    *(Column(name, BigInteger(), nullable=False) for name in COUNTS),
    *(Column(name, ExactDecimal(), nullable=False) for name in MONEY),
    *(Column(name, BigInteger(), nullable=False) for name in TOKENS),
    PrimaryKeyConstraint("bucket", *KEY),
)
# What the aggregate reads from a ledger row.
SOURCE_COLUMNS = ("started_at", *DIMENSIONS, "unpriced", *MONEY, *TOKENS)


# -- the aggregate, as SQL text per dialect ---------------------------------------------------


def _aggregate(dialect: str, source: str) -> str:
    """``SELECT`` turning the ledger rows of ``source`` (a table or CTE, with a ``WHERE``
    appended by the caller's format) into rollup rows, in key order."""
    pg = dialect == "postgresql"
    flag = "({})::int" if pg else "({})"
    bucket = (
        "date_trunc('hour', started_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'"
        if pg
        else "substr(started_at, 1, 13) || ':00:00.000000'"
    )
    dims = [d if d not in NULL_BITS else f"coalesce({d}, '')" for d in DIMENSIONS]
    nulls = " | ".join(f"({flag.format(f'{d} IS NULL')} * {bit})" for d, bit in NULL_BITS.items())
    money = "coalesce(sum({0}), 0)" if pg else "spendgate_dec_sum(group_concat({0}, ' '))"
    columns = [
        bucket,
        *dims,
        nulls,
        "count(*)",
        "sum({})".format(flag.format("outcome <> 'ok'")),
        f"sum({flag.format('unpriced')})",
        *(money.format(m) for m in MONEY),
        *(f"coalesce(sum({t}), 0)" for t in TOKENS),
    ]
    keys = ", ".join(str(i) for i in range(1, len(KEY) + 2))
    return f"SELECT {', '.join(columns)} FROM {source} {{where}} GROUP BY {keys} ORDER BY {keys}"


def _insert_into() -> str:
    return f"INSERT INTO ledger_hourly ({', '.join(c.name for c in HOURLY.columns)}) "


def _upsert(dialect: str) -> str:
    def add(name: str) -> str:
        if name in MONEY and dialect != "postgresql":
            return f"{name} = spendgate_dec_add(ledger_hourly.{name}, excluded.{name})"
        return f"{name} = ledger_hourly.{name} + excluded.{name}"

    sums = ", ".join(add(n) for n in (*COUNTS, *MONEY, *TOKENS))
    return f" ON CONFLICT (bucket, {', '.join(KEY)}) DO UPDATE SET {sums}"


def write_sql(dialect: str) -> str:
    """The statement that adds new ledger rows to the rollup, for the writer.

    PostgreSQL: one statement that inserts the batch (one JSON array of row objects, read
    with the table's own row type), skips the request ids already stored, and adds exactly
    the rows it inserted to the rollup (a data-modifying CTE). SQLite: the rollup upsert of
    the rows whose ``rowid`` is above the parameter; the writer inserts the batch first, in
    the same write transaction.
    """
    if dialect == "postgresql":
        new = (
            "WITH new AS (INSERT INTO ledger_calls SELECT * FROM "
            "json_populate_recordset(NULL::ledger_calls, $1::json) "
            f"ON CONFLICT DO NOTHING RETURNING {', '.join(SOURCE_COLUMNS)}) "
        )
        return new + _insert_into() + _aggregate(dialect, "new").format(where="") + _upsert(dialect)
    aggregate = _aggregate(dialect, "ledger_calls").format(where="WHERE rowid > ?")
    return _insert_into() + aggregate + _upsert(dialect)


def backfill_sql(dialect: str) -> str:
    """``INSERT`` of the rollup of every stored call, into an empty rollup (migration 0003)."""
    return _insert_into() + _aggregate(dialect, "ledger_calls").format(where="")


# -- reading it ------------------------------------------------------------------------------


def dimension(name: str) -> ColumnElement[Any]:
    """The rollup's value of a ledger dimension column, NULL where the call had none."""
    column = HOURLY.c[name]
    bit = NULL_BITS.get(name)
    if bit is None:
        return column
    # Literals, not bound parameters: PostgreSQL must see GROUP BY's expression as the same
    # one as SELECT's, and two binds of one value are two different parameters.
    is_null = HOURLY.c.nulls.op("&")(literal_column(str(bit))) != literal_column("0")
    expr: ColumnElement[Any] = case((is_null, null()), else_=column)
    return expr


def money_sum(name: str, dialect: str) -> ColumnElement[Any]:
    """An exact SQL sum of a rollup money column (SQLite: decimal text, summed as such)."""
    if dialect == "postgresql":
        return func.sum(HOURLY.c[name])
    return type_coerce(
        func.spendgate_dec_sum(func.group_concat(HOURLY.c[name], " ")), ExactDecimal()
    )


def floor_hour(at: datetime) -> datetime:
    """The start of the UTC hour holding ``at``."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _ceil_hour(at: datetime) -> datetime:
    floor = floor_hour(at)
    return floor if floor == at else floor + timedelta(hours=1)


# -- rebuilding it ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What :func:`rebuild` did: the UTC range recomputed (None: no calls in the range) and
    the rollup rows it holds now."""

    start: datetime | None
    end: datetime | None
    rows: int
    clamped: bool  # the requested start was before the oldest call (pruned): kept as it was


async def rebuild(
    engine: AsyncEngine,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    progress: Callable[[datetime, int], None] | None = None,
) -> Rebuilt:
    """Recompute the rollup from the calls over ``[start, end)``, widened to whole UTC hours.

    One UTC day per transaction, each locking the rollup against the writers (they wait, then
    add their calls to the rebuilt hours: nothing is counted twice or lost).
    Hours before the oldest stored call are never touched: their calls may have been pruned
    and the rollup is then all that is left of them.
    """
    started = column("started_at", UTCDateTime())
    span = select(func.min(started), func.max(started)).select_from(table("ledger_calls", started))
    async with engine.connect() as conn:
        oldest, newest = (await conn.execute(span)).one()
    if oldest is None or newest is None:
        return Rebuilt(None, None, 0, clamped=start is not None)
    first, last = floor_hour(oldest), floor_hour(newest) + timedelta(hours=1)
    lo = floor_hour(start) if start is not None else first
    clamped = lo < first
    lo = max(lo, first)
    hi = last if end is None else min(last, _ceil_hour(end))
    rows = 0
    day = lo
    while day < hi:
        stop = min(hi, (day + timedelta(days=1)).replace(hour=0))
        async with engine.begin() as conn:
            rows += await _rebuild_range(conn, day, stop)
        if progress is not None:
            progress(day, rows)
        day = stop
    return Rebuilt(lo, hi, rows, clamped)


async def _rebuild_range(conn: AsyncConnection, lo: datetime, hi: datetime) -> int:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # Writers wait until this commits (their rows then add to the rebuilt hours); a
        # writer already running is waited for, and its rows are in what is read here.
        await conn.exec_driver_sql("LOCK TABLE ledger_hourly IN SHARE ROW EXCLUSIVE MODE")
        bounds: tuple[Any, Any] = (lo, hi)
        where = "WHERE started_at >= $1 AND started_at < $2"
        delete = "DELETE FROM ledger_hourly WHERE bucket >= $1 AND bucket < $2"
    else:
        await conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before reading
        bounds = (sqlite_time(lo), sqlite_time(hi))
        where = "WHERE started_at >= ? AND started_at < ?"
        delete = "DELETE FROM ledger_hourly WHERE bucket >= ? AND bucket < ?"
    await conn.exec_driver_sql(delete, bounds)
    insert = _insert_into() + _aggregate(dialect, "ledger_calls").format(where=where)
    result = await conn.exec_driver_sql(insert, bounds)
    return max(result.rowcount, 0)


async def count(engine: AsyncEngine) -> int:
    """Rows in the rollup."""
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(HOURLY)) or 0)
