"""Spend reports and exports over the admin API: admin-key auth, team admins see one team."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path

import httpx
import openai

from tests.e2e.proxyserver import ProxyServer
from tests.fakeupstream.server import FakeUpstream

ADMIN = "admin-key-0123456789abcdef"
ADS_ADMIN = "ads-admin-key-0123456789abcdef"
KEYS = {"search": "sg-test-key-search-0123456789", "ads": "sg-test-key-ads-0123456789"}


def test_spend_and_export_over_the_admin_api(upstream: FakeUpstream, tmp_path: Path):
    raw = {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'l.db'}"},
        "providers": {
            "openai": {
                "kind": "openai",
                "base_url": upstream.url,
                "api_key": "sk-up",
                "models": ["*"],
            }
        },
        "keys": [{"key": k, "team": t} for t, k in KEYS.items()],
        "admin": {"key": ADMIN, "team_keys": {"ads": ADS_ADMIN}},
    }
    with ProxyServer(raw) as proxy:
        for team, key in KEYS.items():
            with openai.OpenAI(base_url=proxy.base_url + "/v1", api_key=key, max_retries=0) as c:
                for _ in range(2 if team == "search" else 1):
                    c.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                    )
        proxy.wait_rows(3)
        base = proxy.base_url + "/admin/v1"
        params = {"group_by": "team", "from": "2000-01-01", "to": "2100-01-01"}
        assert httpx.get(base + "/spend", params=params).status_code == 401
        assert (
            httpx.get(
                base + "/spend", params=params, headers={"authorization": "Bearer nope"}
            ).status_code
            == 401
        )

        body = httpx.get(
            base + "/spend", params=params, headers={"authorization": f"Bearer {ADMIN}"}
        ).json()
        by_team = {line["team"]: line for line in body["lines"]}
        # each call: 19 x 0.15/M + 10 x 0.60/M = 0.00000885
        assert Decimal(by_team["search"]["cost_usd"]) == Decimal("0.0000177")
        assert Decimal(by_team["ads"]["cost_usd"]) == Decimal("0.00000885")

        # a team admin sees its own team only, whatever filter it sends
        sneaky = {**params, "filter": "team=search"}
        mine = httpx.get(
            base + "/spend", params=sneaky, headers={"authorization": f"Bearer {ADS_ADMIN}"}
        ).json()
        assert [line["team"] for line in mine["lines"]] == ["ads"]

        export = httpx.get(
            base + "/export",
            params={"format": "csv", "from": "2000-01-01", "to": "2100-01-01"},
            headers={"authorization": f"Bearer {ADMIN}"},
        )
        assert export.status_code == 200
        rows = list(csv.DictReader(io.StringIO(export.text)))
        assert len(rows) == 3 and sum(Decimal(r["cost_usd"]) for r in rows) == Decimal("0.00002655")
