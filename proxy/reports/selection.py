"""Which ledger rows a report or export covers: a time range and attribute filters.

Shared by spend queries and exports so both read "the same rows" for the same arguments.
Ranges are half-open ``[start, end)`` on ``started_at``; a bare date is midnight in the
report's time zone, so ``--from 2026-11-01 --to 2026-12-01 --tz Europe/Paris`` is November
as Paris sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, Table

from proxy.ledger import LedgerRow

__all__ = [
    "DIMENSIONS",
    "LEDGER",
    "ReportError",
    "Selection",
    "dimension_value",
    "parse_dimension",
    "parse_filters",
    "parse_instant",
    "parse_zone",
]

LEDGER: Table = LedgerRow.metadata.tables[LedgerRow.__tablename__]

# Report dimension -> ledger column. ``tag:<key>`` groups or filters by one tag's value.
DIMENSIONS: dict[str, str] = {
    "team": "team",
    "project": "project",
    "key": "key_id",
    "end_user": "end_user",
    "model": "model_requested",
    "model_served": "model_served",
    "provider": "provider",
    "endpoint": "endpoint",
    "outcome": "outcome",
}
TAG_PREFIX = "tag:"


class ReportError(ValueError):
    """A report or export asked for something that does not exist (bad dimension, zone,
    date or format); the message is meant for the person who typed it."""


def parse_dimension(name: str) -> str:
    """A dimension as given (``team``, ``end-user``, ``tag:env``), normalised, or ReportError."""
    name = name.strip()
    if name.startswith(TAG_PREFIX):
        if not name[len(TAG_PREFIX) :]:
            raise ReportError("tag: needs a key, e.g. tag:env")
        return name
    canonical = name.lower().replace("-", "_")
    if canonical not in DIMENSIONS:
        known = ", ".join([*DIMENSIONS, "tag:<key>"])
        raise ReportError(f"unknown dimension {name!r} (one of {known})")
    return canonical


def dimension_value(dimension: str, row: Any) -> str | None:
    """The value of ``dimension`` in a ledger row (a mapping of column -> value)."""
    if dimension.startswith(TAG_PREFIX):
        tags = row["tags"] or {}
        value = tags.get(dimension[len(TAG_PREFIX) :])
        return None if value is None else str(value)
    value = row[DIMENSIONS[dimension]]
    return None if value is None else str(value)


def dimension_column(dimension: str) -> ColumnElement[Any]:
    """The SQL expression for a dimension (a tag is read out of the JSON column)."""
    if dimension.startswith(TAG_PREFIX):
        tag: ColumnElement[Any] = LEDGER.c.tags[dimension[len(TAG_PREFIX) :]].as_string()
        return tag
    return LEDGER.c[DIMENSIONS[dimension]]


def parse_zone(name: str | None) -> tzinfo:
    """An IANA time zone (``Europe/Paris``); UTC when not given."""
    if not name or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError(f"unknown time zone {name!r} (an IANA name, e.g. Europe/Paris)") from None


def parse_instant(text: str | None, zone: tzinfo) -> datetime | None:
    """``2026-11-01`` (midnight in ``zone``), ``2026-11-01T09:00`` (in ``zone``) or a time
    with an offset (``...Z``, ``...+01:00``), as an aware datetime."""
    if text is None or not text.strip():
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ReportError(f"not a date or time: {text!r} (e.g. 2026-11-01)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=zone)


def parse_filters(items: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``team=search``, ``tag:env=prod``, ``model=gpt-4o``: (dimension, value) pairs. The same
    dimension given twice matches either value."""
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ReportError(f"a filter is dimension=value, got {item!r}")
        out.append((parse_dimension(name), value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Selection:
    """The rows a report covers: ``start <= started_at < end`` and every filter."""

    start: datetime | None = None
    end: datetime | None = None
    filters: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for when in (self.start, self.end):
            if when is not None and when.utcoffset() is None:
                raise ReportError("range bounds must be timezone-aware")
        if self.start is not None and self.end is not None and self.end < self.start:
            raise ReportError("the range ends before it starts")

    def where(
        self,
        started_at: ColumnElement[Any] = LEDGER.c.started_at,
        column: Callable[[str], ColumnElement[Any]] = dimension_column,
    ) -> Sequence[ColumnElement[bool]]:
        """SQL conditions; filters on one dimension are OR-ed, different ones AND-ed.

        On the ledger by default; another table (the hourly rollup) passes its time column
        and its expression for a dimension.
        """
        conditions: list[ColumnElement[bool]] = []
        if self.start is not None:
            conditions.append(started_at >= self.start.astimezone(UTC))
        if self.end is not None:
            conditions.append(started_at < self.end.astimezone(UTC))
        by_dimension: dict[str, list[str]] = {}
        for dimension, value in self.filters:
            by_dimension.setdefault(dimension, []).append(value)
        for dimension, values in by_dimension.items():
            conditions.append(column(dimension).in_(values))
        return conditions
