from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from proxy.config import parse_config
from proxy.providers import openai, responses
from proxy.providers.azure import DeploymentAdapter, inbound_routes, target
from proxy.providers.base import CallInfo
from proxy.providers.routes import data_plane_routes

BASE = "https://res.openai.azure.com"


def providers(**azure: Any) -> Any:
    raw = {
        "azure": {
            "kind": "azure",
            "base_url": BASE,
            "api_key": "k",
            "deployments": {
                "prod-4o": "gpt-4o",
                "eu-4o": "gpt-4o",
                "emb": "text-embedding-3-small",
            },
            **azure,
        },
        "mock": {"kind": "mock", "models": ["mock-*"]},
    }
    return parse_config({"providers": raw}, env={}).providers


def call(model: str, named: str | None = None, endpoint: str = "chat.completions") -> CallInfo:
    return CallInfo(endpoint, "chat", model, body={"model": named or model})


BODY = b'{"model":"gpt-4o","messages":[]}'


@pytest.mark.parametrize(
    ("path", "query", "info", "url", "model"),  # model: the body's, as sent upstream
    [
        # OpenAI-style paths (routed by model, or /azure/v1/...): a deployment serving it
        (
            "/v1/chat/completions",
            "",
            call("gpt-4o"),
            f"{BASE}/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
            "gpt-4o",  # Azure reads the deployment from the path: the body is left alone
        ),
        (  # the deployment the client named wins over the first one serving the model
            "/v1/chat/completions",
            "",
            call("gpt-4o", named="eu-4o"),
            f"{BASE}/openai/deployments/eu-4o/chat/completions?api-version=2024-10-21",
            "gpt-4o",
        ),
        (  # a model no deployment lists: a deployment named after it, path-quoted
            "/v1/embeddings",
            "",
            call("x/../y", endpoint="embeddings"),
            f"{BASE}/openai/deployments/x%2F..%2Fy/embeddings?api-version=2024-10-21",
            "gpt-4o",
        ),
        (  # not a deployment path: /openai/..., the deployment as the body's model
            "/v1/responses",
            "",
            call("gpt-4o", endpoint="responses"),
            f"{BASE}/openai/responses?api-version=2024-10-21",
            "prod-4o",
        ),
        (  # an Azure client's own path and api-version go through unchanged
            "/openai/deployments/eu-4o/chat/completions",
            "api-version=2024-06-01",
            call("gpt-4o", named="eu-4o"),
            f"{BASE}/openai/deployments/eu-4o/chat/completions?api-version=2024-06-01",
            "gpt-4o",
        ),
        (  # ... and get the provider's api-version when they have none
            "/openai/deployments/eu-4o/chat/completions",
            "foo=1",
            call("gpt-4o", named="eu-4o"),
            f"{BASE}/openai/deployments/eu-4o/chat/completions?foo=1&api-version=2024-10-21",
            "gpt-4o",
        ),
    ],
)
def test_target_dated_api(path: str, query: str, info: CallInfo, url: str, model: str) -> None:
    (provider, _) = providers()
    got_url, body = target(provider, path, query, info, BODY)
    assert got_url == url
    assert orjson.loads(body)["model"] == model
    if model == "gpt-4o":
        assert body is BODY  # untouched, byte for byte


def test_target_v1_api() -> None:
    (provider, _) = providers(api_version="v1")
    url, body = target(provider, "/v1/chat/completions", "", call("gpt-4o"), BODY)
    assert (url, orjson.loads(body)["model"]) == (f"{BASE}/openai/v1/chat/completions", "prod-4o")
    url, _ = target(provider, "/v1/models", "", None, b"")  # GET /azure/v1/models
    assert url == f"{BASE}/openai/v1/models"
    # an Azure client's deployment path still needs a dated api-version
    url, _ = target(provider, "/openai/deployments/emb/embeddings", "", call("x"), b"{}")
    assert url == f"{BASE}/openai/deployments/emb/embeddings?api-version=2024-10-21"


def test_deployment_adapter_prices_the_deployment_model() -> None:
    config = providers()
    chat_routes, response_routes = inbound_routes()
    adapter = DeploymentAdapter(openai.OpenAIAdapter(), config, chat_routes)
    info, raw = adapter.parse_request(
        chat_routes[0], b'{"messages":[],"stream":true}', {"deployment": "eu-4o"}
    )
    assert (info.model, info.provider, info.stream) == ("gpt-4o", "azure", True)
    assert json.loads(raw)["stream_options"] == {"include_usage": True}
    # a deployment nobody lists is a model name, routed as usual (here: to the mock)
    info, _ = adapter.parse_request(chat_routes[0], b"{}", {"deployment": "mock-gpt-4o-mini"})
    assert (info.model, info.provider) == ("mock-gpt-4o-mini", None)
    # /openai/responses names the deployment in the body
    resp = DeploymentAdapter(responses.ResponsesAdapter(), config, response_routes)
    info, _ = resp.parse_request(response_routes[0], b'{"model":"prod-4o","input":"hi"}', {})
    assert (info.endpoint, info.model, info.provider) == ("responses", "gpt-4o", "azure")


def test_prefix_routes_of_an_azure_provider_read_its_deployments() -> None:
    table = {r.path: (a, r) for a, r in data_plane_routes(providers())}
    adapter, route = table["/azure/v1/chat/completions"]
    assert (route.provider, route.strip_prefix) == ("azure", "/azure")
    info, _ = adapter.parse_request(route, b'{"model":"emb","messages":[]}', {})
    assert (info.model, info.provider) == ("text-embedding-3-small", None)
    assert "/azure/v1/models" in table and "/azure/v1/messages" not in table
    assert "/mock/v1/messages" in table  # the mock speaks every format


def test_auth_header() -> None:
    (azure, _) = providers()
    assert openai.auth_headers(azure) == [("api-key", "k")]
