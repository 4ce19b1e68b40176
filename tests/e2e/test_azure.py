"""End to end: the openai SDK's ``AzureOpenAI`` client -> spendgate -> a fake Azure OpenAI.

The fake upstream speaks Azure's paths and refuses (401) a call without ``api-key`` or with a
bearer token, and (404) one without ``api-version``, as Azure does (tests/fixtures/azure).
Prices (USD per 1M): gpt-4o input 2.5, output 10; text-embedding-3-small input 0.02;
gpt-5 input 1.25, cached 0.125, output 10.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.server import FakeUpstream

KEY = "sg-test-key-azure-0123456789"
UPSTREAM_KEY = "azure-upstream-secret-key-42"
API_VERSION = "2024-10-21"
MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]


def config(up: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "providers": {
            "azure": {
                "kind": "azure",
                "base_url": up,
                "api_key": UPSTREAM_KEY,
                "deployments": {"chat-prod": "gpt-4o", "embed": "text-embedding-3-small"},
            },
            # Azure's GA v1 API: /openai/v1/ paths, the deployment in the body's model
            "azure-v1": {
                "kind": "azure",
                "base_url": up + "/openai",  # taken as the resource's endpoint
                "api_key": UPSTREAM_KEY,
                "api_version": "v1",
                "deployments": {"chat-v1": "gpt-4o"},
                "models": [],
            },
            "mock": {"kind": "mock", "models": ["mock-*"]},
        },
        "keys": [{"key": KEY, "team": "azure-team"}],
    }


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[ProxyServer]:
    with ProxyServer(config(upstream.url, tmp_path)) as server:
        yield server


@pytest.fixture
def azure(proxy: ProxyServer) -> Iterator[openai.AzureOpenAI]:
    c = openai.AzureOpenAI(
        azure_endpoint=proxy.base_url, api_key=KEY, api_version=API_VERSION, max_retries=0
    )
    yield c
    c.close()


def _no_secrets(*texts: str) -> None:
    for text in texts:
        assert KEY not in text and UPSTREAM_KEY not in text


def test_chat(proxy: ProxyServer, upstream: FakeUpstream, azure: openai.AzureOpenAI, capfd):
    raw = azure.chat.completions.with_raw_response.create(model="chat-prod", messages=MESSAGES)
    reply = raw.parse()
    assert reply.choices[0].message.content == "Hello! How can I assist you today?"
    # 21 x 2.5 + 9 x 10 = 142.5 per 1M
    assert raw.headers["x-spendgate-cost-usd"] == "0.0001425"
    (req,) = upstream.requests
    assert req.path == "/openai/deployments/chat-prod/chat/completions"
    assert req.params == {"api-version": API_VERSION}  # the client's, passed through
    assert req.headers["api-key"] == UPSTREAM_KEY and "authorization" not in req.headers
    assert KEY not in json.dumps(req.headers)
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.provider, row.endpoint, row.team) == ("azure", "chat.completions", "azure-team")
    # priced as the model the deployment serves
    assert (row.model_requested, row.model_served) == ("gpt-4o", "gpt-4o-2024-11-20")
    assert (row.input_tokens, row.output_tokens, row.usage_source) == (21, 9, "provider")
    assert row.cost_usd == Decimal("0.0001425")
    # neither key reaches the client, nor any log line
    _no_secrets(json.dumps(dict(raw.headers)), raw.text, *capfd.readouterr())


def test_chat_stream(proxy: ProxyServer, upstream: FakeUpstream, azure: openai.AzureOpenAI):
    chunks = list(azure.chat.completions.create(model="chat-prod", messages=MESSAGES, stream=True))
    # Azure's prompt_filter_results chunk reaches the client; the usage chunk it did not
    # ask for does not
    assert chunks[0].choices == [] and all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! How can I help?"
    (req,) = upstream.requests
    assert req.json["stream_options"] == {"include_usage": True}
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.stream, row.outcome, row.usage_source) == (
        "azure",
        True,
        "ok",
        "provider",
    )
    assert row.model_served == "gpt-4o-2024-11-20"  # not the first event's empty "model"
    # 14 x 2.5 + 7 x 10 = 105 per 1M
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (14, 7, Decimal("0.000105"))


def test_embeddings(proxy: ProxyServer, upstream: FakeUpstream, azure: openai.AzureOpenAI):
    emb = azure.embeddings.create(model="embed", input=["hello", "world"])
    assert len(emb.data) == 2
    (req,) = upstream.requests
    assert req.path == "/openai/deployments/embed/embeddings"
    (row,) = proxy.wait_rows(1)
    assert (row.endpoint, row.model_requested, row.input_tokens) == (
        "embeddings",
        "text-embedding-3-small",
        8,
    )
    assert row.cost_usd == Decimal("0.00000016")  # 8 x 0.02 per 1M


def test_responses(proxy: ProxyServer, upstream: FakeUpstream, azure: openai.AzureOpenAI):
    response = azure.responses.create(model="chat-prod", input="Say hello")
    assert response.usage is not None and response.usage.output_tokens == 1500
    (req,) = upstream.requests
    assert (req.path, req.params, req.json["model"]) == (
        "/openai/responses",
        {"api-version": API_VERSION},
        "chat-prod",
    )
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.endpoint, row.model_requested) == ("azure", "responses", "gpt-4o")
    # priced as the model that answered (the fixture's gpt-5 snapshot):
    # (3438 - 1024) x 1.25 + 1024 x 0.125 + 1500 x 10 = 18145.5 per 1M
    assert row.cost_usd == Decimal("0.0181455")


def test_openai_sdk_routed_by_model_name(proxy: ProxyServer, upstream: FakeUpstream):
    """Plain OpenAI clients on /v1 reach Azure by model name: gpt-4o -> deployment chat-prod."""
    with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0) as c:
        c.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    (req,) = upstream.requests
    assert req.path == "/openai/deployments/chat-prod/chat/completions"
    assert req.params == {"api-version": API_VERSION}  # the provider's
    assert req.headers["api-key"] == UPSTREAM_KEY and "authorization" not in req.headers
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.model_requested, row.cost_usd) == (
        "azure",
        "gpt-4o",
        Decimal("0.0001425"),
    )


@pytest.mark.parametrize("model", ["chat-v1", "gpt-4o"])
def test_v1_api_through_the_provider_prefix(proxy: ProxyServer, upstream: FakeUpstream, model: str):
    """``api_version: v1``: Azure's /openai/v1/ path, no api-version, the deployment as the
    body's model (named by the client, or found from the model it serves)."""
    base = proxy.base_url + "/azure-v1/v1"
    with openai.OpenAI(base_url=base, api_key=KEY, max_retries=0) as c:
        c.chat.completions.create(model=model, messages=MESSAGES)
    (req,) = upstream.requests
    assert (req.path, req.query, req.json["model"]) == (
        "/openai/v1/chat/completions",
        "",
        "chat-v1",
    )
    assert req.headers["api-key"] == UPSTREAM_KEY
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.model_requested, row.cost_usd) == (
        "azure-v1",
        "gpt-4o",
        Decimal("0.0001425"),
    )


def test_content_filter_error_passes_through(
    proxy: ProxyServer, upstream: FakeUpstream, azure: openai.AzureOpenAI
):
    upstream.enqueue("azure-content-filter")
    with pytest.raises(openai.BadRequestError) as info:
        azure.chat.completions.create(model="chat-prod", messages=MESSAGES)
    assert info.value.code == "content_filter"
    (row,) = proxy.wait_rows(1)
    assert (row.status_code, row.outcome, row.cost_usd) == (400, "upstream_error", Decimal(0))
    _no_secrets(info.value.response.text, json.dumps(dict(info.value.response.headers)))


def test_mock_answers_azure_clients(proxy: ProxyServer, upstream: FakeUpstream):
    with openai.AzureOpenAI(
        azure_endpoint=proxy.base_url, api_key=KEY, api_version=API_VERSION, max_retries=0
    ) as c:
        reply = c.chat.completions.create(model="mock-gpt-4o-mini", messages=MESSAGES)
        streamed = list(
            c.chat.completions.create(model="mock-gpt-4o-mini", messages=MESSAGES, stream=True)
        )
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    assert any(ch.choices and ch.choices[0].delta.content for ch in streamed)
    rows = proxy.wait_rows(2)
    assert [(r.provider, r.model_requested) for r in rows] == [("mock", "mock-gpt-4o-mini")] * 2
    assert all(r.cost_usd and r.cost_usd > 0 for r in rows)
    assert upstream.requests == []
