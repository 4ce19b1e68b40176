"""Spans, metrics, /metrics and the access log, asserted with the OTel SDK's in-memory parts
and a real OTLP/HTTP receiver."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import gzip
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import httpx
import openai
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from budgets import Budgets, Demand, Subject, open_store, parse_policies
from pricing.usage import Usage
from proxy.auth import Identity
from proxy.metering import CallRecord
from proxy.telemetry import Telemetry
from tests.e2e.proxyserver import ProxyServer, free_port
from tests.fakeupstream.server import FakeUpstream

KEY = "sg-test-key-telemetry-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello"}]


class Captured:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.telemetry = Telemetry(
            prometheus=True,
            access_log=False,
            span_processors=[SimpleSpanProcessor(self.spans)],
            metric_readers=[self.reader],
        )

    def span(self):
        (span,) = self.spans.get_finished_spans()
        return span

    def points(self, name: str) -> list:
        data = self.reader.get_metrics_data()
        out = []
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out.extend(m.data.data_points)
        return out


def config(upstream_url: str, tmp_path: Path, **extra: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'l.db'}"},
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream_url,
                "api_key": "sk-up",
                "models": ["*"],
            },
            "mock": {"kind": "mock", "models": ["mock-*"]},
        },
        "keys": [{"key": KEY, "team": "search", "project": "ranker"}],
    }
    raw.update(extra)
    return raw


@pytest.fixture
def captured():
    c = Captured()
    yield c
    c.telemetry.shutdown()


def test_chat_span_carries_usage_cost_and_attribution(
    upstream: FakeUpstream, tmp_path: Path, captured: Captured
):
    caller_trace = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{caller_trace}-b7ad6b7169203331-01"
    with ProxyServer(config(upstream.url, tmp_path), telemetry=captured.telemetry) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES, extra_headers={"traceparent": traceparent}
            )
        row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    span = captured.span()
    assert span.name == "chat gpt-4o-mini" and span.kind is SpanKind.CLIENT
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == "gpt-4o-mini-2024-07-18"
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (19, 10)
    assert a["gen_ai.usage.cache_read.input_tokens"] == 0
    assert a["spendgate.cost_usd"] == "0.00000885" and a["gen_ai.usage.cost.currency"] == "USD"
    assert a["spendgate.team"] == "search" and a["spendgate.project"] == "ranker"
    assert a["spendgate.price_version"].startswith("gpt-4o-mini@")
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == int(
        upstream.url.rsplit(":", 1)[1]
    )
    assert "gen_ai.input.messages" not in a  # no content unless opted in
    # a child of the caller's trace; the upstream got the proxy span's traceparent
    assert format(span.context.trace_id, "032x") == caller_trace
    assert format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    sent = upstream.requests[0].headers["traceparent"]
    assert sent == f"00-{caller_trace}-{format(span.context.span_id, '016x')}-01"
    assert (row.trace_id, row.span_id) == (caller_trace, format(span.context.span_id, "016x"))
    # metrics
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in captured.points("gen_ai.client.token.usage")
    }
    assert tokens == {"input": 19, "output": 10}
    (cost,) = captured.points("spendgate.cost")
    assert Decimal(str(cost.value)) == Decimal("0.00000885")
    assert captured.points("gen_ai.client.operation.duration")
    assert captured.points("spendgate.overhead.duration")
    assert float(raw.headers["x-spendgate-overhead-ms"]) >= 0


def test_stream_error_and_rejection_spans(
    upstream: FakeUpstream, tmp_path: Path, captured: Captured
):
    raw_cfg = config(
        upstream.url,
        tmp_path,
        budgets=[{"scope": "team", "match": "search", "period": "day", "limit_usd": "0.0001"}],
    )
    with ProxyServer(raw_cfg, telemetry=captured.telemetry) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as c:
            list(
                c.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, stream=True, max_tokens=20
                )
            )
            with pytest.raises(openai.InternalServerError):
                c.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    max_tokens=20,
                    extra_headers={"x-fake-scenario": "server-error"},
                )
            with pytest.raises(openai.RateLimitError):  # the worst case of o3 exceeds $0.0001
                c.chat.completions.create(model="o3", messages=MESSAGES)
        proxy.wait_rows(3)
    spans = {s.attributes["spendgate.outcome"]: s for s in captured.spans.get_finished_spans()}
    stream = spans["ok"]
    assert stream.attributes["gen_ai.request.stream"] is True
    assert stream.attributes["gen_ai.usage.output_tokens"] == 9
    assert stream.attributes["gen_ai.response.time_to_first_chunk"] > 0
    assert stream.attributes["spendgate.budget.outcome"] == "admitted"
    failed = spans["upstream_error"]
    assert (
        failed.status.status_code is StatusCode.ERROR
        and failed.attributes["error.type"] == "http_500"
    )
    blocked = spans["budget_blocked"]
    assert blocked.attributes["spendgate.budget.outcome"] == "blocked"
    assert blocked.attributes["error.type"] == "budget_exceeded"
    assert blocked.name == "chat o3"
    outcomes = {
        p.attributes["spendgate.outcome"]: p.value for p in captured.points("spendgate.requests")
    }
    assert outcomes == {"ok": 1, "upstream_error": 1, "budget_blocked": 1}


def test_cancelled_stream_span(upstream: FakeUpstream, tmp_path: Path, captured: Captured):
    with ProxyServer(config(upstream.url, tmp_path), telemetry=captured.telemetry) as proxy:
        with httpx.Client() as http:
            with http.stream(
                "POST",
                proxy.base_url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
                headers={"authorization": f"Bearer {KEY}", "x-fake-scenario": "chat-stream-slow"},
            ) as resp:
                chunks = resp.iter_raw()
                next(chunks)
        proxy.wait_rows(1)
    span = captured.span()
    assert span.attributes["spendgate.outcome"] == "client_cancelled"
    assert span.attributes["spendgate.usage_source"] == "estimated"


def test_prometheus_text_parses_and_cardinality_is_bounded():
    telemetry = Telemetry(prometheus=True, access_log=False)
    try:
        for i in range(10_000):
            rec = CallRecord(
                request_id=f"r{i}",
                started_at=datetime.now(UTC),
                identity=Identity(team=f"team-{i % 3}", key_id="k"),
                provider="openai",
                endpoint="chat.completions",
                model_requested="gpt-4o-mini",
                end_user=f"user-{i}",
                tags={"session": str(i)},
                operation="chat",
                provider_kind="openai",
                latency_ms=12.0,
                reached_provider=True,
                overhead_s=0.0002,
            )
            telemetry.finish(rec, Usage(input_tokens=10, output_tokens=5), None, "none")
        rec.priced_model = "my-finetune"  # usage, no price: counted as unpriced
        telemetry.finish(rec, Usage(input_tokens=10, output_tokens=5), None, "none")
        body, content_type = telemetry.metrics_text()
        assert content_type.startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert "gen_ai_client_token_usage" in families and "spendgate_requests" in families
        (unpriced,) = [
            s for s in families["spendgate_unpriced"].samples if s.name.endswith("_total")
        ]
        assert unpriced.value == 1
        series = sum(len(f.samples) for f in families.values())
        assert series < 300, series  # 10,000 end users and sessions did not become labels
        assert "user-" not in body.decode() and "session" not in body.decode()
    finally:
        telemetry.shutdown()


# -- spendgate.budget.utilization --------------------------------------------------------------


def gauge(captured: Captured) -> dict[tuple[str, str, str], float]:
    """``(policy, value, unit) -> fraction`` as the in-memory reader collects it now."""
    return {
        (
            p.attributes["spendgate.budget.policy"],
            p.attributes["spendgate.budget.scope_value"],
            p.attributes["spendgate.budget.unit"],
        ): p.value
        for p in captured.points("spendgate.budget.utilization")
    }


def wait_for(check, timeout: float = 10.0):
    """Poll ``check()`` until it returns a truthy value (a background refresh is periodic)."""
    deadline = time.monotonic() + timeout
    while not (result := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return result


@pytest.mark.parametrize("store", ["memory", pytest.param("redis", marks=pytest.mark.redis)])
def test_budget_utilization_gauge_after_spending_through_the_proxy(
    store: str, request: pytest.FixtureRequest, upstream: FakeUpstream, tmp_path: Path, captured
):
    team = f"tel-{uuid.uuid4().hex[:8]}"  # fresh counters, also in a shared Redis
    raw = config(
        upstream.url,
        tmp_path,
        keys=[{"key": f"sg-{uuid.uuid4().hex}", "team": team, "name": f"key-{team}"}],
        budgets=[
            {"scope": "team", "match": team, "period": "month", "limit_usd": "0.001"},
            {"scope": "key", "period": "day", "limit_tokens": 1000, "mode": "soft"},
            {"scope": "end_user", "period": "day", "limit_usd": 1},  # per user: never a label
        ],
        telemetry={"budget_refresh_s": 0.2},
    )
    key = raw["keys"][0]["key"]
    if store == "redis":
        redis_url = request.getfixturevalue("redis_url")
        raw["storage"] = {**raw["storage"], "redis_url": redis_url}
    with ProxyServer(raw, telemetry=captured.telemetry) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0) as c:
            for user in ("alice", "bob"):
                c.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, user=user, max_tokens=20
                )
        assert wait_for(lambda: len(captured.spans.get_finished_spans()) == 2)
        spans = [s.attributes for s in captured.spans.get_finished_spans()]
        cost = sum((Decimal(a["spendgate.cost_usd"]) for a in spans), Decimal(0))
        tokens = sum(
            a["gen_ai.usage.input_tokens"] + a["gen_ai.usage.output_tokens"] for a in spans
        )
        expected = {
            (f"team:{team}:month", team, "usd"): float(cost / Decimal("0.001")),
            ("key:*:day", f"key-{team}", "tokens"): tokens / 1000,
        }
        # this process's own spend is in the snapshot as soon as the call settled
        assert cost == Decimal("0.0000177") and gauge(captured) == expected
        families = {
            f.name: f
            for f in text_string_to_metric_families(httpx.get(proxy.base_url + "/metrics").text)
        }
        samples = {
            (s.labels["spendgate_budget_scope"], s.labels["spendgate_budget_period"]): s.value
            for s in families["spendgate_budget_utilization"].samples
        }
        assert samples == {("team", "month"): 0.0177, ("key", "day"): tokens / 1000}
        (team_sample,) = [
            s
            for s in families["spendgate_budget_utilization"].samples
            if s.labels["spendgate_budget_scope"] == "team"
        ]
        assert {k: v for k, v in team_sample.labels.items() if k.startswith("spendgate")} == {
            "spendgate_budget_policy": f"team:{team}:month",
            "spendgate_budget_scope": "team",
            "spendgate_budget_scope_value": team,
            "spendgate_budget_period": "month",
            "spendgate_budget_unit": "usd",
            "spendgate_budget_mode": "hard",
        }
        if store == "redis":
            # another replica's spend reaches this one's gauge on the next background refresh
            async def other_replica() -> None:
                budgets_store = await open_store(redis_url)
                try:
                    other = Budgets(budgets_store, parse_policies(raw["budgets"][:1]))
                    subject = Subject(team=team)
                    async with other.reserve(subject, Demand(Decimal("0.0002"), 0)) as r:
                        r.mark_sent()
                        await r.settle(cost=Decimal("0.0002"), tokens=0)
                finally:
                    await budgets_store.aclose()

            asyncio.run(other_replica())
            key_usd = (f"team:{team}:month", team, "usd")
            assert wait_for(lambda: gauge(captured)[key_usd] == 0.2177), gauge(captured)


# -- OTLP export to real receivers -------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[dict[str, list[bytes]]] = {}

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.received.setdefault(self.path, []).append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_receiver() -> Iterator[str]:
    """An OTLP/HTTP receiver on 127.0.0.1; yields its base URL, collects in ``_Receiver``."""
    _Receiver.received = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class GrpcReceiver:
    """An OTLP/gRPC receiver (the collector's TraceService and MetricsService) on 127.0.0.1."""

    def __init__(self) -> None:
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts

        self.traces: list[ExportTraceServiceRequest] = []
        self.metrics: list[ExportMetricsServiceRequest] = []
        receiver = self

        class Traces(ts.TraceServiceServicer):
            def Export(self, request, context):
                receiver.traces.append(request)
                return ExportTraceServiceResponse()

        class Metrics(ms.MetricsServiceServicer):
            def Export(self, request, context):
                receiver.metrics.append(request)
                return ExportMetricsServiceResponse()

        self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        ts.add_TraceServiceServicer_to_server(Traces(), self.server)
        ms.add_MetricsServiceServicer_to_server(Metrics(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def __enter__(self) -> GrpcReceiver:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


@dataclass
class Served:
    base_url: str
    output: str = ""


@contextlib.contextmanager
def serving(cfg: dict[str, object], tmp_path: Path, otel_env: dict[str, str]) -> Iterator[Served]:
    """``spendgate serve`` in a subprocess with only ``otel_env`` of the OTEL_* variables."""
    port = free_port()
    path = tmp_path / "spendgate.yaml"
    path.write_text(json.dumps(cfg))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")} | otel_env
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", str(path), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    served = Served(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{served.base_url}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read()
            time.sleep(0.1)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)  # a clean shutdown flushes the exporters
        served.output, _ = proc.communicate(timeout=30)


def exported_spans(requests: list[ExportTraceServiceRequest]) -> list:
    return [
        s for t in requests for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]


def exported_metrics(requests: list[ExportMetricsServiceRequest]) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in requests:
        for rm in r.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).append(m)
    return out


def resource(requests: list) -> dict[str, str]:
    return {
        kv.key: kv.value.string_value
        for r in requests
        for rs in getattr(r, "resource_spans", None) or r.resource_metrics
        for kv in rs.resource.attributes
    }


def attrs(kvs) -> dict[str, object]:
    return {kv.key: getattr(kv.value, kv.value.WhichOneof("value")) for kv in kvs}


def test_otlp_export_with_standard_env_vars_and_access_log(upstream: FakeUpstream, tmp_path: Path):
    """`spendgate serve` with only OTEL_* set exports spans and metrics to a real receiver."""
    with http_receiver() as endpoint:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_SERVICE_NAME": "spendgate-test",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
        with serving(config(upstream.url, tmp_path), tmp_path, env) as served:
            with openai.OpenAI(base_url=served.base_url + "/v1", api_key=KEY, max_retries=0) as c:
                raw = c.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini", messages=MESSAGES
                )
            metrics_text = httpx.get(served.base_url + "/metrics").text
            assert "spendgate_cost" in metrics_text
    output = served.output
    traces = [
        ExportTraceServiceRequest.FromString(b) for b in _Receiver.received.get("/v1/traces", [])
    ]
    assert [s.name for s in exported_spans(traces)] == ["chat gpt-4o-mini"]
    assert resource(traces)["service.name"] == "spendgate-test"
    metrics = [
        ExportMetricsServiceRequest.FromString(b) for b in _Receiver.received.get("/v1/metrics", [])
    ]
    assert {
        "gen_ai.client.token.usage",
        "spendgate.cost",
        "gen_ai.client.operation.duration",
    } <= set(exported_metrics(metrics))
    # one JSON access-log line for the call, with no secret and no prompt
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    (access,) = [x for x in lines if x.get("request_id") == raw.headers["x-spendgate-request-id"]]
    assert access["cost_usd"] == "0.00000885" and access["team"] == "search"
    assert KEY not in output and "sk-up" not in output and "Say hello" not in output


def test_otlp_grpc_export_with_standard_env_vars(upstream: FakeUpstream, tmp_path: Path):
    """OTEL_EXPORTER_OTLP_PROTOCOL=grpc: spans and metrics reach a real gRPC receiver."""
    cfg = config(
        upstream.url,
        tmp_path,
        budgets=[{"scope": "team", "match": "search", "period": "month", "limit_usd": 1}],
    )
    with GrpcReceiver() as receiver:
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_SERVICE_NAME": "spendgate-grpc",
            "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=test",
            "OTEL_METRIC_EXPORT_INTERVAL": "200",
        }
        with serving(cfg, tmp_path, env) as served:
            with openai.OpenAI(base_url=served.base_url + "/v1", api_key=KEY, max_retries=0) as c:
                list(c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
            assert wait_for(lambda: exported_metrics(receiver.metrics).get("spendgate.cost"))
    (span,) = exported_spans(receiver.traces)
    a = attrs(span.attributes)
    assert span.name == "chat gpt-4o-mini" and span.kind == span.SPAN_KIND_CLIENT
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.request.stream"] is True
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (19, 9)
    assert a["spendgate.team"] == "search" and a["spendgate.budget.outcome"] == "admitted"
    assert Decimal(a["spendgate.cost_usd"]) > 0 and a["gen_ai.response.time_to_first_chunk"] > 0
    assert resource(receiver.traces)["service.name"] == "spendgate-grpc"
    assert resource(receiver.metrics)["deployment.environment.name"] == "test"
    metrics = exported_metrics(receiver.metrics)
    (cost,) = {
        tuple(sorted(attrs(p.attributes).items()))
        for m in metrics["spendgate.cost"]
        for p in m.sum.data_points
    }
    assert dict(cost) == {
        "spendgate.team": "search",
        "gen_ai.request.model": "gpt-4o-mini",
        "spendgate.provider": "openai",
    }
    budget = [
        attrs(p.attributes)
        for m in metrics["spendgate.budget.utilization"]
        for p in m.gauge.data_points
    ]
    assert budget and all(b["spendgate.budget.policy"] == "team:search:month" for b in budget)
    (last,) = metrics["spendgate.budget.utilization"][-1].gauge.data_points
    assert last.as_double == float(Decimal(a["spendgate.cost_usd"]))  # of a $1 budget
    tokens = {
        attrs(p.attributes)["gen_ai.token.type"]
        for m in metrics["gen_ai.client.token.usage"]
        for p in m.histogram.data_points
    }
    assert tokens == {"input", "output"}


# -- docs/telemetry.md lists exactly what is emitted ------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def doc_table(heading: str) -> list[list[str]]:
    """The rows (cells) of the first table under ``heading`` in docs/telemetry.md."""
    text = DOC.read_text()
    section = text.split(f"\n{heading}\n", 1)[1]
    rows = []
    for line in section.splitlines():
        if rows and not line.startswith("|"):
            break
        if line.startswith("| `"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def names(cell: str) -> set[str]:
    """Backticked attribute or metric names (they contain a dot; values such as `USD` do not)."""
    return {n for n in re.findall(r"`([^`]+)`", cell) if "." in n and " " not in n}


def test_docs_list_every_span_attribute_and_metric_emitted(
    upstream: FakeUpstream, tmp_path: Path, captured: Captured
):
    raw = config(
        upstream.url,
        tmp_path,
        budgets=[{"scope": "team", "match": "search", "period": "month", "limit_usd": 1}],
    )
    with ProxyServer(raw, telemetry=captured.telemetry) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as c:
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            c.completions.create(model="my-finetune", prompt="Say hello", max_tokens=5)  # unpriced
            c.chat.completions.create(  # cache read and write, reasoning tokens
                model="gpt-4o-mini",
                messages=MESSAGES,
                max_tokens=20,
                extra_headers={"x-fake-scenario": "chat-cached"},
            )
            list(
                c.chat.completions.create(
                    model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, stream=True
                )
            )
            with pytest.raises(openai.InternalServerError):
                c.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    max_tokens=20,
                    extra_headers={"x-fake-scenario": "server-error"},
                )
        assert wait_for(lambda: len(captured.spans.get_finished_spans()) == 5)
        prometheus = httpx.get(proxy.base_url + "/metrics").text
    emitted = set().union(*(s.attributes for s in captured.spans.get_finished_spans()))
    documented = set().union(*(names(row[0]) for row in doc_table("## The span")))
    assert documented == emitted, (documented - emitted, emitted - documented)

    metrics = doc_table("## Metrics")
    documented_metrics = {names(row[0]).pop(): names(row[3]) for row in metrics}
    data = captured.reader.get_metrics_data()
    seen: dict[str, set[str]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                keys = seen.setdefault(m.name, set())
                for point in m.data.data_points:
                    keys.update(point.attributes)
    assert set(documented_metrics) == set(seen)
    for name, keys in seen.items():
        assert keys <= documented_metrics[name], (name, keys - documented_metrics[name])
    assert (
        seen["spendgate.budget.utilization"] == documented_metrics["spendgate.budget.utilization"]
    )
    for family in ("gen_ai_client_token_usage_bucket", "spendgate_cost_USD_total"):
        assert f"\n{family}{{" in prometheus, family
    assert "\nspendgate_budget_utilization{" in prometheus
