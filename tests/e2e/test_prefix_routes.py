"""End to end: ``/{provider}/...`` routes, for any OpenAI-compatible server (and the others).

``POST /groq/v1/chat/completions`` goes to the provider named ``groq`` whatever the model,
metered, budgeted and recorded as any call is, with ``provider = groq`` in the ledger.
Prices (USD per 1M): gpt-4o-mini input 0.15, output 0.6; text-embedding-3-small input 0.02.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.server import FakeUpstream

KEY = "sg-test-key-prefix-0123456789"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


def config(up: str, tmp_path: Path, **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "providers": {
            "openai": {"kind": "openai", "base_url": up, "api_key": "sk-openai", "models": ["*"]},
            # OpenRouter-like: a path in the base URL, a key, extra headers
            "groq": {
                "base_url": up + "/api",
                "api_key": "gsk-upstream-groq",
                "models": ["llama-*"],
                "headers": {"HTTP-Referer": "https://spendgate.example", "X-Title": "spendgate"},
            },
            "vllm": {"base_url": up},  # self-hosted: no key, routed by prefix only
            "claude-eu": {"kind": "anthropic", "base_url": up, "api_key": "sk-ant-eu"},
            "mock": {"kind": "mock", "models": ["mock-*"]},
        },
        "keys": [{"key": KEY, "team": "prefix"}],
    }
    raw.update(extra)
    return raw


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[ProxyServer]:
    with ProxyServer(config(upstream.url, tmp_path)) as server:
        yield server


def client(proxy: ProxyServer, provider: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proxy.base_url}/{provider}/v1", api_key=KEY, max_retries=0)


def test_chat_goes_to_the_named_provider_whatever_the_model(
    proxy: ProxyServer, upstream: FakeUpstream
):
    # gpt-4o-mini routes to openai by name; under /groq/ it goes to groq
    with client(proxy, "groq") as c:
        raw = c.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    # 19 x 0.15 + 10 x 0.6 = 2.85 + 6 = 8.85 per 1M
    assert raw.headers["x-spendgate-cost-usd"] == "0.00000885"
    (req,) = upstream.requests
    assert req.path == "/api/v1/chat/completions"  # the base URL's path kept, our prefix gone
    assert req.headers["authorization"] == "Bearer gsk-upstream-groq"
    assert req.headers["http-referer"] == "https://spendgate.example"
    assert req.headers["x-title"] == "spendgate"
    assert KEY not in json.dumps(req.headers)
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.provider, row.endpoint, row.team) == ("groq", "chat.completions", "prefix")
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (19, 10, Decimal("0.00000885"))


def test_stream_is_metered(proxy: ProxyServer, upstream: FakeUpstream):
    with client(proxy, "groq") as c:
        chunks = list(
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
    assert all(ch.usage is None for ch in chunks)  # the usage chunk it did not ask for is kept
    assert upstream.requests[0].json["stream_options"] == {"include_usage": True}
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.stream, row.usage_source) == ("groq", True, "provider")
    assert (row.input_tokens, row.output_tokens) == (19, 9)


def test_every_openai_endpoint(proxy: ProxyServer, upstream: FakeUpstream):
    with client(proxy, "groq") as c:
        c.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say hello")
        c.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
        c.responses.create(model="gpt-5", input="Say hello")
        models = [m.id for m in c.models.list()]
    assert "gpt-4o-mini" in models  # the provider's own list, passed through
    assert [r.path for r in upstream.requests] == [
        "/api/v1/completions",
        "/api/v1/embeddings",
        "/api/v1/responses",
        "/api/v1/models",
    ]
    assert all(r.headers["authorization"] == "Bearer gsk-upstream-groq" for r in upstream.requests)
    rows = proxy.wait_rows(4)
    assert [(r.provider, r.endpoint) for r in rows] == [
        ("groq", "completions"),
        ("groq", "embeddings"),
        ("groq", "responses"),
        ("groq", "models"),
    ]
    completion, embedding, response, listing = rows
    assert (completion.input_tokens, completion.output_tokens) == (5, 7)
    assert embedding.cost_usd == Decimal("0.00000016")  # 8 x 0.02 per 1M
    assert (response.output_tokens, response.usage_source) == (1500, "provider")
    assert (listing.cost_usd, listing.input_tokens, listing.status_code) == (Decimal(0), None, 200)


def test_self_hosted_server_needs_no_key(proxy: ProxyServer, upstream: FakeUpstream):
    with client(proxy, "vllm") as c:
        c.chat.completions.create(model="meta-llama/Llama-3.1-8B-Instruct", messages=MESSAGES)
    (req,) = upstream.requests
    assert req.path == "/v1/chat/completions"
    assert "authorization" not in req.headers  # neither a provider key nor the virtual key
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.model_requested, row.outcome) == (
        "vllm",
        "meta-llama/Llama-3.1-8B-Instruct",
        "ok",
    )


def test_anthropic_provider_under_its_name(proxy: ProxyServer, upstream: FakeUpstream):
    with anthropic.Anthropic(
        base_url=proxy.base_url + "/claude-eu", api_key=KEY, max_retries=0
    ) as claude:
        msg = claude.messages.create(model="claude-sonnet-4-6", max_tokens=64, messages=MESSAGES)
    assert msg.usage.input_tokens == 25
    (req,) = upstream.requests
    assert (req.path, req.headers["x-api-key"]) == ("/v1/messages", "sk-ant-eu")
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.endpoint, row.cost_usd) == (
        "claude-eu",
        "messages",
        Decimal("0.000255"),  # 25 x 3 + 12 x 15 per 1M
    )


def test_mock_under_its_name(proxy: ProxyServer, upstream: FakeUpstream):
    with client(proxy, "mock") as c:
        reply = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.output_tokens) == ("mock", reply.usage.completion_tokens)
    assert upstream.requests == []


def test_unknown_provider_or_path_is_404(proxy: ProxyServer, upstream: FakeUpstream):
    with httpx.Client(base_url=proxy.base_url, headers={"authorization": f"Bearer {KEY}"}) as h:
        for path in ("/nope/v1/chat/completions", "/groq/v1/audio/speech"):
            resp = h.post(path, json={"model": "gpt-4o-mini", "messages": MESSAGES})
            assert resp.status_code == 404, path
            assert resp.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_budgets_hold_on_prefix_routes(upstream: FakeUpstream, tmp_path: Path):
    budget = {"scope": "team", "match": "prefix", "period": "day", "limit_usd": 0.0001}
    raw = config(upstream.url, tmp_path, budgets=[{**budget, "mode": "hard"}])
    with ProxyServer(raw) as proxy, client(proxy, "groq") as c:
        with pytest.raises(openai.RateLimitError) as info:
            # the worst case (16384 output tokens of gpt-4o-mini) is over the limit
            c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert info.value.code == "budget_exceeded"
        (row,) = proxy.wait_rows(1)
    assert (row.provider, row.outcome, row.cost_usd) == ("groq", "budget_blocked", Decimal(0))
    assert upstream.requests == []
