"""Self-test of the fake OpenAI upstream, driven by raw sockets, httpx and the official SDK.

The end-to-end tests trust this server's bytes and its expected usage; these tests are what
earns that trust, so they talk to it directly, without the proxy in between.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakeupstream import (
    CATALOG,
    JSON_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    FakeUpstream,
    Scenario,
    split_events,
)

MESSAGES: list[Any] = [{"role": "user", "content": "Say hello"}]
# The OpenAI chat/completions-shaped scenarios; the Responses, Anthropic and Gemini fixtures
# are checked end to end by the conformance corpus (tests/e2e/test_corpus.py).
OPENAI_CHAT = [
    n
    for n, s in CATALOG.scenarios.items()
    if s.directory.name == "openai" and not n.startswith("responses")
]


@pytest.fixture
def client(upstream: FakeUpstream) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=upstream.url + "/v1", api_key="x", max_retries=0) as c:
        yield c


def scenario_header(name: str) -> dict[str, str]:
    return {"x-fake-scenario": name}


def flatten(usage: dict[str, Any]) -> dict[str, int]:
    """The index's flat usage form, from a wire usage object: absent stays absent."""
    flat = {k: v for k, v in usage.items() if isinstance(v, int)}
    for details, keys in (
        ("prompt_tokens_details", ("cached_tokens", "cache_write_tokens")),
        ("completion_tokens_details", ("reasoning_tokens",)),
    ):
        flat |= {k: v for k, v in usage.get(details, {}).items() if k in keys}
    return flat


def reported_usage(scenario: Scenario) -> dict[str, Any] | None:
    if not scenario.is_sse:
        usage: dict[str, Any] | None = json.loads(scenario.raw()).get("usage")
        return usage
    usages = [
        json.loads(e[6:])["usage"]
        for e in split_events(scenario.raw())
        if e.startswith(b"data: {") and b'"usage":{' in e
    ]
    assert len(usages) <= 1
    return usages[0] if usages else None


# --- the fixtures themselves ---------------------------------------------------------------


@pytest.mark.parametrize("name", [n for n in OPENAI_CHAT if CATALOG[n].body])
def test_index_usage_matches_what_the_body_reports(name: str) -> None:
    scenario = CATALOG[name]
    usage = reported_usage(scenario)
    if scenario.usage is None:
        assert usage is None
        return
    assert usage is not None
    assert flatten(usage) == scenario.expected_usage()
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage.get("completion_tokens", 0)


def test_sse_fixtures_are_well_formed() -> None:
    for scenario in map(CATALOG.__getitem__, OPENAI_CHAT):
        if not scenario.is_sse:
            continue
        events = split_events(scenario.raw())
        complete = events if not scenario.drop else [e for e in events if e.endswith(b"\n\n")]
        for event in complete:
            assert event.startswith(b"data: ") and event.endswith(b"\n\n"), scenario.name
            if event != b"data: [DONE]\n\n":
                json.loads(event[6:])
        assert (events[-1] == b"data: [DONE]\n\n") is not scenario.drop, scenario.name


# --- bytes on the wire ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["chat", "chat-cached", "chat-reasoning", "completion", "models"])
def test_json_body_is_the_fixture_file_byte_for_byte(upstream: FakeUpstream, name: str) -> None:
    r = httpx.post(upstream.url + "/v1/chat/completions", json={}, headers=scenario_header(name))
    assert r.status_code == 200
    assert r.headers["content-type"] == JSON_CONTENT_TYPE
    assert r.content == CATALOG[name].raw()
    assert r.headers["x-request-id"] == upstream.requests[0].request_id
    assert r.headers["x-request-id"].startswith("req_")


def test_stream_with_include_usage_is_the_fixture_file_byte_for_byte(
    upstream: FakeUpstream,
) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream("POST", upstream.url + "/v1/chat/completions", json=body) as r:
        assert r.headers["content-type"] == SSE_CONTENT_TYPE
        assert r.headers["transfer-encoding"] == "chunked"
        data = r.read()
    assert data == CATALOG["chat-stream"].raw()
    assert upstream.requests[0].scenario == "chat-stream"


def test_stream_without_include_usage_leaves_usage_out(upstream: FakeUpstream) -> None:
    r = httpx.post(upstream.url + "/v1/chat/completions", json={"stream": True})
    events = split_events(r.content)
    assert b"usage" not in r.content
    assert len(events) == len(split_events(CATALOG["chat-stream"].raw())) - 1
    assert b'"finish_reason":"stop"' in events[-2] and events[-1] == b"data: [DONE]\n\n"
    assert r.content == CATALOG["chat-stream"].wire_body(include_usage=False)


def test_include_obfuscation_false_drops_obfuscation(upstream: FakeUpstream) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True, "include_obfuscation": False}}
    r = httpx.post(upstream.url + "/v1/chat/completions", json=body)
    assert b"obfuscation" not in r.content
    assert b'"choices":[],"usage":{' in r.content


def test_each_event_is_one_http_chunk() -> None:
    """Read the raw socket: the chunk framing is what a proxy's stream parser meets."""
    with FakeUpstream() as up, socket.create_connection(("127.0.0.1", up.port)) as sock:
        body = b'{"stream":true,"stream_options":{"include_usage":true}}'
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%b" % (len(body), body)
        )
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\ncontent-type: text/event-stream; charset=utf-8\r\n" in head
    assert b"\r\nconnection: close\r\n" in head
    events = CATALOG["chat-stream"].events()
    assert payload == b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"


# --- recording and selection -----------------------------------------------------------------


def test_records_method_path_query_headers_and_body(upstream: FakeUpstream) -> None:
    httpx.post(
        upstream.url + "/v1/chat/completions?api-version=1",
        json={"model": "gpt-4o-mini"},
        headers={"X-Custom": "a"},
    )
    (req,) = upstream.requests
    assert (req.method, req.path, req.query) == ("POST", "/v1/chat/completions", "api-version=1")
    assert req.params == {"api-version": "1"}
    assert req.headers["x-custom"] == "a"
    assert req.body == b'{"model":"gpt-4o-mini"}' and req.json == {"model": "gpt-4o-mini"}
    assert req.done.wait(5) and req.outcome == "complete"
    upstream.clear()
    assert upstream.requests == []


def test_records_a_chunked_request_body(upstream: FakeUpstream) -> None:
    parts = [b'{"model":', b'"gpt-4o-mini"}']
    httpx.post(upstream.url + "/v1/chat/completions", content=iter(parts))
    (req,) = upstream.requests
    assert req.headers["transfer-encoding"] == "chunked"
    assert req.json == {"model": "gpt-4o-mini"}


def test_enqueued_scenarios_win_in_order(upstream: FakeUpstream) -> None:
    upstream.enqueue("rate-limited", "chat-cached")
    with openai.OpenAI(base_url=upstream.url + "/v1", api_key="x", max_retries=1) as c:
        completion = c.chat.completions.create(model="gpt-5.6", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.prompt_tokens == 3438
    assert [r.scenario for r in upstream.requests] == ["rate-limited", "chat-cached"]
    assert upstream.requests[1].headers["x-stainless-retry-count"] == "1"


def test_unknown_scenario_and_unknown_path_are_openai_404s(upstream: FakeUpstream) -> None:
    r = httpx.post(upstream.url + "/v1/chat/completions", headers=scenario_header("nope"))
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = httpx.post(upstream.url + "/v1/nowhere")
    assert r.status_code == 404
    assert r.json()["error"]["message"] == "Invalid URL (POST /v1/nowhere)"
    with pytest.raises(KeyError):
        upstream.enqueue("nope")


# --- the official SDK ----------------------------------------------------------------------


def test_sdk_parses_chat_with_cache_and_reasoning_usage(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert plain.choices[0].message.content == "Hello! How can I help you today?"
    assert plain.usage is not None and plain.usage.total_tokens == 29

    cached = client.chat.completions.create(
        model="gpt-5.6", messages=MESSAGES, extra_headers=scenario_header("chat-cached")
    )
    assert cached.usage is not None and cached.usage.prompt_tokens_details is not None
    details = cached.usage.prompt_tokens_details.model_dump()
    assert (details["cached_tokens"], details["cache_write_tokens"]) == (1024, 2400)

    reasoning = client.chat.completions.create(
        model="o3", messages=MESSAGES, extra_headers=scenario_header("chat-reasoning")
    )
    assert reasoning.usage is not None and reasoning.usage.completion_tokens_details is not None
    assert reasoning.usage.completion_tokens_details.reasoning_tokens == 1088


def test_sdk_stream_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello! How can I help you today?"
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (
        chunks[-1].usage.completion_tokens
        == CATALOG["chat-stream"].expected_usage()["completion_tokens"]
    )


def test_sdk_stream_without_include_usage(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert len(chunks) == 11
    assert all(c.usage is None and c.choices for c in chunks)


def test_sdk_long_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=scenario_header("chat-stream-long"),
    )
    chunks = list(stream)
    words = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).split()
    assert len(words) == 200
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 200


@pytest.mark.parametrize("name", ["chat-stream-cut", "chat-stream-cut-mid-event"])
def test_sdk_raises_on_a_cut_off_stream(
    upstream: FakeUpstream, client: openai.OpenAI, name: str
) -> None:
    seen: list[str] = []
    with pytest.raises(openai.APIConnectionError):  # httpx: incomplete chunked read
        stream = client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, extra_headers=scenario_header(name)
        )
        for chunk in stream:
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen) == ("Once upon a" if name == "chat-stream-cut" else "Once upon")
    assert upstream.requests[0].outcome == "dropped"


@pytest.mark.parametrize(
    ("name", "exc", "status", "code"),
    [
        ("bad-request", openai.BadRequestError, 400, "invalid_value"),
        ("invalid-api-key", openai.AuthenticationError, 401, "invalid_api_key"),
        ("rate-limited", openai.RateLimitError, 429, "rate_limit_exceeded"),
        ("insufficient-quota", openai.RateLimitError, 429, "insufficient_quota"),
        ("server-error", openai.InternalServerError, 500, None),
        ("overloaded", openai.InternalServerError, 503, None),
    ],
)
def test_sdk_maps_errors(
    client: openai.OpenAI, name: str, exc: type[openai.APIStatusError], status: int, code: str
) -> None:
    with pytest.raises(exc) as info:
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=scenario_header(name)
        )
    assert info.value.status_code == status and info.value.code == code
    assert info.value.response.headers["content-type"] == JSON_CONTENT_TYPE
    if name == "rate-limited":
        headers = info.value.response.headers
        assert headers["retry-after-ms"] == "20" and headers["x-ratelimit-remaining-tokens"] == "0"


def test_sdk_completions(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-3.5-turbo-instruct", prompt="Say this")
    assert completion.choices[0].text == "\n\nThis is indeed a test."
    chunks = list(
        client.completions.create(
            model="gpt-3.5-turbo-instruct",
            prompt="Say this",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "\n\nThis is indeed a test."
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12


@pytest.mark.parametrize("encoding", ["base64", "float", None])
def test_sdk_embeddings_in_either_encoding(
    upstream: FakeUpstream, client: openai.OpenAI, encoding: Any
) -> None:
    kwargs = {} if encoding is None else {"encoding_format": encoding}
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"], **kwargs)
    expected = [d["embedding"] for d in json.loads(CATALOG["embeddings"].raw())["data"]]
    vectors = [d.embedding for d in result.data]
    if isinstance(vectors[0], str):  # SDKs that leave base64 to the caller
        vectors = [list(struct.unpack("<8f", base64.b64decode(v))) for v in vectors]
    assert vectors == expected
    assert result.usage.prompt_tokens == 8


def test_sdk_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids


async def test_async_sdk_stream(upstream: FakeUpstream) -> None:
    async with openai.AsyncOpenAI(
        base_url=upstream.url + "/v1", api_key="x", max_retries=0
    ) as client:
        stream = await client.chat.completions.create(
            model="m", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 19


# --- slow, hanging and abandoned ---------------------------------------------------------------


def test_slow_stream_first_chunk_arrives_before_release(
    upstream: FakeUpstream, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(
        model="m",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=scenario_header("chat-stream-slow"),
    )
    with stream:
        it = iter(stream)
        first, second = next(it), next(it)
        assert second.choices[0].delta.content == "Counting"
        assert upstream.paused.wait(5)
        (req,) = upstream.requests
        assert not req.done.is_set()
        upstream.release()
        rest = list(it)
    assert rest[-1].usage is not None and rest[-1].usage.completion_tokens == 7
    assert first.choices[0].delta.role == "assistant"
    assert req.done.wait(5) and req.outcome == "complete"


def test_slow_stream_records_a_client_that_gives_up(upstream: FakeUpstream) -> None:
    headers = scenario_header("chat-stream-slow")
    with httpx.stream(
        "POST", upstream.url + "/v1/chat/completions", json={"stream": True}, headers=headers
    ) as r:
        chunks = r.iter_raw()  # keep a reference: a collected iterator closes the response
        next(chunks)
        assert upstream.paused.wait(5)
    (req,) = upstream.requests
    assert req.done.wait(5) and req.outcome == "client-closed"


def test_hang_never_answers_and_notices_the_client_leaving(
    upstream: FakeUpstream, client: openai.OpenAI
) -> None:
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(
            model="m", messages=MESSAGES, extra_headers=scenario_header("hang"), timeout=0.2
        )
    (req,) = upstream.wait_for_requests(1)
    assert req.scenario == "hang"
    assert req.done.wait(5) and req.outcome == "client-closed"


def test_slow_headers_answers_after_the_delay(upstream: FakeUpstream) -> None:
    url = upstream.url + "/v1/chat/completions"
    headers = scenario_header("slow-headers") | {"x-fake-delay": "0.3"}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url, json={}, headers=headers, timeout=0.1)
    start = time.monotonic()
    r = httpx.post(url, json={}, headers=headers)
    assert time.monotonic() - start >= 0.3
    assert r.content == CATALOG["chat"].raw()
    assert [q.scenario for q in upstream.requests] == ["slow-headers", "slow-headers"]


def test_stop_ends_hung_and_paused_connections() -> None:
    """Stopping with requests in flight must not hang or leak (filterwarnings=error)."""
    up = FakeUpstream().start()
    socks = []
    for name in ("hang", "chat-stream-slow"):
        sock = socket.create_connection(("127.0.0.1", up.port))
        sock.sendall(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nx-fake-scenario: %b\r\n"
            b"Content-Length: 0\r\n\r\n" % name.encode()
        )
        socks.append(sock)
    requests = up.wait_for_requests(2)
    assert up.paused.wait(5)
    up.stop()
    assert [r.outcome for r in requests] == ["server-stopped", "server-stopped"]
    for sock in socks:
        sock.settimeout(5)
        while sock.recv(65536):
            pass  # EOF: the server closed its end
        sock.close()


async def test_usable_from_an_async_test_without_blocking_its_loop(upstream: FakeUpstream) -> None:
    async with httpx.AsyncClient() as http:
        results = await asyncio.gather(
            *(http.post(upstream.url + "/v1/embeddings", json={}) for _ in range(5))
        )
    assert {r.status_code for r in results} == {200}
    assert len(upstream.requests) == 5
