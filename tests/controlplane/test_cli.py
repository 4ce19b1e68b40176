"""``spendgate teams|keys|budgets|db``: the lifecycle on the local database and remotely."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from proxy.cli import main
from tests.e2e.proxyserver import ProxyServer

ADMIN = "cli-admin-key-0123456789abcdef"


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], *common: str) -> None:
        self.capsys = capsys
        self.common = list(common)

    def __call__(self, *argv: str, code: int = 0) -> str:
        got = main([*argv, *self.common])
        out, err = self.capsys.readouterr()
        assert got == code, (argv, out, err)
        return out if code == 0 else err

    def json(self, *argv: str) -> Any:
        return json.loads(self(*argv, "--json"))


def _lifecycle(cli: Cli) -> None:
    assert "search" in cli("teams", "create", "search", "--description", "Search team")
    assert "already exists" in cli("teams", "create", "search", code=1)
    assert "name" in cli("teams", "create", "Not A Name", code=1)
    created = cli("keys", "create", "--team", "search", "--tag", "env=prod", "--model", "mock-*")
    secret = next(line.split(": ")[1] for line in created.splitlines() if line.startswith("secret"))
    assert secret.startswith("sg-") and "not shown again" in created
    (key,) = [k for k in cli.json("keys", "list", "--team", "search") if k["source"] == "api"]
    assert key["allowed_models"] == ["mock-*"] and key["tags"] == {"env": "prod"}
    table = cli("keys", "list")
    assert table.splitlines()[0].split()[:3] == ["ID", "TEAM", "PROJECT"]
    assert key["id"] in table and secret not in table

    budget = cli.json(
        "budgets", "set", "--team", "search", "--period", "month", "--limit-usd", "500"
    )
    assert (budget["scope"], budget["match"], budget["limit_usd"]) == ("team", "search", "500")
    same = cli.json(
        "budgets", "set", "--team", "search", "--period", "month", "--limit-usd", "0.25"
    )
    assert same["id"] == budget["id"] and same["limit_usd"] == "0.25"
    assert "limit_usd" in cli("budgets", "set", "--period", "day", code=1)  # no limit given
    assert [b["id"] for b in cli.json("budgets", "list", "--team", "search")] == [budget["id"]]
    shown = cli("teams", "show", "search")
    assert "active_keys: 1" in shown and "month to date: 0 USD" in shown
    assert "0.25" in shown  # the budget line with its remaining amount

    rotated = cli.json("keys", "rotate", key["id"], "--grace", "10m")
    assert rotated["secret"] != secret and rotated["previous_valid_until"]
    assert "active key" in cli("teams", "delete", "search", code=1)
    assert cli.json("keys", "revoke", key["id"])["status"] == "revoked"
    cli("budgets", "delete", budget["id"])
    assert "no budget" in cli("budgets", "delete", budget["id"], code=1)
    cli("teams", "delete", "search")
    assert cli.json("teams", "list") == []


def test_lifecycle_on_the_local_database(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spendgate.yaml"
    path.write_text(yaml.safe_dump({"storage": {"database_url": database_url}}))
    cli = Cli(capsys, "--config", str(path))
    _lifecycle(cli)


def test_lifecycle_against_a_running_proxy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = {
        "storage": {"database_url": f"sqlite:///{tmp_path / 'spendgate.db'}"},
        "admin": {"key": ADMIN},
    }
    with ProxyServer(raw) as proxy:
        monkeypatch.setenv("SPENDGATE_ADMIN_KEY", ADMIN)
        _lifecycle(Cli(capsys, "--url", proxy.base_url))
        monkeypatch.delenv("SPENDGATE_ADMIN_KEY")
        assert "--admin-key" in Cli(capsys, "--url", proxy.base_url)("teams", "list", code=1)
        wrong = Cli(capsys, "--url", proxy.base_url, "--admin-key", "x" * 20)
        assert "HTTP 401" in wrong("teams", "list", code=1)


def test_db_upgrade_creates_and_then_keeps_the_schema(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "spendgate.yaml"
    path.write_text(yaml.safe_dump({"storage": {"database_url": f"sqlite:///{tmp_path / 'x.db'}"}}))
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert "upgraded from an empty or pre-migration database to 0003" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert "already at revision 0003" in capsys.readouterr().out
