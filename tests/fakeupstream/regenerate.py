"""Write the OpenAI body fixtures in tests/fixtures/openai/.

Run: ``python -m tests.fakeupstream.regenerate``.

The files, not this script, are the source of truth: the fake upstream serves them byte for
byte. The script exists so that a shape change (a new usage field, say) is one edit instead of
hand-editing two hundred SSE lines, and so that every body stays consistent with the usage
written down in index.toml (tests/test_fakeupstream.py checks that they agree).

Shapes follow OpenAI's wire format: non-streaming bodies are pretty-printed with two-space
indents and a trailing newline; SSE events are compact JSON, one ``data:`` line each, separated
by a blank line, ending with ``data: [DONE]``.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "fixtures" / "openai"
CREATED = 1755600000


def pretty(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def compact(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def sse(chunks: list[dict[str, Any]], *, done: bool = True, tail: bytes = b"") -> bytes:
    out = b"".join(f"data: {compact(c)}\n\n".encode() for c in chunks)
    return out + (b"data: [DONE]\n\n" if done else b"") + tail


def chat_usage(
    prompt: int,
    completion: int,
    *,
    cached: int = 0,
    reasoning: int = 0,
    cache_write: int | None = None,
) -> dict[str, Any]:
    """CompletionUsage; cache_write_tokens and the text/image split only on newer models."""
    prompt_details: dict[str, int] = {"cached_tokens": cached, "audio_tokens": 0}
    if cache_write is not None:
        prompt_details |= {"cache_write_tokens": cache_write, "text_tokens": prompt}
        prompt_details["image_tokens"] = 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": prompt_details,
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def chat_body(
    cid: str, model: str, content: str, usage: dict[str, Any], fingerprint: str | None
) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
        "service_tier": "default",
        "system_fingerprint": fingerprint,
    }


def chat_chunks(
    cid: str,
    model: str,
    pieces: list[str],
    usage: dict[str, Any] | None,
    *,
    fingerprint: str | None,
    obfuscate: bool = False,
) -> list[dict[str, Any]]:
    """Role chunk, one chunk per piece, finish chunk and, if usage is given, the usage chunk."""

    def chunk(delta: dict[str, Any], finish: str | None, n: int) -> dict[str, Any]:
        c: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }
        if obfuscate:
            c["obfuscation"] = "xKq9TzPbW3nVrLm"[: 3 + n % 11]
        return c

    out = [chunk({"role": "assistant", "content": "", "refusal": None}, None, 0)]
    out += [chunk({"content": p}, None, i + 1) for i, p in enumerate(pieces)]
    out.append(chunk({}, "stop", len(pieces) + 1))
    if usage is not None:
        final = {k: v for k, v in out[0].items() if k not in ("choices", "usage", "obfuscation")}
        out.append(final | {"choices": [], "usage": usage})
    return out


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    return pretty({"error": {"message": message, "type": type_, "param": param, "code": code}})


def embedding_vectors() -> list[list[float]]:
    # Multiples of 2**-12 are exact in float32, so the float and base64 bodies decode equal.
    return [[((i * 7 + j * 13) % 29 - 14) / 4096 for j in range(8)] for i in range(2)]


def files() -> dict[str, bytes]:
    mini, fp_mini = "gpt-4o-mini-2024-07-18", "fp_560af6e559"
    out: dict[str, bytes] = {}

    out["chat.json"] = pretty(
        chat_body(
            "chatcmpl-C6nD1mFq8vYb8LmN2pR7sK3wE6hJa",
            mini,
            "Hello! How can I help you today?",
            chat_usage(19, 10),
            fp_mini,
        )
    )
    out["chat_cached.json"] = pretty(
        chat_body(
            "chatcmpl-C6nD2cAcHeDpR0mPtWr1t3sK3wE6b",
            "gpt-5.6",
            "The contract's termination clause requires 30 days' written notice.",
            chat_usage(3438, 120, cached=1024, cache_write=2400),
            None,
        )
    )
    out["chat_reasoning.json"] = pretty(
        chat_body(
            "chatcmpl-C6nD3r3aS0n1ngM0d3lAnSw3rXyc",
            "o3-2025-04-16",
            "There are 3 r's in 'strawberry'.",
            chat_usage(37, 1186, reasoning=1088),
            None,
        )
    )

    hello = ["Hello", "!", " How", " can", " I", " help", " you", " today", "?"]
    out["chat_stream.sse"] = sse(
        chat_chunks(
            "chatcmpl-C6nD4sTr3aMiNgW1thUsAg3xYzd",
            mini,
            hello,
            chat_usage(19, 9),
            fingerprint=fp_mini,
            obfuscate=True,
        )
    )
    out["chat_stream_reasoning.sse"] = sse(
        chat_chunks(
            "chatcmpl-C6nD5r3aS0nStr3aMc4ch3dXyze",
            "gpt-5-2025-08-07",
            ["Use", " a", " binary", " search", "."],
            chat_usage(1311, 212, cached=1152, reasoning=192),
            fingerprint=None,
        )
    )
    cut = chat_chunks(
        "chatcmpl-C6nD6cUtOfFb3f0r3UsAg3Xyzfg",
        mini,
        ["Once", " upon", " a", " time", ",", " there", " was"],
        None,
        fingerprint=fp_mini,
    )
    out["chat_stream_cut.sse"] = sse(cut[:4], done=False)
    half = f"data: {compact(cut[4])}"
    out["chat_stream_cut_mid_event.sse"] = sse(
        cut[:3], done=False, tail=half[: len(half) // 2].encode()
    )
    out["chat_stream_slow.sse"] = sse(
        chat_chunks(
            "chatcmpl-C6nD7sL0wStr3aMg4t3dXyzghij",
            mini,
            ["Counting", ":", " one", " two", " three", " four", " five"],
            chat_usage(14, 7),
            fingerprint=fp_mini,
        )
    )
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    out["chat_stream_long.sse"] = sse(
        chat_chunks(
            "chatcmpl-C6nD8l0ngStr3aM200ChunksXyz",
            mini,
            [(" " if i else "") + words[i % len(words)] for i in range(200)],
            chat_usage(12, 200),
            fingerprint=fp_mini,
        )
    )

    instruct = "gpt-3.5-turbo-instruct"
    completion_usage = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    out["completion.json"] = pretty(
        {
            "id": "cmpl-C6nD9l3gAcYc0mPl3t10nXyzab",
            "object": "text_completion",
            "created": CREATED,
            "model": instruct,
            "choices": [
                {
                    "text": "\n\nThis is indeed a test.",
                    "index": 0,
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": completion_usage,
        }
    )

    def text_chunk(text: str, finish: str | None) -> dict[str, Any]:
        return {
            "id": "cmpl-C6nDAl3gAcYStr3aMXyzabcd",
            "object": "text_completion",
            "created": CREATED,
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
            "model": instruct,
            "usage": None,
        }

    pieces = ["\n\n", "This", " is", " indeed", " a", " test", "."]
    chunks = [text_chunk(p, None) for p in pieces] + [text_chunk("", "stop")]
    final = {k: v for k, v in chunks[0].items() if k != "usage"}
    chunks.append(final | {"choices": [], "usage": completion_usage})
    out["completion_stream.sse"] = sse(chunks)

    vectors = embedding_vectors()
    emb_usage = {"prompt_tokens": 8, "total_tokens": 8}

    def embeddings(encode: bool) -> bytes:
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()
                if encode
                else v,
            }
            for i, v in enumerate(vectors)
        ]
        body = {"object": "list", "data": data, "model": "text-embedding-3-small"}
        return pretty(body | {"usage": emb_usage})

    out["embeddings.json"] = embeddings(False)
    out["embeddings.base64.json"] = embeddings(True)

    models = [
        ("gpt-4o-mini", 1721172741),
        ("gpt-4o-mini-2024-07-18", 1721172717),
        ("o3-2025-04-16", 1744133506),
        ("gpt-5-2025-08-07", 1754075360),
        ("gpt-3.5-turbo-instruct", 1692901427),
        ("text-embedding-3-small", 1705948997),
    ]
    out["models.json"] = pretty(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": c, "owned_by": "system"} for m, c in models
            ],
        }
    )

    out["error_400.json"] = error_body(
        "Invalid value for 'temperature': expected a number between 0 and 2, got 7.",
        "invalid_request_error",
        "invalid_value",
        "temperature",
    )
    out["error_401.json"] = error_body(
        "Incorrect API key provided: sk-proj-****************************wxyz. You can find"
        " your API key at https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    )
    out["error_429_rate_limit.json"] = error_body(
        "Rate limit reached for gpt-4o-mini in organization org-spendgatefake on tokens per"
        " min (TPM): Limit 200000, Used 199990, Requested 29. Please try again in 20ms. Visit"
        " https://platform.openai.com/account/rate-limits to learn more.",
        "tokens",
        "rate_limit_exceeded",
    )
    out["error_429_quota.json"] = error_body(
        "You exceeded your current quota, please check your plan and billing details. For"
        " more information on this error, read the docs:"
        " https://platform.openai.com/docs/guides/error-codes/api-errors.",
        "insufficient_quota",
        "insufficient_quota",
    )
    out["error_500.json"] = error_body(
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    )
    out["error_503.json"] = error_body(
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    )
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in files().items():
        (OUT / name).write_bytes(data)
        print(f"wrote {name} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
