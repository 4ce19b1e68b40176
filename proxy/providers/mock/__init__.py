"""The built-in mock provider: answers in each provider's wire format, in process, with usage.

It plugs in where the HTTP client would (it implements ``Upstream``), so a mocked call takes
exactly the path a real one does: same parsing, metering, pricing, ledger. It speaks OpenAI
(chat, completions, embeddings, Responses), Anthropic Messages and Gemini generateContent,
streaming included, one module per format. Answers are deterministic for a given request;
token counts are tiktoken's for the mock's own text and the proxy's own counting for the
prompt, so the ledger of a demo looks like a real one. ``mock-gpt-4o-mini`` is priced as
``gpt-4o-mini``, ``mock-claude-sonnet-4-5`` as ``claude-sonnet-4-5``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson

from proxy.providers.mock import anthropic, gemini, openai, responses
from proxy.providers.mock.common import MOCK_PREFIX, MockResponse, priced_model
from proxy.tokens import Tokenizer

__all__ = ["MOCK_PREFIX", "MockUpstream", "priced_model"]


class MockUpstream:
    """An ``Upstream`` that answers locally. Latency is simulated with sleeps, not CPU."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        latency_ms: float = 0.0,
        chunk_delay_ms: float = 0.0,
        catalog_models: Iterable[str] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self._latency = latency_ms / 1000
        self.chunk_delay = chunk_delay_ms / 1000
        self._models = sorted(catalog_models)

    async def aclose(self) -> None:
        pass

    async def count(self, endpoint: str, model: str, req: dict[str, Any], size: int) -> int:
        if size > 4096:  # big prompts are tokenized off the event loop
            return await asyncio.to_thread(self.tokenizer.count_request, endpoint, model, req)
        return self.tokenizer.count_request(endpoint, model, req)

    async def send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> MockResponse:
        rest = url.split("://", 1)[-1]
        path, _, query = ("/" + rest.split("/", 1)[-1]).partition("?")
        if self._latency:
            await asyncio.sleep(self._latency)
        if method == "GET" and path.endswith("/models"):
            return openai.models_list(self._models)
        gemini_call = "/models/" in path and ":" in path.rsplit("/", 1)[-1]
        if method != "POST":
            if gemini_call:
                return gemini.error(405, f"Method {method} is not allowed on {path}.")
            return openai.error(404, f"The mock provider stores no responses ({path}).")
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError:
            req = None
        if not isinstance(req, dict):
            message = "We could not parse the JSON body of your request."
            if gemini_call:
                return gemini.error(400, message)
            if path.endswith(("/messages", "/count_tokens")):
                return anthropic.error(400, "invalid_request_error", message)
            return openai.error(400, message)
        if gemini_call:
            model, _, verb = path.rsplit("/", 1)[-1].partition(":")
            if verb == "countTokens":
                return await gemini.count_tokens(self, model, req, body)
            if verb not in ("generateContent", "streamGenerateContent"):
                return gemini.error(404, f"The mock provider has no method {verb}.")
            stream = verb == "streamGenerateContent"
            sse = "alt=sse" in query
            return await gemini.generate(self, model, req, body, stream=stream, sse=sse)
        if path.endswith("/messages"):
            return await anthropic.messages(self, req, body)
        if path.endswith("/messages/count_tokens"):
            return await anthropic.count_tokens(self, req, body)
        if not isinstance(req.get("model"), str):
            return openai.error(400, "you must provide a model parameter")
        if path.endswith("/chat/completions"):
            return await openai.completion(self, req, body, chat=True)
        if path.endswith("/completions"):
            return await openai.completion(self, req, body, chat=False)
        if path.endswith("/embeddings"):
            return await openai.embeddings(self, req, body)
        if path.endswith("/responses"):
            return await responses.create(self, req, body)
        return openai.error(404, f"The mock provider has no route {path}.", "unknown_url")
