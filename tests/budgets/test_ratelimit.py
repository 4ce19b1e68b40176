from __future__ import annotations

from budgets.ratelimit import gcra_admit, gcra_state, headers
from budgets.store import RateSpec

RPM = RateSpec("rl:key:rpm:k1", unit=2, limit=60)


def test_burst_up_to_the_limit_then_one_per_interval() -> None:
    tat = None
    for _ in range(60):
        tat, _ = gcra_admit(tat, 0.0, 1, RPM)
    assert tat == 60_000
    assert gcra_admit(tat, 0.0, 1, RPM) == (None, 1000)
    assert gcra_state(tat, 0.0, RPM) == (0, 60_000)
    admitted, _ = gcra_admit(tat, 1000.0, 1, RPM)  # a second later one unit has refilled
    assert admitted == 61_000


def test_oversized_request_waits_for_a_full_bucket() -> None:
    tpm = RateSpec("rl:key:tpm:k1", unit=1, limit=1000)
    assert gcra_admit(None, 0.0, 5000, tpm)[0] == 300_000  # full: admitted, goes into debt
    assert gcra_admit(30_000.0, 0.0, 5000, tpm) == (None, 30_000)


def test_headers_pick_the_tightest_bucket_per_kind() -> None:
    other = RateSpec("rl:team:rpm:search", unit=2, limit=600)
    out = headers([RPM, other], [(10, 50_000), (500, 10_000)], retry_after_ms=1500)
    assert out == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "10",
        "x-ratelimit-reset-requests": "50s",
        "retry-after": "2",
        "retry-after-ms": "1500",
    }
    assert headers([RPM], [(0, 125_500)])["x-ratelimit-reset-requests"] == "2m5.5s"
