"""Every upstream client implementation passes the same end-to-end behaviour checks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.proxyserver import ProxyServer, free_port
from tests.fakeupstream.server import FakeUpstream

KEY = "sg-test-key-clients-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello"}]
CLIENTS = ["aiohttp", "httpx", "httpx-aiohttp"]


def config(upstream_url: str, tmp_path: Path, upstream_client: str) -> dict[str, object]:
    return {
        "server": {"upstream_client": upstream_client},
        "storage": {"database_url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream_url,
                "api_key": "sk-upstream",
                "models": ["*"],
                "read_timeout": 1,
            }
        },
        "keys": [{"key": KEY, "team": "t"}],
    }


@pytest.mark.parametrize("upstream_client", CLIENTS)
def test_client_behaviour(upstream: FakeUpstream, tmp_path: Path, upstream_client: str):
    with ProxyServer(config(upstream.url, tmp_path, upstream_client)) as proxy:
        with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as c:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=MESSAGES
            )
            assert raw.headers["x-spendgate-cost-usd"] == "0.00000885"
            chunks = list(
                c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            )
            assert chunks and all(ch.usage is None for ch in chunks)
            with pytest.raises(openai.RateLimitError):
                c.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    extra_headers={"x-fake-scenario": "rate-limited"},
                )
            with pytest.raises(openai.InternalServerError) as info:
                c.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    extra_headers={"x-fake-scenario": "hang"},
                )
            assert info.value.status_code == 504
            with pytest.raises(openai.APIError):
                list(
                    c.chat.completions.create(
                        model="gpt-4o-mini",
                        messages=MESSAGES,
                        stream=True,
                        extra_headers={"x-fake-scenario": "chat-stream-cut"},
                    )
                )
        with httpx.Client() as http:  # hang up mid-stream
            with http.stream(
                "POST",
                proxy.base_url + "/v1/chat/completions",
                json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
                headers={"authorization": f"Bearer {KEY}", "x-fake-scenario": "chat-stream-slow"},
            ) as resp:
                chunks_iter = resp.iter_raw()
                next(chunks_iter)
        slow = upstream.requests[-1]
        assert slow.done.wait(5) and slow.outcome == "client-closed"
        rows = proxy.wait_rows(6)
    outcomes = sorted(r.outcome for r in rows)
    assert outcomes == [
        "client_cancelled",
        "ok",
        "ok",
        "timeout",
        "upstream_error",
        "upstream_error",
    ]
    ok = [r for r in rows if r.outcome == "ok"]
    assert sorted(r.cost_usd for r in ok) == [Decimal("0.00000825"), Decimal("0.00000885")]


@pytest.mark.parametrize("upstream_client", CLIENTS)
def test_client_connect_failure_is_502(tmp_path: Path, upstream_client: str):
    dead = f"http://127.0.0.1:{free_port()}"
    with ProxyServer(config(dead, tmp_path, upstream_client)) as proxy:
        r = httpx.post(
            proxy.base_url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES},
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 502 and r.json()["error"]["code"] == "upstream_connect_error"
