"""The ``spendgate`` command as a user runs it: a real process, embedded defaults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import openai

from tests.e2e.proxyserver import free_port, read_ledger

SPENDGATE = [sys.executable, "-m", "proxy"]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SPENDGATE, *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_workers_without_redis_refuse_to_start(tmp_path: Path):
    result = run(["serve", "--workers", "2"], tmp_path)
    assert result.returncode == 2
    assert "needs storage.redis_url" in result.stderr and "budgets" in result.stderr


def test_bad_config_fails_at_start_naming_the_key(tmp_path: Path):
    (tmp_path / "spendgate.yaml").write_text("server:\n  prot: 8787\n")
    result = run(["serve"], tmp_path)
    assert result.returncode == 2
    assert "server.prot: unknown key" in result.stderr


def test_serve_on_embedded_defaults_meters_a_mock_call(tmp_path: Path):
    """The README's first run: `spendgate serve`, an SDK call to the mock, one ledger row."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    proc = subprocess.Popen(
        [*SPENDGATE, "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.1)
        with openai.OpenAI(base_url=base + "/v1", api_key="anything", max_retries=0) as client:
            raw = client.chat.completions.with_raw_response.create(
                model="mock-gpt-4o-mini", messages=[{"role": "user", "content": "Hello!"}]
            )
        completion = raw.parse()
        assert completion.choices[0].message.content
        cost = Decimal(raw.headers["x-spendgate-cost-usd"])
    finally:
        proc.terminate()
        output, _ = proc.communicate(timeout=30)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output
    assert "team 'default'" in output  # the open-access warning on a loopback bind
    (row,) = read_ledger(f"sqlite:///{tmp_path / 'spendgate.db'}")
    assert row.model_requested == "mock-gpt-4o-mini" and row.outcome == "ok"
    assert completion.usage is not None
    assert (row.input_tokens, row.output_tokens) == (
        completion.usage.prompt_tokens,
        completion.usage.completion_tokens,
    )
    assert row.cost_usd == cost > 0 and row.price_version
