"""HTTP/1.1 on asyncio streams, just enough of it for the fake upstream, with exact framing.

Hand-rolled, not uvicorn, because the tests need what an ASGI server hides or smooths over:
every SSE event in its own HTTP chunk, a body cut off without the terminating chunk, a request
read but never answered, and header bytes we choose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from .fixtures import JSON_CONTENT_TYPE

# Sent on every answer, like OpenAI's; a scenario's own headers replace same-named ones.
_DEFAULT_HEADERS = {
    "access-control-expose-headers": "X-Request-ID",
    "openai-organization": "user-spendgate-fake",
    "openai-processing-ms": "142",
    "openai-project": "proj_SpendgateFakeUpstream",
    "openai-version": "2020-10-01",
    "x-ratelimit-limit-requests": "10000",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-requests": "9999",
    "x-ratelimit-remaining-tokens": "199971",
    "x-ratelimit-reset-requests": "6ms",
    "x-ratelimit-reset-tokens": "8ms",
}


@dataclass
class RecordedRequest:
    """What the upstream received, and how the exchange ended.

    ``outcome`` is None while the answer is in flight, then one of "complete", "dropped" (the
    scenario cut the connection), "client-closed" (the peer went away first, e.g. a proxy that
    timed out or saw its own client disconnect), "server-stopped" or "error" (a bug in the
    fake, kept in FakeUpstream.errors). ``done`` is set with it.
    """

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any = None
    scenario: str | None = None
    request_id: str | None = None
    outcome: str | None = None
    done: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, last value wins."""
        return {k: v[-1] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    def _finish(self, outcome: str) -> None:
        if self.outcome is None:
            self.outcome = outcome
        self.done.set()


async def read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    """Parse one HTTP/1.1 request (content-length or chunked body); None at a clean EOF."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    if "chunked" in headers.get("transfer-encoding", "").lower():
        parts = []
        while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        while await reader.readuntil(b"\r\n") != b"\r\n":
            pass  # trailers
        body = b"".join(parts)
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    path, _, query = target.partition("?")
    parsed = None
    if body:
        with contextlib.suppress(ValueError):
            parsed = json.loads(body)
    return RecordedRequest(method, path, query, headers, body, parsed)


async def wait_peer(
    reader: asyncio.StreamReader, timeout: float | None, gate: asyncio.Event | None = None
) -> bool:
    """Wait for the timeout or the gate; True if the peer closed the connection first.

    A hanging or pausing server must still notice a client that gives up, both to record it
    and to free the connection.
    """
    if reader.at_eof():
        return True
    waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(reader.read(1))]
    if gate is not None:
        waiters.append(asyncio.ensure_future(gate.wait()))
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
    # Data instead of EOF would be a pipelined request; unsupported, so hang up on it too.
    return waiters[0] in done


def float_header(request: RecordedRequest, name: str) -> float | None:
    value = request.headers.get(name)
    return None if value is None else float(value)


def azure_refusal(request: RecordedRequest) -> tuple[int, bytes] | None:
    """What Azure OpenAI answers a request to an /openai/ path that it would refuse: 401
    without an ``api-key`` header or with a bearer token (our keys are API keys, never Entra
    tokens), 404 without ``api-version`` outside the v1 paths. None when Azure would serve it."""
    if not request.path.startswith("/openai/"):
        return None
    if "api-key" not in request.headers or "authorization" in request.headers:
        message = (
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
            "provide a valid key for an active subscription and use a correct regional API "
            "endpoint for your resource."
        )
        return 401, json.dumps({"error": {"code": "401", "message": message}}).encode()
    if not request.path.startswith("/openai/v1/") and "api-version" not in request.params:
        return 404, json.dumps({"error": {"code": "404", "message": "Resource not found"}}).encode()
    return None


def not_found(message: str) -> bytes:
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    return (json.dumps({"error": error}, indent=2) + "\n").encode()


def head(
    status: int,
    headers: dict[str, str],
    request: RecordedRequest,
    length: int | None,
    *,
    keep_alive: bool,
) -> bytes:
    framing = {"content-length": str(length)} if length is not None else {}
    framing = framing or {"transfer-encoding": "chunked"}
    merged = (
        {"date": formatdate(time.time(), usegmt=True), "content-type": JSON_CONTENT_TYPE}
        | framing
        | {"connection": "keep-alive" if keep_alive else "close"}
        | _DEFAULT_HEADERS
        | {"x-request-id": request.request_id or ""}
        | dict(headers)
    )
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Overloaded"
    lines = [f"HTTP/1.1 {status} {phrase}"]  # 529 is Anthropic's own
    lines += [f"{k}: {v}" for k, v in merged.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_json(
    writer: asyncio.StreamWriter,
    request: RecordedRequest,
    status: int,
    body: bytes,
    headers: dict[str, str],
    keep_alive: bool,
) -> None:
    writer.write(head(status, headers, request, len(body), keep_alive=keep_alive) + body)
    await writer.drain()
