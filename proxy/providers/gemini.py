"""Gemini's ``generateContent`` API under ``/gemini/v1beta/`` and ``/gemini/v1/``.

The model is in the path (``models/{model}:generateContent``), streaming is its own method
(``:streamGenerateContent?alt=sse``). Usage rules (reference section 3.7):

- ``promptTokenCount`` INCLUDES ``cachedContentTokenCount``; tool-use prompt tokens are input
  on top of it.
- ``candidatesTokenCount`` EXCLUDES thoughts; billable output is candidates + thoughts, and
  thoughts are priced as output.
- In a stream, intermediate chunks carry partial metadata (often only the prompt count): the
  last chunk's ``usageMetadata`` is the call's, never a sum.

The key may come as ``?key=``; the handler takes it out of the query before anything is
forwarded or logged, and the provider key goes upstream in ``x-goog-api-key``.
"""

from __future__ import annotations

from typing import Any

import orjson

from pricing.usage import Usage
from proxy.config import ProviderConfig
from proxy.errors import InvalidRequest, ProxyError
from proxy.providers.base import CallInfo, EventMeter, ResponseInfo, Route
from proxy.providers.body import int_or_none, json_object, parse_object, str_or_none, texts
from proxy.sse import event_data

__all__ = ["GeminiAdapter", "GeminiStreamMeter", "error_body", "usage_from"]

_MAX_KEPT_TEXT = 4 * 1024 * 1024

# HTTP status -> google.rpc status name, as Google's APIs pair them.
_STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def error_body(err: ProxyError) -> bytes:
    """Google's error JSON; the spendgate reason rides in an ``ErrorInfo`` detail."""
    status = _STATUSES.get(err.status) or ("INTERNAL" if err.status >= 500 else "UNKNOWN")
    error: dict[str, Any] = {"code": err.status, "message": err.message, "status": status}
    reason = err.code or err.error_type
    if reason:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": reason.upper(),
                "domain": "spendgate",
            }
        ]
    return orjson.dumps({"error": error})


def _modality(details: Any, modality: str) -> int | None:
    if not isinstance(details, list):
        return None
    found = [
        int_or_none(d.get("tokenCount")) or 0
        for d in details
        if isinstance(d, dict) and d.get("modality") == modality
    ]
    return sum(found) if found else None


def usage_from(meta: Any) -> Usage | None:
    """Gemini ``usageMetadata`` -> ``Usage``: thoughts are output, cached is part of input."""
    if not isinstance(meta, dict):
        return None
    prompt = int_or_none(meta.get("promptTokenCount"))
    tool_prompt = int_or_none(meta.get("toolUsePromptTokenCount"))
    cached = int_or_none(meta.get("cachedContentTokenCount"))
    candidates = int_or_none(meta.get("candidatesTokenCount"))
    thoughts = int_or_none(meta.get("thoughtsTokenCount"))
    total_in = (
        None if prompt is None and tool_prompt is None else (prompt or 0) + (tool_prompt or 0)
    )
    output = (
        None if candidates is None and thoughts is None else (candidates or 0) + (thoughts or 0)
    )
    audio_in = _modality(meta.get("promptTokensDetails"), "AUDIO")
    if audio_in is not None:  # the uncached part; cached audio is billed as cached input
        audio_in = max(audio_in - (_modality(meta.get("cacheTokensDetails"), "AUDIO") or 0), 0)
    return Usage(
        input_tokens=total_in,
        cached_input_tokens=cached,
        output_tokens=output,
        reasoning_tokens=thoughts,
        audio_input_tokens=audio_in,
        audio_output_tokens=_modality(meta.get("candidatesTokensDetails"), "AUDIO"),
    )


def _finish_reasons(obj: dict[str, Any]) -> tuple[str, ...]:
    candidates = obj.get("candidates")
    if not isinstance(candidates, list):
        return ()
    return tuple(
        c["finishReason"]
        for c in candidates
        if isinstance(c, dict) and isinstance(c.get("finishReason"), str)
    )


def _info(obj: dict[str, Any]) -> ResponseInfo:
    return ResponseInfo(
        usage=usage_from(obj.get("usageMetadata")),
        model=str_or_none(obj.get("modelVersion")),
        response_id=str_or_none(obj.get("responseId")),
        finish_reasons=_finish_reasons(obj),
    )


def parse_request(route: Route, raw: bytes, path_params: dict[str, Any]) -> CallInfo:
    model = str(path_params.get("model") or "").removeprefix("models/")
    if not model:
        raise InvalidRequest("The model is missing from the path (models/{model}:method).")
    body = parse_object(raw)
    config = body.get("generationConfig") or body.get("generation_config")
    max_out = None
    if isinstance(config, dict):
        max_out = int_or_none(config.get("maxOutputTokens") or config.get("max_output_tokens"))
    prompt = list(texts([body.get("systemInstruction"), body.get("contents"), body.get("tools")]))
    return CallInfo(
        endpoint="completions",  # counting view: text counted with o200k_base (an estimate)
        operation=route.operation,
        model=model,
        stream=route.path.endswith(":streamGenerateContent"),
        max_output_tokens=max_out,
        body={"prompt": prompt},
    )


def parse_response(body: bytes) -> ResponseInfo:
    """A whole response: one object, or (streamGenerateContent without alt=sse) an array."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ResponseInfo()
    if isinstance(obj, list):
        chunks = [c for c in obj if isinstance(c, dict)]
        info = ResponseInfo()
        for chunk in chunks:
            seen = _info(chunk)
            info.usage = seen.usage or info.usage
            info.model = seen.model or info.model
            info.response_id = seen.response_id or info.response_id
            info.finish_reasons = seen.finish_reasons or info.finish_reasons
        return info
    return _info(obj) if isinstance(obj, dict) else ResponseInfo()


class GeminiStreamMeter(EventMeter):
    """Forwards the SSE stream untouched; the last ``usageMetadata`` seen is the call's.

    The metadata counts only once the stream is over (or a chunk with a ``finishReason``
    carried it): a stream cut off after a partial, prompt-only metadata has no final count,
    and that metadata is its ``partial_usage`` (the prompt count is exact; the output is
    estimated from the text that streamed).
    """

    __slots__ = ("_final", "_meta")

    def __init__(self) -> None:
        super().__init__()
        self._meta: dict[str, Any] | None = None
        self._final = False

    def finish(self) -> bytes:
        super().finish()
        self._final = self._meta is not None
        return b""

    def _see(self, ev: bytes) -> None:
        obj = json_object(event_data(ev))
        if obj is None:
            return
        if isinstance(obj.get("error"), dict):
            self._info.error = str_or_none(obj["error"].get("status")) or "stream_error"
            return
        self._info.model = str_or_none(obj.get("modelVersion")) or self._info.model
        self._info.response_id = str_or_none(obj.get("responseId")) or self._info.response_id
        reasons = _finish_reasons(obj)
        if reasons:
            self._info.finish_reasons = reasons
        meta = obj.get("usageMetadata")
        if isinstance(meta, dict):
            self._meta = meta  # the latest replaces the earlier ones
            if reasons:
                self._final = True
        for cand in obj.get("candidates") or ():
            content = cand.get("content") if isinstance(cand, dict) else None
            if isinstance(content, dict) and self._kept < _MAX_KEPT_TEXT:
                for piece in texts(content.get("parts")):
                    self._text.append(piece)
                    self._kept += len(piece)

    def info(self) -> ResponseInfo:
        if self._final:
            self._info.usage = usage_from(self._meta)
        elif self._meta is not None:
            self._info.partial_usage = usage_from(self._meta)
        return self._info

    def streamed_text(self) -> str:
        return "".join(self._text)


def _routes() -> tuple[Route, ...]:
    routes = []
    for version in ("v1beta", "v1"):
        base = f"/gemini/{version}/models/{{model}}"
        kw: dict[str, Any] = {"strip_prefix": "/gemini", "kinds": ("gemini",)}
        routes += [
            Route(base + ":generateContent", "generate_content", "generate_content", **kw),
            Route(base + ":streamGenerateContent", "generate_content", "generate_content", **kw),
            Route(base + ":countTokens", "count_tokens", "count_tokens", billed=False, **kw),
        ]
    return tuple(routes)


class GeminiAdapter:
    """Gemini's wire format under ``/gemini``; the provider key goes in ``x-goog-api-key``."""

    routes: tuple[Route, ...] = _routes()

    def parse_request(
        self, route: Route, raw: bytes, path_params: dict[str, Any]
    ) -> tuple[CallInfo, bytes]:
        return parse_request(route, raw, path_params), raw

    def auth_headers(self, provider: ProviderConfig) -> list[tuple[str, str]]:
        return [("x-goog-api-key", provider.api_key)] if provider.api_key else []

    def parse_response(self, body: bytes) -> ResponseInfo:
        return parse_response(body)

    def stream_meter(self, call: CallInfo) -> GeminiStreamMeter:
        return GeminiStreamMeter()

    def error_body(self, err: ProxyError) -> bytes:
        return error_body(err)
