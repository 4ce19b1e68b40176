"""End to end: the openai SDK's Responses API -> spendgate ``/v1/responses`` -> fake upstream.

Prices (gpt-5, USD per 1M): input 1.25, cached 0.125, output (reasoning too) 10.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.native import KEY, config
from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.server import FakeUpstream


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[ProxyServer]:
    with ProxyServer(config(upstream.url, tmp_path)) as server:
        yield server


@pytest.fixture
def client(proxy: ProxyServer) -> Iterator[openai.OpenAI]:
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0)
    yield c
    c.close()


def test_create(proxy: ProxyServer, upstream: FakeUpstream, client: openai.OpenAI):
    raw = client.responses.with_raw_response.create(model="gpt-5", input="Say hello")
    response = raw.parse()
    assert response.usage is not None and response.usage.output_tokens == 1500
    # (3438 - 1024) x 1.25 + 1024 x 0.125 + 1500 x 10 = 18145.5 per 1M
    assert Decimal(raw.headers["x-spendgate-cost-usd"]) == Decimal("0.0181455")
    assert upstream.requests[0].headers["authorization"] == "Bearer sk-up"
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.endpoint, row.model_served) == ("responses", "gpt-5-2025-08-07")
    assert (row.cached_input_tokens, row.reasoning_tokens) == (1024, 1024)


def test_stream(proxy: ProxyServer, client: openai.OpenAI):
    with client.responses.stream(model="gpt-5", input="Say hello") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello! Streaming works."
    (row,) = proxy.wait_rows(1)
    assert (row.stream, row.outcome, row.usage_source) == (True, "ok", "provider")
    # 1200 x 1.25 + 300 x 10 = 1500 + 3000 = 4500 per 1M
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (1200, 300, Decimal("0.0045"))


def test_create_stream_true(proxy: ProxyServer, client: openai.OpenAI):
    events = list(client.responses.create(model="gpt-5", input="Say hello", stream=True))
    assert events[-1].type == "response.completed"
    (row,) = proxy.wait_rows(1)
    assert row.cost_usd == Decimal("0.0045")


def test_retrieve_and_delete_are_unbilled(
    proxy: ProxyServer, upstream: FakeUpstream, client: openai.OpenAI
):
    got = client.responses.retrieve(
        "resp_01Reason", extra_headers={"x-fake-scenario": "responses-get"}
    )
    assert got.id == "resp_01Reason"
    client.responses.delete("resp_01Reason", extra_headers={"x-fake-scenario": "responses-deleted"})
    assert [(r.method, r.path) for r in upstream.requests] == [
        ("GET", "/v1/responses/resp_01Reason"),
        ("DELETE", "/v1/responses/resp_01Reason"),
    ]
    rows = proxy.wait_rows(2)
    assert [(r.endpoint, r.cost_usd, r.input_tokens) for r in rows] == [
        ("responses.retrieve", Decimal(0), None),
        ("responses.retrieve", Decimal(0), None),
    ]


def test_mock_answers_in_responses_format(proxy: ProxyServer, upstream: FakeUpstream):
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=KEY, max_retries=0)
    with c, c.responses.stream(model="mock-gpt-5", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text and final.usage is not None
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.output_tokens) == ("mock", final.usage.output_tokens)
    assert upstream.requests == []


def test_client_hang_up_mid_stream_is_recorded(proxy: ProxyServer, upstream: FakeUpstream):
    body = {"model": "gpt-5", "input": "Say hello", "stream": True}
    headers = {"authorization": f"Bearer {KEY}", "x-fake-scenario": "responses-stream-slow"}
    with httpx.Client() as http:
        with http.stream("POST", proxy.base_url + "/v1/responses", json=body, headers=headers) as r:
            request_id = r.headers["x-spendgate-request-id"]
            seen = b""
            for chunk in r.iter_raw():
                seen += chunk
                if b'"delta":"Hello"' in seen:
                    break
    req = upstream.requests[0]
    assert req.done.wait(5) and req.outcome == "client-closed"
    row = proxy.wait_row(request_id)
    assert (row.outcome, row.usage_source) == ("client_cancelled", "estimated")
    assert (row.input_tokens, row.output_tokens) == (9, 1)  # see the corpus's responses-stream-cut
