"""OpenTelemetry spans and metrics that attribute the cost of every call; Prometheus; access log.

One CLIENT span per call, named ``{gen_ai.operation.name} {gen_ai.request.model}``, with the
GenAI semantic-convention attributes (docs/telemetry.md lists them all) plus the cost
(``gen_ai.usage.cost.*`` as proposed in semantic-conventions-genai PR #443, and
``spendgate.*``). The span starts before the upstream request, so the upstream sees its
``traceparent``, and ends when the call is recorded, so its usage is final.

Export is configured by the standard variables: traces and metrics go over OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the per-signal ``..._TRACES_ENDPOINT`` /
``..._METRICS_ENDPOINT``) is set; ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES`` and
``OTEL_TRACES_SAMPLER`` are honoured by the SDK. With no tracing configured no span is built
at all. ``GET /metrics`` serves the same metrics as Prometheus text from a private registry.
Label cardinality is bounded: no request ids, end users or tags as labels.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import time
from collections.abc import Mapping, Sequence
from logging.handlers import QueueHandler, QueueListener
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from pricing import PricedCall
from pricing.usage import Usage

if TYPE_CHECKING:
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

# gen_ai.provider.name well-known values by provider kind (semantic conventions 1.2)
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "mock": "spendgate.mock",
}

_PROPAGATOR = TraceContextTextMapPropagator()


def _otlp_configured(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


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
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            processors.append(BatchSpanProcessor(OTLPSpanExporter()))
        self._tracer_provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if processors:
            self._tracer_provider = TracerProvider(resource=resource)
            for p in processors:
                self._tracer_provider.add_span_processor(p)
            self._tracer = self._tracer_provider.get_tracer("spendgate")

        readers = list(metric_readers)
        self.registry: Any = None
        if prometheus:
            from opentelemetry.exporter.prometheus import PrometheusMetricReader
            from prometheus_client import CollectorRegistry

            self.registry = CollectorRegistry(auto_describe=False)
            readers.append(PrometheusMetricReader(disable_target_info=True, registry=self.registry))
        if _otlp_configured("METRICS"):
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        self._meter_provider: MeterProvider | None = None
        if readers:
            views = [
                View(
                    instrument_name="gen_ai.client.token.usage",
                    aggregation=ExplicitBucketHistogramAggregation(TOKEN_BUCKETS),
                ),
                View(
                    instrument_name="gen_ai.client.operation.*",
                    aggregation=ExplicitBucketHistogramAggregation(DURATION_BUCKETS),
                ),
                View(
                    instrument_name="spendgate.overhead.duration",
                    aggregation=ExplicitBucketHistogramAggregation(OVERHEAD_BUCKETS),
                ),
            ]
            self._meter_provider = MeterProvider(
                metric_readers=readers, resource=resource, views=views
            )
            meter = self._meter_provider.get_meter("spendgate")
            self._tokens = meter.create_histogram(
                "gen_ai.client.token.usage",
                unit="{token}",
                description="Tokens used per call, by gen_ai.token.type",
            )
            self._duration = meter.create_histogram(
                "gen_ai.client.operation.duration",
                unit="s",
                description="Duration of the upstream operation",
            )
            self._ttfc = meter.create_histogram(
                "gen_ai.client.operation.time_to_first_chunk",
                unit="s",
                description="Time to the first streamed chunk",
            )
            self._overhead = meter.create_histogram(
                "spendgate.overhead.duration",
                unit="s",
                description="Time spent in the proxy, excluding waiting on the upstream",
            )
            self._cost = meter.create_counter(
                "spendgate.cost",
                unit="USD",
                description="Cost charged (after team rate cards), in USD",
            )
            self._requests = meter.create_counter(
                "spendgate.requests", unit="{request}", description="Calls by outcome"
            )
            self._unpriced = meter.create_counter(
                "spendgate.unpriced",
                unit="{request}",
                description="Calls with usage but no price in the catalog (cost recorded as NULL)",
            )

        self._listener: QueueListener | None = None
        self._access: logging.Logger | None = None
        if access_log:
            # Formatting and writing happen on a listener thread, never on the event loop.
            q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            self._access = logging.getLogger("spendgate.access")
            self._access.propagate = False
            self._access.setLevel(logging.INFO)
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(message)s"))
            self._queue_handler = QueueHandler(q)
            self._access.addHandler(self._queue_handler)
            self._listener = QueueListener(q, handler)
            self._listener.start()

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
            self._access.info(self._access_line(rec, usage, priced))

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
        base = {
            "gen_ai.operation.name": rec.operation,
            "gen_ai.provider.name": _PROVIDER_NAMES.get(
                rec.provider_kind, rec.provider_kind or "unknown"
            ),
            "gen_ai.request.model": rec.model_requested or "",
        }
        if rec.info.model:
            base["gen_ai.response.model"] = rec.info.model
        if usage is not None:
            if usage.input_tokens is not None:
                self._tokens.record(usage.input_tokens, {**base, "gen_ai.token.type": "input"})
            if usage.output_tokens is not None:
                self._tokens.record(usage.output_tokens, {**base, "gen_ai.token.type": "output"})
        duration = (
            {**base, "error.type": rec.error_type}
            if rec.outcome != "ok" and rec.error_type
            else base
        )
        if rec.latency_ms is not None and rec.reached_provider:
            self._duration.record(rec.latency_ms / 1000, duration)
        if rec.ttft_ms is not None:
            self._ttfc.record(rec.ttft_ms / 1000, base)
        if rec.overhead_s is not None:
            self._overhead.record(rec.overhead_s, {"gen_ai.operation.name": rec.operation})
        team = {
            "spendgate.team": rec.identity.team,
            "gen_ai.request.model": base["gen_ai.request.model"],
            "spendgate.provider": rec.provider,
        }
        if priced is not None and priced.cost:
            self._cost.add(float(priced.cost), team)
        self._requests.add(1, {**team, "spendgate.outcome": rec.outcome})
        if priced is None and usage is not None and rec.reached_provider and rec.priced_model:
            self._unpriced.add(1, team)

    @staticmethod
    def _access_line(rec: CallRecord, usage: Usage | None, priced: PricedCall | None) -> str:
        u = usage or Usage()
        return json.dumps(
            {
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
                "overhead_ms": round(rec.overhead_s * 1000, 3)
                if rec.overhead_s is not None
                else None,
            },
            separators=(",", ":"),
        )

    # -- serving and shutdown ------------------------------------------------------------------

    def metrics_text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self.registry is None:
            return b"", CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def shutdown(self) -> None:
        """Flush and stop exporters (blocking: call from a thread at exit)."""
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._meter_provider is not None:
            self._meter_provider.shutdown()
        if self._listener is not None:
            self._listener.stop()
            assert self._access is not None
            self._access.removeHandler(self._queue_handler)


def _sum(*values: int | None) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None
