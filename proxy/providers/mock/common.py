"""What every mock wire format shares: the in-process response, headers and mock text."""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson

from proxy.tokens import Tokenizer

__all__ = [
    "JSON",
    "MOCK_PREFIX",
    "SSE",
    "MockContext",
    "MockResponse",
    "json_response",
    "mock_text",
    "pieces",
    "priced_model",
    "response_id",
]

MOCK_PREFIX = "mock-"

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]

_WORDS = (
    "Metering every call keeps spend honest. A proxy that counts tokens exactly lets each "
    "team see what its choices cost, and a budget that holds under load means nobody is "
    "surprised at the end of the month. Cached input is cheaper than fresh input, reasoning "
    "tokens are billed as output, and a stream that stops early still costs what it used."
).split()


def priced_model(model: str) -> str:
    """The catalog model a mock model is priced as (``mock-gpt-4o`` -> ``gpt-4o``)."""
    return model[len(MOCK_PREFIX) :] if model.startswith(MOCK_PREFIX) else model


class MockResponse:
    __slots__ = ("_chunks", "_delay", "headers", "status")

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes], delay: float
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._delay = delay

    async def read(self) -> bytes:
        return b"".join(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        for i, chunk in enumerate(self._chunks):
            if i and self._delay:
                await asyncio.sleep(self._delay)
            yield chunk

    async def aclose(self) -> None:
        pass


def json_response(status: int, obj: Any) -> MockResponse:
    return MockResponse(status, list(JSON), [orjson.dumps(obj)], 0.0)


class MockContext(Protocol):
    """What a wire format needs from the mock: counting, text and stream pacing."""

    tokenizer: Tokenizer
    chunk_delay: float

    async def count(self, endpoint: str, model: str, req: dict[str, Any], size: int) -> int: ...


def mock_text(tok: Tokenizer, model: str, seed: bytes, limit: Any, salt: bytes = b"") -> str:
    """Deterministic filler text for ``seed``, cut to ``limit`` tokens when one is given."""
    rnd = random.Random(hashlib.sha256(seed + salt).digest())
    n = rnd.randint(12, 40)
    start = rnd.randrange(len(_WORDS))
    text = " ".join(_WORDS[(start + i) % len(_WORDS)] for i in range(n))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        enc = tok.encoding(priced_model(model))
        ids = enc.encode(text, disallowed_special=())
        if len(ids) > limit:
            text = enc.decode(ids[:limit])
    return text


def pieces(text: str) -> list[str]:
    """The text as stream deltas, one word each (spaces kept, so they rejoin exactly)."""
    return [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]


def response_id(prefix: str, raw: bytes) -> str:
    return prefix + hashlib.sha256(raw).hexdigest()[:24]
