from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import httpx

from budgets import AlertEvent, WebhookAlerts

EVENT = AlertEvent(
    policy="team:search:month", scope="team", value="search", period="month",
    period_start=datetime(2025, 1, 1, tzinfo=UTC), period_end=datetime(2025, 2, 1, tzinfo=UTC),
    mode="soft", unit="usd", threshold=Decimal("0.8"), limit=Decimal(500),
    spent=Decimal("400.000000001"), at=datetime(2025, 1, 15, tzinfo=UTC),
)  # fmt: skip


async def test_webhook_retries_with_backoff_and_never_blocks() -> None:
    calls: list[httpx.Request] = []
    delivered = asyncio.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused")
        if len(calls) == 2:
            return httpx.Response(503)
        delivered.set()
        return httpx.Response(204)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        alerts = WebhookAlerts("http://hooks.test/budget", client=client, backoff_s=0.001)
        alerts(EVENT)  # returns at once, before any delivery
        assert calls == []
        await asyncio.wait_for(delivered.wait(), 2)
        await alerts.aclose()
    assert len(calls) == 3
    body = calls[-1].read()
    assert b'"spent":"400.000000001"' in body.replace(b" ", b"")
    assert b'"event":"budget.threshold_crossed"' in body.replace(b" ", b"")
