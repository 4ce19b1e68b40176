"""The mock's Gemini ``generateContent`` format, whole, as SSE (``alt=sse``) or as an array.

Like the real API, intermediate stream chunks carry partial ``usageMetadata`` (prompt count
only) and the last one the full counts; thoughts are reported apart from candidates when the
request sets a thinking budget.
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

__all__ = ["count_tokens", "error", "generate"]

_STATUS = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 405: "NOT_FOUND"}


def error(status: int, message: str) -> MockResponse:
    body = {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}
    return json_response(status, {"error": body})


def _prompt(req: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": list(texts([req.get("systemInstruction"), req.get("contents"), req.get("tools")]))
    }


async def generate(
    ctx: MockContext, model: str, req: dict[str, Any], raw: bytes, *, stream: bool, sse: bool
) -> MockResponse:
    prompt = await ctx.count("completions", priced_model(model), _prompt(req), len(raw))
    config = req.get("generationConfig")
    config = config if isinstance(config, dict) else {}
    limit = config.get("maxOutputTokens")
    thinking = config.get("thinkingConfig")
    thought_tokens = 0
    if isinstance(thinking, dict) and thinking.get("thinkingBudget") not in (None, 0):
        budget = thinking.get("thinkingBudget")
        thought = mock_text(ctx.tokenizer, model, raw, budget if budget != -1 else None, b"t")
        thought_tokens = ctx.tokenizer.count(priced_model(model), thought)
    text = mock_text(ctx.tokenizer, model, raw, limit)
    candidates = ctx.tokenizer.count(priced_model(model), text)
    finish = "MAX_TOKENS" if isinstance(limit, int) and candidates >= limit else "STOP"
    meta: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thought_tokens,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    if thought_tokens:
        meta["thoughtsTokenCount"] = thought_tokens
    rid = response_id("mock", raw)
    tail = {"modelVersion": model, "responseId": rid}
    if not stream:
        content = {"parts": [{"text": text}], "role": "model"}
        body = {
            "candidates": [{"content": content, "finishReason": finish, "index": 0}],
            "usageMetadata": meta,
            **tail,
        }
        return json_response(200, body)
    partial = {"promptTokenCount": prompt, "totalTokenCount": prompt}
    words = pieces(text)
    objs: list[dict[str, Any]] = []
    for i, word in enumerate(words):
        cand: dict[str, Any] = {"content": {"parts": [{"text": word}], "role": "model"}}
        last = i == len(words) - 1
        if last:
            cand["finishReason"] = finish
        cand["index"] = 0
        objs.append({"candidates": [cand], "usageMetadata": meta if last else partial, **tail})
    if not sse:  # streamGenerateContent without alt=sse: one JSON array, streamed
        return json_response(200, objs)
    chunks = [b"data: " + orjson.dumps(o) + b"\r\n\r\n" for o in objs]
    return MockResponse(200, list(SSE), chunks, ctx.chunk_delay)


async def count_tokens(
    ctx: MockContext, model: str, req: dict[str, Any], raw: bytes
) -> MockResponse:
    inner = req.get("generateContentRequest")
    source: dict[str, Any] = inner if isinstance(inner, dict) else req
    n = await ctx.count("completions", priced_model(model), _prompt(source), len(raw))
    return json_response(
        200, {"totalTokens": n, "promptTokensDetails": [{"modality": "TEXT", "tokenCount": n}]}
    )
