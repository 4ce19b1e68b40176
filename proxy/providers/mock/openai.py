"""The mock's OpenAI formats: chat completions, legacy completions, embeddings, models."""

from __future__ import annotations

import base64
import hashlib
import random
import struct
import time
from collections.abc import Iterable
from typing import Any

import orjson

from proxy.providers.mock.common import (
    JSON,
    MOCK_PREFIX,
    SSE,
    MockContext,
    MockResponse,
    json_response,
    mock_text,
    pieces,
    priced_model,
    response_id,
)

__all__ = ["completion", "embeddings", "error", "models_list"]


def error(status: int, message: str, code: str | None = None) -> MockResponse:
    body = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    return json_response(status, {"error": body})


async def completion(
    ctx: MockContext, req: dict[str, Any], raw: bytes, *, chat: bool
) -> MockResponse:
    model: str = req["model"]
    endpoint = "chat.completions" if chat else "completions"
    prompt_tokens = await ctx.count(endpoint, priced_model(model), req, len(raw))
    limit = req.get("max_completion_tokens") or req.get("max_tokens")
    text = mock_text(ctx.tokenizer, model, raw, limit)
    completion_tokens = ctx.tokenizer.count(priced_model(model), text)
    finish = "length" if isinstance(limit, int) and completion_tokens >= limit else "stop"
    created = int(time.time())
    rid = response_id("chatcmpl-" if chat else "cmpl-", raw)
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
        return json_response(200, body)

    opts = req.get("stream_options")
    with_usage = isinstance(opts, dict) and opts.get("include_usage") is True
    head = {"id": rid, "object": f"{obj_name}.chunk" if chat else obj_name, "created": created}
    head |= {"model": model, "service_tier": "default", "system_fingerprint": "fp_spendgate_mock"}

    def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        obj = {**head, "choices": choices, **extra}
        if with_usage and "usage" not in extra:
            obj["usage"] = None
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    chunks: list[bytes] = []
    if chat:
        role = {"role": "assistant", "content": "", "refusal": None}
        chunks.append(event([{"index": 0, "delta": role, "logprobs": None, "finish_reason": None}]))
    for piece in pieces(text):
        if chat:
            delta = {"index": 0, "delta": {"content": piece}, "logprobs": None}
        else:
            delta = {"index": 0, "text": piece, "logprobs": None}
        chunks.append(event([{**delta, "finish_reason": None}]))
    last: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish}
    if chat:
        last["delta"] = {}
    else:
        last["text"] = ""
    chunks.append(event([last]))
    if with_usage:
        chunks.append(event([], usage=usage))
    chunks.append(b"data: [DONE]\n\n")
    return MockResponse(200, list(SSE), chunks, ctx.chunk_delay)


async def embeddings(ctx: MockContext, req: dict[str, Any], raw: bytes) -> MockResponse:
    model: str = req["model"]
    tokens = await ctx.count("embeddings", priced_model(model), req, len(raw))
    inputs = req.get("input")
    if isinstance(inputs, str) or (
        isinstance(inputs, list) and inputs and isinstance(inputs[0], int)
    ):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        return error(400, "'input' must be a non-empty string or array.", None)
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
    return json_response(200, body)


def models_list(models: Iterable[str]) -> MockResponse:
    data = [
        {"id": MOCK_PREFIX + m, "object": "model", "created": 0, "owned_by": "spendgate-mock"}
        for m in models
    ]
    return MockResponse(200, list(JSON), [orjson.dumps({"object": "list", "data": data})], 0.0)
