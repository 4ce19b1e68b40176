"""Budgets and rate limits, end to end: the SDK, real servers, a real Redis, the ledger."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.e2e.proxyserver import ProxyServer, free_port, read_ledger
from tests.fakeupstream.server import FakeUpstream

KEY = "sg-test-key-budget-0123456789"
MESSAGES = [{"role": "user", "content": "Think hard"}]


def config(upstream_url: str, db: Path, **extra: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "storage": {"database_url": f"sqlite:///{db}"},
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream_url,
                "api_key": "sk-up",
                "models": ["*"],
            }
        },
        "keys": [{"key": KEY, "team": "search"}],
    }
    raw.update(extra)
    return raw


def test_hard_budget_blocks_with_budget_exceeded_and_no_sdk_retry(
    upstream: FakeUpstream, tmp_path: Path
):
    # o3 fixture: 37 x 2/M + 1186 x 8/M = $0.009562 per call. A $0.02 budget fits two calls'
    # worst case (max_tokens 1200: ~$0.0102 each), then blocks.
    raw = config(
        upstream.url,
        tmp_path / "l.db",
        budgets=[{"scope": "team", "match": "search", "period": "day", "limit_usd": "0.02"}],
    )
    with ProxyServer(raw) as proxy:
        client = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY)  # default retries
        try:
            first = client.chat.completions.with_raw_response.create(
                model="o3",
                messages=MESSAGES,
                max_tokens=1200,
                extra_headers={"x-fake-scenario": "chat-reasoning"},
            )
            # $0.02 - $0.009562 = $0.010438 left after the first call
            assert first.headers["x-spendgate-budget-remaining-usd"] == "0.010438"
            client.chat.completions.create(
                model="o3",
                messages=MESSAGES,
                max_tokens=1200,
                extra_headers={"x-fake-scenario": "chat-reasoning"},
            )
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(
                    model="o3",
                    messages=MESSAGES,
                    max_tokens=1200,
                    extra_headers={"x-fake-scenario": "chat-reasoning"},
                )
        finally:
            client.close()
        response = info.value.response
        assert response.headers["x-should-retry"] == "false"
        error = response.json()["error"]
        assert error["type"] == error["code"] == "budget_exceeded"
        assert (
            "team" in error["message"]
            and "search" in error["message"]
            and "0.02" in error["message"]
        )
        rows = proxy.wait_rows(3)
    assert len(upstream.requests) == 2  # the blocked call never reached the provider...
    outcomes = [r.outcome for r in rows]
    assert outcomes.count("budget_blocked") == 1  # ...and the SDK did not retry it
    blocked = next(r for r in rows if r.outcome == "budget_blocked")
    assert (blocked.status_code, blocked.cost_usd, blocked.error_type) == (
        429,
        Decimal(0),
        "budget_exceeded",
    )


def test_rate_limit_gives_retry_after(upstream: FakeUpstream, tmp_path: Path):
    raw = config(
        upstream.url,
        tmp_path / "l.db",
        rate_limits=[{"scope": "key", "rpm": 2}],
    )
    with ProxyServer(raw) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as client:
            for _ in range(2):
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            with pytest.raises(openai.RateLimitError) as info:
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        response = info.value.response
        assert float(response.headers["retry-after"]) > 0
        assert response.json()["error"]["code"] == "rate_limit_exceeded"
        rows = proxy.wait_rows(3)
    assert [r.outcome for r in rows].count("rate_limited") == 1


def _spawn(config_path: Path, port: int, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", str(config_path), "--port", str(port)],
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_healthy(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(
                "spendgate did not start: " + (proc.stdout.read() if proc.stdout else "")
            )
        time.sleep(0.1)


@pytest.mark.redis
def test_race_two_processes_sharing_redis_never_overrun(
    upstream: FakeUpstream, redis_url: str, tmp_path: Path
):
    """200 concurrent calls through two `spendgate serve` processes against a $0.50 budget.

    Each call reserves its worst case (max_tokens 1200) and really costs $0.009562 (the o3
    fixture), so at most 52 calls fit. The sum of ledger costs must not exceed the limit, and
    every other call must be refused with budget_exceeded.
    """
    db = tmp_path / "ledger.db"
    team = f"race-{uuid.uuid4().hex[:8]}"  # a fresh counter in the shared Redis
    raw = config(
        upstream.url,
        db,
        budgets=[{"scope": "team", "match": team, "period": "month", "limit_usd": "0.50"}],
        keys=[{"key": KEY, "team": team}],
        # closed: a Redis call that times out on a starved CPU refuses (503) instead of
        # admitting on local counts, which is what fail_open is documented to allow
        budget_settings={"fail_mode": "closed"},
    )
    raw["storage"] = {"database_url": f"sqlite:///{db}", "redis_url": redis_url}
    cfg = tmp_path / "spendgate.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    ports = [free_port(), free_port()]
    procs = [_spawn(cfg, port, tmp_path) for port in ports]
    try:
        for port, proc in zip(ports, procs, strict=True):
            _wait_healthy(port, proc)

        async def fire() -> list[int]:
            body = {"model": "o3", "messages": MESSAGES, "max_tokens": 1200}
            headers = {"authorization": f"Bearer {KEY}", "x-fake-scenario": "chat-reasoning"}
            limits = httpx.Limits(max_connections=200)
            async with httpx.AsyncClient(timeout=60, limits=limits) as http:
                calls = [
                    http.post(
                        f"http://127.0.0.1:{ports[i % 2]}/v1/chat/completions",
                        json=body,
                        headers=headers,
                    )
                    for i in range(200)
                ]
                responses = await asyncio.gather(*calls)
            for r in responses:
                if r.status_code == 429:
                    assert r.json()["error"]["code"] == "budget_exceeded"
                elif r.status_code == 503:
                    assert r.json()["error"]["code"] == "budget_store_unavailable"
            return [r.status_code for r in responses]

        statuses = asyncio.run(fire())
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.communicate(timeout=30)
    assert set(statuses) <= {200, 429, 503}
    ok = statuses.count(200)
    refused = len(statuses) - ok
    rows = read_ledger(f"sqlite:///{db}")
    assert len(rows) == 200  # one row per call, blocked ones included
    spent = sum((r.cost_usd or Decimal(0) for r in rows), Decimal(0))
    assert spent <= Decimal("0.50"), spent
    assert spent == ok * Decimal("0.009562")
    blocked = sum(1 for r in rows if r.outcome in ("budget_blocked", "unavailable"))
    assert blocked == refused
    assert ok <= 52  # worst-case reservations may cost some admissions, never the limit
    assert statuses.count(429) > 0
    assert len(upstream.requests) == ok


def _o3(client: openai.OpenAI):
    return client.chat.completions.with_raw_response.create(
        model="o3",
        messages=MESSAGES,
        max_tokens=1200,
        extra_headers={"x-fake-scenario": "chat-reasoning"},
    )


@pytest.mark.redis
def test_counters_lost_in_redis_are_rebuilt_from_the_ledger(
    upstream: FakeUpstream, redis_server, tmp_path: Path
):
    import redis

    raw = config(
        upstream.url,
        tmp_path / "l.db",
        budgets=[{"scope": "team", "match": "search", "period": "day", "limit_usd": "0.02"}],
    )
    raw["storage"] = {
        "database_url": f"sqlite:///{tmp_path / 'l.db'}",
        "redis_url": redis_server.url,
    }
    with ProxyServer(raw) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as client:
            assert _o3(client).headers["x-spendgate-budget-remaining-usd"] == "0.010438"
            proxy.wait_rows(1)
            with redis.Redis.from_url(redis_server.url) as r:
                r.flushall()  # Redis loses everything (restart without persistence, eviction)
            # rebuilt from the ledger: $0.02 - 2 x $0.009562
            assert _o3(client).headers["x-spendgate-budget-remaining-usd"] == "0.000876"
            with pytest.raises(openai.RateLimitError):
                _o3(client)
        rows = proxy.wait_rows(3)
    assert [r.outcome for r in rows].count("budget_blocked") == 1


@pytest.mark.redis
@pytest.mark.parametrize("fail_mode", ["open", "closed"])
def test_redis_down_fail_open_or_closed(
    upstream: FakeUpstream, redis_server, tmp_path: Path, fail_mode: str
):
    raw = config(
        upstream.url,
        tmp_path / "l.db",
        budgets=[{"scope": "team", "match": "search", "period": "day", "limit_usd": "10"}],
        budget_settings={"fail_mode": fail_mode},
    )
    raw["storage"] = {
        "database_url": f"sqlite:///{tmp_path / 'l.db'}",
        "redis_url": redis_server.url,
    }
    with ProxyServer(raw) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as client:
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            redis_server.stop()
            if fail_mode == "open":
                client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
            else:
                with pytest.raises(openai.InternalServerError) as info:
                    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
                assert info.value.status_code == 503
                assert info.value.response.json()["error"]["code"] == "budget_store_unavailable"
            redis_server.start()
            time.sleep(1.1)  # the store is retried at most once a second while it is down
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        rows = proxy.wait_rows(3)
    expected = ["ok", "ok", "ok"] if fail_mode == "open" else ["ok", "unavailable", "ok"]
    assert [r.outcome for r in rows] == expected  # no row lost either way
