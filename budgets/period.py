"""Calendar budget periods in an IANA time zone.

A period is a calendar window (hour, day, ISO week starting Monday, month) in the configured
zone, or ``lifetime``. Windows tile time exactly: the end of one is the start of the next, so a
new period starts from zero at the local boundary (23:00 UTC is already "tomorrow" in
Europe/Berlin). Each window has a ``label`` used in counter keys; hour labels carry the UTC
offset so the repeated hour when daylight saving ends gets two distinct windows.

Windows are computed by the client from the injected clock, not by Redis: the time zone
database lives here, and tests can move time. Replicas whose clocks disagree by ``s`` seconds
disagree about a boundary for ``s`` seconds; run NTP.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = ["Period", "Window", "window"]


class Period(enum.StrEnum):
    """How often a budget starts again from zero."""

    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    LIFETIME = "lifetime"


@dataclass(frozen=True, slots=True)
class Window:
    """One period instance: ``[start, end)``; ``end`` is ``None`` for lifetime."""

    period: Period
    start: datetime | None
    end: datetime | None
    label: str

    def ttl_ms(self, now: float, grace_s: float) -> int:
        """Milliseconds a counter of this window must live: to the end plus ``grace_s``.

        0 means "never expires" (lifetime). The grace lets settlements of calls admitted just
        before the boundary land in the window they were admitted in.
        """
        if self.end is None:
            return 0
        return max(1, int((self.end.timestamp() - now + grace_s) * 1000))


def _midnight(d: date, tz: ZoneInfo) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def window(period: Period, now: float, tz: ZoneInfo) -> Window:
    """Return the window of ``period`` containing the instant ``now`` (epoch seconds) in ``tz``."""
    if period is Period.LIFETIME:
        return Window(period, None, None, "all")
    local = datetime.fromtimestamp(now, tz)
    if period is Period.HOUR:
        # replace() keeps ``fold``, so the second 01:00 after a DST fall-back stays distinct.
        start = local.replace(minute=0, second=0, microsecond=0)
        end = datetime.fromtimestamp(start.timestamp() + 3600, tz)
        return Window(period, start, end, start.isoformat(timespec="minutes"))
    today = local.date()
    if period is Period.DAY:
        return Window(
            period, _midnight(today, tz), _midnight(today + timedelta(days=1), tz), str(today)
        )
    if period is Period.WEEK:
        monday = today - timedelta(days=today.weekday())
        year, week, _ = monday.isocalendar()
        return Window(
            period,
            _midnight(monday, tz),
            _midnight(monday + timedelta(days=7), tz),
            f"{year}-W{week:02d}",
        )
    first = today.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return Window(
        period, _midnight(first, tz), _midnight(following, tz), f"{first.year}-{first.month:02d}"
    )
