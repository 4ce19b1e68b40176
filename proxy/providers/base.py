"""What every provider adapter deals in: the parsed request and the metered response.

An adapter is created per provider kind and is stateless; per-request state lives in the
``StreamMeter`` it hands out for a streamed response.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from proxy.config import ProviderConfig
    from proxy.errors import ProxyError

from pricing.usage import Usage
from proxy.sse import EventSplitter

__all__ = ["Adapter", "CallInfo", "EventMeter", "ResponseInfo", "Route", "StreamMeter"]


@dataclass(slots=True)
class CallInfo:
    """What the proxy needs to know about a request before forwarding it."""

    endpoint: str  # "chat.completions" | "completions" | "embeddings" | ...
    operation: str  # OTel gen_ai.operation.name: "chat" | "text_completion" | "embeddings"
    model: str
    stream: bool = False
    client_wants_usage: bool = True  # False: keep the injected usage chunk from the client
    max_output_tokens: int | None = None
    end_user: str | None = None
    body: dict[str, Any] = field(default_factory=dict)  # the parsed request JSON
    # The provider the request itself names (an Azure deployment), over routing by model.
    provider: str | None = None


@dataclass(slots=True)
class ResponseInfo:
    """What a response told us: usage as the provider reported it, and identifiers."""

    usage: Usage | None = None
    model: str | None = None
    response_id: str | None = None
    finish_reasons: tuple[str, ...] = ()
    service_tier: str | None = None
    error: str | None = None  # an error the provider reported inside a 200 stream
    # What a stream reported before its final count (Anthropic's message_start, Gemini's
    # prompt-only metadata): exact as far as it goes. Used only when ``usage`` never came,
    # so that a cut-off stream is billed the input the provider reported and only the
    # output is estimated.
    partial_usage: Usage | None = None


class StreamMeter(Protocol):
    """Fed a streamed body chunk by chunk; decides what the client sees and meters usage."""

    def feed(self, chunk: bytes) -> bytes:
        """Bytes to forward to the client now (possibly b"")."""
        ...

    def finish(self) -> bytes:
        """Bytes still held back when the upstream ends (normally b"")."""
        ...

    def info(self) -> ResponseInfo:
        """What the stream reported so far; ``usage`` is None when it never arrived."""
        ...

    def streamed_text(self) -> str:
        """The generated text streamed so far, to count when no usage arrived."""
        ...


@dataclass(frozen=True, slots=True)
class Route:
    """One data-plane route an adapter serves (a starlette path, with ``{param}`` parts)."""

    path: str
    endpoint: str  # ledger ``endpoint``: "chat.completions", "messages", ...
    operation: str  # OTel gen_ai.operation.name
    # Our path prefix that is not part of the provider's own path ("/anthropic").
    strip_prefix: str = ""
    # Provider kinds that speak this format; () routes by model name alone (OpenAI-compatible).
    kinds: tuple[str, ...] = ()
    methods: tuple[str, ...] = ("POST",)
    # False: passed through and recorded at zero cost (count_tokens, GET /v1/responses/{id}).
    billed: bool = True
    # A /{provider}/... route: always this configured provider, whatever the model.
    provider: str | None = None


class Adapter(Protocol):
    """One provider wire format: how to read its requests, meter its answers, speak its errors.

    Stateless and shared; per-request state lives in the ``StreamMeter`` it hands out.
    """

    routes: tuple[Route, ...]

    def parse_request(
        self, route: Route, raw: bytes, path_params: dict[str, Any]
    ) -> tuple[CallInfo, bytes]:
        """What metering needs from a request, and the body to send upstream."""
        ...

    def auth_headers(self, provider: ProviderConfig) -> list[tuple[str, str]]:
        """The provider's credentials, in the header its API expects."""
        ...

    def parse_response(self, body: bytes) -> ResponseInfo:
        """Usage and identifiers from a whole (non-streamed) response body."""
        ...

    def stream_meter(self, call: CallInfo) -> StreamMeter:
        """A fresh meter for one streamed response."""
        ...

    def error_body(self, err: ProxyError) -> bytes:
        """``err`` in this provider's error JSON."""
        ...


class EventMeter:
    """Base of the meters that forward every chunk untouched and read whole SSE events.

    Subclasses implement ``_see(event)``; ``_text`` and ``_kept`` hold what streamed, for
    counting when the provider never reports usage. Events that can only carry streamed text
    (``TEXT_EVENTS``: their ``event:`` line names a delta) are the bulk of a stream and matter
    only when usage never comes, so they are kept raw and parsed on demand by
    ``streamed_text()``, not as they pass.
    """

    __slots__ = ("_deferred", "_deferred_bytes", "_info", "_kept", "_split", "_text")

    TEXT_EVENTS: tuple[bytes, ...] = ()  # e.g. b"event: content_block_delta\n"
    MAX_DEFERRED = 4 * 1024 * 1024  # raw text events kept for an estimate (bytes)

    def __init__(self) -> None:
        self._split = EventSplitter()
        self._info = ResponseInfo()
        self._text: list[str] = []
        self._kept = 0
        self._deferred: list[bytes] = []
        self._deferred_bytes = 0

    def feed(self, chunk: bytes) -> bytes:
        text_events = self.TEXT_EVENTS
        for ev in self._split.feed(chunk):
            if text_events and ev.startswith(text_events):
                if self._deferred_bytes < self.MAX_DEFERRED:
                    self._deferred.append(ev)
                    self._deferred_bytes += len(ev)
            else:
                self._see(ev)
        return chunk

    def finish(self) -> bytes:
        tail = self._split.pending
        if tail.strip():
            self._see(tail)
        return b""

    def streamed_text(self) -> str:
        """The text streamed so far (parsing the deferred text events once)."""
        deferred, self._deferred = self._deferred, []
        for ev in deferred:
            self._see(ev)
        return "".join(self._text)

    def _see(self, ev: bytes) -> None:
        raise NotImplementedError
