"""SIGTERM, as Kubernetes sends it to a pod being rolled: drain, finish the streams, record all.

A real ``spendgate serve`` process on the mock provider, slowed down (``chunk_delay_ms``) so
streams are still running when the signal comes.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy.config import parse_config
from proxy.errors import ConfigError
from tests.deploy.serve import ServeProcess, stream_chat
from tests.e2e.proxyserver import read_ledger

CHAT = {
    "model": "mock-gpt-4o-mini",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
}


def _config(tmp_path: Path, *, chunk_delay_ms: float, **shutdown: Any) -> dict[str, Any]:
    return {
        "server": {"shutdown": shutdown},
        "storage": {
            "database_url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "spill_path": str(tmp_path / "spill.jsonl"),
            "ledger_flush_interval": 0.01,
        },
        "providers": {
            "mock": {"kind": "mock", "models": ["mock-*"], "chunk_delay_ms": chunk_delay_ms}
        },
    }


def _open_streams(
    base_url: str, n: int, max_tokens: int
) -> list[tuple[threading.Thread, dict[str, Any]]]:
    streams = []
    for _ in range(n):
        started, result = threading.Event(), {}
        thread = threading.Thread(target=stream_chat, args=(base_url, max_tokens, started, result))
        thread.start()
        assert started.wait(20), "stream did not start"
        streams.append((thread, result))
    return streams


def _readyz_until_503(base_url: str, timeout: float = 5.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        resp = httpx.get(base_url + "/readyz")
        if resp.status_code == 503:
            assert resp.json()["status"] == "draining"
            return time.monotonic()
        time.sleep(0.02)
    raise AssertionError("/readyz never turned 503 after SIGTERM")


def test_sigterm_drains_then_lets_streams_finish_and_records_every_call(tmp_path: Path):
    # 100 ms between chunks; max_tokens 25 gives ~28 chunks, so each stream runs ~2.7 s:
    # longer than the 1 s drain, so they are still running when the server stops accepting.
    config = _config(tmp_path, chunk_delay_ms=100, drain_seconds=1.0, grace_seconds=20)
    with ServeProcess(tmp_path, config) as sg:
        assert httpx.get(sg.base_url + "/readyz").status_code == 200
        streams = _open_streams(sg.base_url, 4, max_tokens=25)
        signalled = time.monotonic()
        sg.signal(signal.SIGTERM)
        not_ready_at = _readyz_until_503(sg.base_url)
        assert not_ready_at - signalled < 0.5  # at once, not after the drain

        # During the drain the replica still serves (new_requests: serve), and asks the
        # client to reconnect elsewhere.
        late = httpx.post(sg.base_url + "/v1/chat/completions", json=CHAT)
        assert late.status_code == 200 and late.json()["choices"]
        assert late.headers["connection"] == "close"

        for thread, _ in streams:
            thread.join(30)
        assert sg.wait(timeout=30) in (0, -signal.SIGTERM)
        output = sg.output

    for _, result in streams:
        assert "error" not in result, result.get("error")
        assert result["status"] == 200 and result["events"][-1] == "[DONE]"
        assert result["ended_at"] > not_ready_at  # readiness went first, streams ended after
        chunks = [json.loads(e) for e in result["events"][:-1]]
        assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert "draining for 1.0s" in output and "Application shutdown complete" in output
    assert "timeout graceful shutdown exceeded" not in output

    rows = read_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    expected = {r["request_id"] for _, r in streams} | {late.headers["x-spendgate-request-id"]}
    assert sorted(r.request_id for r in rows) == sorted(expected)  # each exactly once
    assert all(r.outcome == "ok" and r.status_code == 200 for r in rows)
    streamed = [r for r in rows if r.stream]
    assert len(streamed) == 4 and all(r.output_tokens == 25 for r in streamed)
    assert not (tmp_path / "spill.jsonl").exists()  # the writer flushed; nothing spilled


def test_refuse_mode_turns_new_calls_away_while_streams_finish(tmp_path: Path):
    config = _config(
        tmp_path, chunk_delay_ms=100, drain_seconds=1.0, grace_seconds=20, new_requests="refuse"
    )
    with ServeProcess(tmp_path, config) as sg:
        ((thread, result),) = _open_streams(sg.base_url, 1, max_tokens=25)
        sg.signal(signal.SIGTERM)
        _readyz_until_503(sg.base_url)

        refused = httpx.post(sg.base_url + "/v1/chat/completions", json=CHAT)
        assert refused.status_code == 503
        assert refused.headers["connection"] == "close" and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["code"] == "shutting_down"  # OpenAI's error shape
        anthropic = httpx.post(
            sg.base_url + "/anthropic/v1/messages",
            json={"model": "mock-claude", "max_tokens": 5, "messages": []},
        )
        assert anthropic.status_code == 503
        assert anthropic.json()["type"] == "error"  # Anthropic's error shape
        assert anthropic.json()["error"]["type"] == "api_error"
        assert httpx.get(sg.base_url + "/healthz").status_code == 200  # probes still answer

        thread.join(30)
        assert sg.wait(timeout=30) in (0, -signal.SIGTERM)

    assert result["status"] == 200 and result["events"][-1] == "[DONE]"
    rows = read_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    # Refused calls never reached a provider and have no row; the stream has exactly one.
    assert [r.request_id for r in rows] == [result["request_id"]]


def test_streams_past_the_grace_period_are_cut_and_still_recorded(tmp_path: Path):
    # 300 ms a chunk for ~60 chunks: ~18 s, far past the 1 s grace period.
    config = _config(tmp_path, chunk_delay_ms=300, drain_seconds=0, grace_seconds=1)
    with ServeProcess(tmp_path, config) as sg:
        ((thread, result),) = _open_streams(sg.base_url, 1, max_tokens=60)
        signalled = time.monotonic()
        sg.signal(signal.SIGTERM)
        thread.join(30)
        assert sg.wait(timeout=30) in (0, -signal.SIGTERM)
        took = time.monotonic() - signalled
        output = sg.output

    assert took < 8, output  # the 1 s grace and the exit, not the stream's 18 s
    assert "[DONE]" not in result["events"]  # cut short
    assert "timeout graceful shutdown exceeded" in output
    (row,) = read_ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    assert row.request_id == result["request_id"] and row.stream
    assert (row.outcome, row.error_type) == ("unavailable", "server_shutdown")
    assert row.usage_source == "estimated"
    assert row.output_tokens is not None and 0 < row.output_tokens < 60


def test_shutdown_settings_parse_and_typos_fail():
    config = parse_config(
        {"server": {"shutdown": {"drain_seconds": 5, "new_requests": "refuse"}}}, env={}
    )
    assert config.server.shutdown.total_seconds == 5 + 30 + 10  # drain + default grace, flush
    assert parse_config({}, env={}).server.shutdown.drain_seconds == 0  # outside Kubernetes
    with pytest.raises(ConfigError, match=r"server\.shutdown\.drain: unknown key"):
        parse_config({"server": {"shutdown": {"drain": 5}}}, env={})
    with pytest.raises(ConfigError, match=r"server\.shutdown\.new_requests: must be one of"):
        parse_config({"server": {"shutdown": {"new_requests": "drop"}}}, env={})
