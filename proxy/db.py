"""Database plumbing shared by the ledger and its readers: async engines and exact column types.

The configuration speaks plain URLs (``sqlite:///spendgate.db``, ``postgresql://...``); the
async drivers are chosen here, once, so nothing else needs to know about aiosqlite or asyncpg.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal
from typing import Any

from sqlalchemy import DateTime, Numeric, String, Table, event
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import ArgumentError, DataError, DBAPIError, IntegrityError, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator, TypeEngine

__all__ = [
    "EXACT",
    "ExactDecimal",
    "UTCDateTime",
    "append_jsonl",
    "async_url",
    "create_engine",
    "describe_error",
    "is_data_error",
    "read_jsonl",
    "redact_url",
    "sqlite_time",
]

EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)
"""A decimal context in which sums of money never round (the default keeps 28 digits)."""

_ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


def _parse(url: str | URL) -> URL:
    try:
        return make_url(url)
    except ArgumentError:
        # SQLAlchemy's message repeats the whole string, password included.
        raise ValueError("invalid database URL") from None


def async_url(url: str | URL) -> URL:
    """Return ``url`` with an async driver: ``sqlite`` -> aiosqlite, ``postgresql`` -> asyncpg.

    URLs that already name a driver are kept as they are; ``postgres://`` (Heroku style) is
    accepted as ``postgresql://``.
    """
    parsed = _parse(url)
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgres":
        backend = "postgresql"
    driver = driver or _ASYNC_DRIVERS.get(backend, "")
    return parsed.set(drivername=f"{backend}+{driver}" if driver else backend)


def redact_url(url: str | URL) -> str:
    """The URL as it may appear in logs: the password replaced by ``***``."""
    try:
        return _parse(url).render_as_string(hide_password=True)
    except ValueError:
        return "<invalid database URL>"


def create_engine(url: str | URL) -> AsyncEngine:
    """Create an async engine for ``url`` (see :func:`async_url`); SQLite runs in WAL mode.

    WAL lets readers (spend queries, exports) run while the ledger writes, and several worker
    processes share one file; ``busy_timeout`` makes a writer wait for the lock, not fail.
    """
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        in_memory = parsed.database in (None, "", ":memory:")
        engine = create_async_engine(
            parsed, poolclass=StaticPool if in_memory else None, pool_pre_ping=True
        )
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        return engine
    connect_args: dict[str, Any] = {}
    if parsed.get_driver_name() == "asyncpg":
        # Without these a black-holed server hangs the writer instead of failing a retry.
        connect_args = {"timeout": 10, "command_timeout": 60}
    return create_async_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable across app crashes; WAL's default
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()
    # SQLite has no decimal type and a float SUM; these keep the rollup's money exact.
    dbapi_connection.create_function("spendgate_dec_add", 2, _dec_add, deterministic=True)
    dbapi_connection.create_function("spendgate_dec_sum", 1, _dec_sum, deterministic=True)


def _dec_add(a: str | None, b: str | None) -> str:
    """SQL ``spendgate_dec_add(a, b)``: the exact sum of two decimal texts (NULL is 0)."""
    return format(EXACT.add(Decimal(a or 0), Decimal(b or 0)), "f")


def _dec_sum(joined: str | None) -> str:
    """SQL ``spendgate_dec_sum(group_concat(x, ' '))``: the exact sum of decimal texts.

    SQLite's driver exposes scalar functions only, so an aggregate is a scalar over
    ``group_concat``; callers group finely enough (an hour, a rollup key) to keep it short.
    """
    total = Decimal(0)
    for part in (joined or "").split():
        total = EXACT.add(total, Decimal(part))
    return format(total, "f")


def sqlite_time(value: datetime) -> str:
    """An aware datetime as SQLite stores a :class:`UTCDateTime` (naive UTC text, fixed
    width, so text order is time order): ``2026-11-01 09:00:00.000000``."""
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


class ExactDecimal(TypeDecorator[Decimal]):
    """Money: ``NUMERIC`` without scale on PostgreSQL, decimal text on SQLite.

    SQLite has no decimal type (SQLAlchemy would store a float and warn), so the value is
    written in positional notation, which round-trips exactly and still sorts and casts as a
    number in ad-hoc SQL. Floats, NaN and infinities are refused: money is never inexact.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String())
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise TypeError(f"money must be a finite Decimal, got {value!r}")
        return format(value, "f") if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(value)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no time zones: the value is stored as naive
    UTC in SQLAlchemy's fixed-width text form (so text order is time order) and read back
    as aware UTC. Naive datetimes are refused rather than guessed.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"datetime must be timezone-aware, got {value!r}")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_data_error(exc: BaseException) -> bool:
    """True when the database refused the data itself (retrying cannot help), as opposed to
    the connection or server failing (retrying will)."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if isinstance(exc, StatementError) and not isinstance(exc, DBAPIError):
        return True  # a bind processor refused a value
    # asyncpg's errors reach SQLAlchemy as a generic DBAPIError; the SQLSTATE class tells.
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    return sqlstate[:2] in ("22", "23")  # data exception, integrity constraint violation


def describe_error(exc: BaseException) -> str:
    """A one-line description safe to log.

    Not ``str(exc)``: SQLAlchemy appends the statement and its bound parameters.
    """
    orig = getattr(exc, "orig", None) or exc
    first_line = next(iter(str(orig).splitlines()), "")
    return f"{type(orig).__name__}: {first_line}"[:300]


def _to_json(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact, where a JSON number would become a float
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def append_jsonl(path: str, records: Iterable[Mapping[str, Any]]) -> None:
    """Append records as JSON lines (Decimals as strings) and fsync: the file is the last
    copy of rows the database could not take."""
    with open(path, "a", encoding="utf-8") as f:
        for record in records:
            f.write(json.dumps({k: _to_json(v) for k, v in record.items()}) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str, table: Table) -> list[dict[str, Any]]:
    """Read records written by :func:`append_jsonl`, restoring ``table``'s exact types."""
    money = [c.name for c in table.columns if isinstance(c.type, ExactDecimal)]
    times = [c.name for c in table.columns if isinstance(c.type, UTCDateTime)]
    records = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            for name in money:
                if record.get(name) is not None:
                    record[name] = Decimal(record[name])
            for name in times:
                if record.get(name) is not None:
                    record[name] = datetime.fromisoformat(record[name])
            records.append(record)
    return records
