"""Fuzz the admin API from its own OpenAPI document: no 500s, every answer as documented."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from proxy.admin.openapi import openapi_document
from tests.e2e.proxyserver import ProxyServer

ADMIN = "fuzz-admin-key-0123456789abcdef"
TEAM_ADMIN = "fuzz-team-admin-key-0123456789"

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.unsupported_method,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyServer]:
    db = tmp_path_factory.mktemp("fuzz") / "spendgate.db"
    raw = {
        "storage": {"database_url": f"sqlite:///{db}"},
        "admin": {"key": ADMIN, "team_keys": {"search": TEAM_ADMIN}},
        "budgets": [{"scope": "team", "match": "search", "period": "month", "limit_usd": 10}],
    }
    with ProxyServer(raw) as proxy:
        headers = {"authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=proxy.base_url + "/admin/v1", headers=headers) as c:
            assert c.post("/teams", json={"name": "search"}).status_code == 201
            assert c.post("/teams/search/projects", json={"name": "ranker"}).status_code == 201
            assert c.post("/keys", json={"team": "search"}).status_code == 201
        yield proxy


def test_the_served_document_is_the_one_fuzzed(server: ProxyServer) -> None:
    assert httpx.get(server.base_url + "/admin/v1/openapi.json").json() == openapi_document()


@pytest.mark.parametrize("key", [ADMIN, TEAM_ADMIN], ids=["admin", "team-admin"])
@schema.parametrize()
@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_admin_api_conforms_to_its_openapi_document(
    case: schemathesis.Case, server: ProxyServer, key: str
) -> None:
    # What the issue asks: no 5xx, and status, headers and body as documented (405 with
    # Allow for undocumented methods too). Left out: whether a schema-valid body is accepted
    # (cross-field rules such as "scope key needs key_id" or "expires_at in the future" are
    # not expressible in the schema) and the auth probes, which cannot strip a header given
    # by hand; test_admin.py checks 401 without a key and with a wrong one.
    case.call_and_validate(
        base_url=server.base_url,
        headers={"authorization": f"Bearer {key}"},
        checks=CHECKS,
    )
