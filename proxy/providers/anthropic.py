"""Anthropic's Messages API: ``POST /anthropic/v1/messages`` (streamed or not).

Usage rules (reference section 3.6), where peers misprice calls:

- ``input_tokens`` EXCLUDES cache reads and writes; the total input is the sum of the three.
- ``usage.cache_creation`` splits writes into 5-minute and 1-hour ones (1.25x and 2x input);
  without it every write is a 5-minute one.
- In a stream, ``message_start`` carries the input side and ``message_delta`` events carry
  CUMULATIVE counts: each replaces what came before, nothing is ever added up.
- An ``error`` event after the 200 is an upstream error.
- ``server_tool_use.web_search_requests`` are billed per search on top of tokens.

A stream that ends before its first ``message_delta`` has no final count. Its
``message_start`` already told the exact input side (fresh, cache reads and writes): that is
kept as ``partial_usage``, and the proxy estimates only the output, from the text that
streamed.
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

__all__ = ["AnthropicAdapter", "AnthropicStreamMeter", "error_body", "usage_from"]

_MAX_KEPT_TEXT = 4 * 1024 * 1024  # streamed text kept to estimate output if usage never comes

# HTTP status -> Anthropic ``error.type`` (docs.claude.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def error_body(err: ProxyError) -> bytes:
    """Anthropic's error JSON. Our own budget block keeps its ``budget_exceeded`` type."""
    kind = "budget_exceeded" if err.error_type == "budget_exceeded" else None
    if kind is None:
        kind = _ERROR_TYPES.get(err.status) or (
            "api_error" if err.status >= 500 else "invalid_request_error"
        )
    return orjson.dumps({"type": "error", "error": {"type": kind, "message": err.message}})


def usage_from(obj: Any) -> Usage | None:
    """Anthropic ``usage`` -> ``Usage``: input made total, writes split by TTL."""
    if not isinstance(obj, dict):
        return None
    fresh = int_or_none(obj.get("input_tokens"))
    read = int_or_none(obj.get("cache_read_input_tokens"))
    written = int_or_none(obj.get("cache_creation_input_tokens"))
    write_5m, write_1h = written, None
    split = obj.get("cache_creation")
    if isinstance(split, dict):
        write_5m = int_or_none(split.get("ephemeral_5m_input_tokens"))
        write_1h = int_or_none(split.get("ephemeral_1h_input_tokens"))
        if written is None:
            written = (write_5m or 0) + (write_1h or 0)
    total_in = None
    if fresh is not None:
        total_in = fresh + (read or 0) + (written or 0)
    details = obj.get("output_tokens_details")
    thinking = int_or_none(details.get("thinking_tokens")) if isinstance(details, dict) else None
    tools = obj.get("server_tool_use")
    searches = int_or_none(tools.get("web_search_requests")) if isinstance(tools, dict) else None
    return Usage(
        input_tokens=total_in,
        cached_input_tokens=read,
        cache_write_tokens=write_5m,
        cache_write_1h_tokens=write_1h,
        output_tokens=int_or_none(obj.get("output_tokens")),
        reasoning_tokens=thinking,
        web_search_calls=searches,
    )


def parse_request(route: Route, raw: bytes) -> CallInfo:
    body = parse_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    metadata = body.get("metadata")
    user = metadata.get("user_id") if isinstance(metadata, dict) else None
    # The counting view: Claude's tokenizer is not public, so its text is counted with
    # o200k_base as plain completions prompts (an estimate, used only without usage).
    prompt = list(texts([body.get("system"), body.get("messages"), body.get("tools")]))
    return CallInfo(
        endpoint="completions",
        operation=route.operation,
        model=model,
        stream=body.get("stream") is True,
        max_output_tokens=int_or_none(body.get("max_tokens")),
        end_user=str_or_none(user),
        body={"prompt": prompt},
    )


def parse_response(body: bytes) -> ResponseInfo:
    obj = json_object(body)
    if obj is None:
        return ResponseInfo()
    usage = obj.get("usage")
    stop = str_or_none(obj.get("stop_reason"))
    return ResponseInfo(
        usage=usage_from(usage),
        model=str_or_none(obj.get("model")),
        response_id=str_or_none(obj.get("id")),
        finish_reasons=(stop,) if stop else (),
        service_tier=str_or_none(usage.get("service_tier")) if isinstance(usage, dict) else None,
    )


class AnthropicStreamMeter(EventMeter):
    """Forwards the stream untouched and follows its events for usage, model and errors."""

    __slots__ = ("_final", "_usage")

    TEXT_EVENTS = (b"event: content_block_delta\n", b"event: content_block_delta\r\n")

    def __init__(self) -> None:
        super().__init__()
        self._usage: dict[str, Any] = {}
        self._final = False  # a message_delta arrived: its counts are the call's

    def _see(self, ev: bytes) -> None:
        obj = json_object(event_data(ev))
        if obj is None:
            return
        kind = obj.get("type")
        if kind == "content_block_delta":
            delta = obj.get("delta")
            if isinstance(delta, dict) and self._kept < _MAX_KEPT_TEXT:
                for key in ("text", "thinking", "partial_json"):
                    piece = delta.get(key)
                    if isinstance(piece, str):
                        self._text.append(piece)
                        self._kept += len(piece)
        elif kind == "message_start":
            message = obj.get("message")
            if isinstance(message, dict):
                self._info.model = str_or_none(message.get("model"))
                self._info.response_id = str_or_none(message.get("id"))
                if isinstance(message.get("usage"), dict):
                    self._usage.update(message["usage"])
        elif kind == "message_delta":
            if isinstance(obj.get("usage"), dict):
                self._usage.update(obj["usage"])  # cumulative: replace, never add
                self._final = True
            delta = obj.get("delta")
            stop = delta.get("stop_reason") if isinstance(delta, dict) else None
            if isinstance(stop, str):
                self._info.finish_reasons = (stop,)
        elif kind == "error":
            err = obj.get("error")
            self._info.error = (
                str_or_none(err.get("type")) if isinstance(err, dict) else None
            ) or "stream_error"

    def info(self) -> ResponseInfo:
        if self._usage:
            self._info.service_tier = str_or_none(self._usage.get("service_tier"))
            if self._final:
                self._info.usage = usage_from(self._usage)
            else:  # cut off after message_start: its input counts are exact
                self._info.partial_usage = usage_from(self._usage)
        return self._info


class AnthropicAdapter:
    """Anthropic's wire format under ``/anthropic``; the provider key goes in ``x-api-key``."""

    routes: tuple[Route, ...] = (
        Route(
            "/anthropic/v1/messages",
            "messages",
            "chat",
            strip_prefix="/anthropic",
            kinds=("anthropic",),
        ),
        Route(
            "/anthropic/v1/messages/count_tokens",
            "messages.count_tokens",
            "count_tokens",
            strip_prefix="/anthropic",
            kinds=("anthropic",),
            billed=False,
        ),
    )

    def parse_request(
        self, route: Route, raw: bytes, path_params: dict[str, Any]
    ) -> tuple[CallInfo, bytes]:
        return parse_request(route, raw), raw

    def auth_headers(self, provider: ProviderConfig) -> list[tuple[str, str]]:
        return [("x-api-key", provider.api_key)] if provider.api_key else []

    def parse_response(self, body: bytes) -> ResponseInfo:
        return parse_response(body)

    def stream_meter(self, call: CallInfo) -> AnthropicStreamMeter:
        return AnthropicStreamMeter()

    def error_body(self, err: ProxyError) -> bytes:
        return error_body(err)
