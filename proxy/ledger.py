"""The ledger: one row per call, written off the request path, never lost.

The proxy builds a :class:`LedgerRow` when a call ends and hands it to
:meth:`LedgerWriter.submit`, which only appends to an in-memory queue. One background task
writes the queue in batches, each one transaction that inserts the rows with ``ON CONFLICT
DO NOTHING`` and adds the rows it did insert to the hourly rollup (:mod:`proxy.rollup`), so
a batch retried after an ambiguous failure (or replayed from the spill file) never
duplicates a row nor counts it twice. While the
database is unreachable the rows stay queued and the writer retries with capped backoff; if
it is still unreachable at shutdown they are spilled to a JSONL file and replayed at the next
start. Rows the database refuses outright (a poison row) are set aside in
``<spill_path>.rejected`` instead of blocking the rows behind them. A second task keeps the
storage in shape (:mod:`proxy.retention`: monthly partitions on PostgreSQL, pruning).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, Index, String, Table, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from proxy import retention
from proxy.db import (
    ExactDecimal,
    UTCDateTime,
    append_jsonl,
    create_engine,
    describe_error,
    is_data_error,
    read_jsonl,
    redact_url,
)
from proxy.ledger_write import BatchInsert

__all__ = ["LedgerRow", "LedgerWriter", "Outcome", "UsageSource"]

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    OK = "ok"
    UPSTREAM_ERROR = "upstream_error"
    BUDGET_BLOCKED = "budget_blocked"
    RATE_LIMITED = "rate_limited"
    CLIENT_CANCELLED = "client_cancelled"
    TIMEOUT = "timeout"
    INVALID_REQUEST = "invalid_request"
    UNAVAILABLE = "unavailable"  # refused by the proxy itself (no provider key, store down)


class UsageSource(StrEnum):
    PROVIDER = "provider"  # reported by the upstream
    COUNTED = "counted"  # counted locally with the model's tokenizer
    ESTIMATED = "estimated"  # approximated (e.g. a stream cut short before any usage)
    NONE = "none"  # no tokens involved (blocked before the upstream)


def _money() -> Any:
    return Field(default=None, sa_type=ExactDecimal)


class LedgerRow(SQLModel, table=True):
    """One proxied call, as finance and budget rebuilds read it.

    Token counts follow :class:`pricing.Usage`: ``None`` is "not reported", 0 is zero, and
    cached/cache-write tokens are subsets of ``input_tokens``, reasoning of ``output_tokens``.
    Money is ``Decimal`` in USD; ``cost_usd`` is what the team is charged (after its rate
    card), ``list_cost_usd`` the catalog price, and the ``cost_*_usd`` parts break down
    ``list_cost_usd`` by token kind (as :mod:`proxy.metering` fills them). Five fixed columns
    rather than a JSON breakdown: ``SUM()`` works on them in SQL on both backends, exactly.
    An unpriced call (unknown model) has ``unpriced`` set and NULL costs.
    """

    __tablename__ = "ledger_calls"
    __table_args__ = (
        Index("ix_ledger_calls_started_at", "started_at"),
        Index("ix_ledger_calls_team_started_at", "team", "started_at"),
    )

    request_id: str = Field(primary_key=True)  # the idempotency key
    started_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    ended_at: datetime = Field(sa_type=UTCDateTime, nullable=False)
    team: str
    project: str | None = None
    key_id: str | None = None
    end_user: str | None = None
    tags: dict[str, str] = Field(
        default_factory=dict,
        sa_column=Column(JSON().with_variant(JSONB(), "postgresql"), nullable=False),
    )
    provider: str | None = None
    endpoint: str
    model_requested: str | None = None
    model_served: str | None = None
    stream: bool = False
    status_code: int  # 499 when the client hung up before a status was sent
    outcome: str = Field(sa_type=String)  # an Outcome value
    error_type: str | None = None  # short code, e.g. "budget_exceeded", "upstream_timeout"
    input_tokens: int | None = None
    cached_input_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_1h_tokens: int | None = None
    output_tokens: int | None = None
    reasoning_tokens: int | None = None
    audio_input_tokens: int | None = None
    audio_output_tokens: int | None = None
    usage_source: str = Field(default=UsageSource.NONE.value, sa_type=String)
    list_cost_usd: Decimal | None = _money()
    cost_usd: Decimal | None = _money()
    cost_input_usd: Decimal | None = _money()  # uncached input
    cost_cached_input_usd: Decimal | None = _money()
    cost_cache_write_usd: Decimal | None = _money()  # both cache-write rates
    cost_output_usd: Decimal | None = _money()  # reasoning included, as billed
    cost_other_usd: Decimal | None = _money()  # audio, per-request fees, anything else
    price_version: str | None = None
    rate_card: str | None = None  # the team rate card version applied, e.g. "research@2026-07-01"
    unpriced: bool = False
    latency_ms: int
    ttft_ms: int | None = None
    trace_id: str | None = None
    span_id: str | None = None
    upstream_request_id: str | None = None


_TABLE: Table = LedgerRow.metadata.tables[LedgerRow.__tablename__]
_COLUMNS = tuple(c.name for c in _TABLE.columns)
_MONEY = tuple(c.name for c in _TABLE.columns if isinstance(c.type, ExactDecimal))
_TIMES = tuple(c.name for c in _TABLE.columns if isinstance(c.type, UTCDateTime))
_REQUIRED = tuple(c.name for c in _TABLE.columns if not c.nullable)
_INTS = (*(n for n in _COLUMNS if n.endswith("_tokens")), "status_code", "latency_ms", "ttft_ms")
_INT_MAX = 2**31 - 1  # PostgreSQL INTEGER
_OUTCOMES = frozenset(Outcome)
_USAGE_SOURCES = frozenset(UsageSource)
_unknown_seen: set[tuple[str, str]] = set()


Entry = dict[str, Any]
"""A row as the writer holds it: column name -> value. Plain dicts, because building a
SQLModel object per call costs ~150 us of event-loop time (measured in bench/)."""

_DEFAULTS: dict[str, Any] = {"stream": False, "unpriced": False, "usage_source": "none"}
_BLANK: Entry = {name: _DEFAULTS.get(name) for name in _COLUMNS}


def _entry(row: LedgerRow | Mapping[str, Any]) -> Entry:
    """Normalise a ``LedgerRow`` or a mapping of column values to an ``Entry``."""
    if isinstance(row, LedgerRow):
        return {name: getattr(row, name) for name in _COLUMNS}
    if not isinstance(row, Mapping):
        raise TypeError(f"expected a LedgerRow or a mapping, got {type(row).__name__}")
    entry = _BLANK.copy()
    entry.update(row)
    if len(entry) != len(_BLANK):
        raise ValueError(f"ledger row: unknown columns {sorted(set(row) - set(_COLUMNS))}")
    if entry["tags"] is None:
        entry["tags"] = {}
    return entry


def _check(row: Entry) -> None:
    """Refuse, at the caller, a row the database would refuse later (a table model is not
    validated by pydantic, so this is the only gate)."""
    for name in _REQUIRED:
        if row[name] is None:
            raise ValueError(f"ledger row {row['request_id']!r}: {name} is required")
    for name in _TIMES:
        when = row[name]
        if not isinstance(when, datetime) or when.utcoffset() is None:
            raise ValueError(f"ledger row {row['request_id']!r}: {name} must be timezone-aware")
    for name in _MONEY:
        value = row[name]
        if value is not None and not (isinstance(value, Decimal) and value.is_finite()):
            raise TypeError(f"ledger row {row['request_id']!r}: {name} must be a finite Decimal")
    for name in _INTS:
        value = row[name]
        if value is not None and not (type(value) is int and 0 <= value <= _INT_MAX):
            raise ValueError(f"ledger row {row['request_id']!r}: {name}={value!r} out of range")
    for name, known in (("outcome", _OUTCOMES), ("usage_source", _USAGE_SOURCES)):
        value = row[name]
        if not isinstance(value, str):
            raise TypeError(f"ledger row {row['request_id']!r}: {name} must be a str")
        if value not in known and (name, value) not in _unknown_seen:
            # Storable, so kept: losing a call's row is worse than a new label in a report.
            _unknown_seen.add((name, value))
            logger.warning("ledger: %s %r is not one of %s (row kept)", name, value, sorted(known))
    tags = row["tags"]
    if not isinstance(tags, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise TypeError(f"ledger row {row['request_id']!r}: tags must map str to str")


def _dump_rows(path: str, rows: Iterable[Entry]) -> None:
    append_jsonl(path, rows)


def _load_rows(path: str) -> list[Entry]:
    return [_entry(record) for record in read_jsonl(path, _TABLE)]


def _chunks(rows: Sequence[Entry], size: int) -> Iterator[Sequence[Entry]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


_INSERT = BatchInsert(_TABLE)


class LedgerWriter:
    """Writes ledger rows in the background; see the module docstring for the guarantees.

    ``submit`` never blocks, so it is safe in a ``finally`` of a cancelled request task.
    ``accepting`` turns False at ``max_backlog`` queued rows: the proxy refuses *new* calls
    then (503), while calls already running still submit their rows. One instance is
    started once and closed once, from one event loop.

    Every ``maintenance_interval`` seconds (the first time a minute after start) a second
    task creates the coming months' partitions and, with ``retention_days``, prunes the
    calls older than that (:mod:`proxy.retention`); ``None`` turns the task off.
    """

    def __init__(
        self,
        database_url: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.1,
        max_backlog: int = 100_000,
        spill_path: str | None = None,
        retry_base_delay: float = 0.1,
        retry_max_delay: float = 5.0,
        retention_days: int | None = None,
        maintenance_interval: float | None = 3600.0,
    ) -> None:
        if batch_size < 1 or max_backlog < 1:
            raise ValueError("batch_size and max_backlog must be positive")
        if retention_days is not None and retention_days < 1:
            raise ValueError("retention_days must be positive")
        self._url = database_url
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_backlog = max_backlog
        self._spill_path = spill_path
        self._retry_base_delay = retry_base_delay
        self._retry_max_delay = retry_max_delay
        self._retention_days = retention_days
        self._maintenance_interval = maintenance_interval
        self._engine: AsyncEngine | None = None
        self._task: asyncio.Task[None] | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._pending: deque[Entry] = deque()
        self._inflight: Sequence[Entry] = ()
        self._submitted = 0  # rows ever submitted; with _settled, lets flush() wait on a mark
        self._settled = 0  # rows written, set aside as rejected, or spilled
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._wake = asyncio.Event()  # rows are pending (or closing)
        self._hurry = asyncio.Event()  # a full batch, a flush or close: stop waiting for rows
        self._closing = False
        self._closed = False

    @property
    def accepting(self) -> bool:
        return self.backlog < self._max_backlog

    @property
    def backlog(self) -> int:
        """Rows submitted and not yet written (queued plus the batch being written)."""
        return len(self._pending) + len(self._inflight)

    @property
    def engine(self) -> AsyncEngine:
        """The ledger's engine, for readers (spend queries, exports) to share."""
        if self._engine is None:
            raise RuntimeError("LedgerWriter is not started")
        return self._engine

    async def start(self) -> None:
        """Connect, bring the schema to the current migration, make this month's partitions,
        replay a spill file, start the writer task.

        Fails (with the URL's password redacted) if the database is unreachable: a proxy
        that cannot record calls should not start taking them.
        """
        if self._engine is not None:
            raise RuntimeError("LedgerWriter.start() called twice")
        engine = self._engine = create_engine(self._url)
        try:
            if engine.dialect.name not in BatchInsert.DIALECTS:
                raise ValueError(f"ledger: unsupported database {redact_url(self._url)}")
            from proxy.migrations import upgrade

            before, after = await upgrade(engine)
            if before != after:
                logger.info(
                    "database %s upgraded from %s to %s",
                    redact_url(self._url),
                    before or "nothing",
                    after,
                )
            await self._ensure_partitions()
            await self._replay_spill()
        except Exception:
            self._engine = None  # start() may be retried
            await engine.dispose()
            logger.error("ledger database %s is unavailable", redact_url(self._url))
            raise
        self._task = asyncio.create_task(self._run(), name="spendgate-ledger-writer")
        self._task.add_done_callback(self._on_task_done)
        if self._maintenance_interval is not None:
            self._maintenance = asyncio.create_task(
                self._maintain(self._maintenance_interval), name="spendgate-ledger-maintenance"
            )

    def submit(self, row: LedgerRow | Mapping[str, Any]) -> None:
        """Queue ``row`` for writing. Never blocks and never awaits.

        Raises ``ValueError``/``TypeError`` for a malformed row (a bug in the caller, better
        found in tests than as a row the database refuses). After ``aclose`` the row goes
        straight to the spill file.
        """
        entry = _entry(row)
        _check(entry)
        if self._closed:
            self._spill_late(entry)
            return
        self._pending.append(entry)
        self._submitted += 1
        self._wake.set()
        if len(self._pending) >= self._batch_size:
            self._hurry.set()

    async def flush(self) -> None:
        """Wait until every row submitted so far is written (or set aside).

        While the database is down this waits for it; callers that cannot wait use a timeout.
        """
        mark = self._submitted
        if self._settled >= mark:
            return
        if self._task is None or self._task.done():
            raise RuntimeError("LedgerWriter is not running")
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((mark, waiter))
        self._hurry.set()
        await waiter

    async def aclose(self, timeout: float = 10.0) -> None:
        """Write what is queued, waiting up to ``timeout`` seconds; spill whatever is left."""
        if self._closed:
            return
        self._closing = True
        self._wake.set()
        self._hurry.set()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        try:
            if self._task is not None and not self._task.done():
                _, running = await asyncio.wait({self._task}, timeout=timeout)
                if running:
                    self._task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._task
        finally:
            if self._task is not None and not self._task.done():
                self._task.cancel()  # aclose itself was cancelled: the spill below takes over
            self._closed = True
            leftovers = [*self._inflight, *self._pending]
            self._inflight = ()
            self._pending.clear()
            if leftovers:
                # The in-flight batch may have committed; replay's ON CONFLICT drops it then.
                await self._spill(leftovers)
            self._settle(len(leftovers))
            if self._engine is not None:
                await self._engine.dispose()

    async def fetch(self, request_id: str) -> LedgerRow | None:
        """The stored row for ``request_id``, or None."""
        async with AsyncSession(self.engine) as session:
            return await session.get(LedgerRow, request_id)

    async def count(self) -> int:
        """How many rows the table holds."""
        async with self.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(_TABLE)) or 0)

    # -- the writer task ---------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._pending:
                self._wake.clear()
                if self._closing:
                    return
                continue
            if len(self._pending) < self._batch_size and not (self._waiters or self._closing):
                # Let a batch build up: one INSERT per interval rather than one per call.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._flush_interval)
            self._hurry.clear()
            take = min(self._batch_size, len(self._pending))
            self._inflight = [self._pending.popleft() for _ in range(take)]
            await self._write_until_done(self._inflight)
            self._inflight = ()
            self._settle(take)

    async def _write_until_done(self, batch: Sequence[Entry]) -> None:
        failures = 0
        while True:
            try:
                await self._write(batch)
            except Exception as exc:  # unreachable, restarting, locked...: keep the rows
                failures += 1
                delay = min(self._retry_max_delay, self._retry_base_delay * 2 ** (failures - 1))
                delay *= random.uniform(0.5, 1.0)  # replicas should not retry in lockstep
                logger.warning(
                    "ledger write to %s failed (%s); keeping %d rows, retry %d in %.2fs",
                    *(redact_url(self._url), describe_error(exc), self.backlog, failures, delay),
                )
                await asyncio.sleep(delay)
            else:
                if failures:
                    logger.warning("ledger writes resumed after %d failed attempts", failures)
                return

    async def _write(self, rows: Sequence[Entry]) -> None:
        """Insert ``rows`` in one transaction; on a data error, row by row to find the culprit."""
        try:
            await self._insert(rows)
        except Exception as exc:
            if not is_data_error(exc):
                raise
            if len(rows) > 1:
                for row in rows:
                    await self._write([row])
                return
            await self._reject(rows[0], exc)

    async def _insert(self, rows: Sequence[Entry]) -> None:
        async with self.engine.begin() as conn:
            await _INSERT(conn, rows)

    # -- maintenance -------------------------------------------------------------------------

    async def _ensure_partitions(self) -> None:
        try:
            await retention.ensure_partitions(self.engine)
        except Exception as exc:  # e.g. a lock timeout: the default partition takes the rows
            logger.warning("ledger: could not create partitions (%s)", describe_error(exc))

    async def _maintain(self, interval: float) -> None:
        await asyncio.sleep(min(60.0, interval))
        while True:
            await self._ensure_partitions()
            if self._retention_days is not None:
                await retention.apply_retention(self.engine, self._retention_days)
            await asyncio.sleep(interval)

    # -- spill and replay --------------------------------------------------------------------

    async def _spill(self, rows: Sequence[Entry]) -> None:
        if self._spill_path is None:
            ids = ", ".join(row["request_id"] for row in rows[:10])
            logger.error("ledger lost %d rows (no spill_path configured): %s", len(rows), ids)
            return
        try:
            await asyncio.to_thread(_dump_rows, self._spill_path, rows)
        except OSError as exc:
            logger.error(
                "ledger lost %d rows: cannot write %s: %s", len(rows), self._spill_path, exc
            )
            return
        logger.warning("ledger spilled %d unwritten rows to %s", len(rows), self._spill_path)

    def _spill_late(self, row: Entry) -> None:
        # Synchronous, but only a call that ends after shutdown gets here.
        if self._spill_path is None:
            logger.error("ledger closed; row %s lost (no spill_path configured)", row["request_id"])
            return
        _dump_rows(self._spill_path, [row])
        logger.warning("ledger closed; row %s spilled to %s", row["request_id"], self._spill_path)

    async def _reject(self, row: Entry, exc: BaseException) -> None:
        where = f"{self._spill_path}.rejected" if self._spill_path else None
        if where is not None:
            await asyncio.to_thread(_dump_rows, where, [row])
        logger.error(
            "ledger row %s refused by the database (%s); %s",
            *(row["request_id"], describe_error(exc), f"kept in {where}" if where else "dropped"),
        )

    async def _replay_spill(self) -> None:
        path = self._spill_path
        if path is None or not os.path.exists(path):
            return
        rows = await asyncio.to_thread(_load_rows, path)
        for batch in _chunks(rows, self._batch_size):
            await self._write(batch)
        # Removed only once every row is in: a crash before this replays again, harmlessly.
        os.remove(path)
        logger.warning("ledger replayed %d spilled rows from %s", len(rows), path)

    # -- bookkeeping -------------------------------------------------------------------------

    def _settle(self, count: int) -> None:
        self._settled += count
        still_waiting = []
        for mark, waiter in self._waiters:
            if mark <= self._settled:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                still_waiting.append((mark, waiter))
        self._waiters = still_waiting

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        logger.error("ledger writer stopped", exc_info=task.exception())
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(RuntimeError("ledger writer stopped"))
        self._waiters = []
