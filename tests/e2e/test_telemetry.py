"""Spans, metrics, /metrics and the access log, asserted with the OTel SDK's in-memory parts
and a real OTLP/HTTP receiver."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import ClassVar

import httpx
import openai
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

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


def test_otlp_export_with_standard_env_vars_and_access_log(upstream: FakeUpstream, tmp_path: Path):
    """`spendgate serve` with only OTEL_* set exports spans and metrics to a real receiver."""
    _Receiver.received = {}
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = free_port()
    cfg = tmp_path / "spendgate.yaml"
    cfg.write_text(json.dumps(config(upstream.url, tmp_path)))
    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
        "OTEL_SERVICE_NAME": "spendgate-test",
        "OTEL_METRIC_EXPORT_INTERVAL": "200",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", str(cfg), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
        metrics_text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "spendgate_cost" in metrics_text
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        server.shutdown()
        server.server_close()
    traces = [
        ExportTraceServiceRequest.FromString(b) for b in _Receiver.received.get("/v1/traces", [])
    ]
    spans = [
        s for t in traces for rs in t.resource_spans for ss in rs.scope_spans for s in ss.spans
    ]
    assert [s.name for s in spans] == ["chat gpt-4o-mini"]
    service = {
        kv.key: kv.value.string_value
        for t in traces
        for rs in t.resource_spans
        for kv in rs.resource.attributes
    }
    assert service["service.name"] == "spendgate-test"
    metrics = [
        ExportMetricsServiceRequest.FromString(b) for b in _Receiver.received.get("/v1/metrics", [])
    ]
    names = {
        m.name
        for r in metrics
        for rm in r.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert {
        "gen_ai.client.token.usage",
        "spendgate.cost",
        "gen_ai.client.operation.duration",
    } <= names
    # one JSON access-log line for the call, with no secret and no prompt
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    (access,) = [x for x in lines if x.get("request_id") == raw.headers["x-spendgate-request-id"]]
    assert access["cost_usd"] == "0.00000885" and access["team"] == "search"
    assert KEY not in output and "sk-up" not in output and "Say hello" not in output
