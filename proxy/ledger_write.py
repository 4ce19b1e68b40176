"""Writing one batch of ledger rows: a transaction that inserts them and rolls them up.

Rows already stored (same request id; on PostgreSQL, same request id and start time) are
skipped by ``ON CONFLICT DO NOTHING``, and only the rows actually inserted reach the hourly
rollup (:mod:`proxy.rollup`), so a replayed batch changes nothing.

- PostgreSQL: one statement. The batch goes as one JSON array that the server reads with
  the table's own row type; a data-modifying CTE inserts it and feeds what it inserted to
  the rollup's upsert.
- SQLite: the transaction takes the write lock first (``BEGIN IMMEDIATE``), notes the highest
  rowid, inserts the rows with ``executemany``, and rolls up the rows above that rowid.

Statements are plain SQL with the driver's own parameters: SQLAlchemy's per-value bind
processing, and asyncpg's per-element array encoding, each cost more CPU per row than all
the rest of the writer (``bench/reports.py generate`` prints the writer's CPU per row).
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from datetime import UTC
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from proxy import rollup
from proxy.db import ExactDecimal, UTCDateTime, sqlite_time

__all__ = ["BatchInsert"]


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _decimal_text(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")  # a JSON string: PostgreSQL reads it as an exact numeric
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class BatchInsert:
    """``await insert(conn, rows)``: write ``rows`` (column name -> value mappings, checked
    by the caller) in ``conn``'s transaction."""

    DIALECTS = ("postgresql", "sqlite")

    def __init__(self, table: Table) -> None:
        columns = [c.name for c in table.columns]
        self._values = operator.itemgetter(*columns)  # SQLite: parameters in column order
        self._tags_at = columns.index("tags")
        self._times_at = [i for i, c in enumerate(table.columns) if isinstance(c.type, UTCDateTime)]
        self._money_at = [
            i for i, c in enumerate(table.columns) if isinstance(c.type, ExactDecimal)
        ]
        self._pg_write = rollup.write_sql("postgresql")
        self._sqlite_insert = (
            f"INSERT INTO {table.name} ({', '.join(columns)}) "
            f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"
        )
        self._sqlite_rollup = rollup.write_sql("sqlite")

    async def __call__(self, conn: AsyncConnection, rows: Sequence[Mapping[str, Any]]) -> None:
        if conn.dialect.name == "postgresql":
            batch = orjson.dumps(list(rows), default=_decimal_text).decode()
            await conn.exec_driver_sql(self._pg_write, (batch,))
            return
        # The write lock first: then the rows this transaction inserts are exactly those
        # above the highest rowid now (a conflicting row is not inserted and takes none).
        await conn.exec_driver_sql("BEGIN IMMEDIATE")
        top = await conn.exec_driver_sql("SELECT coalesce(max(rowid), 0) FROM ledger_calls")
        highest = top.scalar()
        await conn.exec_driver_sql(self._sqlite_insert, [self._sqlite_values(r) for r in rows])
        await conn.exec_driver_sql(self._sqlite_rollup, (highest,))

    def _sqlite_values(self, row: Mapping[str, Any]) -> tuple[Any, ...]:
        values = list(self._values(row))
        for i in self._times_at:
            when = values[i]
            if when.tzinfo is UTC:  # the usual case, without astimezone's cost
                values[i] = when.replace(tzinfo=None).isoformat(" ", "microseconds")
            else:
                values[i] = sqlite_time(when)
        for i in self._money_at:
            if values[i] is not None:
                values[i] = format(values[i], "f")
        values[self._tags_at] = _json(values[self._tags_at])
        return tuple(values)
