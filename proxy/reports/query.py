"""Spend reports: cost, list cost, tokens, requests and errors per group and time bucket.

A report is answered from the hourly rollup (:mod:`proxy.rollup`) when it can be: its
groups and filters are rollup dimensions (team, project, key, model, provider, endpoint,
outcome), its range starts and ends on whole UTC hours, and every UTC hour in it falls in
one bucket of the report's zone (true of any zone whose offset is a whole number of hours;
not of Asia/Kolkata, say). The rollup is read grouped by hour and the hours are added up
into the zone's buckets. Anything else reads the calls themselves (``source="calls"``).

From the calls, PostgreSQL aggregates in SQL (``NUMERIC`` sums are exact,
``date_trunc(unit, ts, zone)`` buckets in the report's zone). SQLite stores money as decimal
text and has only a float ``SUM``, so there the matching rows are streamed and summed as
``Decimal`` in Python, holding one accumulator per group. Every path gives the same answer
to the last digit; the tests hold them to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Select, case, func, inspect, select
from sqlalchemy.ext.asyncio import AsyncEngine

from proxy import rollup
from proxy.db import EXACT
from proxy.reports.selection import (
    DIMENSIONS,
    LEDGER,
    ReportError,
    Selection,
    dimension_column,
)
from proxy.reports.selection import dimension_value as _value

__all__ = [
    "GRANULARITIES",
    "ROLLUP_DIMENSIONS",
    "SOURCES",
    "SpendLine",
    "SpendQuery",
    "bucket_start",
    "plan_source",
    "run_spend",
]

GRANULARITIES = ("hour", "day", "month")
MONEY = ("cost_usd", "list_cost_usd")
TOKENS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
_STREAM_BATCH = 5000
SOURCES = ("auto", "rollup", "calls")
# Report dimensions the hourly rollup holds (proxy.rollup.DIMENSIONS, by report name).
ROLLUP_DIMENSIONS = frozenset(d for d, column in DIMENSIONS.items() if column in rollup.DIMENSIONS)
_HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class SpendQuery:
    """What to report: which rows, grouped by which dimensions, bucketed how, in which zone."""

    selection: Selection = field(default_factory=Selection)
    group_by: tuple[str, ...] = ()
    granularity: str | None = None  # hour | day | month, or None for the whole range
    zone: tzinfo = UTC

    def __post_init__(self) -> None:
        if self.granularity is not None and self.granularity not in GRANULARITIES:
            raise ReportError(f"granularity is one of {', '.join(GRANULARITIES)}")
        if len(set(self.group_by)) != len(self.group_by):
            raise ReportError("a dimension is repeated in group_by")


@dataclass(slots=True)
class SpendLine:
    """One group in one bucket. ``bucket`` is the bucket's start in the report's zone.

    ``cost_usd`` is what teams are charged, ``list_cost_usd`` the catalog price; unpriced
    calls add nothing to either and are counted in ``unpriced``. ``errors`` counts calls
    whose outcome is not ``ok``.
    """

    bucket: datetime | None
    group: tuple[str | None, ...]
    cost_usd: Decimal = Decimal(0)
    list_cost_usd: Decimal = Decimal(0)
    tokens: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOKENS, 0))
    requests: int = 0
    errors: int = 0
    unpriced: int = 0


def bucket_start(at: datetime, granularity: str, zone: tzinfo) -> datetime:
    """The start of the hour/day/month holding ``at``, as wall time in ``zone``.

    Matches PostgreSQL's ``date_trunc(unit, ts, zone)``: the local wall time is truncated
    and read back in the zone (an hour repeated at a DST fall-back is one bucket there too).
    """
    local = at.astimezone(zone).replace(tzinfo=None)
    if granularity == "hour":
        local = local.replace(minute=0, second=0, microsecond=0)
    elif granularity == "day":
        local = local.replace(hour=0, minute=0, second=0, microsecond=0)
    else:
        local = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    # fold=1: PostgreSQL reads an ambiguous wall time as the later (standard-time) instant.
    return local.replace(tzinfo=zone, fold=1).astimezone(UTC).astimezone(zone)


def _sort_key(line: SpendLine) -> tuple[Any, ...]:
    when = line.bucket.astimezone(UTC) if line.bucket is not None else None
    return (when, *((v is None, v or "") for v in line.group))


async def run_spend(
    engine: AsyncEngine, query: SpendQuery, *, source: str = "auto"
) -> list[SpendLine]:
    """The report's lines, ordered by bucket then group values (NULL groups last).

    ``source``: ``auto`` (the rollup when it can answer, see :func:`plan_source`),
    ``rollup`` (a ReportError when it cannot) or ``calls`` (always the per-call rows).
    """
    if source not in SOURCES:
        raise ReportError(f"source is one of {', '.join(SOURCES)}")
    if source != "calls":
        chosen, reason = await plan_source(engine, query)
        if source == "rollup" and chosen != "rollup":
            raise ReportError(f"the hourly rollup cannot answer this report: {reason}")
        source = chosen
    if source == "rollup":
        lines = await _from_rollup(engine, query)
    elif engine.dialect.name == "postgresql":
        lines = await _in_sql(engine, query)
    else:
        lines = await _in_python(engine, query)
    return sorted(lines, key=_sort_key)


async def plan_source(engine: AsyncEngine, query: SpendQuery) -> tuple[str, str]:
    """``("rollup", "")`` when the hourly rollup holds the answer, else ``("calls", why)``."""
    dimensions = {*query.group_by, *(d for d, _ in query.selection.filters)}
    outside = sorted(dimensions - ROLLUP_DIMENSIONS)
    if outside:
        return "calls", f"{', '.join(outside)} is not a rollup dimension"
    start, end = query.selection.start, query.selection.end
    for bound in (start, end):
        if bound is not None and rollup.floor_hour(bound) != bound:
            return "calls", "the range does not start and end on whole UTC hours"
    async with engine.connect() as conn:
        if not await conn.run_sync(lambda c: inspect(c).has_table(rollup.HOURLY.name)):
            return "calls", "the database has no hourly rollup yet (spendgate db upgrade)"
        if query.granularity is None or query.zone is UTC:
            return "rollup", ""
        if start is None or end is None:
            span = select(func.min(rollup.HOURLY.c.bucket), func.max(rollup.HOURLY.c.bucket))
            first, last = (await conn.execute(span)).one()
            if first is None:
                return "rollup", ""  # nothing to bucket
            start = start or first
            end = end or last + _HOUR
    if not _hours_aligned(query.zone, start, end):
        zone = getattr(query.zone, "key", str(query.zone))
        return "calls", f"{zone} has an offset that is not a whole number of hours in the range"
    return "rollup", ""


def _hours_aligned(zone: tzinfo, start: datetime, end: datetime) -> bool:
    """Whether every UTC hour in ``[start, end)`` lies within one wall-clock hour of ``zone``
    (so within one hour, day and month bucket): its offset is a whole number of hours, the
    same at the hour's start and end."""
    last = _HOUR - timedelta(microseconds=1)
    hour = rollup.floor_hour(start)
    offset = hour.astimezone(zone).utcoffset()
    while hour < end:
        if offset is None or offset % _HOUR:
            return False
        following = (hour + _HOUR).astimezone(zone).utcoffset()
        if following != offset and (hour + last).astimezone(zone).utcoffset() != offset:
            return False
        hour, offset = hour + _HOUR, following
    return True


async def _from_rollup(engine: AsyncEngine, query: SpendQuery) -> list[SpendLine]:
    hourly = rollup.HOURLY
    dialect = engine.dialect.name
    groups = [rollup.dimension(DIMENSIONS[d]) for d in query.group_by]
    conditions = query.selection.where(
        hourly.c.bucket, lambda dimension: rollup.dimension(DIMENSIONS[dimension])
    )
    # PostgreSQL buckets in SQL (whole hours fall in one bucket, so date_trunc of the hour
    # is the bucket of every call in it). SQLite sums per hour, which keeps each group's
    # concatenated money short, and the hours are added into buckets here.
    in_sql = dialect == "postgresql"
    when: ColumnElement[Any] | None = hourly.c.bucket
    if in_sql:
        zone_name = getattr(query.zone, "key", "UTC")
        when = func.date_trunc(query.granularity, when, zone_name) if query.granularity else None
    keys = [*([when] if when is not None else []), *groups]
    stmt = select(
        *keys,
        *(rollup.money_sum(m, dialect) for m in MONEY),
        *(func.sum(hourly.c[t]) for t in TOKENS),
        *(func.sum(hourly.c[n]) for n in ("requests", "errors", "unpriced")),
    ).where(*conditions)
    if keys:
        stmt = stmt.group_by(*keys)
    lines: dict[tuple[Any, ...], SpendLine] = {}
    buckets: dict[datetime, datetime | None] = {}
    width = len(groups)
    async with engine.connect() as conn:
        result = await conn.stream(stmt.execution_options(yield_per=_STREAM_BATCH))
        async for part in result.partitions(_STREAM_BATCH):
            for row in part:
                values: list[Any] = list(row)
                bucket: datetime | None = values.pop(0) if when is not None else None
                if bucket is not None and in_sql:
                    bucket = bucket.astimezone(query.zone)
                elif bucket is not None:
                    if bucket not in buckets:
                        buckets[bucket] = (
                            bucket_start(bucket, query.granularity, query.zone)
                            if query.granularity
                            else None
                        )
                    bucket = buckets[bucket]
                _add_sums(lines, bucket, tuple(values[:width]), values[width:])
    return [line for line in lines.values() if line.requests]


def _add_sums(
    lines: dict[tuple[Any, ...], SpendLine],
    bucket: datetime | None,
    group: tuple[Any, ...],
    sums: Sequence[Any],
) -> None:
    """Add one aggregate row (money, tokens, requests, errors, unpriced) into its line."""
    line = lines.get((bucket, group))
    if line is None:
        line = lines[(bucket, group)] = SpendLine(bucket=bucket, group=group)
    line.cost_usd = EXACT.add(line.cost_usd, sums[0] or 0)
    line.list_cost_usd = EXACT.add(line.list_cost_usd, sums[1] or 0)
    tokens = line.tokens
    for i, name in enumerate(TOKENS, 2):
        tokens[name] += int(sums[i] or 0)
    counts = len(MONEY) + len(TOKENS)
    line.requests += int(sums[counts] or 0)
    line.errors += int(sums[counts + 1] or 0)
    line.unpriced += int(sums[counts + 2] or 0)


async def _in_python(engine: AsyncEngine, query: SpendQuery) -> list[SpendLine]:
    cols = {"started_at", "outcome", "unpriced", *MONEY, *TOKENS}
    cols |= set(_plain_columns(query.group_by))
    if any(d not in DIMENSIONS for d in query.group_by):
        cols.add("tags")
    stmt = select(*(LEDGER.c[name] for name in sorted(cols))).where(*query.selection.where())
    lines: dict[tuple[Any, ...], SpendLine] = {}
    buckets: dict[datetime, datetime | None] = {}
    async with engine.connect() as conn:
        result = await conn.stream(stmt.execution_options(yield_per=_STREAM_BATCH))
        # A batch at a time: iterating an async result row by row costs a context switch
        # per row, several times the work of summing it.
        async for part in result.mappings().partitions(_STREAM_BATCH):
            for row in part:
                _add(lines, buckets, query, row)
    return list(lines.values())


def _add(
    lines: dict[tuple[Any, ...], SpendLine],
    buckets: dict[datetime, datetime | None],
    query: SpendQuery,
    row: Any,
) -> None:
    bucket = None
    if query.granularity:
        # Every zone's offset is a multiple of 15 minutes, so the bucket of an instant is
        # the bucket of its quarter hour: compute it once per quarter hour.
        at: datetime = row["started_at"]
        quarter = at.replace(minute=at.minute - at.minute % 15, second=0, microsecond=0)
        if quarter not in buckets:
            buckets[quarter] = bucket_start(quarter, query.granularity, query.zone)
        bucket = buckets[quarter]
    group = tuple(_value(d, row) for d in query.group_by)
    line = lines.get((bucket, group))
    if line is None:
        line = lines[(bucket, group)] = SpendLine(bucket=bucket, group=group)
    line.cost_usd = EXACT.add(line.cost_usd, row["cost_usd"] or 0)
    line.list_cost_usd = EXACT.add(line.list_cost_usd, row["list_cost_usd"] or 0)
    tokens = line.tokens
    for name in TOKENS:
        tokens[name] += row[name] or 0
    line.requests += 1
    line.errors += row["outcome"] != "ok"
    line.unpriced += bool(row["unpriced"])


def _plain_columns(group_by: Sequence[str]) -> list[str]:
    return [DIMENSIONS[d] for d in group_by if d in DIMENSIONS]


async def _in_sql(engine: AsyncEngine, query: SpendQuery) -> list[SpendLine]:
    keys: list[Any] = []
    if query.granularity:
        zone_name = getattr(query.zone, "key", "UTC")
        keys.append(func.date_trunc(query.granularity, LEDGER.c.started_at, zone_name))
    keys.extend(dimension_column(d) for d in query.group_by)
    stmt: Select[Any] = select(
        *keys,
        *(func.sum(LEDGER.c[m]) for m in MONEY),
        *(func.sum(LEDGER.c[t]) for t in TOKENS),
        func.count(),
        func.sum(case((LEDGER.c.outcome != "ok", 1), else_=0)),
        func.sum(case((LEDGER.c.unpriced, 1), else_=0)),
    ).where(*query.selection.where())
    if keys:
        stmt = stmt.group_by(*keys)
    lines = []
    async with engine.connect() as conn:
        for row in (await conn.execute(stmt)).all():
            values = list(row)
            bucket = values.pop(0).astimezone(query.zone) if query.granularity else None
            group = tuple(values[: len(query.group_by)])
            rest = values[len(query.group_by) :]
            requests = int(rest[len(MONEY) + len(TOKENS)])
            if requests == 0:
                continue  # an ungrouped aggregate over no rows still returns one row
            lines.append(
                SpendLine(
                    bucket=bucket,
                    group=tuple(None if g is None else str(g) for g in group),
                    cost_usd=Decimal(rest[0] or 0),
                    list_cost_usd=Decimal(rest[1] or 0),
                    tokens={t: int(rest[2 + i] or 0) for i, t in enumerate(TOKENS)},
                    requests=requests,
                    errors=int(rest[-2] or 0),
                    unpriced=int(rest[-1] or 0),
                )
            )
    return lines
