"""The ASGI application: routes, and the shared runtime built once in the lifespan.

Shared clients (the upstream pool, the ledger writer, the tokenizer, the catalog) live in
lifespan state, not in globals, so tests can run several proxies in one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from budgets import (
    BudgetExceeded,
    Budgets,
    Demand,
    RateLimited,
    Reservation,
    StoreUnavailable,
    Subject,
    WebhookAlerts,
    open_store,
)
from pricing import Catalog, load_catalog
from proxy.admin import admin_routes
from proxy.admin.auth import AdminKeys
from proxy.admin.reports import report_routes
from proxy.auth import KeyRing
from proxy.config import Config, ProviderConfig, load_config, parse_config
from proxy.controlplane.runtime import ControlPlane
from proxy.dispatch import FastDispatch
from proxy.errors import BudgetBlocked, NotFound, ProxyError, RateLimitedError, Unavailable
from proxy.handler import DataPlane, new_request_id
from proxy.ledger import LedgerWriter
from proxy.lifecycle import DrainGate, Lifecycle
from proxy.metering import CallRecord, Metering
from proxy.passthrough import Passthrough
from proxy.providers import anthropic, gemini, openai
from proxy.providers.base import CallInfo
from proxy.providers.mock import MockUpstream
from proxy.providers.routes import data_plane_routes
from proxy.readiness import Readiness
from proxy.routing import ModelRouter
from proxy.spend import LedgerSpendSource
from proxy.telemetry import Telemetry, known_budget_values
from proxy.tokens import Tokenizer, max_input_tokens_bound
from proxy.upstream import AiohttpUpstream, Upstream

__all__ = ["Runtime", "create_app", "create_app_from_env"]

log = logging.getLogger("spendgate")


class Runtime:
    """Everything a request needs, built at start-up and shared by all requests."""

    def __init__(
        self,
        config: Config,
        catalog: Catalog,
        tokenizer: Tokenizer,
        ledger: LedgerWriter,
        http: Upstream,
        budgets: Budgets | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.config = config
        self.budgets = budgets
        self.keys = KeyRing(config.keys, open_access=config.server.is_loopback)
        self.router = ModelRouter(config.providers)
        self.ledger = ledger
        self.telemetry = telemetry
        self.metering = Metering(catalog, tokenizer, ledger, telemetry)
        self.http = http
        self.mocks: dict[str, Upstream] = {
            p.name: MockUpstream(
                tokenizer,
                latency_ms=p.latency_ms,
                chunk_delay_ms=p.chunk_delay_ms,
                catalog_models=catalog.models(),
            )
            for p in config.providers
            if p.kind == "mock"
        }

    def upstream_for(self, provider: ProviderConfig) -> Upstream:
        return self.mocks.get(provider.name) or self.http

    async def reserve(self, rec: CallRecord, call: CallInfo, body_len: int) -> Reservation | None:
        """Reserve the call's worst case against every budget and rate limit that applies.

        Input tokens are bounded by the body's byte length (every BPE token covers at least
        one byte), output by the request's max tokens, else the model's cap, so the
        reservation is a true worst case and a hard budget cannot be overrun by calls in
        flight (see docs/budgets.md).
        """
        if self.budgets is None:
            return None
        settings = self.config.budget_settings
        model = rec.priced_model or call.model
        catalog = self.metering.catalog
        if call.endpoint == "embeddings":
            max_out = 0
        else:
            max_out = (
                call.max_output_tokens
                or catalog.max_output_tokens(model)
                or settings.default_max_output_tokens
            )
        input_bound = max_input_tokens_bound(body_len)
        cost = catalog.worst_case_cost(
            model,
            input_tokens=input_bound,
            max_output_tokens=max_out,
            at=rec.started_at,
            team=rec.identity.team,
        )
        subject = Subject(
            team=rec.identity.team,
            project=rec.project,
            key_id=rec.identity.key_id,
            end_user=rec.end_user,
            tags=rec.tags,
            model=call.model,
        )
        try:
            return await self.budgets.acquire(
                subject, Demand(cost=cost or Decimal(0), tokens=input_bound + max_out)
            )
        except BudgetExceeded as exc:
            raise BudgetBlocked(str(exc), headers={"x-should-retry": "false"}) from None
        except RateLimited as exc:
            raise RateLimitedError(str(exc), headers=dict(exc.headers)) from None
        except StoreUnavailable as exc:
            raise Unavailable(str(exc), code="budget_store_unavailable") from None


def _upstream_client(name: str) -> Upstream:
    if name == "aiohttp":
        return AiohttpUpstream()
    from proxy.upstream_httpx import HttpxUpstream

    return HttpxUpstream(name)


def _catalog(config: Config) -> Catalog:
    path = None if config.pricing.catalog == "builtin" else config.pricing.catalog
    return load_catalog(path, teams=config.teams or None)


@contextlib.asynccontextmanager
async def _lifespan(
    config: Config, telemetry: Telemetry | None = None
) -> AsyncIterator[dict[str, Any]]:
    tokenizer = Tokenizer.load()
    catalog = _catalog(config)
    if any(p.kind == "mock" for p in config.providers):
        # The mock counts every call: load the BPE tables (~0.7 s, ~70 MiB) off the loop now.
        # Otherwise they load on first need (a call without reported usage), in a thread.
        await asyncio.to_thread(tokenizer.warm)
    ledger = LedgerWriter(
        config.storage.database_url,
        batch_size=config.storage.ledger_batch_size,
        flush_interval=config.storage.ledger_flush_interval,
        max_backlog=config.storage.ledger_max_backlog,
        spill_path=config.storage.spill_path,
        retention_days=config.storage.ledger_retention_days,
    )
    # Brings the schema to head first, under the migration lock, so replicas starting
    # together never race to create the tables (the control plane's included).
    await ledger.start()
    http = _upstream_client(config.server.upstream_client)
    # 2 s, not the store's 0.5 s default: a busy replica must not mistake a slow answer for an
    # outage (under fail_open that admits on local counts, see docs/budgets.md)
    store = await open_store(config.storage.redis_url or "memory://", socket_timeout=2.0)
    alerts = (
        WebhookAlerts(config.budget_settings.alert_webhook)
        if config.budget_settings.alert_webhook
        else None
    )
    # Always built, as the admin API may add policies at run time; the runtime holds it only
    # while there are any, so a proxy without budgets does no budget work per request.
    settings = config.budget_settings
    budgets = Budgets(
        store,
        config.budgets,
        config.rate_limits,
        timezone=settings.timezone,
        fail_mode="closed" if settings.fail_mode == "closed" else "open",
        on_alert=alerts,
        spend_source=LedgerSpendSource(ledger),
        reservation_ttl_s=settings.reservation_ttl_s,
        reservation_cap_usd=settings.reservation_cap_usd,
    )
    if telemetry is None:
        telemetry = Telemetry(
            prometheus=config.telemetry.prometheus, access_log=config.telemetry.access_log
        )
    runtime = Runtime(
        config,
        catalog,
        tokenizer,
        ledger,
        http,
        budgets if config.budgets or config.rate_limits else None,
        telemetry,
    )
    control = ControlPlane(runtime, ledger, budgets)
    await control.start()  # keys and policies from the database, kept fresh
    telemetry.watch_budgets(
        budgets,
        known_budget_values(runtime.keys, config.teams),
        interval_s=config.telemetry.budget_refresh_s,
    )
    if runtime.keys.open_access:
        log.warning(
            "no virtual keys configured: accepting every call on %s and attributing it to team "
            "'default'. Add keys before binding to a non-loopback address.",
            config.server.host,
        )
    elif not len(runtime.keys):
        log.error(
            "no virtual keys configured and bound to %s: every call will be refused (401)",
            config.server.host,
        )
    lifecycle = Lifecycle(config.server.shutdown)
    readiness = Readiness(
        ledger,
        lifecycle,
        redis_url=config.storage.redis_url,
        fail_open=config.budget_settings.fail_mode != "closed",
    )
    lifecycle.install()  # SIGTERM drains first (proxy/lifecycle.py)
    if os.environ.get("SPENDGATE_GC_TUNE", "1") != "0":
        _tune_gc()
    try:
        yield {
            "runtime": runtime,
            "control": control,
            "admin_keys": AdminKeys(config.admin),
            "lifecycle": lifecycle,
            "readiness": readiness,
        }
    finally:
        lifecycle.uninstall()
        # Calls cut at the end of the grace period are still recording their rows.
        flush_left = await lifecycle.wait_idle(config.server.shutdown.flush_seconds)
        await readiness.aclose()
        await telemetry.aclose()  # the budget gauge's refresh task, before the store closes
        await control.aclose()
        await http.aclose()
        if budgets is not None:
            await budgets.aclose()
        if alerts is not None:
            await alerts.aclose()
        await store.aclose()
        await ledger.aclose(timeout=max(flush_left, 1.0))
        await asyncio.to_thread(telemetry.shutdown)  # flushes exporters


def _tune_gc() -> None:
    """Keep the cyclic garbage collector off the latency path.

    Everything built at start-up (catalog, SQLAlchemy metadata, OTel, the upstream pool) lives
    as long as the process; ``gc.freeze()`` moves it out of the collector's reach, so an old-
    generation pass no longer walks it. A call allocates a few hundred containers, nearly all
    freed by reference counting, so the young generation's threshold goes from 700 to 10,000
    allocations: fewer collections, each over the same short-lived garbage.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)


def _error_response(err: ProxyError, path: str = "") -> Response:
    # Under a provider's own prefix, errors speak that provider's format.
    if path.startswith("/anthropic/"):
        body = anthropic.error_body(err)
    elif path.startswith("/gemini/"):
        body = gemini.error_body(err)
    else:
        body = openai.error_body(err)
    return Response(
        body,
        status_code=err.status,
        media_type="application/json",
        headers={"x-spendgate-request-id": new_request_id(), **err.headers},
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        err: ProxyError = NotFound(f"Method {request.method} is not allowed on {request.url.path}.")
        err.status = 405
    else:
        err = NotFound(f"Unknown route: {request.method} {request.url.path}")
    return _error_response(err, request.url.path)


async def list_models(request: Request) -> Response:
    """The models this proxy can route: mock models, exact names, and upstream lists."""
    rt: Runtime = request.state.runtime
    seen: dict[str, dict[str, Any]] = {}

    async def from_upstream(p: ProviderConfig) -> None:
        try:
            resp = await rt.http.send(
                "GET",
                p.base_url + "/v1/models",
                [("authorization", f"Bearer {p.api_key}")],
                b"",
                connect_timeout=min(p.connect_timeout, 5.0),
                read_timeout=10.0,
            )
            body = await resp.read()
            if resp.status == 200:
                for m in json.loads(body).get("data", []):
                    if isinstance(m, dict) and rt.router.route(str(m.get("id"))) is p:
                        seen.setdefault(m["id"], m)
        except Exception as exc:  # a provider that cannot list must not break the listing
            log.warning("could not list models of provider %s: %s", p.name, exc)

    fetches = []
    for p in rt.config.providers:
        if p.kind == "mock":
            resp = await rt.mocks[p.name].send(
                "GET", "mock://local/v1/models", [], b"", connect_timeout=1, read_timeout=1
            )
            for m in json.loads(await resp.read())["data"]:
                if rt.router.route(m["id"]) is p:
                    seen.setdefault(m["id"], m)
        elif p.kind == "openai" and p.api_key:
            fetches.append(from_upstream(p))
        for name in p.models:
            if not any(c in name for c in "*?[") and name not in seen:
                seen[name] = {"id": name, "object": "model", "created": 0, "owned_by": p.name}
    await asyncio.gather(*fetches)
    return JSONResponse({"object": "list", "data": list(seen.values())})


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    readiness: Readiness = request.state.readiness
    ready, body = await readiness.check()
    return JSONResponse(body, status_code=200 if ready else 503)


def _draining_refusal(path: str) -> Response:
    err = Unavailable(
        "This spendgate replica is shutting down; retry and another replica will answer.",
        code="shutting_down",
        headers={"retry-after": "1"},
    )
    return _error_response(err, path)


async def metrics(request: Request) -> Response:
    rt: Runtime = request.state.runtime
    if rt.telemetry is None or rt.telemetry.registry is None:
        return Response("prometheus metrics are off (telemetry.prometheus)\n", status_code=404)
    # rendered off the loop: a scrape of many series must not stall the calls in flight
    body, content_type = await asyncio.to_thread(rt.telemetry.metrics_text)
    return Response(body, media_type=content_type)


def create_app(config: Config | None = None, *, telemetry: Telemetry | None = None) -> ASGIApp:
    """The spendgate ASGI app for ``config`` (the embedded defaults when None)."""
    config = config if config is not None else parse_config({})
    # The data plane, declared once (proxy/providers/routes.py: each format's routes, Azure's,
    # each provider's /{name}/ ones): the router serves it, and its fixed paths also take the
    # fast path around the router (proxy/dispatch.py).
    data_plane: list[tuple[str, tuple[str, ...], Any]] = [
        (r.path, r.methods, DataPlane(adapter, r) if r.billed else Passthrough(adapter, r))
        for adapter, r in data_plane_routes(config.providers)
    ]
    routes = [Route(path, ep, methods=list(methods)) for path, methods, ep in data_plane]
    # first: /admin is not a provider's passthrough
    routes = [*admin_routes(), *report_routes(), *routes]
    routes += [
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lambda app: _lifespan(config, telemetry),
        exception_handlers={HTTPException: _http_exception},
    )
    return DrainGate(FastDispatch(app, data_plane), refuse=_draining_refusal)


def create_app_from_env() -> ASGIApp:
    """App factory for uvicorn workers: config path and CLI overrides come from the env."""
    config = load_config(os.environ.get("SPENDGATE_CONFIG") or None)
    overrides = json.loads(os.environ.get("SPENDGATE_SERVER_OVERRIDES") or "{}")
    if overrides:
        config = config.with_server(**overrides)
    return create_app(config)
