"""Small readers shared by the native-format adapters (Anthropic, Gemini, Responses).

Requests are read, never rewritten: the adapters forward the client's bytes unchanged. What
they keep is the counting view of a request (its text, for the tokenizer when a provider
reports no usage), so a cut-off stream is still metered.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from proxy.errors import InvalidRequest

__all__ = ["int_or_none", "json_object", "parse_object", "str_or_none", "texts"]

# Keys whose string values are not text the model reads as tokens: base64 media, ids, URLs.
_NOT_TEXT = frozenset({"data", "id", "tool_use_id", "media_type", "mimeType", "fileUri", "url"})


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_object(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidRequest`` saying what is wrong."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(
            "We could not parse the JSON body of your request. The body must be valid JSON "
            f"({exc.msg} at position {exc.pos})."
        ) from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def json_object(data: bytes) -> dict[str, Any] | None:
    """``data`` as a JSON object, or None (a torn or foreign event is simply skipped)."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def texts(value: Any) -> Iterator[str]:
    """Every string a model would read as text in ``value`` (messages, tools, system...).

    Used to estimate tokens of providers without a public tokenizer: the proxy counts these
    strings with o200k_base (see proxy.tokens). Media payloads and ids are skipped.
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in _NOT_TEXT:
                yield from texts(item)
