"""OpenAI's Responses API: ``POST /v1/responses``, plus the unbilled ``/v1/responses/{id}``.

Usage has the Responses shape (``input_tokens`` with ``input_tokens_details.cached_tokens``
and ``cache_write_tokens``, ``output_tokens`` with ``reasoning_tokens``; reference 3.3). A
stream reports it once, in its terminal event: ``response.completed``, ``response.incomplete``
or ``response.failed``, each carrying the whole response object. No request rewriting is
needed (unlike chat streams, usage always comes). ``response.failed`` and an ``error`` event
mark the call an upstream error, still billed for what the terminal event reports.
"""

from __future__ import annotations

from typing import Any

from proxy.config import ProviderConfig
from proxy.errors import InvalidRequest, ProxyError
from proxy.providers import openai
from proxy.providers.base import CallInfo, EventMeter, ResponseInfo, Route
from proxy.providers.body import int_or_none, json_object, parse_object, str_or_none
from proxy.sse import event_data

__all__ = ["ResponsesAdapter", "ResponsesStreamMeter", "parse_response"]

_TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})
_TEXT_DELTAS = frozenset(
    {
        "response.output_text.delta",
        "response.refusal.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_text.delta",
        "response.function_call_arguments.delta",
    }
)
_MAX_KEPT_TEXT = 4 * 1024 * 1024
_KINDS = ("openai", "azure")  # the providers that serve the Responses API


def parse_request(route: Route, raw: bytes) -> CallInfo:
    body = parse_object(raw)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("you must provide a model parameter", param="model")
    user = body.get("safety_identifier") or body.get("user")
    return CallInfo(
        endpoint="responses",
        operation=route.operation,
        model=model,
        stream=body.get("stream") is True,
        max_output_tokens=int_or_none(body.get("max_output_tokens")),
        end_user=str_or_none(user),
        body=body,
    )


def _info(response: dict[str, Any]) -> ResponseInfo:
    status = str_or_none(response.get("status"))
    details = response.get("incomplete_details")
    reason = str_or_none(details.get("reason")) if isinstance(details, dict) else None
    error = None
    if status == "failed":
        err = response.get("error")
        error = (str_or_none(err.get("code")) if isinstance(err, dict) else None) or "failed"
    finish = reason or status
    return ResponseInfo(
        usage=openai.usage_from(response.get("usage")),
        model=str_or_none(response.get("model")),
        response_id=str_or_none(response.get("id")),
        finish_reasons=(finish,) if finish else (),
        service_tier=str_or_none(response.get("service_tier")),
        error=error,
    )


def parse_response(body: bytes) -> ResponseInfo:
    obj = json_object(body)
    return _info(obj) if obj is not None else ResponseInfo()


class ResponsesStreamMeter(EventMeter):
    """Forwards the stream untouched; usage and identity come from the terminal event."""

    __slots__ = ()

    TEXT_EVENTS = tuple(
        f"event: {kind}{end}".encode() for kind in sorted(_TEXT_DELTAS) for end in ("\n", "\r\n")
    )

    def _see(self, ev: bytes) -> None:
        obj = json_object(event_data(ev))
        if obj is None:
            return
        kind = obj.get("type")
        if kind in _TEXT_DELTAS:
            delta = obj.get("delta")
            if isinstance(delta, str) and self._kept < _MAX_KEPT_TEXT:
                self._text.append(delta)
                self._kept += len(delta)
        elif kind in _TERMINAL or kind == "response.created":
            response = obj.get("response")
            if isinstance(response, dict):
                seen = _info(response)
                self._info.model = seen.model or self._info.model
                self._info.response_id = seen.response_id or self._info.response_id
                self._info.service_tier = seen.service_tier or self._info.service_tier
                if kind in _TERMINAL:
                    self._info.usage = seen.usage
                    self._info.finish_reasons = seen.finish_reasons
                    self._info.error = seen.error or self._info.error
        elif kind == "error":
            self._info.error = str_or_none(obj.get("code")) or "stream_error"

    def info(self) -> ResponseInfo:
        return self._info


class ResponsesAdapter:
    """The Responses API in OpenAI's wire format (any OpenAI-compatible provider)."""

    routes: tuple[Route, ...] = (
        Route("/v1/responses", "responses", "chat", kinds=_KINDS),
        Route(
            "/v1/responses/{response_id}",
            "responses.retrieve",
            "responses",
            kinds=_KINDS,
            methods=("GET", "DELETE"),
            billed=False,
        ),
        Route(
            "/v1/responses/{response_id}/input_items",
            "responses.input_items",
            "responses",
            kinds=_KINDS,
            methods=("GET",),
            billed=False,
        ),
        Route(
            "/v1/responses/{response_id}/cancel",
            "responses.cancel",
            "responses",
            kinds=_KINDS,
            billed=False,
        ),
    )

    def parse_request(
        self, route: Route, raw: bytes, path_params: dict[str, Any]
    ) -> tuple[CallInfo, bytes]:
        return parse_request(route, raw), raw

    def auth_headers(self, provider: ProviderConfig) -> list[tuple[str, str]]:
        return openai.auth_headers(provider)

    def parse_response(self, body: bytes) -> ResponseInfo:
        return parse_response(body)

    def stream_meter(self, call: CallInfo) -> ResponsesStreamMeter:
        return ResponsesStreamMeter()

    def error_body(self, err: ProxyError) -> bytes:
        return openai.error_body(err)
