"""Graceful shutdown: SIGTERM drains a replica instead of cutting it off.

uvicorn, on SIGTERM, stops accepting at once and waits up to ``timeout_graceful_shutdown``
for calls in flight. Behind a load balancer that is too early: for a few seconds after a pod
is told to stop, traffic still arrives (endpoint updates propagate; clients reuse keep-alive
connections), and a replica that no longer accepts drops it. So a drain goes first:

1. SIGTERM: ``/readyz`` answers 503 at once; the process keeps serving for
   ``server.shutdown.drain_seconds``, new calls served or refused (503) per ``new_requests``,
   and every response carries ``connection: close`` so pooled client connections move to
   other replicas.
2. The signal is handed to the server's own handler (uvicorn's): it stops accepting, and
   calls and streams in flight finish, for up to ``grace_seconds``
   (``timeout_graceful_shutdown``). Past that they are cancelled, and recorded as cut.
3. The app's lifespan ends: reservations are settled, the ledger writer writes its queue for
   up to ``flush_seconds`` and spills the rest to ``storage.spill_path`` (replayed at start).

The handler is chained in front of the server's from the app's lifespan, so it works for a
single process and under ``--workers`` (uvicorn's supervisor sends each worker SIGTERM). A
second SIGTERM, or SIGINT (Ctrl-C), skips what is left of the drain.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.config import ShutdownConfig

__all__ = ["DrainGate", "Lifecycle"]

log = logging.getLogger("spendgate")

_Handler = Callable[[int, FrameType | None], Any] | int | None


class Lifecycle:
    """One serving process's shutdown state: draining or not, and the signal hand-over."""

    def __init__(self, settings: ShutdownConfig) -> None:
        self.settings = settings
        self.draining = False
        self.drain_started: float | None = None  # time.monotonic() of the first signal
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, _Handler] = {}
        self._handed_over: set[int] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.in_flight = 0  # HTTP requests inside the app, counted by DrainGate

    @property
    def refusing(self) -> bool:
        """New calls are refused (503): draining with ``new_requests: refuse``."""
        return self.draining and self.settings.new_requests == "refuse"

    def install(self) -> None:
        """Chain the drain in front of the current SIGTERM and SIGINT handlers.

        Only the main thread may set signal handlers; elsewhere (a test server in a thread)
        this does nothing and :meth:`begin_drain` is the way in.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def uninstall(self) -> None:
        """Put the previous handlers back (if ours are still the ones installed)."""
        if self._timer is not None:
            self._timer.cancel()
        for sig, previous in self._previous.items():
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)
        self._previous.clear()

    async def wait_idle(self, timeout: float) -> float:
        """Wait up to ``timeout`` s for requests still inside the app; the time left.

        uvicorn cancels calls past the grace period and goes straight on to the lifespan
        shutdown; a cancelled call still records its ledger row, and this lets it do so
        before the ledger writer closes.
        """
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return max(deadline - time.monotonic(), 0.0)

    def begin_drain(self) -> None:
        """Turn readiness off; calls already running and new ones carry on."""
        if not self.draining:
            self.draining = True
            self.drain_started = time.monotonic()

    # -- signals -----------------------------------------------------------------------------
    # A Python signal handler runs in the main thread between two bytecodes, possibly in the
    # middle of the event loop's own code: it only sets flags and wakes the loop.

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        first = not self.draining
        self.begin_drain()
        delay = self.settings.drain_seconds
        if first and sig == signal.SIGTERM and delay > 0 and self._loop is not None:
            self._loop.call_soon_threadsafe(self._start_timer, sig, delay)
        else:
            self._hand_over(sig, frame)

    def _start_timer(self, sig: int, delay: float) -> None:
        if sig in self._handed_over:  # a second signal came first
            return
        log.info(
            "SIGTERM: draining for %.1fs (readiness off, new calls %s), then stopping",
            delay,
            "refused" if self.refusing else "served",
        )
        self._timer = asyncio.get_running_loop().call_later(delay, self._hand_over, sig, None)

    def _hand_over(self, sig: int, frame: FrameType | None) -> None:
        """Pass ``sig`` to the handler we displaced (uvicorn's: stop accepting, then wait)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._handed_over.add(sig)
        previous = self._previous.get(sig, signal.SIG_DFL)
        if callable(previous):
            previous(sig, frame)
        elif previous == signal.SIG_DFL:
            # Nobody else handles it: act as if we had not been here.
            signal.signal(sig, signal.SIG_DFL)
            signal.raise_signal(sig)


_PROBES = ("/healthz", "/readyz", "/metrics")


class DrainGate:
    """Pure ASGI middleware for the drain: ``connection: close`` on every response, and with
    ``new_requests: refuse`` a 503 (from ``refuse``, in the caller's wire format) for every
    call but the probes and the admin API. Refused calls never reach a provider and, like
    calls the full ledger backlog refuses, have no ledger row. It also counts the requests
    inside the app, for :meth:`Lifecycle.wait_idle`."""

    def __init__(self, app: ASGIApp, refuse: Callable[[str], ASGIApp]) -> None:
        self.app = app
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        lifecycle: Lifecycle | None = (scope.get("state") or {}).get("lifecycle")
        if scope["type"] != "http" or lifecycle is None:
            await self.app(scope, receive, send)
            return
        lifecycle.in_flight += 1
        try:
            if not lifecycle.draining:
                await self.app(scope, receive, send)
                return
            path: str = scope["path"]
            if lifecycle.refusing and not (path in _PROBES or path.startswith("/admin")):
                await self.refuse(path)(scope, receive, _closing(send))
                return
            await self.app(scope, receive, _closing(send))
        finally:
            lifecycle.in_flight -= 1


def _closing(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"connection"]
            message = {**message, "headers": [*headers, (b"connection", b"close")]}
        await send(message)

    return wrapped
