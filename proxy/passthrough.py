"""Unbilled provider calls, passed through: token counting and stored-response lookups.

``/anthropic/v1/messages/count_tokens``, Gemini ``:countTokens`` and ``GET``/``DELETE``
``/v1/responses/{id}`` (with ``/cancel`` and ``/input_items``) generate nothing, so nothing is
reserved or priced. They still reach the provider with our key, so each gets its ledger row
(``cost_usd`` 0, no usage, ``usage_source`` "none"): every call that reaches a provider is
in the ledger exactly once, and an admin can see who uses the key for what.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from proxy.auth import check_model, extract_key
from proxy.errors import NotFound, ProxyError, Unavailable, UpstreamError, UpstreamTimeout
from proxy.handler import (
    ClientGone,
    new_request_id,
    pick_provider,
    read_body,
    send_error,
)
from proxy.headers import request_headers, response_headers, take_query_key
from proxy.metering import CallRecord
from proxy.providers.base import Adapter, Route
from proxy.providers.body import json_object, str_or_none
from proxy.providers.routes import upstream_target

if TYPE_CHECKING:
    from proxy.app import Runtime

__all__ = ["Passthrough"]

log = logging.getLogger("spendgate.proxy")


class Passthrough:
    """ASGI endpoint for one unbilled route: authenticate, forward, relay, record at $0."""

    def __init__(self, adapter: Adapter, route: Route) -> None:
        self.adapter = adapter
        self.route = route

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        rt: Runtime = scope["state"]["runtime"]
        request_id = new_request_id()
        headers = dict(scope["headers"])
        query_key = take_query_key(scope)
        try:
            identity = rt.keys.identify(extract_key(headers) or query_key)
        except ProxyError as err:
            await send_error(send, err, request_id, self.adapter)
            return
        rec = CallRecord(
            request_id=request_id,
            started_at=datetime.now(UTC),
            identity=identity,
            provider="",
            endpoint=self.route.endpoint,
        )
        t0 = time.perf_counter()
        try:
            declared = headers.get(b"content-length")
            raw = await read_body(
                receive,
                rt.config.server.max_body_bytes,
                int(declared) if declared and declared.isdigit() else None,
            )
            params = scope.get("path_params") or {}
            obj = json_object(raw) if raw else None
            model = str_or_none(params.get("model")) or (
                str_or_none(obj.get("model")) if obj else None
            )
            rec.model_requested = model
            if model:
                check_model(identity, model)  # a key's model allow-list covers these too
            provider = pick_provider(rt, self.route, model)
            if provider is None:
                raise NotFound(f"No provider is configured for {self.route.path}.")
            rec.provider = provider.name
            if provider.needs_key and not provider.api_key:
                raise Unavailable(f"Provider '{provider.name}' has no API key configured.")
            url, raw = upstream_target(provider, self.route, scope, None, raw)
            rec.reached_provider = True
            auth = self.adapter.auth_headers(provider)
            resp = await rt.upstream_for(provider).send(
                scope["method"],
                url,
                request_headers(scope["headers"], provider, auth),
                raw,
                connect_timeout=provider.connect_timeout,
                read_timeout=provider.read_timeout,
            )
            try:
                body = await resp.read()
            finally:
                await resp.aclose()
        except ClientGone:
            rec.outcome, rec.status_code, rec.error_type = "client_cancelled", 499, "client_gone"
            self._record(rt, rec, t0)
            return
        except ProxyError as err:
            if isinstance(err, UpstreamError) and not isinstance(err, UpstreamTimeout):
                rec.reached_provider = False
            rec.outcome, rec.status_code = err.outcome, err.status
            rec.error_type = err.code or err.error_type
            await send_error(send, err, request_id, self.adapter)
            self._record(rt, rec, t0)
            return
        rec.status_code = resp.status
        if not 200 <= resp.status < 300:
            rec.outcome, rec.error_type = "upstream_error", f"http_{resp.status}"
        out = response_headers(resp.headers, [(b"x-spendgate-request-id", request_id.encode())])
        out.append((b"content-length", str(len(body)).encode()))
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": out})
            await send({"type": "http.response.body", "body": body})
        except OSError:
            rec.outcome = "client_cancelled"
        self._record(rt, rec, t0)

    @staticmethod
    def _record(rt: Runtime, rec: CallRecord, t0: float) -> None:
        rec.latency_ms = (time.perf_counter() - t0) * 1000
        rt.metering.record(rec, None, None)  # nothing generated: cost 0, no usage
