"""The canned OpenAI wire data the fake upstream serves, and the requests wrk sends.

One place defines them, so the nginx config, the wrk bodies and the validation of every
target's answer cannot drift apart. Standard library only.
"""

from __future__ import annotations

import json

MODEL = "gpt-4o-mini-2024-07-18"
REQUEST_MODEL = "gpt-4o-mini"

# The answer, split the way a provider streams it (10 content chunks).
PIECES = [
    "A reverse proxy ",
    "in front of every ",
    "model call must cost ",
    "next to nothing: ",
    "it reads the usage ",
    "block, prices it, ",
    "writes one ledger row ",
    "and relays the bytes ",
    "as they arrive, ",
    "without buffering.",
]
CONTENT = "".join(PIECES)

USAGE = {
    "prompt_tokens": 212,
    "completion_tokens": 38,
    "total_tokens": 250,
    "prompt_tokens_details": {"cached_tokens": 128, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}

_ID = "chatcmpl-BENCH0123456789abcdefghijklmnop"
_CREATED = 1764480000
_FP = "fp_bench0001"


def chat_json() -> bytes:
    """A non-streamed ``chat.completion`` (~1 KB, usage with both detail blocks)."""
    body = {
        "id": _ID,
        "object": "chat.completion",
        "created": _CREATED,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": CONTENT,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
        "service_tier": "default",
        "system_fingerprint": _FP,
    }
    text = json.dumps(body, indent=2)  # pretty, as the API sends it
    return text.encode()


def _chunk(delta: dict, finish: str | None = None, *, usage: bool = False) -> str:
    obj: dict = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": MODEL,
        "service_tier": "default",
        "system_fingerprint": _FP,
        "choices": []
        if usage
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        "usage": USAGE if usage else None,
    }
    return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"


def chat_sse() -> bytes:
    """A streamed answer with include_usage: 14 events (role, 10 content, finish, usage, DONE)."""
    events = [_chunk({"role": "assistant", "content": "", "refusal": None})]
    events += [_chunk({"content": p}) for p in PIECES]
    events.append(_chunk({}, "stop"))
    events.append(_chunk({}, usage=True))
    events.append("data: [DONE]\n\n")
    return "".join(events).encode()


def request_body(*, stream: bool) -> bytes:
    """A ~1 KB chat request; the streaming one asks for usage like a metering client would."""
    body: dict = {
        "model": REQUEST_MODEL,
        "messages": [
            {
                "role": "system",
                "content": (
                    "You are a concise assistant for an engineering team. Answer in plain "
                    "prose, at most three sentences, and never invent numbers. If a question "
                    "is ambiguous, say which reading you answered. Prefer concrete examples "
                    "over general advice, and mention trade-offs when there are any."
                ),
            },
            {
                "role": "user",
                "content": (
                    "We are putting a metering proxy in front of every call our services make "
                    "to hosted language models. It has to price each call from the usage the "
                    "provider reports, enforce per-team budgets, and write one ledger row per "
                    "call without slowing anything down. Streaming answers must reach the "
                    "client chunk by chunk, exactly as they arrive from the provider. What is "
                    "the single most important property of such a proxy, and why does it "
                    "matter more than the others for a platform team running it in production?"
                ),
            },
        ],
        "temperature": 0.2,
        "max_tokens": 256,
        "user": "bench-user-0001",
    }
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return json.dumps(body, separators=(",", ":")).encode()


def _usage_ok(usage: object, lenient: bool) -> bool:
    """The fixture's usage exactly; ``lenient``: extra keys allowed (LiteLLM adds ``cost``)."""
    if not lenient or not isinstance(usage, dict):
        return usage == USAGE
    return {k: usage.get(k) for k in USAGE} == USAGE


def check_json(raw: bytes, lenient: bool = False) -> str | None:
    """None when a non-streamed answer carries the fixture's content and usage, else why not."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        return f"not JSON: {exc}: {raw[:200]!r}"
    try:
        content = obj["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return f"no choices[0].message.content: {raw[:200]!r}"
    if content != CONTENT:
        return f"content differs: {content!r}"
    if not _usage_ok(obj.get("usage"), lenient):
        return f"usage differs: {obj.get('usage')!r}"
    return None


def check_sse(raw: bytes, lenient: bool = False) -> str | None:
    """None when a stream reassembles to the fixture's content, carries its usage, ends DONE."""
    text = raw.decode("utf-8", "replace")
    datas = [ln[5:].strip() for ln in text.splitlines() if ln.startswith("data:")]
    if not datas or datas[-1] != "[DONE]":
        return f"stream does not end with [DONE]: {text[-200:]!r}"
    parts, usage = [], None
    for d in datas[:-1]:
        try:
            obj = json.loads(d)
        except ValueError:
            return f"bad event: {d[:200]!r}"
        for ch in obj.get("choices") or []:
            parts.append((ch.get("delta") or {}).get("content") or "")
        if obj.get("usage"):
            usage = obj["usage"]
    if "".join(parts) != CONTENT:
        return f"content differs: {''.join(parts)!r}"
    if not _usage_ok(usage, lenient):
        return f"usage differs: {usage!r}"
    return None


_WORDS = (
    "the proxy meters every call and prices its usage from the catalog while budgets hold "
    "under load across replicas sharing one store ledger rows record input output cached "
    "reasoning tokens cost version latency team project key model provider stream chunk "
    "request response header body status upstream client server event loop thread worker "
    "engineer platform finance report export month day hour tag user alert threshold limit"
).split()


def big_request_body(size: int = 400_000, seed: int = 100_000) -> bytes:
    """A chat request whose user message is ``size`` bytes of English-like text (~100k
    tokens with o200k_base), the same bytes on every run (seeded, no randomness between runs).
    """
    import random

    rng = random.Random(seed)
    syllables = ["ka", "lor", "mi", "zen", "tru", "vek", "sho", "pra", "dun", "qel", "ix", "bo"]
    words: list[str] = []
    n = 0
    while n < size:
        r = rng.random()
        if r < 0.62:
            w = rng.choice(_WORDS)
        elif r < 0.9:  # invented words and ids split into several tokens, as names and code do
            w = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        else:
            w = f"{rng.randint(0, 99999)}"
        if rng.random() < 0.08:
            w += "."
        words.append(w)
        n += len(w) + 1
    body = {
        "model": REQUEST_MODEL,
        "messages": [
            {"role": "system", "content": "Summarise the document in one sentence."},
            {"role": "user", "content": " ".join(words)[:size]},
        ],
        "max_tokens": 64,
        "user": "bench-user-big",
    }
    return json.dumps(body, separators=(",", ":")).encode()
