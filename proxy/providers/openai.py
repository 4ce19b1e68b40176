"""OpenAI-compatible APIs: chat completions, completions, embeddings.

Request side: read what metering needs (model, stream, max tokens, user) and, for a streamed
chat, make sure the upstream reports usage (``stream_options.include_usage``). Response side:
usage from the body or from the stream's usage chunk, which is kept from clients that did
not ask for it. The body is only rewritten when include_usage must be added; then the
smallest possible edit is made so everything else reaches the provider byte for byte.
"""

from __future__ import annotations

from typing import Any

import orjson

from pricing.usage import Usage
from proxy.config import ProviderConfig
from proxy.errors import InvalidRequest, ProxyError
from proxy.providers.base import CallInfo, ResponseInfo, Route
from proxy.sse import EventSplitter, event_data

__all__ = [
    "OpenAIAdapter",
    "OpenAIStreamMeter",
    "auth_headers",
    "error_body",
    "parse_request",
    "parse_response",
]

_MAX_KEPT_STREAM_BYTES = 16 * 1024 * 1024  # what we keep of a stream to count it if need be


def error_body(err: ProxyError) -> bytes:
    """OpenAI's error JSON: all four keys present, param and code nullable."""
    return orjson.dumps(
        {
            "error": {
                "message": err.message,
                "type": err.error_type,
                "param": err.param,
                "code": err.code,
            }
        }
    )


def auth_headers(provider: ProviderConfig) -> list[tuple[str, str]]:
    """The provider key as a bearer token, or in Azure's ``api-key`` header; none if unset."""
    if not provider.api_key:
        return []
    if provider.kind == "azure":
        return [("api-key", provider.api_key)]
    return [("authorization", f"Bearer {provider.api_key}")]


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def parse_request(
    endpoint: str, operation: str, raw: bytes, model: str | None = None
) -> tuple[CallInfo, bytes]:
    """Parse a request body; return what metering needs and the body to send upstream.

    ``model``: the model when the request names it elsewhere (an Azure deployment path);
    the body then needs none.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON "
            f"({exc.msg} at position {exc.pos})."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    if model is None:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest("you must provide a model parameter", param="model")
    stream = body.get("stream") is True
    max_out = _int_or_none(body.get("max_completion_tokens"))
    if max_out is None:
        max_out = _int_or_none(body.get("max_tokens"))
    user = body.get("user")
    call = CallInfo(
        endpoint=endpoint,
        operation=operation,
        model=model,
        stream=stream,
        max_output_tokens=max_out,
        end_user=user if isinstance(user, str) else None,
        body=body,
    )
    if stream and endpoint in ("chat.completions", "completions"):
        opts = body.get("stream_options")
        wants = isinstance(opts, dict) and opts.get("include_usage") is True
        call.client_wants_usage = wants
        if not wants:
            raw = _with_include_usage(raw, body)
    return call, raw


def _with_include_usage(raw: bytes, body: dict[str, Any]) -> bytes:
    if "stream_options" not in body:
        # Insert the key right after the opening brace: every other byte is left alone.
        i = raw.index(b"{") + 1
        sep = b"" if raw[i:].lstrip().startswith(b"}") else b","
        return raw[:i] + b'"stream_options":{"include_usage":true}' + sep + raw[i:]
    opts = body["stream_options"]
    new = dict(opts) if isinstance(opts, dict) else {}
    new["include_usage"] = True
    return orjson.dumps({**body, "stream_options": new})


def usage_from(obj: Any) -> Usage | None:
    """OpenAI ``usage`` object -> ``Usage`` (chat, completions and embeddings shapes)."""
    if not isinstance(obj, dict):
        return None
    prompt = _int_or_none(obj.get("prompt_tokens"))
    if prompt is None:
        prompt = _int_or_none(obj.get("input_tokens"))
    completion = _int_or_none(obj.get("completion_tokens"))
    if completion is None:
        completion = _int_or_none(obj.get("output_tokens"))
    pd = obj.get("prompt_tokens_details") or obj.get("input_tokens_details") or {}
    cd = obj.get("completion_tokens_details") or obj.get("output_tokens_details") or {}
    if not isinstance(pd, dict):
        pd = {}
    if not isinstance(cd, dict):
        cd = {}
    return Usage(
        input_tokens=prompt,
        cached_input_tokens=_int_or_none(pd.get("cached_tokens")),
        cache_write_tokens=_int_or_none(pd.get("cache_write_tokens")),
        output_tokens=completion,
        reasoning_tokens=_int_or_none(cd.get("reasoning_tokens")),
        audio_input_tokens=_int_or_none(pd.get("audio_tokens")),
        audio_output_tokens=_int_or_none(cd.get("audio_tokens")),
    )


def _finish_reasons(obj: dict[str, Any]) -> tuple[str, ...]:
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return ()
    return tuple(
        c["finish_reason"]
        for c in choices
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
    )


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_response(body: bytes) -> ResponseInfo:
    """Usage and identifiers from a non-streamed response body (any JSON shape tolerated)."""
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ResponseInfo()
    if not isinstance(obj, dict):
        return ResponseInfo()
    return ResponseInfo(
        usage=usage_from(obj.get("usage")),
        model=_str(obj.get("model")),
        response_id=_str(obj.get("id")),
        finish_reasons=_finish_reasons(obj),
        service_tier=_str(obj.get("service_tier")),
    )


class OpenAIStreamMeter:
    """Meters a chat/completions SSE stream; drops the usage chunk the client did not ask for.

    When nothing needs dropping, chunks are forwarded exactly as they arrive and events are
    only scanned. When the usage chunk must be kept back, whole events are forwarded as soon
    as their terminating blank line arrives (a partial event is of no use to a client).
    Events are scanned with a byte search first; JSON is parsed only for the first event and
    the usage event, so a long stream costs next to nothing per chunk.
    """

    __slots__ = ("_drop_usage", "_events", "_info", "_kept", "_split", "finished")

    def __init__(self, call: CallInfo) -> None:
        self._drop_usage = not call.client_wants_usage
        self._split = EventSplitter()
        self._events: list[bytes] = []
        self._kept = 0
        self._info = ResponseInfo()
        self.finished = False  # the terminating [DONE] went by

    def feed(self, chunk: bytes) -> bytes:
        events = self._split.feed(chunk)
        if not self._drop_usage:
            for ev in events:
                self._see(ev)
            return chunk
        out = [ev for ev in events if not self._see(ev)]
        return b"".join(out)

    def finish(self) -> bytes:
        tail = self._split.pending
        if tail.strip():
            self._see(tail)
            return tail if self._drop_usage else b""
        return b""

    def _see(self, ev: bytes) -> bool:
        """Record what the event tells; True if it is a usage chunk to keep from the client."""
        if self._kept < _MAX_KEPT_STREAM_BYTES:
            self._events.append(ev)
            self._kept += len(ev)
        if ev.startswith(b"data: [DONE]"):
            self.finished = True
        if not self._info.model and b'"model"' in ev:
            obj = self._json(ev)
            if obj is not None:
                # Azure's first event (prompt_filter_results) carries "model": ""
                self._info.model = _str(obj.get("model")) or None
                self._info.response_id = _str(obj.get("id"))
                self._info.service_tier = _str(obj.get("service_tier"))
        if b'"usage":{' in ev or b'"usage": {' in ev:
            obj = self._json(ev)
            if obj is not None:
                usage = usage_from(obj.get("usage"))
                if usage is not None:
                    self._info.usage = usage
                    choices = obj.get("choices")
                    return self._drop_usage and isinstance(choices, list) and not choices
        return False

    @staticmethod
    def _json(ev: bytes) -> dict[str, Any] | None:
        data = event_data(ev)
        if not data or data == b"[DONE]":
            return None
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return None
        return obj if isinstance(obj, dict) else None

    def info(self) -> ResponseInfo:
        if not self._info.finish_reasons:
            reasons: list[str] = []
            for ev in self._events:
                if b'"finish_reason":"' in ev or b'"finish_reason": "' in ev:
                    obj = self._json(ev)
                    if obj is not None:
                        reasons.extend(_finish_reasons(obj))
            self._info.finish_reasons = tuple(reasons)
        return self._info

    def streamed_text(self) -> str:
        parts: list[str] = []
        for ev in self._events:
            obj = self._json(ev)
            if obj is None:
                continue
            for choice in obj.get("choices") or ():
                if not isinstance(choice, dict):
                    continue
                text = choice.get("text")  # legacy completions
                if isinstance(text, str):
                    parts.append(text)
                delta = choice.get("delta")
                if isinstance(delta, dict):
                    for key in ("content", "reasoning_content", "refusal"):
                        if isinstance(delta.get(key), str):
                            parts.append(delta[key])
                    for call in delta.get("tool_calls") or ():
                        fn = call.get("function") if isinstance(call, dict) else None
                        if isinstance(fn, dict):
                            parts.extend(
                                v
                                for v in (fn.get("name"), fn.get("arguments"))
                                if isinstance(v, str)
                            )
        return "".join(parts)


class OpenAIAdapter:
    """OpenAI's wire format, for api.openai.com and every OpenAI-compatible server."""

    routes: tuple[Route, ...] = (
        Route("/v1/chat/completions", "chat.completions", "chat"),
        Route("/v1/completions", "completions", "text_completion"),
        Route("/v1/embeddings", "embeddings", "embeddings"),
    )

    def parse_request(
        self, route: Route, raw: bytes, path_params: dict[str, Any]
    ) -> tuple[CallInfo, bytes]:
        return parse_request(route.endpoint, route.operation, raw)

    def auth_headers(self, provider: ProviderConfig) -> list[tuple[str, str]]:
        return auth_headers(provider)

    def parse_response(self, body: bytes) -> ResponseInfo:
        return parse_response(body)

    def stream_meter(self, call: CallInfo) -> OpenAIStreamMeter:
        return OpenAIStreamMeter(call)

    def error_body(self, err: ProxyError) -> bytes:
        return error_body(err)
