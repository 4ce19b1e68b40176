"""The JSON access log: one line per call, serialised and written off the event loop.

The ``logging`` module costs ~16 us per line before any formatting (a ``LogRecord``, a
``QueueHandler.prepare`` copy, a formatter) and ``json.dumps`` another 5; for a proxy whose
whole budget is a few hundred microseconds per call that was the largest single item of the
default telemetry. Here the event loop appends one dict to a deque (thread-safe, no lock) and
a writer thread turns whatever has accumulated into orjson lines and writes them in one go.
"""

from __future__ import annotations

import collections
import os
import sys
import threading
from typing import IO, Any

import orjson

__all__ = ["AccessLog"]


class AccessLog:
    """Lines go to ``stream`` (stderr by default), at most ``interval`` seconds late."""

    def __init__(self, stream: IO[str] | None = None, interval: float = 0.1) -> None:
        self._stream = stream
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spendgate-access-log", daemon=True)
        self._thread.start()

    def write(self, line: dict[str, Any]) -> None:
        """Queue one line; never blocks and never raises on the caller."""
        self._pending.append(line)

    def close(self) -> None:
        """Write what is queued and stop the thread (blocking: call from a thread at exit)."""
        self._stop.set()
        self._thread.join(timeout=5)
        self._drain()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._drain()

    def _drain(self) -> None:
        pending = self._pending
        if not pending:
            return
        out = bytearray()
        try:
            while True:
                out += orjson.dumps(pending.popleft(), default=str)
                out += b"\n"
        except IndexError:
            pass
        try:
            stream = self._stream or sys.stderr
            buffer = getattr(stream, "buffer", None)
            if buffer is not None:
                stream.flush()
                buffer.write(out)
                buffer.flush()
            else:
                stream.write(out.decode())
                stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not kill the thread
            try:
                os.write(2, b"spendgate: access log stream unavailable\n")
            except OSError:
                pass
