"""End to end: the official anthropic SDK -> spendgate ``/anthropic`` -> the fake upstream.

Prices (claude-sonnet-4-6 and -4-5, USD per 1M): input 3, output 15.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.e2e.native import KEY, config
from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.server import FakeUpstream

MESSAGES = [{"role": "user", "content": "Say hello"}]
MODEL = "claude-sonnet-4-6"  # 4-5 warns as deprecated in the SDK; same prices


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[ProxyServer]:
    with ProxyServer(config(upstream.url, tmp_path)) as server:
        yield server


@pytest.fixture
def client(proxy: ProxyServer) -> Iterator[anthropic.Anthropic]:
    c = anthropic.Anthropic(base_url=proxy.base_url + "/anthropic", api_key=KEY, max_retries=0)
    yield c
    c.close()


def test_messages_create(proxy: ProxyServer, upstream: FakeUpstream, client: anthropic.Anthropic):
    raw = client.messages.with_raw_response.create(
        model=MODEL,
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    message = raw.parse()
    assert message.usage.input_tokens == 25
    # 25 x 3 + 12 x 15 = 255 per 1M
    assert raw.headers["x-spendgate-cost-usd"] == "0.000255"
    (req,) = upstream.requests
    assert req.path == "/v1/messages"  # our /anthropic prefix is not the provider's
    assert req.headers["x-api-key"] == "sk-ant-upstream-secret"
    assert req.headers["anthropic-version"] == raw.http_request.headers["anthropic-version"]
    assert req.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert KEY not in json.dumps(req.headers)
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.provider, row.endpoint, row.stream) == ("anthropic", "messages", False)
    assert row.model_served == "claude-sonnet-4-5-20250929"
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (25, 12, Decimal("0.000255"))


def test_messages_stream(proxy: ProxyServer, client: anthropic.Anthropic):
    with client.messages.stream(model=MODEL, max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello! How can I help?"
    assert final.usage.output_tokens == 9
    (row,) = proxy.wait_rows(1)
    assert (row.stream, row.outcome, row.usage_source) == (True, "ok", "provider")
    # 12 x 3 + 9 x 15 = 36 + 135 = 171 per 1M
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (12, 9, Decimal("0.000171"))


def test_count_tokens_is_passed_through_unbilled(
    proxy: ProxyServer, upstream: FakeUpstream, client: anthropic.Anthropic
):
    count = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    assert count.input_tokens == 14
    assert upstream.requests[0].path == "/v1/messages/count_tokens"
    (row,) = proxy.wait_rows(1)
    assert (row.endpoint, row.cost_usd, row.usage_source) == (
        "messages.count_tokens",
        Decimal(0),
        "none",
    )
    assert row.input_tokens is None


def test_upstream_error_keeps_anthropic_shape(proxy: ProxyServer, client: anthropic.Anthropic):
    with pytest.raises(anthropic.RateLimitError) as info:
        client.messages.create(
            model=MODEL,
            max_tokens=10,
            messages=MESSAGES,
            extra_headers={"x-fake-scenario": "anthropic-rate-limited"},
        )
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]


def test_our_errors_in_anthropic_shape(proxy: ProxyServer, upstream: FakeUpstream):
    bad = anthropic.Anthropic(base_url=proxy.base_url + "/anthropic", api_key="nope", max_retries=0)
    with bad, pytest.raises(anthropic.AuthenticationError) as info:
        bad.messages.create(model=MODEL, max_tokens=10, messages=MESSAGES)
    assert info.value.body == {  # type: ignore[comparison-overlap]
        "type": "error",
        "error": {"type": "authentication_error", "message": info.value.body["error"]["message"]},  # type: ignore[index]
    }
    with httpx.Client() as http:
        resp = http.post(
            proxy.base_url + "/anthropic/v1/messages",
            content=b"{not json",
            headers={"x-api-key": KEY},
        )
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []


def test_budget_exceeded_in_anthropic_shape(upstream: FakeUpstream, tmp_path: Path):
    raw = config(upstream.url, tmp_path)
    raw["budgets"] = [{"scope": "team", "match": "native", "period": "day", "limit_usd": 0.0001}]
    with ProxyServer(raw) as proxy:
        c = anthropic.Anthropic(base_url=proxy.base_url + "/anthropic", api_key=KEY)
        with c, pytest.raises(anthropic.RateLimitError) as info:
            c.messages.create(model=MODEL, max_tokens=4000, messages=MESSAGES)
        assert info.value.response.headers["x-should-retry"] == "false"
        assert info.value.body["error"]["type"] == "budget_exceeded"  # type: ignore[index]
        (row,) = proxy.wait_rows(1)
        assert row.outcome == "budget_blocked"
    assert upstream.requests == []


def test_mock_answers_in_anthropic_format(proxy: ProxyServer, upstream: FakeUpstream):
    c = anthropic.Anthropic(base_url=proxy.base_url + "/anthropic", api_key=KEY, max_retries=0)
    with c:
        thinking = {"type": "enabled", "budget_tokens": 1024}
        with c.messages.stream(
            model="mock-claude-sonnet-4-6", max_tokens=2000, messages=MESSAGES, thinking=thinking
        ) as stream:
            final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.output_tokens) == ("mock", final.usage.output_tokens)
    assert upstream.requests == []


def test_client_hang_up_mid_stream_is_recorded(proxy: ProxyServer, upstream: FakeUpstream):
    body = {"model": MODEL, "max_tokens": 100, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": KEY, "x-fake-scenario": "anthropic-stream-slow"}
    with httpx.Client() as http:
        with http.stream(
            "POST", proxy.base_url + "/anthropic/v1/messages", json=body, headers=headers
        ) as resp:
            request_id = resp.headers["x-spendgate-request-id"]
            seen = b""
            for chunk in resp.iter_raw():
                seen += chunk
                if b'"Hello"' in seen:
                    break
    req = upstream.requests[0]
    assert req.done.wait(5) and req.outcome == "client-closed"
    row = proxy.wait_row(request_id)
    assert (row.outcome, row.usage_source) == ("client_cancelled", "estimated")
    # message_start's input (12) is exact and kept; only the output ("Hello") is estimated
    assert (row.input_tokens, row.output_tokens) == (12, 1)
