from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from budgets.period import Period, window

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def ts(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> float:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_day_starts_at_local_midnight() -> None:
    # 22:59:59 UTC on 30 March is 23:59:59 CET; one second later it is the 31st in Berlin.
    before = window(Period.DAY, ts(2024, 3, 30, 22, 59, 59), BERLIN)
    after = window(Period.DAY, ts(2024, 3, 30, 23, 0, 0), BERLIN)
    assert (before.label, after.label) == ("2024-03-30", "2024-03-31")
    assert before.end == after.start == datetime(2024, 3, 31, tzinfo=BERLIN)
    # 31 March 2024 is the DST switch: that local day lasts 23 hours.
    assert after.end is not None and after.start is not None
    assert after.end.timestamp() - after.start.timestamp() == 23 * 3600


def test_week_is_iso_and_starts_monday() -> None:
    win = window(Period.WEEK, ts(2024, 12, 31, 12), NEW_YORK)  # a Tuesday
    assert win.label == "2025-W01"
    assert win.start == datetime(2024, 12, 30, tzinfo=NEW_YORK)
    assert win.end == datetime(2025, 1, 6, tzinfo=NEW_YORK)


def test_month_in_a_zone_behind_utc() -> None:
    # 2 March 03:00 UTC is still 1 March in New York... and 1 March 04:59 UTC is February.
    assert window(Period.MONTH, ts(2024, 3, 1, 4, 59), NEW_YORK).label == "2024-02"
    december = window(Period.MONTH, ts(2024, 12, 15), NEW_YORK)
    assert december.end == datetime(2025, 1, 1, tzinfo=NEW_YORK)


def test_repeated_hour_at_dst_end_gets_two_windows() -> None:
    first = window(Period.HOUR, ts(2024, 11, 3, 5, 30), NEW_YORK)  # 01:30 EDT
    second = window(Period.HOUR, ts(2024, 11, 3, 6, 30), NEW_YORK)  # 01:30 EST
    assert first.label != second.label
    assert first.end == second.start


def test_lifetime_never_expires() -> None:
    win = window(Period.LIFETIME, 0.0, BERLIN)
    assert (win.label, win.end, win.ttl_ms(0.0, 60)) == ("all", None, 0)


@pytest.mark.parametrize("period", [Period.HOUR, Period.DAY, Period.WEEK, Period.MONTH])
def test_ttl_covers_the_rest_of_the_window_plus_grace(period: Period) -> None:
    now = ts(2024, 5, 17, 13, 20)
    win = window(period, now, BERLIN)
    assert win.end is not None
    assert win.ttl_ms(now, 60) == int((win.end.timestamp() - now + 60) * 1000)
