"""The mock's Anthropic Messages format, streamed or not, with thinking when asked for.

Usage is shaped like the real API's: ``input_tokens`` (no cache in the mock, so the cache
fields are 0), the ``cache_creation`` split, and ``output_tokens`` covering thinking too. A
stream carries cumulative counts in ``message_delta``, as Anthropic's does.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy.providers.body import texts
from proxy.providers.mock.common import (
    SSE,
    MockContext,
    MockResponse,
    json_response,
    mock_text,
    pieces,
    priced_model,
    response_id,
)

__all__ = ["count_tokens", "error", "messages"]


def error(status: int, kind: str, message: str) -> MockResponse:
    return json_response(status, {"type": "error", "error": {"type": kind, "message": message}})


def _event(kind: str, obj: dict[str, Any]) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


async def messages(ctx: MockContext, req: dict[str, Any], raw: bytes) -> MockResponse:
    model = req.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "invalid_request_error", "model: Field required")
    limit = req.get("max_tokens")
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        return error(400, "invalid_request_error", "max_tokens: Field required")
    prompt = list(texts([req.get("system"), req.get("messages"), req.get("tools")]))
    input_tokens = await ctx.count("completions", priced_model(model), {"prompt": prompt}, len(raw))
    thinking = req.get("thinking")
    thought = ""
    if isinstance(thinking, dict) and thinking.get("type") == "enabled":
        thought = mock_text(ctx.tokenizer, model, raw, thinking.get("budget_tokens"), b"think")
    thought_tokens = ctx.tokenizer.count(priced_model(model), thought) if thought else 0
    text = mock_text(ctx.tokenizer, model, raw, max(limit - thought_tokens, 1))
    output_tokens = thought_tokens + ctx.tokenizer.count(priced_model(model), text)
    stop = "max_tokens" if output_tokens >= limit else "end_turn"
    cache = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    usage = {
        "input_tokens": input_tokens,
        **cache,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output_tokens,
        "service_tier": "standard",
    }
    mid = response_id("msg_mock", raw)
    blocks: list[dict[str, Any]] = []
    if thought:
        blocks.append({"type": "thinking", "thinking": thought, "signature": "mock-signature"})
    blocks.append({"type": "text", "text": text})
    message = {"id": mid, "type": "message", "role": "assistant", "model": model}
    if not req.get("stream"):
        body = {**message, "content": blocks, "stop_reason": stop, "stop_sequence": None}
        return json_response(200, {**body, "usage": usage})

    start_usage = {**usage, "output_tokens": 1}
    start: dict[str, Any] = {**message, "content": [], "stop_reason": None}
    start["stop_sequence"] = None
    chunks = [
        _event(
            "message_start", {"type": "message_start", "message": {**start, "usage": start_usage}}
        )
    ]
    for index, block in enumerate(blocks):
        kind = block["type"]
        empty = (
            {"type": "thinking", "thinking": "", "signature": ""}
            if kind == "thinking"
            else {
                "type": "text",
                "text": "",
            }
        )
        chunks.append(
            _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": empty},
            )
        )
        if index == 0:
            chunks.append(_event("ping", {"type": "ping"}))
        for piece in pieces(block[kind]):
            delta = {"type": f"{kind}_delta", kind: piece}
            chunks.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        if kind == "thinking":
            delta = {"type": "signature_delta", "signature": block["signature"]}
            chunks.append(
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        chunks.append(_event("content_block_stop", {"type": "content_block_stop", "index": index}))
    final = {"input_tokens": input_tokens, **cache, "output_tokens": output_tokens}
    end: dict[str, Any] = {"stop_reason": stop, "stop_sequence": None}
    chunks.append(_event("message_delta", {"type": "message_delta", "delta": end, "usage": final}))
    chunks.append(_event("message_stop", {"type": "message_stop"}))
    return MockResponse(200, list(SSE), chunks, ctx.chunk_delay)


async def count_tokens(ctx: MockContext, req: dict[str, Any], raw: bytes) -> MockResponse:
    model = req.get("model")
    if not isinstance(model, str) or not model:
        return error(400, "invalid_request_error", "model: Field required")
    prompt = list(texts([req.get("system"), req.get("messages"), req.get("tools")]))
    n = await ctx.count("completions", priced_model(model), {"prompt": prompt}, len(raw))
    return json_response(200, {"input_tokens": n})
