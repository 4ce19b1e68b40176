"""The built-in mock provider: answers in OpenAI's wire format, in process, with real usage.

It plugs in where the HTTP client would (it implements ``Upstream``), so a mocked call takes
exactly the path a real one does: same parsing, metering, pricing, ledger. Answers are
deterministic for a given request; token counts are tiktoken's for the mock's own text and
the cookbook formula for the prompt, so the ledger of a demo looks like a real one.
``mock-gpt-4o-mini`` is priced as ``gpt-4o-mini``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import struct
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson

from proxy.tokens import Tokenizer

__all__ = ["MOCK_PREFIX", "MockUpstream", "priced_model"]

MOCK_PREFIX = "mock-"

_WORDS = (
    "Metering every call keeps spend honest. A proxy that counts tokens exactly lets each "
    "team see what its choices cost, and a budget that holds under load means nobody is "
    "surprised at the end of the month. Cached input is cheaper than fresh input, reasoning "
    "tokens are billed as output, and a stream that stops early still costs what it used."
).split()

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


def priced_model(model: str) -> str:
    """The catalog model a mock model is priced as (``mock-gpt-4o`` -> ``gpt-4o``)."""
    return model[len(MOCK_PREFIX) :] if model.startswith(MOCK_PREFIX) else model


class _MockResponse:
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


def _error(status: int, message: str, code: str | None = None) -> _MockResponse:
    body = orjson.dumps(
        {
            "error": {
                "message": message,
                "type": "invalid_request_error",
                "param": None,
                "code": code,
            }
        }
    )
    return _MockResponse(status, list(_JSON), [body], 0.0)


class MockUpstream:
    """An ``Upstream`` that answers locally. Latency is simulated with sleeps, not CPU."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        catalog_models: Iterable[str] = (),
    ) -> None:
        self._tok = tokenizer
        self._latency = latency_ms / 1000
        self._chunk_delay = chunk_delay_ms / 1000
        self._models = sorted(catalog_models)

    async def aclose(self) -> None:
        pass

    async def send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> _MockResponse:
        path = "/" + url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        if self._latency:
            await asyncio.sleep(self._latency)
        if method == "GET" and path.endswith("/models"):
            return self._models_list()
        if method != "POST":
            return _error(405, f"Method {method} is not allowed on {path}.")
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        if not isinstance(req, dict) or not isinstance(req.get("model"), str):
            return _error(400, "you must provide a model parameter")
        if path.endswith("/chat/completions"):
            return await self._completion(req, body, chat=True)
        if path.endswith("/completions"):
            return await self._completion(req, body, chat=False)
        if path.endswith("/embeddings"):
            return await self._embeddings(req, body)
        return _error(404, f"The mock provider has no route {path}.", "unknown_url")

    async def _count(self, endpoint: str, model: str, req: dict[str, Any], size: int) -> int:
        if size > 4096:  # big prompts are tokenized off the event loop
            return await asyncio.to_thread(self._tok.count_request, endpoint, model, req)
        return self._tok.count_request(endpoint, model, req)

    def _text(self, req: dict[str, Any], seed: bytes) -> str:
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        rnd = random.Random(hashlib.sha256(seed).digest())
        n = rnd.randint(12, 40)
        start = rnd.randrange(len(_WORDS))
        words = [_WORDS[(start + i) % len(_WORDS)] for i in range(n)]
        text = " ".join(words)
        if isinstance(limit, int) and limit > 0:
            enc = self._tok.encoding(priced_model(req["model"]))
            ids = enc.encode(text, disallowed_special=())
            if len(ids) > limit:
                text = enc.decode(ids[:limit])
        return text

    async def _completion(self, req: dict[str, Any], raw: bytes, *, chat: bool) -> _MockResponse:
        model: str = req["model"]
        endpoint = "chat.completions" if chat else "completions"
        prompt_tokens = await self._count(endpoint, priced_model(model), req, len(raw))
        text = self._text(req, raw)
        completion_tokens = self._tok.count(priced_model(model), text)
        limit = req.get("max_completion_tokens") or req.get("max_tokens")
        finish = "length" if isinstance(limit, int) and completion_tokens >= limit else "stop"
        created = int(time.time())
        rid = ("chatcmpl-" if chat else "cmpl-") + hashlib.sha256(raw).hexdigest()[:24]
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        obj_name = "chat.completion" if chat else "text_completion"
        if not req.get("stream"):
            choice: dict[str, Any]
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": text}
                message |= {"refusal": None, "annotations": []}
                choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            body = {
                "id": rid,
                "object": obj_name,
                "created": created,
                "model": model,
                "choices": [choice],
                "usage": usage,
                "service_tier": "default",
                "system_fingerprint": "fp_spendgate_mock",
            }
            return _MockResponse(200, list(_JSON), [orjson.dumps(body)], 0.0)

        opts = req.get("stream_options")
        with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        head = {"id": rid, "object": f"{obj_name}.chunk" if chat else obj_name, "created": created}
        head |= {
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_spendgate_mock",
        }

        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            obj = {**head, "choices": choices, **extra}
            if with_usage and "usage" not in extra:
                obj["usage"] = None
            return b"data: " + orjson.dumps(obj) + b"\n\n"

        pieces = [w if i == 0 else " " + w for i, w in enumerate(text.split(" "))]
        chunks: list[bytes] = []
        if chat:
            role = {"role": "assistant", "content": "", "refusal": None}
            chunks.append(
                event([{"index": 0, "delta": role, "logprobs": None, "finish_reason": None}])
            )
        for piece in pieces:
            if chat:
                delta = {
                    "index": 0,
                    "delta": {"content": piece},
                    "logprobs": None,
                    "finish_reason": None,
                }
            else:
                delta = {"index": 0, "text": piece, "logprobs": None, "finish_reason": None}
            chunks.append(event([delta]))
        last: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
        if chat:
            last["delta"] = {}
        else:
            last["text"] = ""
        chunks.append(event([last]))
        if with_usage:
            chunks.append(event([], usage=usage))
        chunks.append(b"data: [DONE]\n\n")
        return _MockResponse(200, list(_SSE), chunks, self._chunk_delay)

    async def _embeddings(self, req: dict[str, Any], raw: bytes) -> _MockResponse:
        model: str = req["model"]
        tokens = await self._count("embeddings", priced_model(model), req, len(raw))
        inputs = req.get("input")
        if isinstance(inputs, str) or (
            isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
        ):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs:
            return _error(400, "'input' must be a non-empty string or array.", None)
        dims = req.get("dimensions")
        dims = dims if isinstance(dims, int) and 0 < dims <= 3072 else 1536
        as_b64 = req.get("encoding_format") == "base64"
        data = []
        for i, item in enumerate(inputs):
            rnd = random.Random(hashlib.sha256(orjson.dumps(item)).digest())
            vec = [rnd.uniform(-1, 1) for _ in range(dims)]
            emb: Any = base64.b64encode(struct.pack(f"<{dims}f", *vec)).decode() if as_b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        body = {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return _MockResponse(200, list(_JSON), [orjson.dumps(body)], 0.0)

    def _models_list(self) -> _MockResponse:
        data = [
            {"id": MOCK_PREFIX + m, "object": "model", "created": 0, "owned_by": "spendgate-mock"}
            for m in self._models
        ]
        return _MockResponse(
            200, list(_JSON), [orjson.dumps({"object": "list", "data": data})], 0.0
        )
