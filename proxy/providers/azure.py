"""Azure OpenAI: OpenAI's wire format behind deployment paths, ``api-version`` and ``api-key``.

Two ways in:

- Apps on ``openai.AzureOpenAI(azure_endpoint=<spendgate>, api_key=<virtual key>, ...)`` call
  ``/openai/deployments/{deployment}/chat/completions?api-version=...`` (and ``/completions``,
  ``/embeddings``, ``/openai/responses``) with the key in ``api-key``. The deployment names
  the provider and, through its ``deployments`` map, the model that prices the call. The path
  and the client's ``api-version`` go upstream unchanged.
- Apps on the plain OpenAI SDK call ``/v1/...`` (routed by model name) or ``/{provider}/v1/...``.
  Upstream that becomes ``/openai/deployments/{deployment}/...?api-version=...`` with the
  provider's ``api_version``, or Azure's GA ``/openai/v1/...`` paths when it is ``v1`` (the
  deployment then goes in the body's ``model``, as Azure's v1 API wants).

The provider key goes upstream in ``api-key`` (``openai.auth_headers``); the client's key,
whatever header it came in, never does (``proxy.headers``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import orjson

from proxy.config import AZURE_API_VERSION, ProviderConfig
from proxy.providers import openai
from proxy.providers.base import Adapter, CallInfo, ResponseInfo, Route, StreamMeter

if TYPE_CHECKING:
    from proxy.errors import ProxyError

__all__ = ["DeploymentAdapter", "inbound_routes", "target"]

_KINDS = ("azure",)
# The endpoints Azure serves under /openai/deployments/{deployment}/ (the rest sit under /openai/).
_DEPLOYMENT_PATHS = frozenset({"/chat/completions", "/completions", "/embeddings"})


def inbound_routes() -> tuple[tuple[Route, ...], tuple[Route, ...]]:
    """The paths Azure clients call: (chat/completions/embeddings routes, Responses routes)."""
    base = "/openai/deployments/{deployment}"
    chat = (
        Route(base + "/chat/completions", "chat.completions", "chat", kinds=_KINDS),
        Route(base + "/completions", "completions", "text_completion", kinds=_KINDS),
        Route(base + "/embeddings", "embeddings", "embeddings", kinds=_KINDS),
    )
    responses = (
        Route("/openai/responses", "responses", "chat", kinds=_KINDS),
        Route(
            "/openai/responses/{response_id}",
            "responses.retrieve",
            "responses",
            kinds=_KINDS,
            methods=("GET", "DELETE"),
            billed=False,
        ),
    )
    return chat, responses


class DeploymentAdapter:
    """An OpenAI-format adapter that also reads Azure deployment names.

    A deployment (in the path, or as the body's ``model`` on Azure's other routes) is mapped to
    the provider that has it and the model it serves: that model is what the call is priced,
    budgeted and allow-listed as. Everything else is the wrapped adapter's.
    """

    def __init__(
        self, inner: Adapter, providers: Iterable[ProviderConfig], routes: tuple[Route, ...] = ()
    ) -> None:
        self.inner = inner
        self.routes = routes
        self._by_provider: dict[str, dict[str, str]] = {}
        self._anywhere: dict[str, tuple[str, str]] = {}  # deployment -> (provider, model)
        for p in providers:
            if p.kind == "azure":
                self._by_provider[p.name] = dict(p.deployments)
                for deployment, model in p.deployments:
                    self._anywhere.setdefault(deployment, (p.name, model))

    def _resolve(self, route: Route, deployment: str) -> tuple[str | None, str]:
        if route.provider is not None:  # /{provider}/...: that provider's deployments only
            return None, self._by_provider.get(route.provider, {}).get(deployment, deployment)
        # Unknown deployments are taken as model names, routed like any other model.
        return self._anywhere.get(deployment, (None, deployment))

    def parse_request(
        self, route: Route, raw: bytes, path_params: dict[str, Any]
    ) -> tuple[CallInfo, bytes]:
        deployment = path_params.get("deployment")
        if isinstance(deployment, str):
            provider, model = self._resolve(route, deployment)
            call, body = openai.parse_request(route.endpoint, route.operation, raw, model=model)
        else:
            call, body = self.inner.parse_request(route, raw, path_params)
            provider, call.model = self._resolve(route, call.model)
        call.provider = provider
        return call, body

    def auth_headers(self, provider: ProviderConfig) -> list[tuple[str, str]]:
        return self.inner.auth_headers(provider)

    def parse_response(self, body: bytes) -> ResponseInfo:
        return self.inner.parse_response(body)

    def stream_meter(self, call: CallInfo) -> StreamMeter:
        return self.inner.stream_meter(call)

    def error_body(self, err: ProxyError) -> bytes:
        return self.inner.error_body(err)


def deployment_for(provider: ProviderConfig, call: CallInfo) -> str:
    """The deployment to call: the one the client named, else the first serving the model,
    else a deployment named after the model (a common Azure convention)."""
    deployments = dict(provider.deployments)
    named = call.body.get("model")
    if isinstance(named, str) and named in deployments:
        return named
    for deployment, model in provider.deployments:
        if model == call.model:
            return deployment
    return call.model


def target(
    provider: ProviderConfig, path: str, query: str, call: CallInfo | None, body: bytes
) -> tuple[str, bytes]:
    """The upstream URL for ``path`` (ours, without a /{provider} prefix) and the body to send."""
    base = provider.base_url
    if path.startswith("/openai/"):  # an Azure client's own path and api-version
        version = None if path.startswith("/openai/v1/") else provider.api_version
        if version == "v1":
            version = AZURE_API_VERSION
        return base + path + _query(query, version), body
    rest = path.removeprefix("/v1")  # /v1/chat/completions -> /chat/completions
    deployment = deployment_for(provider, call) if call is not None else None
    if provider.api_version == "v1":
        return f"{base}/openai/v1{rest}{_query(query, None)}", _with_model(body, deployment)
    version = provider.api_version or AZURE_API_VERSION
    if deployment is not None and rest in _DEPLOYMENT_PATHS:
        url = f"{base}/openai/deployments/{quote(deployment, safe='')}{rest}"
        return url + _query(query, version), body  # Azure reads the model from the path
    return f"{base}/openai{rest}{_query(query, version)}", _with_model(body, deployment)


def _query(query: str, version: str | None) -> str:
    """``?query`` with ``api-version`` added when the client gave none."""
    given = any(p.partition("=")[0] == "api-version" for p in query.split("&"))
    if version and not given:
        query = f"{query}&api-version={version}" if query else f"api-version={version}"
    return "?" + query if query else ""


def _with_model(body: bytes, deployment: str | None) -> bytes:
    """The body with ``model`` set to the deployment (only rewritten when it differs)."""
    if deployment is None or not body:
        return body
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(obj, dict) or obj.get("model") == deployment:
        return body
    obj["model"] = deployment
    return orjson.dumps(obj)
