"""Incremental Server-Sent Events framing: bytes as they arrive in, whole events out.

Only framing lives here (events end at a blank line; LF, CRLF or CR line endings); what an
event means is the provider adapter's business. Events come out as the exact bytes received,
separator included, so forwarding them keeps the stream byte-identical.
"""

from __future__ import annotations

import re

__all__ = ["EventSplitter", "event_data"]

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


class EventSplitter:
    """Feed chunks; get back the events completed by each chunk."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._tail + chunk if self._tail else chunk
        if b"\r" not in data:  # the common case: LF-only, no regex needed
            parts = data.split(b"\n\n")
            self._tail = parts.pop()
            return [p + b"\n\n" for p in parts]
        events: list[bytes] = []
        start = 0
        for m in _BOUNDARY.finditer(data):
            events.append(data[start : m.end()])
            start = m.end()
        self._tail = data[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet terminated (a stream cut short leaves them here)."""
        return self._tail


def event_data(event: bytes) -> bytes:
    """The joined ``data:`` field of one event (b"" if none)."""
    lines = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(lines)
