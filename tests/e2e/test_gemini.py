"""End to end: the official google-genai SDK -> spendgate ``/gemini`` -> the fake upstream.

The SDK is pointed at the proxy with ``http_options.base_url``; it works offline with an API
key (no Google credentials lookup). Prices (gemini-2.5-flash, USD per 1M): input 0.3,
output (thoughts too) 2.5.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.e2e.native import KEY, config
from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.server import FakeUpstream

MODEL = "gemini-2.5-flash"
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[ProxyServer]:
    with ProxyServer(config(upstream.url, tmp_path)) as server:
        yield server


def sdk(proxy: ProxyServer, version: str = "v1beta", key: str = KEY) -> genai.Client:
    options = types.HttpOptions(base_url=proxy.base_url + "/gemini", api_version=version)
    return genai.Client(api_key=key, http_options=options)


@pytest.mark.parametrize("version", ["v1beta", "v1"])
def test_generate_content(proxy: ProxyServer, upstream: FakeUpstream, version: str):
    with sdk(proxy, version) as client:
        answer = client.models.generate_content(model=MODEL, contents="Say hello")
    assert answer.text == "Hello! How can I help?"
    (req,) = upstream.requests
    assert req.path == f"/{version}/models/{MODEL}:generateContent"
    assert req.headers["x-goog-api-key"] == "AIza-upstream-secret"
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.endpoint, row.model_requested) == (
        "gemini",
        "generate_content",
        MODEL,
    )
    # 3 x 0.3 + 7 x 2.5 = 0.9 + 17.5 = 18.4 per 1M
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (3, 7, Decimal("0.0000184"))


def test_generate_content_stream(proxy: ProxyServer, upstream: FakeUpstream):
    with sdk(proxy) as client:
        chunks = list(client.models.generate_content_stream(model=MODEL, contents="Say hello"))
    assert "".join(c.text or "" for c in chunks) == "Hello there, friend."
    assert upstream.requests[0].params == {"alt": "sse"}
    (row,) = proxy.wait_rows(1)
    # the last chunk's metadata: 12 in, 30 candidates + 50 thoughts out
    assert (row.stream, row.input_tokens, row.output_tokens, row.reasoning_tokens) == (
        True,
        12,
        80,
        50,
    )
    assert row.cost_usd == Decimal("0.0002036")  # 12 x 0.3 + 80 x 2.5 = 203.6 per 1M


def test_count_tokens_is_unbilled(proxy: ProxyServer):
    with sdk(proxy) as client:
        assert client.models.count_tokens(model=MODEL, contents="Say hello").total_tokens == 3
    (row,) = proxy.wait_rows(1)
    assert (row.endpoint, row.cost_usd, row.input_tokens) == ("count_tokens", Decimal(0), None)


def test_query_key_is_taken_out(proxy: ProxyServer, upstream: FakeUpstream):
    with httpx.Client() as http:
        resp = http.post(
            proxy.base_url + f"/gemini/v1beta/models/{MODEL}:streamGenerateContent",
            params={"alt": "sse", "key": KEY},
            json=CONTENTS,
        )
    assert resp.status_code == 200
    (req,) = upstream.requests
    assert req.params == {"alt": "sse"}  # the client's key is not forwarded
    assert req.headers["x-goog-api-key"] == "AIza-upstream-secret"


def test_errors_in_google_shape(proxy: ProxyServer, upstream: FakeUpstream):
    with sdk(proxy, key="wrong-key") as client, pytest.raises(errors.ClientError) as info:
        client.models.generate_content(model=MODEL, contents="hi")
    assert (info.value.code, info.value.status) == (401, "UNAUTHENTICATED")
    with sdk(proxy) as client, pytest.raises(errors.ClientError) as info:
        client.models.generate_content(
            model=MODEL,
            contents="hi",
            config=types.GenerateContentConfig(
                http_options=types.HttpOptions(headers={"x-fake-scenario": "gemini-quota"})
            ),
        )
    assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")


def test_budget_exceeded_in_google_shape(upstream: FakeUpstream, tmp_path: Path):
    raw = config(upstream.url, tmp_path)
    raw["budgets"] = [{"scope": "team", "match": "native", "period": "day", "limit_usd": 0.00001}]
    with ProxyServer(raw) as proxy:
        with sdk(proxy) as client, pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model=MODEL, contents="hi")
        assert (info.value.code, info.value.status) == (429, "RESOURCE_EXHAUSTED")
        assert "BUDGET_EXCEEDED" in str(info.value.details)
    assert upstream.requests == []


def test_mock_answers_in_gemini_format(proxy: ProxyServer, upstream: FakeUpstream):
    with sdk(proxy) as client:
        chunks = list(client.models.generate_content_stream(model="mock-" + MODEL, contents="hi"))
    meta = chunks[-1].usage_metadata
    assert meta is not None and meta.candidates_token_count
    (row,) = proxy.wait_rows(1)
    assert (row.provider, row.output_tokens) == ("mock", meta.candidates_token_count)
    assert upstream.requests == []


def test_client_hang_up_mid_stream_is_recorded(proxy: ProxyServer, upstream: FakeUpstream):
    url = proxy.base_url + f"/gemini/v1beta/models/{MODEL}:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": KEY, "x-fake-scenario": "gemini-stream-slow"}
    with httpx.Client() as http:
        with http.stream("POST", url, json=CONTENTS, headers=headers) as resp:
            request_id = resp.headers["x-spendgate-request-id"]
            seen = b""
            for chunk in resp.iter_raw():
                seen += chunk
                if b'"Hello"' in seen:
                    break
    req = upstream.requests[0]
    assert req.done.wait(5) and req.outcome == "client-closed"
    row = proxy.wait_row(request_id)
    # only partial (prompt-only) metadata arrived: its prompt count (12) is kept, the output
    # is estimated from "Hello"
    assert (row.outcome, row.usage_source) == ("client_cancelled", "estimated")
    assert (row.input_tokens, row.output_tokens) == (12, 1)
