"""End to end: the admin API of a real spendgate server, and its keys used through the SDK.

Calls go to the fake OpenAI upstream with gpt-4o-mini; its fixture reports 19 input and 10
output tokens, so every call costs 19 x 0.15/M + 10 x 0.60/M = 0.00000885 USD.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from tests.e2e.proxyserver import ProxyServer, free_port
from tests.fakeupstream.server import FakeUpstream

ADMIN = "admin-key-0123456789abcdef"
ADS_ADMIN = "ads-admin-key-0123456789abcdef"
PROVIDER_KEY = "sk-upstream-secret-provider-key-42"
YAML_KEY = "sg-yaml-declared-key-0123456789"
MESSAGES = [{"role": "user", "content": "Say hello"}]
CALL_COST = Decimal("0.00000885")


def config(upstream_url: str, database_url: str, **admin: Any) -> dict[str, Any]:
    return {
        "storage": {"database_url": database_url},
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream_url,
                "api_key": PROVIDER_KEY,
                "models": ["*"],
                "read_timeout": 5,
            },
            "mock": {"kind": "mock", "models": ["mock-*"]},
        },
        "keys": [{"key": YAML_KEY, "team": "search", "name": "search-ci"}],
        "admin": {"key": ADMIN, "team_keys": {"ads": ADS_ADMIN}, **admin},
    }


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'spendgate.db'}"
    return str(request.getfixturevalue("pg_database_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'spendgate.db'}"


@pytest.fixture
def proxy(upstream: FakeUpstream, sqlite_url: str) -> Iterator[ProxyServer]:
    with ProxyServer(config(upstream.url, sqlite_url)) as server:
        yield server


class Admin:
    """An httpx client on the admin API that remembers every response body."""

    def __init__(self, base_url: str, key: str | None = ADMIN) -> None:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=base_url + "/admin/v1", headers=headers, timeout=10)
        self.bodies: list[str] = []

    def __call__(self, method: str, path: str, status: int, **kw: Any) -> Any:
        resp = self.http.request(method, path, **kw)
        self.bodies.append(resp.text)
        assert resp.status_code == status, (resp.status_code, resp.text)
        return resp.json() if resp.content else None

    def close(self) -> None:
        self.http.close()


_open: list[Any] = []


def admin(proxy: ProxyServer, key: str | None = ADMIN) -> Admin:
    a = Admin(proxy.base_url, key)
    _open.append(a)
    return a


def sdk(proxy: ProxyServer, key: str) -> openai.OpenAI:
    c = openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0)
    _open.append(c)
    return c


@pytest.fixture(autouse=True)
def _close() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


def chat(proxy: ProxyServer, key: str, model: str = "gpt-4o-mini") -> Any:
    return sdk(proxy, key).chat.completions.with_raw_response.create(model=model, messages=MESSAGES)


def accepted(proxy: ProxyServer, key: str) -> bool:
    try:
        chat(proxy, key, "mock-gpt-4o-mini")
    except openai.AuthenticationError:
        return False
    return True


# -- the lifecycle ---------------------------------------------------------------------------


def test_full_lifecycle_through_the_api(upstream: FakeUpstream, database_url: str) -> None:
    with ProxyServer(config(upstream.url, database_url)) as proxy:
        api = admin(proxy)
        team = api("POST", "/teams", 201, json={"name": "search", "description": "Search"})
        assert team == {**team, "name": "search", "projects": [], "active_keys": 0}
        conflict = api("POST", "/teams", 409, json={"name": "search"})
        assert conflict["error"]["type"] == "conflict"
        bad = api("POST", "/teams", 422, json={"name": "Search Team!"})
        assert bad["error"]["field"] == "name" and "name" in bad["error"]["message"]
        assert api("POST", "/teams", 422, json={"name": "x", "color": 1})["error"]["field"] == (
            "color"
        )
        assert api("GET", "/teams/nope", 404)["error"]["field"] == "team"
        api("POST", "/teams/search/projects", 201, json={"name": "ranker"})

        key = api(
            "POST",
            "/keys",
            201,
            json={"team": "search", "project": "ranker", "tags": {"env": "prod"}, "name": "r"},
        )
        secret = key["secret"]
        assert secret.startswith("sg-") and key["prefix"] == secret[:11]
        assert key["status"] == "active" and "key_hash" not in key

        raw = chat(proxy, secret)
        assert raw.headers["x-spendgate-cost-usd"] == "0.00000885"
        row = proxy.wait_row(raw.headers["x-spendgate-request-id"])
        assert (row.team, row.project, row.key_id, row.tags) == (
            "search",
            "ranker",
            key["id"],
            {"env": "prod"},
        )

        # Budgets set at run time take effect on the next call (no restart).
        month = {"scope": "team", "team": "search", "period": "month", "limit_usd": "1"}
        first = api("POST", "/budgets", 201, json=month)
        again = api("POST", "/budgets", 200, json={**month, "limit_usd": "2.5"})
        assert again["id"] == first["id"] and again["limit_usd"] == "2.5"
        per_key = {"scope": "key", "key_id": key["id"], "period": "day", "limit_requests": 2}
        key_budget = api("POST", "/budgets", 201, json=per_key)
        assert api("POST", "/budgets", 404, json={**per_key, "key_id": "key_000000000000"})
        missing = api("POST", "/budgets", 422, json={"scope": "team", "period": "month"})
        assert missing["error"]["field"] in ("team", "limit_usd")

        # A new budget starts from the ledger: the call above is the first of the day.
        chat(proxy, secret)
        with pytest.raises(openai.RateLimitError) as blocked:
            chat(proxy, secret)
        assert blocked.value.response.headers["x-should-retry"] == "false"
        assert blocked.value.code == "budget_exceeded"
        proxy.wait_rows(3)

        spend = api("GET", "/teams/search/spend", 200)
        # two priced calls: 2 x 0.00000885 = 0.0000177; left of 2.5: 2.4999823
        assert Decimal(spend["month_to_date_usd"]) == Decimal("0.0000177")
        line = next(b for b in spend["budgets"] if b["budget_id"] == first["id"])
        assert Decimal(line["spent_usd"]) == Decimal("0.0000177")
        assert Decimal(line["remaining_usd"]) == Decimal("2.4999823")

        listed = api("GET", "/keys", 200, params={"team": "search"})
        assert {(k["id"], k["source"]) for k in listed} == {
            (key["id"], "api"),
            ("search-ci", "config"),
        }
        api("DELETE", f"/budgets/{key_budget['id']}", 204)
        assert api("POST", "/keys/search-ci/revoke", 403)["error"]["type"] == "forbidden"
        assert api("DELETE", "/teams/search", 409)["error"]["type"] == "conflict"

        rotated = api("POST", f"/keys/{key['id']}/rotate", 200, json={"grace_seconds": 600})
        assert rotated["id"] == key["id"] and rotated["secret"] != secret
        assert accepted(proxy, secret) and accepted(proxy, rotated["secret"])

        revoked = api("POST", f"/keys/{key['id']}/revoke", 200)
        assert revoked["status"] == "revoked"
        # This replica reloads on its own change before answering: refused at once.
        assert not accepted(proxy, rotated["secret"])
        assert not accepted(proxy, secret)

        api("DELETE", f"/budgets/{first['id']}", 204)
        api("DELETE", f"/budgets/{first['id']}", 404)
        api("DELETE", "/teams/search", 204)
        api("GET", "/teams/search", 404)
        actions = [e["action"] for e in api("GET", "/audit", 200)]
        assert actions[0] == "team.delete" and actions[-1] == "team.create"
        for action in ("project.create", "key.create", "budget.set", "key.rotate", "key.revoke"):
            assert action in actions


# -- security ----------------------------------------------------------------------------------


def test_admin_api_refuses_a_missing_or_wrong_key(proxy: ProxyServer) -> None:
    for key in (None, "wrong-admin-key-0123456789", ADMIN[:-1], ADMIN + "x"):
        body = admin(proxy, key)("GET", "/teams", 401)
        assert body["error"]["type"] == "unauthorized"
    resp = httpx.post(proxy.base_url + "/admin/v1/teams", json={"name": "x"})
    assert resp.status_code == 401 and resp.headers["www-authenticate"] == "Bearer"
    # the document is public: it holds no data
    assert httpx.get(proxy.base_url + "/admin/v1/openapi.json").json()["openapi"] == "3.1.0"


def test_admin_api_is_off_without_an_admin_key(upstream: FakeUpstream, sqlite_url: str) -> None:
    raw = config(upstream.url, sqlite_url)
    del raw["admin"]
    with ProxyServer(raw) as proxy:
        assert "admin.key" in admin(proxy, ADMIN)("GET", "/teams", 401)["error"]["message"]


def test_a_team_admin_sees_and_changes_only_its_own_team(proxy: ProxyServer) -> None:
    root, ads = admin(proxy), admin(proxy, ADS_ADMIN)
    for name in ("search", "ads"):
        root("POST", "/teams", 201, json={"name": name})
    search_key = root("POST", "/keys", 201, json={"team": "search"})
    root("POST", "/budgets", 201, json={"scope": "team", "team": "search", "period": "day",
                                        "limit_usd": "5"})  # fmt: skip
    ads_key = ads("POST", "/keys", 201, json={"team": "ads"})

    assert [t["name"] for t in ads("GET", "/teams", 200)] == ["ads"]
    ads("GET", "/teams/search", 404)
    ads("GET", "/teams/search/spend", 404)
    ads("GET", "/teams/search/projects", 404)
    ads("POST", "/teams/search/projects", 404, json={"name": "p"})
    assert {k["id"] for k in ads("GET", "/keys", 200)} == {ads_key["id"]}
    ads("GET", "/keys", 404, params={"team": "search"})
    ads("GET", f"/keys/{search_key['id']}", 404)
    ads("POST", f"/keys/{search_key['id']}/revoke", 404)
    ads("POST", f"/keys/{search_key['id']}/rotate", 404, json={})
    ads("GET", "/keys/search-ci", 404)  # the YAML key of team search
    ads("POST", "/keys", 404, json={"team": "search"})
    ads("POST", "/budgets", 404, json={"scope": "team", "team": "search", "period": "day",
                                       "limit_usd": "1"})  # fmt: skip
    ads("POST", "/budgets", 403, json={"scope": "global", "period": "day", "limit_usd": "1"})
    assert ads("GET", "/budgets", 200) == []
    search_budget = root("GET", "/budgets", 200, params={"team": "search"})[0]
    ads("DELETE", f"/budgets/{search_budget['id']}", 404)
    ads("POST", "/teams", 403, json={"name": "evil"})
    ads("DELETE", "/teams/search", 403)
    assert {e["team"] for e in ads("GET", "/audit", 200)} == {"ads"}
    # ... and nothing of team search changed
    assert root("GET", f"/keys/{search_key['id']}", 200)["status"] == "active"
    assert accepted(proxy, search_key["secret"])


def test_no_response_log_line_or_table_holds_a_secret(
    proxy: ProxyServer, upstream: FakeUpstream, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    api = admin(proxy)
    api("POST", "/teams", 201, json={"name": "search"})
    created = api("POST", "/keys", 201, json={"team": "search", "allowed_models": ["gpt-*"]})
    rotated = api("POST", f"/keys/{created['id']}/rotate", 200, json={"grace_seconds": 60})
    shown_once = {api.bodies.pop(), api.bodies.pop()}  # the two answers that carry one
    secrets = [created["secret"], rotated["secret"], PROVIDER_KEY, YAML_KEY, ADMIN, ADS_ADMIN]
    assert all(any(s in body for body in shown_once) for s in secrets[:2])

    bodies = []
    for key in (created["secret"], rotated["secret"], YAML_KEY):
        raw = chat(proxy, key)
        bodies.append(raw.http_response.text)
        bodies.append(str(dict(raw.headers)))
    for key in (created["secret"] + "x", PROVIDER_KEY):
        with pytest.raises(openai.AuthenticationError) as exc:
            chat(proxy, key)
        bodies.append(exc.value.response.text)
    with pytest.raises(openai.PermissionDeniedError) as denied:
        chat(proxy, rotated["secret"], "mock-gpt-4o-mini")
    bodies.append(denied.value.response.text)
    api("GET", "/keys", 200)
    api("GET", f"/keys/{created['id']}", 200)
    api("GET", "/audit", 200)
    api("GET", "/teams/search/spend", 200)
    api("POST", f"/keys/{created['id']}/revoke", 200)
    admin(proxy, "wrong-admin-key-0123456789")("GET", "/keys", 401)
    assert len(proxy.wait_rows(4)) == 4  # three calls and the 403; a 401 has no row

    logs = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "spendgate" in logs  # the proxy's loggers were captured
    stored = "\n".join(str(row.model_dump()) for row in proxy.rows())
    for secret in secrets:
        for where, text in (("log", logs), ("ledger", stored)):
            assert secret not in text, f"{where} holds a secret"
        for body in [*api.bodies, *bodies]:
            assert secret not in body
    # the upstream saw the provider key, never a virtual key
    for req in upstream.requests:
        assert req.headers["authorization"] == f"Bearer {PROVIDER_KEY}"


# -- keys at the data plane ------------------------------------------------------------------


def test_revoking_the_last_key_does_not_open_a_loopback_proxy(
    upstream: FakeUpstream, sqlite_url: str
) -> None:
    raw = config(upstream.url, sqlite_url)
    del raw["keys"]
    with ProxyServer(raw) as proxy:
        assert accepted(proxy, "anything")  # no keys anywhere, loopback: open
        api = admin(proxy)
        api("POST", "/teams", 201, json={"name": "search"})
        key = api("POST", "/keys", 201, json={"team": "search"})
        assert not accepted(proxy, "anything") and accepted(proxy, key["secret"])
        api("POST", f"/keys/{key['id']}/revoke", 200)
        assert not accepted(proxy, "anything") and not accepted(proxy, key["secret"])


def test_a_key_not_allowed_a_model_gets_403_in_openai_format(
    proxy: ProxyServer, upstream: FakeUpstream
) -> None:
    api = admin(proxy)
    api("POST", "/teams", 201, json={"name": "search"})
    key = api("POST", "/keys", 201, json={"team": "search", "allowed_models": ["mock-*"]})
    chat(proxy, key["secret"], "mock-gpt-4o-mini")
    with pytest.raises(openai.PermissionDeniedError) as exc:
        chat(proxy, key["secret"], "gpt-4o-mini")
    assert exc.value.status_code == 403
    error = exc.value.response.json()["error"]
    assert error["code"] == "model_not_allowed" and "gpt-4o-mini" in error["message"]
    assert error["param"] == "model"
    assert upstream.requests == []  # refused before the provider
    rows = proxy.wait_rows(2)
    assert sorted((r.status_code, r.error_type) for r in rows) == [
        (200, None),
        (403, "model_not_allowed"),
    ]


def test_an_expired_key_is_refused(proxy: ProxyServer) -> None:
    api = admin(proxy)
    api("POST", "/teams", 201, json={"name": "search"})
    past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    assert (
        api("POST", "/keys", 422, json={"team": "search", "expires_at": past})["error"]["field"]
        == "expires_at"
    )
    assert api("POST", "/keys", 422, json={"team": "search", "expires_at": "2030-01-01T00:00"})
    expires = datetime.now(UTC) + timedelta(seconds=1.5)
    key = api("POST", "/keys", 201, json={"team": "search", "expires_at": expires.isoformat()})
    assert accepted(proxy, key["secret"])
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.05)
    with pytest.raises(openai.AuthenticationError) as exc:
        chat(proxy, key["secret"], "mock-gpt-4o-mini")
    assert exc.value.code == "expired_api_key"
    assert api("GET", f"/keys/{key['id']}", 200)["status"] == "expired"


def test_a_rotated_key_works_during_the_grace_period_and_not_after(proxy: ProxyServer) -> None:
    api = admin(proxy)
    api("POST", "/teams", 201, json={"name": "search"})
    key = api("POST", "/keys", 201, json={"team": "search"})
    rotated = api("POST", f"/keys/{key['id']}/rotate", 200, json={"grace_seconds": 1})
    until = datetime.fromisoformat(rotated["previous_valid_until"])
    assert accepted(proxy, key["secret"]) and accepted(proxy, rotated["secret"])
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.05)
    assert not accepted(proxy, key["secret"])
    assert accepted(proxy, rotated["secret"])
    # rotating with no grace ends the current secret at once
    again = api("POST", f"/keys/{key['id']}/rotate", 200, json={"grace_seconds": 0})
    assert not accepted(proxy, rotated["secret"]) and accepted(proxy, again["secret"])


# -- replicas ----------------------------------------------------------------------------------


def _serve(cfg: dict[str, Any], tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    path = tmp_path / "replica.yaml"
    path.write_text(yaml.safe_dump(cfg))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "--config", str(path), "--port", str(port)],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(
                "replica did not start: " + (proc.stdout.read() if proc.stdout else "")
            )
        time.sleep(0.05)


def _until(check: Any, timeout: float) -> float:
    """Seconds until ``check()`` holds; fails after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        assert time.monotonic() - t0 < timeout, f"not within {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - t0


@pytest.mark.redis
def test_a_revoked_key_is_refused_by_another_process_within_the_bound(
    upstream: FakeUpstream, sqlite_url: str, redis_url: str, tmp_path: Path
) -> None:
    """The refresh is set to a minute, so only the Redis notice can explain a fast refusal."""
    cfg = config(upstream.url, sqlite_url, key_refresh_s=60)
    cfg["storage"]["redis_url"] = redis_url
    cfg["storage"]["spill_path"] = None
    with ProxyServer(cfg) as here:
        proc, there_url = _serve(cfg, tmp_path)
        try:
            there = ProxyServer.__new__(ProxyServer)
            there.base_url = there_url
            api = admin(here)
            api("POST", "/teams", 201, json={"name": "search"})
            key = api("POST", "/keys", 201, json={"team": "search"})["secret"]
            _until(lambda: accepted(there, key), timeout=3)  # a new key reaches it too
            kid = api("GET", "/keys", 200, params={"team": "search"})[0]["id"]
            api("POST", f"/keys/{kid}/revoke", 200)
            # documented bound with Redis: one notice and one reload, well under a second
            assert _until(lambda: not accepted(there, key), timeout=2) < 2
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


def test_without_redis_a_replica_catches_up_within_key_refresh_s(
    upstream: FakeUpstream, sqlite_url: str
) -> None:
    cfg = config(upstream.url, sqlite_url, key_refresh_s=0.3)
    with ProxyServer(cfg) as here, ProxyServer(cfg) as there:
        api = admin(here)
        api("POST", "/teams", 201, json={"name": "search"})
        created = api("POST", "/keys", 201, json={"team": "search"})
        _until(lambda: accepted(there, created["secret"]), timeout=2)
        api("POST", f"/keys/{created['id']}/revoke", 200)
        # key_refresh_s plus a reload and a request
        assert _until(lambda: not accepted(there, created["secret"]), timeout=1.5) < 1.5
