"""OTLP exporter selection from the standard variables: protocol per signal, clear errors,
real receivers (gRPC for one signal, HTTP for the other) in one process."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from budgets import Scope
from pricing.usage import Usage
from proxy.auth import Identity, KeyRing
from proxy.cli import main
from proxy.config import parse_config
from proxy.errors import ConfigError
from proxy.metering import CallRecord
from proxy.telemetry import Telemetry, known_budget_values, otlp_protocol
from tests.e2e.test_telemetry import (
    GrpcReceiver,
    _Receiver,
    exported_metrics,
    exported_spans,
    http_receiver,
)

OTEL_VARS = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
    "OTEL_TRACES_EXPORTER",
    "OTEL_METRICS_EXPORTER",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_VARS:
        monkeypatch.delenv(name, raising=False)


def test_protocol_default_general_and_per_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    assert otlp_protocol("TRACES") == "http/protobuf"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    assert (otlp_protocol("TRACES"), otlp_protocol("METRICS")) == ("grpc", "grpc")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf")
    assert (otlp_protocol("TRACES"), otlp_protocol("METRICS")) == ("grpc", "http/protobuf")


def test_unsupported_protocol_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json")
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL=http/json"):
        Telemetry(prometheus=False, access_log=False)


def test_grpc_without_the_extra_stops_serve_with_a_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    # as if opentelemetry-exporter-otlp-proto-grpc were not installed
    monkeypatch.setitem(sys.modules, "opentelemetry.exporter.otlp.proto.grpc.exporter", None)
    assert main(["serve", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "OTEL_EXPORTER_OTLP_PROTOCOL=grpc needs the OTLP gRPC exporter" in err
    assert "pip install 'spendgate[grpc]'" in err
    # a signal turned off is not checked
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    Telemetry(prometheus=False, access_log=False).shutdown()


def test_per_signal_protocols_reach_real_receivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Traces over gRPC, metrics over HTTP, chosen only by the standard variables."""
    with GrpcReceiver() as grpc_receiver, http_receiver() as http_endpoint:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")
        monkeypatch.setenv(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"http://127.0.0.1:{grpc_receiver.port}"
        )
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", f"{http_endpoint}/v1/metrics")
        telemetry = Telemetry(prometheus=False, access_log=False)
        rec = CallRecord(
            request_id="r1",
            started_at=datetime.now(UTC),
            identity=Identity(team="search", key_id="k1"),
            provider="openai",
            endpoint="chat.completions",
            model_requested="gpt-4o-mini",
            operation="chat",
            provider_kind="openai",
            latency_ms=12.0,
            reached_provider=True,
        )
        telemetry.finish(rec, Usage(input_tokens=10, output_tokens=5), None, "none")
        telemetry.shutdown()  # flushes both exporters
    (span,) = exported_spans(grpc_receiver.traces)
    assert span.name == "chat gpt-4o-mini"
    assert not grpc_receiver.metrics
    metrics = [ExportMetricsServiceRequest.FromString(b) for b in _Receiver.received["/v1/metrics"]]
    assert "gen_ai.client.token.usage" in exported_metrics(metrics)
    assert "/v1/traces" not in _Receiver.received


def test_budget_refresh_setting() -> None:
    assert parse_config({}).telemetry.budget_refresh_s == 15.0
    assert parse_config({"telemetry": {"budget_refresh_s": 2}}).telemetry.budget_refresh_s == 2.0
    with pytest.raises(ConfigError, match=r"telemetry.budget_refresh_s: must be a number >= 0.1"):
        parse_config({"telemetry": {"budget_refresh_s": 0}})


def test_known_budget_values_come_from_keys_and_teams() -> None:
    config = parse_config(
        {
            "keys": [
                {"key": "sg-aaaaaaaaaaaa", "team": "search", "project": "ranker", "name": "k1"},
                {"key": "sg-bbbbbbbbbbbb", "team": "ads", "tags": {"env": "prod"}, "name": "k2"},
            ],
            "teams": {"finance": {}},
        }
    )
    ring = KeyRing(config.keys, open_access=True)
    ring.set_db_keys({"h": Identity(team="infra", key_id="key_db", project="ops")})
    known = known_budget_values(ring, config.teams)()
    assert known == {
        Scope.TEAM: {"search", "ads", "finance", "infra"},
        Scope.PROJECT: {"ranker", "ops"},
        Scope.KEY: {"k1", "k2", "key_db"},
        Scope.TAG: {"env=prod"},
    }
    assert known_budget_values(KeyRing((), open_access=True))()[Scope.TEAM] == {"default"}
