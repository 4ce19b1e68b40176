"""The mock's OpenAI Responses format: a response object, or its full event stream.

The stream follows the real event order (created, in_progress, output item and content part
added, text deltas, done events, completed) with ``sequence_number``s, and usage only in
``response.completed``, so the SDK's stream helpers accumulate it as they would upstream.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

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

__all__ = ["create"]


async def create(ctx: MockContext, req: dict[str, Any], raw: bytes) -> MockResponse:
    model: str = req["model"]
    input_tokens = await ctx.count("responses", priced_model(model), req, len(raw))
    limit = req.get("max_output_tokens")
    text = mock_text(ctx.tokenizer, model, raw, limit)
    output_tokens = ctx.tokenizer.count(priced_model(model), text)
    cut = isinstance(limit, int) and output_tokens >= limit
    rid = response_id("resp_mock", raw)
    mid = response_id("msg_mock", raw)
    usage = {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item = {
        "id": mid,
        "type": "message",
        "status": "incomplete" if cut else "completed",
        "role": "assistant",
        "content": [part],
    }
    response: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if cut else "completed",
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "instructions": req.get("instructions"),
        "max_output_tokens": limit,
        "model": model,
        "output": [item],
        "parallel_tool_calls": True,
        "previous_response_id": req.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "service_tier": "default",
        "store": req.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": req.get("metadata") or {},
    }
    if not req.get("stream"):
        return json_response(200, response)

    seq = 0
    chunks: list[bytes] = []

    def event(kind: str, **fields: Any) -> None:
        nonlocal seq
        obj = {"type": kind, "sequence_number": seq, **fields}
        chunks.append(b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n")
        seq += 1

    pending = {**response, "status": "in_progress", "output": [], "usage": None}
    pending["incomplete_details"] = None
    event("response.created", response=pending)
    event("response.in_progress", response=pending)
    where = {"item_id": mid, "output_index": 0}
    event(
        "response.output_item.added",
        output_index=0,
        item={**item, "status": "in_progress", "content": []},
    )
    empty = {**part, "text": ""}
    event("response.content_part.added", **where, content_index=0, part=empty)
    for piece in pieces(text):
        event("response.output_text.delta", **where, content_index=0, delta=piece, logprobs=[])
    event("response.output_text.done", **where, content_index=0, text=text, logprobs=[])
    event("response.content_part.done", **where, content_index=0, part=part)
    event("response.output_item.done", output_index=0, item=item)
    event("response.incomplete" if cut else "response.completed", response=response)
    return MockResponse(200, list(SSE), chunks, ctx.chunk_delay)
