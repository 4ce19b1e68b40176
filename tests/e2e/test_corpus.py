"""The conformance corpus: every wire fixture with an ``expect`` table, through the real proxy.

Each scenario in tests/fixtures/{openai,anthropic,gemini,azure}/index.toml with ``call`` and
``expect`` is requested through a real spendgate server (its own route, its own auth header)
from the fake upstream, and the ledger row is compared with the expected usage and the cost
worked out by hand in the index file. One server serves the whole module.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.fixtures import CATALOG, Scenario
from tests.fakeupstream.server import FakeUpstream

KEY = "sg-corpus-key-0123456789"
AZURE_UPSTREAM_KEY = "azure-upstream-key"
SAY_HELLO = [{"role": "user", "content": "Say hello"}]

# The built-in catalog has no per-search price for Claude; Anthropic lists web search at
# $10 per 1,000 searches. The corpus prices it through an override of the same version.
OVERRIDE = """
version: corpus
models:
  claude-sonnet-4-5:
    source: "docs.claude.com pricing: web search $10 per 1,000 searches"
    prices:
      - effective_from: 2025-09-29
        input: 3
        cached_input: 0.3
        cache_write: 3.75
        cache_write_1h: 6
        output: 15
        web_search: 0.01
"""

CORPUS = sorted(n for n, s in CATALOG.scenarios.items() if s.call and s.expect)
TOKEN_COLUMNS = (
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)


@pytest.fixture(scope="module")
def proxy(fake_upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("corpus")
    (tmp / "prices.yaml").write_text(OVERRIDE)
    up = fake_upstream.url
    raw = {
        "storage": {"database_url": f"sqlite:///{tmp / 'ledger.db'}"},
        "providers": {
            "openai": {"kind": "openai", "base_url": up, "api_key": "sk-up", "models": ["gpt-*"]},
            "anthropic": {"kind": "anthropic", "base_url": up, "api_key": "sk-ant-up"},
            "gemini": {"kind": "gemini", "base_url": up, "api_key": "AIza-up"},
            # Azure-style calls name deployment chat-prod; routing gpt-4o stays with openai
            "azure": {
                "kind": "azure",
                "base_url": up,
                "api_key": AZURE_UPSTREAM_KEY,
                "deployments": {"chat-prod": "gpt-4o"},
                "models": [],
            },
        },
        "keys": [{"key": KEY, "team": "corpus"}],
        "pricing": {"catalog": str(tmp / "prices.yaml")},
    }
    with ProxyServer(raw) as server:
        yield server


def _request(scenario: Scenario) -> tuple[str, dict[str, Any], dict[str, str]]:
    """URL path, JSON body and auth headers for the scenario's route, in that API's shape."""
    assert scenario.call is not None
    path, model, stream = scenario.call["path"], scenario.call["model"], scenario.is_sse
    if path.startswith("/anthropic/"):
        body = {"model": model, "max_tokens": 1024, "messages": SAY_HELLO, "stream": stream}
        return path, body, {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    if path.startswith("/gemini/"):
        body = {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}]}
        return path + ("?alt=sse" if stream else ""), body, {"x-goog-api-key": KEY}
    if path.startswith("/openai/"):  # Azure: the deployment in the path, the key in api-key
        body = {"messages": SAY_HELLO, "stream": stream}
        return path + "?api-version=2024-10-21", body, {"api-key": KEY}
    if path == "/v1/responses":
        body = {"model": model, "input": "Say hello", "stream": stream}
    else:
        body = {"model": model, "messages": SAY_HELLO, "stream": stream}
    return path, body, {"authorization": f"Bearer {KEY}"}


@pytest.mark.parametrize("name", CORPUS)
def test_corpus(name: str, proxy: ProxyServer, upstream: FakeUpstream) -> None:
    scenario = CATALOG[name]
    expect = dict(scenario.expect or {})
    path, body, headers = _request(scenario)
    headers["x-fake-scenario"] = name
    with httpx.Client(base_url=proxy.base_url, timeout=10) as http:
        with http.stream("POST", path, json=body, headers=headers) as resp:
            request_id = resp.headers["x-spendgate-request-id"]
            try:
                received = resp.read()
            except httpx.HTTPError:  # a cut-off stream reaches the client cut off
                received = None
    if scenario.drop:
        assert received is None
    else:
        # what the client gets is what the provider sent, byte for byte
        assert received == scenario.wire_body(include_usage=False)

    row = proxy.wait_row(request_id)
    assert row.status_code == expect.pop("status_code", 200)
    assert row.outcome == expect.pop("outcome")
    assert row.usage_source == expect.pop("usage_source", "none")
    if "error_type" in expect:
        assert row.error_type == expect.pop("error_type")
    for column in expect.pop("absent", []):
        assert getattr(row, column) is None, column
    for column in TOKEN_COLUMNS:
        if column in expect:
            assert getattr(row, column) == expect.pop(column), column
    for column in ("cost_usd", "cost_cache_write_usd", "cost_other_usd"):
        if column in expect:
            assert getattr(row, column) == Decimal(expect.pop(column)), column
    assert row.list_cost_usd == row.cost_usd  # no rate card in the corpus
    assert not expect, f"expect keys this test does not check: {sorted(expect)}"
    assert row.provider == {"/anthropic": "anthropic", "/gemini": "gemini", "/openai": "azure"}.get(
        "/" + path.split("/")[1], "openai"
    )
    # the provider got its own key in its own header, never the virtual key
    (req,) = upstream.requests
    assert KEY not in repr(req.headers) and "key=" not in req.query
    if path.startswith("/openai/"):
        assert req.headers["api-key"] == AZURE_UPSTREAM_KEY
        assert req.path == path.partition("?")[0] and req.params["api-version"] == "2024-10-21"
