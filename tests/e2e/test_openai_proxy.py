"""End to end: the official openai SDK -> a real spendgate server -> the fake upstream.

Every test reads the ledger back. Expected costs are worked out by hand from the list
prices (USD per 1M tokens) in the built-in catalog.
"""

from __future__ import annotations

import json
import socket
import time
from decimal import Decimal
from pathlib import Path

import httpx
import openai
import pytest

from tests.e2e.proxyserver import ProxyServer, free_port
from tests.fakeupstream.server import FakeUpstream

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
KEY = "sg-test-key-search-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def config(upstream_url: str, tmp_path: Path, **extra: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'ledger.db'}"},
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream_url,
                "api_key": "sk-upstream-secret",
                "models": ["*"],
                "read_timeout": 2,
            },
            "mock": {"kind": "mock", "models": ["mock-*"]},
        },
        "keys": [{"key": KEY, "team": "search", "project": "ranker", "tags": {"env": "prod"}}],
    }
    raw.update(extra)
    return raw


@pytest.fixture
def proxy(upstream: FakeUpstream, tmp_path: Path):
    with ProxyServer(config(upstream.url, tmp_path)) as server:
        yield server


_clients: list[openai.OpenAI] = []


def client(proxy: ProxyServer, key: str = KEY) -> openai.OpenAI:
    """An SDK client for ``proxy``; closed after the test (no stray sockets)."""
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0)
    _clients.append(c)
    return c


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while _clients:
        _clients.pop().close()


def scenario(name: str) -> dict[str, dict[str, str]]:
    return {"extra_headers": {"x-fake-scenario": name}}


# -- non-streaming ----------------------------------------------------------------------------


def test_chat_is_forwarded_metered_and_recorded(proxy: ProxyServer, upstream: FakeUpstream):
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    )
    completion = raw.parse()
    # The body reaches the client as the upstream sent it.
    assert raw.http_response.content == (FIXTURES / "chat.json").read_bytes()
    assert completion.usage is not None and completion.usage.prompt_tokens == 19
    # gpt-4o-mini: 19 x 0.15/M + 10 x 0.60/M = 0.00000285 + 0.000006
    assert raw.headers["x-spendgate-cost-usd"] == "0.00000885"
    request_id = raw.headers["x-spendgate-request-id"]

    # The upstream got the provider key, not the virtual key, and no spendgate headers.
    (req,) = upstream.requests
    assert req.headers["authorization"] == "Bearer sk-upstream-secret"
    assert KEY not in json.dumps(req.headers)
    assert req.json["model"] == "gpt-4o-mini"

    row = proxy.wait_row(request_id)
    assert (row.team, row.project, row.key_id, row.tags) == (
        "search",
        "ranker",
        row.key_id,
        {"env": "prod"},
    )
    assert row.key_id and KEY not in row.key_id
    assert (row.provider, row.endpoint, row.stream) == ("openai", "chat.completions", False)
    assert (row.model_requested, row.model_served) == ("gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert (row.status_code, row.outcome, row.usage_source) == (200, "ok", "provider")
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens) == (19, 0, 10)
    assert row.reasoning_tokens == 0
    assert row.cost_usd == row.list_cost_usd == Decimal("0.00000885")
    assert row.cost_input_usd == Decimal("0.00000285")
    assert row.cost_output_usd == Decimal("0.000006")
    assert row.price_version and row.price_version.startswith("gpt-4o-mini")
    assert row.upstream_request_id
    assert row.latency_ms >= 0


def test_reasoning_tokens_are_billed_as_output(proxy: ProxyServer):
    raw = client(proxy).chat.completions.with_raw_response.create(
        model="o3", messages=MESSAGES, **scenario("chat-reasoning")
    )
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.input_tokens, row.output_tokens, row.reasoning_tokens) == (37, 1186, 1088)
    # o3: 37 x 2/M + 1186 x 8/M (reasoning included in the 1186) = 0.000074 + 0.009488
    assert row.cost_usd == Decimal("0.009562")


def test_embeddings(proxy: ProxyServer):
    raw = client(proxy).embeddings.with_raw_response.create(
        model="text-embedding-3-small", input=["hello", "world"]
    )
    assert len(raw.parse().data) == 2
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.endpoint, row.input_tokens, row.output_tokens) == ("embeddings", 8, None)
    # text-embedding-3-small: 8 x 0.02/M
    assert row.cost_usd == Decimal("0.00000016")


def test_completions(proxy: ProxyServer):
    raw = client(proxy).completions.with_raw_response.create(
        model="gpt-3.5-turbo-instruct", prompt="Say hello"
    )
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    assert (row.endpoint, row.input_tokens, row.output_tokens) == ("completions", 5, 7)


# -- streaming --------------------------------------------------------------------------------


def test_stream_without_include_usage_hides_the_injected_usage_chunk(
    proxy: ProxyServer, upstream: FakeUpstream
):
    with client(proxy).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as resp:
        request_id = resp.headers["x-spendgate-request-id"]
        chunks = list(resp.parse())
    assert chunks and all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # the choices:[] usage chunk never reached the client
    assert (
        "".join(c.choices[0].delta.content or "" for c in chunks)
        == "Hello! How can I help you today?"
    )
    # ...but the proxy asked the upstream for it
    assert upstream.requests[0].json["stream_options"] == {"include_usage": True}
    row = proxy.wait_row(request_id)
    assert (row.stream, row.outcome, row.usage_source) == (True, "ok", "provider")
    assert (row.input_tokens, row.output_tokens) == (19, 9)
    # 19 x 0.15/M + 9 x 0.60/M = 0.00000285 + 0.0000054
    assert row.cost_usd == Decimal("0.00000825")
    assert row.ttft_ms is not None


def test_stream_with_include_usage_is_byte_identical(proxy: ProxyServer, upstream: FakeUpstream):
    body = {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream(
        "POST",
        proxy.base_url + "/v1/chat/completions",
        content=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    ) as resp:
        received = resp.read()
        request_id = resp.headers["x-spendgate-request-id"]
        assert resp.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert received == (FIXTURES / "chat_stream.sse").read_bytes()
    # Unchanged request: the client's body went upstream byte for byte.
    assert upstream.requests[0].body == json.dumps(body).encode()
    row = proxy.wait_row(request_id)
    assert (row.input_tokens, row.output_tokens, row.usage_source) == (19, 9, "provider")


def test_stream_cached_and_reasoning_usage(proxy: ProxyServer):
    with client(proxy).chat.completions.with_streaming_response.create(
        model="gpt-5", messages=MESSAGES, stream=True, **scenario("chat-stream-reasoning")
    ) as resp:
        request_id = resp.headers["x-spendgate-request-id"]
        list(resp.parse())
    row = proxy.wait_row(request_id)
    assert (row.input_tokens, row.cached_input_tokens, row.output_tokens, row.reasoning_tokens) == (
        1311,
        1152,
        212,
        192,
    )
    # gpt-5: (1311-1152) x 1.25/M + 1152 x 0.125/M + 212 x 10/M
    #      = 0.00019875 + 0.000144 + 0.00212 = 0.00246275
    assert row.cost_usd == Decimal("0.00246275")
    assert row.cost_cached_input_usd == Decimal("0.000144")


def test_first_chunk_arrives_before_the_upstream_finishes(
    proxy: ProxyServer, upstream: FakeUpstream
):
    stream = client(proxy).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **scenario("chat-stream-slow")
    )
    it = iter(stream)
    first = next(it)  # the upstream is paused after 2 events until release()
    assert first.choices[0].delta.role == "assistant"
    assert upstream.requests[0].outcome is None  # still streaming
    upstream.release()
    rest = list(it)
    assert rest and upstream.requests[0].outcome == "complete"


def test_long_stream_is_relayed_whole(proxy: ProxyServer):
    with client(proxy).chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **scenario("chat-stream-long")
    ) as resp:
        request_id = resp.headers["x-spendgate-request-id"]
        chunks = list(resp.parse())
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 200
    row = proxy.wait_row(request_id)
    assert (row.input_tokens, row.output_tokens) == (12, 200)


def test_stream_cut_off_is_recorded_with_estimated_usage(proxy: ProxyServer):
    stream = client(proxy).chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, **scenario("chat-stream-cut")
    )
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        list(stream)
    (row,) = proxy.wait_rows(1)
    assert row.outcome == "upstream_error"
    assert row.usage_source == "estimated"
    # "Once upon a" streamed before the cut: 3 tokens; the prompt counted with tiktoken
    assert row.output_tokens == 3
    # the prompt, counted with tiktoken: 3 per message + "user" 1 + "Say hello" 2 + 3 priming
    assert row.input_tokens == 9
    assert row.cost_usd is not None and row.cost_usd > 0


def test_client_hang_up_mid_stream_closes_upstream_and_is_recorded(
    proxy: ProxyServer, upstream: FakeUpstream
):
    with httpx.Client() as http:
        with http.stream(
            "POST",
            proxy.base_url + "/v1/chat/completions",
            json={"model": "gpt-4o-mini", "messages": MESSAGES, "stream": True},
            headers={"authorization": f"Bearer {KEY}", "x-fake-scenario": "chat-stream-slow"},
        ) as resp:
            request_id = resp.headers["x-spendgate-request-id"]
            seen = b""
            for chunk in resp.iter_raw():
                seen += chunk
                if b"Counting" in seen:
                    break
        # leaving the block closes the connection mid-stream
    req = upstream.requests[0]
    assert req.done.wait(5), "the proxy did not close the upstream request"
    assert req.outcome == "client-closed"
    row = proxy.wait_row(request_id)
    assert (row.outcome, row.usage_source) == ("client_cancelled", "estimated")
    assert row.input_tokens == 9
    assert row.output_tokens == 1  # "Counting" streamed before the hang-up


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "status", "exc", "fixture"),
    [
        ("bad-request", 400, openai.BadRequestError, "error_400.json"),
        ("invalid-api-key", 401, openai.AuthenticationError, "error_401.json"),
        ("insufficient-quota", 429, openai.RateLimitError, "error_429_quota.json"),
        ("server-error", 500, openai.InternalServerError, "error_500.json"),
        ("overloaded", 503, openai.InternalServerError, "error_503.json"),
    ],
)
def test_upstream_errors_pass_through(
    proxy: ProxyServer, name: str, status: int, exc: type[Exception], fixture: str
):
    with pytest.raises(exc) as info:
        client(proxy).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, **scenario(name)
        )
    response = info.value.response  # type: ignore[attr-defined]
    assert response.status_code == status
    assert response.content == (FIXTURES / fixture).read_bytes()
    row = proxy.wait_row(response.headers["x-spendgate-request-id"])
    assert (row.status_code, row.outcome) == (status, "upstream_error")
    assert row.cost_usd == Decimal(0) and row.input_tokens is None


def test_connect_failure_is_502_in_openai_format(tmp_path: Path):
    dead = f"http://127.0.0.1:{free_port()}"
    with ProxyServer(config(dead, tmp_path)) as proxy:
        with pytest.raises(openai.InternalServerError) as info:
            client(proxy).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert info.value.status_code == 502
        body = info.value.response.json()
        assert body["error"]["code"] == "upstream_connect_error"
        assert set(body["error"]) == {"message", "type", "param", "code"}
        (row,) = proxy.wait_rows(1)
        assert (row.status_code, row.outcome, row.cost_usd) == (502, "upstream_error", Decimal(0))


def test_upstream_timeout_is_504(proxy: ProxyServer, upstream: FakeUpstream):
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as info:
        client(proxy).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, **scenario("hang")
        )
    assert info.value.status_code == 504
    assert time.monotonic() - started < 10
    assert info.value.response.json()["error"]["code"] == "upstream_timeout"
    (row,) = proxy.wait_rows(1)
    assert (row.status_code, row.outcome) == (504, "timeout")


def test_missing_and_wrong_keys_get_401(proxy: ProxyServer, upstream: FakeUpstream):
    bad = client(proxy, "sg-wrong-key-000000")
    with pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.response.json()["error"]["code"] == "invalid_api_key"
    r = httpx.post(proxy.base_url + "/v1/chat/completions", json={"model": "gpt-4o-mini"})
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error"
    assert upstream.requests == []  # nothing reached the provider


def test_malformed_json_is_400_and_recorded(proxy: ProxyServer, upstream: FakeUpstream):
    r = httpx.post(
        proxy.base_url + "/v1/chat/completions",
        content=b'{"model": "gpt-4o-mini", "messages": [',
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and "JSON" in error["message"]
    assert upstream.requests == []
    row = proxy.wait_row(r.headers["x-spendgate-request-id"])
    assert (row.outcome, row.status_code, row.cost_usd) == ("invalid_request", 400, Decimal(0))


def test_oversized_body_is_413(upstream: FakeUpstream, tmp_path: Path):
    raw = config(upstream.url, tmp_path, server={"max_body_bytes": 1000})
    with ProxyServer(raw) as proxy:
        big = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]}
        r = httpx.post(
            proxy.base_url + "/v1/chat/completions",
            json=big,
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "request_too_large"
        # and with chunked transfer (no content-length): caught while reading
        r = httpx.post(
            proxy.base_url + "/v1/chat/completions",
            content=iter([json.dumps(big).encode()]),
            headers={"authorization": f"Bearer {KEY}"},
        )
        assert r.status_code == 413
    assert upstream.requests == []


def test_unknown_route_is_404_in_openai_format(proxy: ProxyServer):
    r = httpx.get(proxy.base_url + "/v1/nope")
    assert r.status_code == 404 and "error" in r.json()


def test_unknown_model_recorded_unpriced_or_rejected(upstream: FakeUpstream, tmp_path: Path):
    with ProxyServer(config(upstream.url, tmp_path)) as proxy:
        raw = client(proxy).chat.completions.with_raw_response.create(
            model="mock-my-finetune-xyz", messages=MESSAGES
        )
        assert "x-spendgate-cost-usd" not in raw.headers
        row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
        assert row.unpriced and row.cost_usd is None and row.input_tokens == 9
    raw_cfg = config(upstream.url, tmp_path / "r", pricing={"unknown_model": "reject"})
    (tmp_path / "r").mkdir()
    upstream.clear()
    with ProxyServer(raw_cfg) as proxy:
        with pytest.raises(openai.BadRequestError) as info:
            client(proxy).chat.completions.create(model="my-finetune-xyz", messages=MESSAGES)
        assert info.value.response.json()["error"]["code"] == "model_not_priced"
    assert upstream.requests == []


# -- the built-in mock provider ----------------------------------------------------------------


def test_mock_provider_needs_no_upstream(proxy: ProxyServer, upstream: FakeUpstream):
    from proxy.tokens import Tokenizer

    c = client(proxy)
    raw = c.chat.completions.with_raw_response.create(model="mock-gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    text = completion.choices[0].message.content
    assert text and completion.usage is not None
    tok = Tokenizer.load()
    assert completion.usage.completion_tokens == tok.count("gpt-4o-mini", text)
    assert completion.usage.prompt_tokens == tok.count_chat("gpt-4o-mini", MESSAGES)
    row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
    # priced as gpt-4o-mini: prompt x 0.15/M + completion x 0.60/M
    expected = (
        Decimal(completion.usage.prompt_tokens) * Decimal("0.15")
        + Decimal(completion.usage.completion_tokens) * Decimal("0.60")
    ) / 1_000_000
    assert row.cost_usd == expected and row.provider == "mock"

    chunks = list(c.chat.completions.create(model="mock-gpt-4o", messages=MESSAGES, stream=True))
    assert all(ch.usage is None for ch in chunks)
    emb = c.embeddings.create(model="mock-text-embedding-3-small", input="hello")
    assert len(emb.data[0].embedding) == 1536
    assert "mock-gpt-4o-mini" in {m.id for m in c.models.list()}
    assert [r.method for r in upstream.requests] == ["GET"]  # only the model listing
    assert len(proxy.wait_rows(3)) == 3


def test_open_access_on_loopback_without_keys(tmp_path: Path):
    raw = {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'l.db'}"},
        "providers": {"mock": {"kind": "mock", "models": ["mock-*"]}},
    }
    with ProxyServer(raw) as proxy:
        c = client(proxy, "anything")
        c.chat.completions.create(model="mock-gpt-4o-mini", messages=MESSAGES)
        (row,) = proxy.wait_rows(1)
        assert row.team == "default" and row.key_id is None


def test_health_endpoints(proxy: ProxyServer):
    assert httpx.get(proxy.base_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(proxy.base_url + "/readyz").status_code == 200


def test_raw_socket_hang_up_before_body_is_recorded(proxy: ProxyServer, upstream: FakeUpstream):
    """A client that sends headers and a partial body, then leaves: one row, nothing upstream."""
    host, port = proxy.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            + f"authorization: Bearer {KEY}\r\ncontent-length: 500\r\n\r\n".encode()
            + b'{"model": "gpt-4o'
        )
        time.sleep(0.2)
    (row,) = proxy.wait_rows(1)
    assert row.outcome == "client_cancelled"
    assert upstream.requests == []


@pytest.mark.postgres
def test_ledger_on_postgresql(upstream: FakeUpstream, pg_database_url: str, tmp_path: Path):
    raw = config(upstream.url, tmp_path)
    raw["storage"] = {"database_url": pg_database_url}
    with ProxyServer(raw) as proxy:
        c = client(proxy)
        raw_resp = c.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        with c.chat.completions.with_streaming_response.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        ) as resp:
            list(resp.parse())
        rows = proxy.wait_rows(2)
    assert len(rows) == 2
    first = next(r for r in rows if r.request_id == raw_resp.headers["x-spendgate-request-id"])
    assert first.cost_usd == Decimal("0.00000885") and first.tags == {"env": "prod"}
    assert {r.stream for r in rows} == {True, False}


def test_team_rate_card_sets_cost_apart_from_list_cost(upstream: FakeUpstream, tmp_path: Path):
    raw = config(upstream.url, tmp_path, teams={"search": {"rate_card": {"discount_pct": 10}}})
    with ProxyServer(raw) as proxy:
        resp = client(proxy).chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
        # list 0.00000885; the team pays 10% less: 0.00000885 x 0.9 = 0.000007965
        assert resp.headers["x-spendgate-cost-usd"] == "0.000007965"
        row = proxy.wait_row(resp.headers["x-spendgate-request-id"])
    assert (row.list_cost_usd, row.cost_usd) == (Decimal("0.00000885"), Decimal("0.000007965"))
    assert row.cost_input_usd + row.cost_output_usd == row.list_cost_usd
    assert row.rate_card and row.rate_card.startswith("search")
