from __future__ import annotations

import json

import orjson
import pytest

from pricing.usage import Usage
from proxy.errors import InvalidRequest
from proxy.providers.openai import OpenAIStreamMeter, parse_request, parse_response, usage_from


def chat(body: dict) -> tuple:
    return parse_request("chat.completions", "chat", json.dumps(body).encode())


def test_request_fields():
    call, raw = chat({"model": "gpt-4o", "messages": [], "max_completion_tokens": 50, "user": "u1"})
    assert (call.model, call.stream, call.max_output_tokens, call.end_user) == (
        "gpt-4o",
        False,
        50,
        "u1",
    )
    assert (
        raw
        == json.dumps(
            {"model": "gpt-4o", "messages": [], "max_completion_tokens": 50, "user": "u1"}
        ).encode()
    )


def test_include_usage_is_added_with_a_minimal_edit():
    body = b'{"model": "gpt-4o",  "stream": true, "messages": []}'
    call, raw = parse_request("chat.completions", "chat", body)
    assert not call.client_wants_usage
    injected = b'{"stream_options":{"include_usage":true},'
    assert raw == injected + b'"model": "gpt-4o",  "stream": true, "messages": []}'
    assert orjson.loads(raw)["stream_options"] == {"include_usage": True}


def test_include_usage_merged_into_existing_stream_options():
    call, raw = chat(
        {"model": "m", "stream": True, "stream_options": {"include_obfuscation": False}}
    )
    assert orjson.loads(raw)["stream_options"] == {
        "include_obfuscation": False,
        "include_usage": True,
    }
    assert not call.client_wants_usage


def test_client_that_asked_for_usage_is_untouched():
    body = {"model": "m", "stream": True, "stream_options": {"include_usage": True}}
    call, raw = chat(body)
    assert call.client_wants_usage and raw == json.dumps(body).encode()


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"x"', b'{"messages": []}', b'{"model": ""}'])
def test_bad_requests(raw: bytes):
    with pytest.raises(InvalidRequest):
        parse_request("chat.completions", "chat", raw)


def test_usage_from_chat_with_details():
    usage = usage_from(
        {
            "prompt_tokens": 3438,
            "completion_tokens": 120,
            "prompt_tokens_details": {"cached_tokens": 1024, "cache_write_tokens": 2400},
            "completion_tokens_details": {"reasoning_tokens": 64},
        }
    )
    assert usage == Usage(
        input_tokens=3438,
        cached_input_tokens=1024,
        cache_write_tokens=2400,
        output_tokens=120,
        reasoning_tokens=64,
    )


def test_usage_absent_is_none_not_zero():
    info = parse_response(b'{"id": "x", "model": "m", "choices": []}')
    assert info.usage is None and info.model == "m"
    assert parse_response(b"not json").usage is None


def _stream(with_usage: bool) -> list[bytes]:
    def ev(obj: dict) -> bytes:
        return b"data: " + orjson.dumps(obj) + b"\n\n"

    head = {"id": "c1", "model": "gpt-4o-mini"}
    events = [
        ev({**head, "choices": [{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]}),
        ev({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
    ]
    if with_usage:
        events.append(
            ev({**head, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
        )
    return [*events, b"data: [DONE]\n\n"]


@pytest.mark.parametrize("client_wants_usage", [True, False])
def test_stream_meter(client_wants_usage: bool):
    call, _ = chat(
        {"model": "m", "stream": True, "stream_options": {"include_usage": client_wants_usage}}
    )
    meter = OpenAIStreamMeter(call)
    data = b"".join(_stream(True))
    out = b"".join(meter.feed(data[i : i + 5]) for i in range(0, len(data), 5)) + meter.finish()
    if client_wants_usage:
        assert out == data
    else:
        assert out == b"".join(_stream(False))
    info = meter.info()
    assert info.usage == Usage(input_tokens=5, output_tokens=1)
    assert (info.model, info.response_id, info.finish_reasons) == ("gpt-4o-mini", "c1", ("stop",))
    assert meter.streamed_text() == "Hi"
    assert meter.finished  # [DONE] went by: a client leaving now has the whole answer


def test_stream_without_usage_keeps_text_for_counting():
    call, _ = chat({"model": "m", "stream": True})
    meter = OpenAIStreamMeter(call)
    data = b"".join(_stream(False)[:1]) + b'data: {"choices": [{"delta": {"content": " th'
    assert meter.feed(data) == b"".join(_stream(False)[:1])
    assert meter.finish() == b'data: {"choices": [{"delta": {"content": " th'  # forwarded as-is
    assert meter.info().usage is None
    assert meter.streamed_text() == "Hi"
    assert not meter.finished
