"""OpenTelemetry spans and metrics that attribute the cost of every call; Prometheus; access log.

One CLIENT span per call, named ``{gen_ai.operation.name} {gen_ai.request.model}``, with the
GenAI semantic-convention attributes (docs/telemetry.md lists them all) plus the cost
(``gen_ai.usage.cost.*`` as proposed in semantic-conventions-genai PR #443, and
``spendgate.*``). The span starts before the upstream request, so the upstream sees its
``traceparent``, and ends when the call is recorded, so its usage is final.

Export is configured by the standard variables: traces and metrics go over OTLP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal ``..._TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``) is set, as ``http/protobuf`` or, with the ``grpc`` extra, ``grpc``
(``OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL``); ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES`` and ``OTEL_TRACES_SAMPLER`` are honoured by the SDK. With no
tracing configured no span is built at all. ``GET /metrics`` serves the same metrics as
Prometheus text from a private registry. Label cardinality is bounded: no request ids, end
users or tags as labels. ``spendgate.budget.utilization`` reads a snapshot that
``budgets.BudgetUtilization`` keeps fresh, so no collection waits on the store.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from budgets import BudgetUtilization, Scope
from pricing import PricedCall
from pricing.usage import Usage
from proxy.accesslog import AccessLog
from proxy.callmetrics import CallMetrics, CounterSpec, HistogramSpec, observe
from proxy.errors import ConfigError

if TYPE_CHECKING:
    from budgets import Budgets
    from budgets.utilization import KnownValues
    from proxy.auth import KeyRing
    from proxy.metering import CallRecord

__all__ = ["Telemetry"]

log = logging.getLogger("spendgate.telemetry")

TOKEN_BUCKETS = [
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
]
DURATION_BUCKETS = [
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
]
OVERHEAD_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]

_HISTOGRAMS = (
    HistogramSpec(
        "gen_ai.client.token.usage",
        "{token}",
        "Tokens used per call, by gen_ai.token.type",
        TOKEN_BUCKETS,
    ),
    HistogramSpec(
        "gen_ai.client.operation.duration",
        "s",
        "Duration of the upstream operation",
        DURATION_BUCKETS,
    ),
    HistogramSpec(
        "gen_ai.client.operation.time_to_first_chunk",
        "s",
        "Time to the first streamed chunk",
        DURATION_BUCKETS,
    ),
    HistogramSpec(
        "spendgate.overhead.duration",
        "s",
        "Time spent in the proxy, excluding waiting on the upstream",
        OVERHEAD_BUCKETS,
    ),
)
_COUNTERS = (
    CounterSpec("spendgate.cost", "USD", "Cost charged (after team rate cards), in USD"),
    CounterSpec("spendgate.requests", "{request}", "Calls by outcome"),
    CounterSpec(
        "spendgate.unpriced",
        "{request}",
        "Calls with usage but no price in the catalog (cost recorded as NULL)",
    ),
)
_TOKEN_BOUNDS = [float(b) for b in TOKEN_BUCKETS]
_DURATION_BOUNDS = list(DURATION_BUCKETS)
_OVERHEAD_BOUNDS = list(OVERHEAD_BUCKETS)

# gen_ai.provider.name well-known values by provider kind (semantic conventions 1.2)
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "azure": "azure.ai.openai",
    "mock": "spendgate.mock",
}

_PROPAGATOR = TraceContextTextMapPropagator()


def _otlp_configured(signal: str) -> bool:
    """An endpoint turns a signal's OTLP export on; ``OTEL_{signal}_EXPORTER=none`` turns it off."""
    if os.environ.get(f"OTEL_{signal}_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def otlp_protocol(signal: str) -> str:
    """``grpc`` or ``http/protobuf`` for ``TRACES``/``METRICS``, from the standard variables.

    Raises ``ConfigError`` for another value, or for ``grpc`` without the gRPC exporter.
    """
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    if not os.environ.get(name):
        name = "OTEL_EXPORTER_OTLP_PROTOCOL"
    value = os.environ.get(name, "").strip().lower() or "http/protobuf"
    if value not in ("http/protobuf", "grpc"):
        raise ConfigError(
            f"{name}={value}: spendgate exports OTLP as 'http/protobuf' (the default) or 'grpc'"
        )
    if value == "grpc":
        try:
            import opentelemetry.exporter.otlp.proto.grpc.exporter  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                f"{name}=grpc needs the OTLP gRPC exporter, which is not installed ({exc}): "
                "pip install 'spendgate[grpc]', or export over http/protobuf (port 4318)"
            ) from None
    return value


def check_otlp_env() -> None:
    """Validate the OTLP variables of every signal that exports (for a clear startup error)."""
    for signal in ("TRACES", "METRICS"):
        if _otlp_configured(signal):
            otlp_protocol(signal)


def _span_exporter() -> SpanExporter:
    if otlp_protocol("TRACES") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
            OTLPSpanExporter,
        )
    return OTLPSpanExporter()


def _metric_exporter() -> MetricExporter:
    if otlp_protocol("METRICS") == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    else:
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import (  # type: ignore[assignment]
            OTLPMetricExporter,
        )
    return OTLPMetricExporter()


class Telemetry:
    """Spans, metrics and the access log of one proxy process.

    ``span_processors`` / ``metric_readers`` let tests attach the SDK's in-memory exporter and
    reader; in production they come from the environment.
    """

    def __init__(
        self,
        *,
        prometheus: bool = True,
        access_log: bool = True,
        span_processors: Sequence[SpanProcessor] = (),
        metric_readers: Sequence[MetricReader] = (),
    ) -> None:
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", "spendgate")}
        )
        processors = list(span_processors)
        if _otlp_configured("TRACES"):
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            processors.append(BatchSpanProcessor(_span_exporter()))
        self._tracer_provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if processors:
            self._tracer_provider = TracerProvider(resource=resource)
            for p in processors:
                self._tracer_provider.add_span_processor(p)
            self._tracer = self._tracer_provider.get_tracer("spendgate")

        readers = list(metric_readers)
        self._calls = CallMetrics(_HISTOGRAMS, _COUNTERS)
        self._points: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self._budget_view: BudgetUtilization | None = None
        self.registry: Any = None
        if prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            self.registry = CollectorRegistry(auto_describe=False)
            readers.append(PrometheusMetricReader(disable_target_info=True, registry=self.registry))
        if _otlp_configured("METRICS"):
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(_metric_exporter()))
        self._meter_provider: MeterProvider | None = None
        if readers:
            self._meter_provider = MeterProvider(metric_readers=readers, resource=resource)
            # The per-call metrics bypass the SDK's instruments (proxy/callmetrics.py).
            for reader in readers:
                self._calls.attach(reader, resource)
            # A scope of its own: CallMetrics appends a second "spendgate" scope to every
            # collection, and the OTLP encoder keeps only one scope per name.
            budget_meter = self._meter_provider.get_meter("spendgate.budgets")
            budget_meter.create_observable_gauge(
                "spendgate.budget.utilization",
                callbacks=[self._observe_budgets],
                unit="1",
                description="Settled spend / limit of each budget in its current window",
            )

        # Serialised and written on its own thread, never on the event loop (proxy/accesslog.py).
        self._access: AccessLog | None = AccessLog() if access_log else None

    @property
    def tracing(self) -> bool:
        return self._tracer is not None

    # -- spans -------------------------------------------------------------------------------

    def start(
        self, rec: CallRecord, headers: Mapping[bytes, bytes], server: tuple[str, int] | None
    ) -> None:
        """Start the call's span as a child of the caller's ``traceparent``, if tracing is on."""
        if self._tracer is None or rec.span is not None:
            return
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in headers.items()
            if k in (b"traceparent", b"tracestate")
        }
        parent = _PROPAGATOR.extract(carrier) if carrier else Context()
        model = rec.model_requested or ""
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": rec.operation,
            "gen_ai.provider.name": _PROVIDER_NAMES.get(
                rec.provider_kind, rec.provider_kind or "unknown"
            ),
            "gen_ai.request.model": model,
        }
        if server is not None:
            attributes["server.address"], attributes["server.port"] = server
        start_ns = int(rec.started_at.timestamp() * 1e9)
        span = self._tracer.start_span(
            f"{rec.operation} {model}".strip(),
            context=parent,
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=start_ns,
        )
        ctx = span.get_span_context()
        rec.span = span
        rec.trace_id = format(ctx.trace_id, "032x")
        rec.span_id = format(ctx.span_id, "016x")

    @staticmethod
    def traceparent(rec: CallRecord) -> list[tuple[str, str]]:
        """The ``traceparent`` (and ``tracestate``) the upstream request carries."""
        if rec.span is None:
            return []
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(rec.span))
        return list(carrier.items())

    # -- the end of a call -------------------------------------------------------------------

    def finish(
        self, rec: CallRecord, usage: Usage | None, priced: PricedCall | None, budget_outcome: str
    ) -> None:
        """End the span, record the metrics and write the access-log line."""
        if self._tracer is not None:
            self.start(rec, {}, None)  # calls refused before forwarding still get their span
            self._end_span(rec, usage, priced, budget_outcome)
        if self._meter_provider is not None:
            self._record_metrics(rec, usage, priced)
        if self._access is not None:
            self._access.write(self._access_line(rec, usage, priced))

    def _end_span(
        self, rec: CallRecord, usage: Usage | None, priced: PricedCall | None, budget_outcome: str
    ) -> None:
        span = rec.span
        if span is None:
            return
        a: dict[str, Any] = {
            "gen_ai.request.stream": rec.stream,
            "spendgate.team": rec.identity.team,
            "spendgate.usage_source": rec.usage_source,
            "spendgate.budget.outcome": budget_outcome,
            "spendgate.outcome": rec.outcome,
            "http.response.status_code": rec.status_code,
        }
        info = rec.info
        for key, value in (
            ("gen_ai.response.model", info.model),
            ("gen_ai.response.id", info.response_id),
            ("spendgate.project", rec.project),
            ("spendgate.key_id", rec.identity.key_id),
        ):
            if value:
                a[key] = value
        if info.finish_reasons:
            a["gen_ai.response.finish_reasons"] = list(info.finish_reasons)
        if rec.ttft_ms is not None:
            a["gen_ai.response.time_to_first_chunk"] = rec.ttft_ms / 1000
        if usage is not None:
            for key, count in (
                ("gen_ai.usage.input_tokens", usage.input_tokens),
                ("gen_ai.usage.output_tokens", usage.output_tokens),
                ("gen_ai.usage.cache_read.input_tokens", usage.cached_input_tokens),
                (
                    "gen_ai.usage.cache_write.input_tokens",
                    _sum(usage.cache_write_tokens, usage.cache_write_1h_tokens),
                ),
                ("gen_ai.usage.reasoning.output_tokens", usage.reasoning_tokens),
            ):
                if count is not None:
                    a[key] = count
        if priced is not None:
            a["gen_ai.usage.cost.amount"] = float(priced.cost)  # OTel has no decimal type
            a["gen_ai.usage.cost.currency"] = "USD"
            a["gen_ai.usage.cost.source"] = "local"
            a["spendgate.cost_usd"] = format(priced.cost, "f")  # exact, as text
            a["spendgate.list_cost_usd"] = format(priced.list_cost, "f")
            a["spendgate.price_version"] = priced.price_version
        if rec.outcome != "ok":
            a["error.type"] = rec.error_type or rec.outcome
            span.set_status(Status(StatusCode.ERROR, rec.outcome))
        span.set_attributes(a)
        span.end()

    def _record_metrics(
        self, rec: CallRecord, usage: Usage | None, priced: PricedCall | None
    ) -> None:
        err = rec.error_type if rec.outcome != "ok" and rec.error_type else None
        key = (
            rec.operation,
            rec.provider_kind,
            rec.model_requested or "",
            rec.info.model,
            err,
            rec.identity.team,
            rec.provider,
            rec.outcome,
        )
        points = self._points.get(key)
        if points is None:
            points = self._points_for(key)
        tokens_in, tokens_out, duration, ttfc, overhead, cost, requests, unpriced = points
        with self._calls.lock:
            if usage is not None:
                if usage.input_tokens is not None:
                    observe(tokens_in, _TOKEN_BOUNDS, usage.input_tokens)
                if usage.output_tokens is not None:
                    observe(tokens_out, _TOKEN_BOUNDS, usage.output_tokens)
            if rec.latency_ms is not None and rec.reached_provider:
                observe(duration, _DURATION_BOUNDS, rec.latency_ms / 1000)
            if rec.ttft_ms is not None:
                observe(ttfc, _DURATION_BOUNDS, rec.ttft_ms / 1000)
            if rec.overhead_s is not None:
                observe(overhead, _OVERHEAD_BOUNDS, rec.overhead_s)
            if priced is not None and priced.cost:
                cost.value += priced.cost
            requests.value += 1
            if priced is None and usage is not None and rec.reached_provider and rec.priced_model:
                unpriced.value += 1

    def _points_for(self, key: tuple[Any, ...]) -> tuple[Any, ...]:
        """The metric points one combination of labels updates (cached, bounded)."""
        operation, kind, model, served, err, team, provider, outcome = key
        base: tuple[tuple[str, Any], ...] = (
            ("gen_ai.operation.name", operation),
            ("gen_ai.provider.name", _PROVIDER_NAMES.get(kind, kind or "unknown")),
            ("gen_ai.request.model", model),
        )
        if served:
            base += (("gen_ai.response.model", served),)
        h, c = self._calls.hist, self._calls.counters
        tokens = h["gen_ai.client.token.usage"]
        by_team = (
            ("spendgate.team", team),
            ("gen_ai.request.model", model),
            ("spendgate.provider", provider),
        )
        points = (
            tokens.point((*base, ("gen_ai.token.type", "input"))),
            tokens.point((*base, ("gen_ai.token.type", "output"))),
            h["gen_ai.client.operation.duration"].point(
                (*base, ("error.type", err)) if err else base
            ),
            h["gen_ai.client.operation.time_to_first_chunk"].point(base),
            h["spendgate.overhead.duration"].point((("gen_ai.operation.name", operation),)),
            c["spendgate.cost"].point(by_team),
            c["spendgate.requests"].point((*by_team, ("spendgate.outcome", outcome))),
            c["spendgate.unpriced"].point(by_team),
        )
        if len(self._points) >= 10_000:
            self._points.clear()  # label sets are bounded per metric; this cache only saves work
        self._points[key] = points
        return points

    @staticmethod
    def _access_line(
        rec: CallRecord, usage: Usage | None, priced: PricedCall | None
    ) -> dict[str, Any]:
        u = usage or Usage()
        return {
            "ts": time.time(),
            "request_id": rec.request_id,
            "trace_id": rec.trace_id,
            "team": rec.identity.team,
            "project": rec.project,
            "key_id": rec.identity.key_id,
            "provider": rec.provider,
            "endpoint": rec.endpoint,
            "model": rec.model_requested,
            "stream": rec.stream,
            "status": rec.status_code,
            "outcome": rec.outcome,
            "error_type": rec.error_type,
            "input_tokens": u.input_tokens,
            "output_tokens": u.output_tokens,
            "usage_source": rec.usage_source,
            "cost_usd": format(priced.cost, "f") if priced is not None else None,
            "latency_ms": round(rec.latency_ms or 0, 3),
            "overhead_ms": round(rec.overhead_s * 1000, 3) if rec.overhead_s is not None else None,
        }

    # -- serving and shutdown ------------------------------------------------------------------

    def metrics_text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.registry is None:
            return b"", CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- budget utilization --------------------------------------------------------------------

    def watch_budgets(
        self, budgets: Budgets, known: KnownValues | None = None, *, interval_s: float = 15.0
    ) -> None:
        """Report ``spendgate.budget.utilization`` for ``budgets`` (call on the event loop).

        The gauge reads a snapshot that a background task refreshes every ``interval_s`` and
        each settle updates in place, so a scrape or an export never waits on the store.
        """
        if self._meter_provider is None or self._budget_view is not None:
            return
        view = BudgetUtilization(budgets, known)
        budgets.on_settled = view.settled
        view.start(interval_s)
        self._budget_view = view

    async def aclose(self) -> None:
        """Stop the refresh task; the last snapshot stays for the final export."""
        if self._budget_view is not None:
            await self._budget_view.aclose()

    def _observe_budgets(self, options: CallbackOptions) -> Iterable[Observation]:
        view = self._budget_view
        if view is None:
            return []
        return [
            Observation(
                p.fraction,
                {
                    "spendgate.budget.policy": p.policy,
                    "spendgate.budget.scope": p.scope,
                    "spendgate.budget.scope_value": p.value,
                    "spendgate.budget.period": p.period,
                    "spendgate.budget.unit": p.unit,
                    "spendgate.budget.mode": p.mode,
                },
            )
            for p in view.points()
        ]

    def shutdown(self) -> None:
        """Flush and stop exporters (blocking: call from a thread at exit)."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()
        if self._access is not None:
            self._access.close()


def _sum(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def known_budget_values(keys: KeyRing, teams: Iterable[str] = ()) -> KnownValues:
    """The values a budget with a glob ``match`` is reported for: what the keys name.

    Teams, projects, key ids and default tags of every configured or managed key (plus the
    configured teams), so the gauge's labels are bounded by configuration, never by traffic.
    """
    fixed = set(teams)

    def known() -> dict[Scope, set[str]]:
        out: dict[Scope, set[str]] = {
            Scope.TEAM: set(fixed),
            Scope.PROJECT: set(),
            Scope.KEY: set(),
            Scope.TAG: set(),
        }
        if keys.open_access:
            out[Scope.TEAM].add("default")
        for ident in keys.identities():
            out[Scope.TEAM].add(ident.team)
            if ident.project:
                out[Scope.PROJECT].add(ident.project)
            if ident.key_id:
                out[Scope.KEY].add(ident.key_id)
            out[Scope.TAG].update(f"{k}={v}" for k, v in ident.tags)
        return out

    return known
