"""Budget alerts: the structured event, and a webhook sender that never blocks the caller.

A threshold (a fraction of a limit) fires once per period per policy and limit: the settle
script sets the mark with ``HSETNX`` in the period's bucket, so of all replicas exactly one sees
it fire, and the next period's bucket starts without marks. Raising or lowering a limit re-arms
its thresholds (the mark names the limit), since 80% of a new limit is news.

``WebhookAlerts`` is an ``on_alert`` callback: it queues the event and returns; one background
task POSTs it as JSON, retrying transport errors, 429 and 5xx with exponential backoff and
jitter, and drops (with a log line) what it cannot deliver or what overflows the queue.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

__all__ = ["AlertEvent", "WebhookAlerts"]

log = logging.getLogger("spendgate.budgets")


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """A budget crossed ``threshold`` (a fraction) of its ``limit`` in ``unit`` this period."""

    policy: str
    scope: str
    value: str
    period: str
    period_start: datetime | None
    period_end: datetime | None
    mode: str
    unit: str
    threshold: Decimal
    limit: Decimal | int
    spent: Decimal | int
    at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready mapping (amounts as strings, so USD stays exact)."""
        return {
            "event": "budget.threshold_crossed",
            "policy": self.policy,
            "scope": self.scope,
            "value": self.value,
            "period": self.period,
            "period_start": self.period_start.isoformat() if self.period_start else None,
            "period_end": self.period_end.isoformat() if self.period_end else None,
            "mode": self.mode,
            "unit": self.unit,
            "threshold": str(self.threshold),
            "limit": str(self.limit),
            "spent": str(self.spent),
            "at": self.at.isoformat(),
        }


class WebhookAlerts:
    """Deliver alert events to a webhook URL in the background, with retries."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = 5,
        backoff_s: float = 0.5,
        queue_size: int = 1000,
    ) -> None:
        self._url = url
        self._client = client or httpx.AsyncClient(timeout=5.0)
        self._owns_client = client is None
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._queue: asyncio.Queue[AlertEvent] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task[None] | None = None

    def __call__(self, event: AlertEvent) -> None:
        """Queue ``event``; returns at once (must be called on the running event loop)."""
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.error("budget alert dropped, webhook queue full: %s", event.policy)
            return
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._deliver(event)
            finally:
                self._queue.task_done()

    async def _deliver(self, event: AlertEvent) -> None:
        body = event.to_json()
        for attempt in range(self._attempts):
            try:
                response = await self._client.post(self._url, json=body)
                if response.status_code < 500 and response.status_code != 429:
                    if response.status_code >= 400:
                        log.error("budget alert webhook refused: HTTP %s", response.status_code)
                    return
            except httpx.HTTPError as exc:
                log.warning("budget alert webhook failed (attempt %d): %s", attempt + 1, exc)
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._backoff_s * 2**attempt * (0.5 + random.random()))
        log.error("budget alert not delivered after %d attempts: %s", self._attempts, event.policy)

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Deliver what is queued (up to ``timeout_s``), then stop and close the client."""
        if self._worker is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout_s)
            except TimeoutError:
                log.error("budget alerts still queued at shutdown: %d", self._queue.qsize())
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        if self._owns_client:
            await self._client.aclose()
