"""The data plane: one metered, forwarded call per request, as a pure ASGI app.

Order of work: authenticate (from headers, before reading the body), read the body under the
size cap, parse what metering needs, route by model, forward, relay the answer (streams chunk
by chunk as they arrive), then price and record. Every call that got past authentication
gets exactly one ledger row, whatever happens to it, including a client that hangs up.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from budgets import Reservation
from pricing import PricedCall
from pricing.usage import Usage
from proxy.auth import check_model, extract_key
from proxy.errors import (
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    ProxyError,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from proxy.headers import request_headers, response_headers, take_query_key
from proxy.metering import CallRecord
from proxy.providers.base import Adapter, CallInfo, Route, StreamMeter
from proxy.providers.mock import priced_model
from proxy.providers.routes import upstream_target

if TYPE_CHECKING:
    from proxy.app import Runtime
    from proxy.config import ProviderConfig
    from proxy.upstream import UpstreamResponse

__all__ = ["DataPlane", "new_request_id"]

log = logging.getLogger("spendgate.proxy")

Scope = dict[str, Any]


_ids = random.Random(os.urandom(32))  # seeded once: ids need uniqueness, not secrecy


def new_request_id() -> str:
    """Time-ordered and unique: 12 hex digits of milliseconds, then 16 random ones."""
    return f"{int(time.time() * 1000):012x}{_ids.getrandbits(64):016x}"


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def read_body(receive: Any, limit: int, declared: int | None) -> bytes:
    if declared is not None and declared > limit:
        raise PayloadTooLarge(
            f"Request body is {declared} bytes; the limit is {limit} bytes (server.max_body_bytes)."
        )
    chunks: list[bytes] = []
    size = 0
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ClientGone
        body = msg.get("body", b"")
        size += len(body)
        if size > limit:
            raise PayloadTooLarge(
                f"Request body exceeds the limit of {limit} bytes (server.max_body_bytes)."
            )
        chunks.append(body)
        if not msg.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def send_error(send: Any, err: ProxyError, request_id: str, adapter: Adapter) -> None:
    body = adapter.error_body(err)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-spendgate-request-id", request_id.encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def pick_provider(
    rt: Runtime, route: Route, model: str | None, named: str | None = None
) -> ProviderConfig | None:
    """The provider for ``model``. A route in one provider's own format (``route.kinds``)
    only goes to providers of that kind or the mock, else to the first such one configured.
    A provider the request names (``named``: an Azure deployment's) or a /{provider}/ route's
    own (``route.provider``) takes the call whatever the model."""
    if named or route.provider:
        return rt.router.providers.get(named or route.provider or "")
    found = rt.router.route(model) if model else None
    if not route.kinds or (found is not None and found.kind in (*route.kinds, "mock")):
        return found
    return next((p for p in rt.config.providers if p.kind in route.kinds), None)


def _parse_tags(value: bytes | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    if value:
        for part in value.decode("utf-8", "replace").split(","):
            k, sep, v = part.partition("=")
            if sep and k.strip():
                tags[k.strip()] = v.strip()
    return tags


class DataPlane:
    """ASGI endpoint for one data-plane route; one instance serves every request to it."""

    def __init__(self, adapter: Adapter, route: Route) -> None:
        self.adapter = adapter
        self.route = route
        self.endpoint = route.endpoint

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        rt: Runtime = scope["state"]["runtime"]
        request_id = new_request_id()
        headers = dict(scope["headers"])
        query_key = take_query_key(scope)  # Gemini's ?key=: never forwarded nor logged
        try:
            identity = rt.keys.identify(extract_key(headers) or query_key)
            if not rt.ledger.accepting:
                raise Unavailable("The ledger is behind; refusing new calls so none is lost.")
        except ProxyError as err:
            log.info("refused %s: %s", request_id, err.message)
            await send_error(send, err, request_id, self.adapter)
            return
        rec = CallRecord(
            request_id=request_id,
            started_at=datetime.now(UTC),
            identity=identity,
            provider="",
            endpoint=self.endpoint,
            project=_text(headers.get(b"x-spendgate-project")) or identity.project,
            operation=self.route.operation,
        )
        t0 = time.perf_counter()
        call: CallInfo | None = None
        reservation: Reservation | None = None
        try:
            declared = headers.get(b"content-length")
            raw = await read_body(
                receive,
                rt.config.server.max_body_bytes,
                int(declared) if declared and declared.isdigit() else None,
            )
            call, upstream_body = self.adapter.parse_request(
                self.route, raw, scope.get("path_params") or {}
            )
            self._attribute(rec, call, headers)
            check_model(identity, call.model)
            provider = pick_provider(rt, self.route, call.model, call.provider)
            if provider is None:
                raise NotFound(
                    f"No provider is configured for model '{call.model}'.", param="model"
                )
            rec.provider = provider.name
            rec.provider_kind = provider.kind
            rec.mock = provider.kind == "mock"
            rec.priced_model = priced_model(call.model) if rec.mock else call.model
            if (
                rt.config.pricing.unknown_model == "reject"
                and rt.metering.catalog.resolve(rec.priced_model, rec.started_at) is None
            ):
                raise InvalidRequest(
                    f"Model '{call.model}' has no price in the catalog and this proxy rejects "
                    "unpriced models (pricing.unknown_model: reject).",
                    param="model",
                    code="model_not_priced",
                )
            if provider.needs_key and not provider.api_key:
                raise Unavailable(
                    f"Provider '{provider.name}' has no API key configured "
                    f"(providers.{provider.name}.api_key)."
                )
            reservation = await rt.reserve(rec, call, len(raw))
            rec.budget_outcome = "admitted" if reservation is not None else "none"
            upstream = rt.upstream_for(provider)
            url, upstream_body = upstream_target(provider, self.route, scope, call, upstream_body)
            out_headers = request_headers(
                scope["headers"], provider, self.adapter.auth_headers(provider)
            )
            if rt.telemetry is not None and rt.telemetry.tracing:
                rt.telemetry.start(rec, headers, _server(url))
                # the upstream becomes a child of our span, not a sibling of it
                out_headers = [h for h in out_headers if h[0] not in ("traceparent", "tracestate")]
                out_headers += rt.telemetry.traceparent(rec)
            rec.reached_provider = True
            if reservation is not None:
                reservation.mark_sent()
            sent = time.perf_counter()
            resp = await upstream.send(
                "POST",
                url,
                out_headers,
                upstream_body,
                connect_timeout=provider.connect_timeout,
                read_timeout=provider.read_timeout,
            )
            rec.upstream_wait_s += time.perf_counter() - sent
        except ClientGone:
            rec.outcome, rec.status_code, rec.error_type = "client_cancelled", 499, "client_gone"
            await self._finish(rt, rec, call, None, t0, reservation)
            return
        except ProxyError as err:
            if isinstance(err, UpstreamError) and not isinstance(err, UpstreamTimeout):
                rec.reached_provider = False  # could not connect: nothing reached the provider
            rec.outcome, rec.status_code = err.outcome, err.status
            rec.budget_outcome = _BUDGET_OUTCOMES.get(err.outcome, rec.budget_outcome)
            rec.error_type = err.code or err.error_type
            await send_error(send, err, request_id, self.adapter)
            await self._finish(rt, rec, call, None, t0, reservation)
            return
        except asyncio.CancelledError:
            # Cut by the server (shutdown past its grace period) while waiting on the
            # provider: the call may have reached it, so it is recorded before going on.
            rec.outcome, rec.status_code, rec.error_type = "unavailable", 503, "server_shutdown"
            await self._finish(rt, rec, call, None, t0, reservation)
            raise
        except Exception:
            # A bug of ours must still answer in the provider's format and leave its row.
            log.exception("request %s failed inside the proxy", request_id)
            internal = ProxyError("The proxy failed to handle this request.", code="internal_error")
            rec.outcome, rec.status_code, rec.error_type = "upstream_error", 500, "internal_error"
            await send_error(send, internal, request_id, self.adapter)
            await self._finish(rt, rec, call, None, t0, reservation)
            return

        rec.status_code = resp.status
        rec.upstream_request_id = _header(resp.headers, b"x-request-id")
        is_sse = (_header(resp.headers, b"content-type") or "").startswith("text/event-stream")
        try:
            if call.stream and is_sse and resp.status == 200:
                await self._relay_stream(rt, rec, call, resp, receive, send, t0, reservation)
            else:
                await self._relay_whole(rt, rec, call, resp, send, t0, reservation)
        finally:
            if reservation is not None:
                # settled on every normal path; this covers the unexpected ones (charged in
                # full, since the call reached the provider)
                await reservation.aclose()

    def _attribute(self, rec: CallRecord, call: CallInfo, headers: dict[bytes, bytes]) -> None:
        rec.model_requested = call.model
        rec.stream = call.stream
        rec.end_user = _text(headers.get(b"x-spendgate-user")) or call.end_user
        tags: dict[str, str] = {}
        metadata = call.body.get("metadata")
        if isinstance(metadata, dict):
            tags.update({str(k): str(v) for k, v in metadata.items() if isinstance(v, str)})
        tags.update(_parse_tags(headers.get(b"x-spendgate-tags")))
        tags.update(dict(rec.identity.tags))  # the key's own tags cannot be overridden
        rec.tags = tags

    async def _relay_whole(
        self,
        rt: Runtime,
        rec: CallRecord,
        call: CallInfo,
        resp: UpstreamResponse,
        send: Any,
        t0: float,
        reservation: Reservation | None,
    ) -> None:
        waited = time.perf_counter()
        try:
            body = await resp.read()
            rec.upstream_wait_s += time.perf_counter() - waited
        except UpstreamError as err:
            rec.outcome, rec.error_type = err.outcome, err.code or err.error_type
            rec.status_code = err.status
            await send_error(send, err, rec.request_id, self.adapter)
            await self._finish(rt, rec, call, None, t0, reservation)
            return
        finally:
            await resp.aclose()
        rec.latency_ms = (time.perf_counter() - t0) * 1000
        if 200 <= resp.status < 300:
            rec.info = self.adapter.parse_response(body)
            if rec.info.error:  # e.g. a Responses API answer with status "failed"
                rec.outcome, rec.error_type = "upstream_error", rec.info.error
        else:
            rec.outcome, rec.error_type = "upstream_error", f"http_{resp.status}"
        usage = await rt.metering.complete_usage(rec, call, None)
        priced = rt.metering.price(rec, usage)
        await _settle(reservation, usage, priced)
        extra = [(b"x-spendgate-request-id", rec.request_id.encode())]
        if priced is not None:
            extra.append((b"x-spendgate-cost-usd", format(priced.cost.normalize(), "f").encode()))
        if reservation is not None and reservation.remaining_usd is not None:
            remaining = format(reservation.remaining_usd.normalize(), "f").encode()
            extra.append((b"x-spendgate-budget-remaining-usd", remaining))
        rec.overhead_s = max(time.perf_counter() - t0 - rec.upstream_wait_s, 0.0)
        extra.append((b"x-spendgate-overhead-ms", f"{rec.overhead_s * 1000:.3f}".encode()))
        headers = response_headers(resp.headers, extra)
        headers.append((b"content-length", str(len(body)).encode()))
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except OSError:
            rec.outcome = "client_cancelled" if rec.outcome == "ok" else rec.outcome
        rt.metering.record(rec, usage, priced)

    async def _relay_stream(
        self,
        rt: Runtime,
        rec: CallRecord,
        call: CallInfo,
        resp: UpstreamResponse,
        receive: Any,
        send: Any,
        t0: float,
        reservation: Reservation | None,
    ) -> None:
        meter: StreamMeter = self.adapter.stream_meter(call)
        task = asyncio.current_task()
        assert task is not None
        state = {"streaming": True, "disconnected": False}
        cut_by_server = False

        async def watch_disconnect() -> None:
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    if state["streaming"]:
                        state["disconnected"] = True
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        headers = response_headers(
            resp.headers, [(b"x-spendgate-request-id", rec.request_id.encode())]
        )
        try:
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            chunks = resp.chunks().__aiter__()
            while True:
                waited = time.perf_counter()
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                rec.upstream_wait_s += time.perf_counter() - waited
                if rec.ttft_ms is None:
                    rec.ttft_ms = (time.perf_counter() - t0) * 1000
                out = meter.feed(chunk)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            state["streaming"] = False
            await send({"type": "http.response.body", "body": meter.finish(), "more_body": False})
        except asyncio.CancelledError:
            if not state["disconnected"]:
                # Cut by the server (shutdown past its grace period): record, then go on.
                rec.outcome, rec.error_type = "unavailable", "server_shutdown"
                cut_by_server = True
            else:
                task.uncancel()
                if not _stream_finished(meter):
                    rec.outcome, rec.error_type = "client_cancelled", "client_disconnected"
        except OSError:
            if not _stream_finished(meter):
                rec.outcome, rec.error_type = "client_cancelled", "client_disconnected"
        except UpstreamError as err:
            # The provider broke off mid-stream. The client gets the same: the connection is
            # closed without the end of the body, so its SDK raises as it would talking direct.
            rec.outcome, rec.error_type = err.outcome, err.code or err.error_type
            log.warning("upstream stream of %s broke off: %s", rec.request_id, err.message)
        finally:
            state["streaming"] = False
            watcher.cancel()
            await resp.aclose()
        rec.info = meter.info()
        if rec.info.error and rec.outcome == "ok":  # an error event after the 200
            rec.outcome, rec.error_type = "upstream_error", rec.info.error
        await self._finish(rt, rec, call, meter, t0, reservation)
        if cut_by_server:
            raise asyncio.CancelledError

    async def _finish(
        self,
        rt: Runtime,
        rec: CallRecord,
        call: CallInfo | None,
        meter: StreamMeter | None,
        t0: float,
        reservation: Reservation | None,
    ) -> None:
        if rec.latency_ms is None:
            rec.latency_ms = (time.perf_counter() - t0) * 1000
        rec.overhead_s = max(rec.latency_ms / 1000 - rec.upstream_wait_s, 0.0)
        usage = await rt.metering.complete_usage(rec, call, meter)
        priced = rt.metering.price(rec, usage)
        try:
            await _settle(reservation, usage, priced)
        finally:
            rt.metering.record(rec, usage, priced)


async def _settle(
    reservation: Reservation | None, usage: Usage | None, priced: PricedCall | None
) -> None:
    """Charge the budgets what the call actually cost (0 when nothing was generated)."""
    if reservation is not None:
        cost = priced.cost if priced is not None else Decimal(0)
        await reservation.settle(cost=cost, tokens=usage.total_tokens if usage else 0)


def _stream_finished(meter: StreamMeter) -> bool:
    """Whether the stream had ended when the client left: an SDK closes the connection as
    soon as it reads the terminating event, which is a complete call, not a cancelled one."""
    finished = getattr(meter, "finished", None)
    if finished is not None:
        return bool(finished)
    return meter.info().usage is not None


_BUDGET_OUTCOMES = {
    "budget_blocked": "blocked",
    "rate_limited": "rate_limited",
    "unavailable": "unavailable",
}


def _server(url: str) -> tuple[str, int] | None:
    """``server.address`` / ``server.port`` of the upstream, for the span."""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    name, _, port = host.rpartition(":") if ":" in host else (host, "", "")
    if not name:
        return None
    return name, int(port) if port.isdigit() else (443 if scheme == "https" else 80)


def _text(value: bytes | None) -> str | None:
    return value.decode("utf-8", "replace") if value else None


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None
