"""Which headers cross the proxy, in each direction.

Hop-by-hop headers (RFC 9110 section 7.6.1, plus any named in ``Connection``) never cross.
The client's credentials are replaced by the provider's; spendgate's own ``x-spendgate-*``
request headers stay here. Bodies are re-framed by us, so length and encoding headers are
ours to set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

from proxy.config import ProviderConfig

__all__ = ["request_headers", "response_headers", "take_query_key"]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Never forwarded upstream: framing we redo, credentials we replace, our own controls.
_DROP_UP = HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"accept-encoding",
    b"authorization",
    b"x-api-key",
    b"x-goog-api-key",
    b"api-key",
    b"openai-organization",
    b"openai-project",
    b"cookie",
}

# Never relayed back: we relay decoded bytes with our own framing.
_DROP_DOWN = HOP_BY_HOP | {b"content-length", b"content-encoding"}


def _connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    named: set[bytes] = set()
    for k, v in headers:
        if k == b"connection":
            named.update(t.strip().lower() for t in v.split(b","))
    return named


def request_headers(
    client_headers: Iterable[tuple[bytes, bytes]],
    provider: ProviderConfig,
    auth: Iterable[tuple[str, str]],
) -> list[tuple[str, str]]:
    """The headers to send upstream for a client request to ``provider``; ``auth`` carries
    the provider's credentials in the header its API expects."""
    client_headers = list(client_headers)
    drop = _DROP_UP | _connection_tokens(client_headers)
    out = [
        (k.decode("latin-1"), v.decode("latin-1"))
        for k, v in client_headers
        if k not in drop and not k.startswith(b"x-spendgate-")
    ]
    out.extend(auth)
    out.extend(provider.headers)
    return out


def response_headers(
    upstream_headers: Iterable[tuple[bytes, bytes]], extra: Iterable[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """The headers to relay to the client (names already lower-case), plus ours."""
    upstream_headers = list(upstream_headers)
    drop = _DROP_DOWN | _connection_tokens(upstream_headers)
    out = [(k, v) for k, v in upstream_headers if k not in drop]
    out.extend(extra)
    return out


def take_query_key(scope: dict[str, Any]) -> str | None:
    """Remove a ``key=`` query parameter (Gemini's way to pass the API key) from the request
    and return it.

    The scope's query string is rewritten in place, so the client's key is neither forwarded
    upstream (the provider's goes in a header) nor seen by anything that logs the URL
    afterwards (uvicorn's access log reads the same scope).
    """
    query: bytes = scope.get("query_string") or b""
    if b"key=" not in query:
        return None
    found: str | None = None
    kept = []
    for part in query.split(b"&"):
        name, _, value = part.partition(b"=")
        if name == b"key":
            found = unquote_to_bytes(value.replace(b"+", b" ")).decode("latin-1") or found
        elif part:
            kept.append(part)
    scope["query_string"] = b"&".join(kept)
    return found
