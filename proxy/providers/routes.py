"""The data-plane routing table: which paths exist, which adapter reads each, where it goes.

In match order: each wire format's own routes (``/v1/...``, ``/anthropic/...``,
``/gemini/...``), Azure's (``/openai/deployments/...``), then one ``/{provider}/...`` set per
configured provider: the routes of every format that provider speaks, under its name, always
served by it whatever the model (``POST /groq/v1/chat/completions`` goes to ``groq``). Config
loading refuses provider names that would shadow a built-in prefix (``proxy.config``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from proxy.config import ProviderConfig
from proxy.providers import anthropic, azure, gemini, openai, responses
from proxy.providers.base import Adapter, CallInfo, Route

__all__ = ["data_plane_routes", "upstream_target"]

# GET /{provider}/v1/models: the provider's own model list, passed through.
_MODELS = Route("/v1/models", "models", "models", methods=("GET",), billed=False)


def data_plane_routes(providers: tuple[ProviderConfig, ...]) -> list[tuple[Adapter, Route]]:
    """Every data-plane route with the adapter that serves it, in match order."""
    chat, resp = openai.OpenAIAdapter(), responses.ResponsesAdapter()
    native: list[Adapter] = [chat, resp, anthropic.AnthropicAdapter(), gemini.GeminiAdapter()]
    out = [(a, r) for a in native for r in a.routes]
    azure_chat_routes, azure_resp_routes = azure.inbound_routes()
    azure_chat = azure.DeploymentAdapter(chat, providers, azure_chat_routes)
    azure_resp = azure.DeploymentAdapter(resp, providers, azure_resp_routes)
    out += [(a, r) for a in (azure_chat, azure_resp) for r in a.routes]
    for p in providers:
        if p.name in ("anthropic", "gemini"):
            continue  # the built-in /anthropic/ and /gemini/ routes serve these
        prefix = "/" + p.name
        shapes: list[tuple[Adapter, Route]] = [
            (a, r) for a in native for r in a.routes if _speaks(p, r)
        ]
        if p.kind in ("openai", "azure", "mock"):
            shapes.append((chat, _MODELS))
        for adapter, r in shapes:
            if p.kind == "azure":
                adapter = azure_resp if adapter is resp else azure_chat
            path = prefix + r.path.removeprefix(r.strip_prefix)
            out.append((adapter, replace(r, path=path, strip_prefix=prefix, provider=p.name)))
    return out


def _speaks(provider: ProviderConfig, route: Route) -> bool:
    """Whether ``provider`` serves ``route``'s format (the mock speaks them all)."""
    if provider.kind == "mock":
        return True
    if not route.kinds:  # OpenAI-compatible
        return provider.kind in ("openai", "azure")
    return provider.kind in route.kinds


def upstream_target(
    provider: ProviderConfig,
    route: Route,
    scope: dict[str, Any],
    call: CallInfo | None,
    body: bytes,
) -> tuple[str, bytes]:
    """The upstream URL of a request to ``route`` and the body to send there.

    The provider's base URL plus the request path without our own prefix (``/anthropic``,
    ``/groq``), query kept, body untouched; Azure maps paths to deployments (``azure.target``).
    """
    path = scope["path"].removeprefix(route.strip_prefix)
    query = (scope.get("query_string") or b"").decode("latin-1")
    if provider.kind == "azure":
        return azure.target(provider, path, query, call, body)
    return provider.base_url + path + ("?" + query if query else ""), body
