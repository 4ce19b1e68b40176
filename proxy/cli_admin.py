"""``spendgate teams|keys|budgets|db``: the control plane from the shell.

Every verb is one admin API call. With ``--url`` it goes to a running proxy (admin key from
``--admin-key`` or ``$SPENDGATE_ADMIN_KEY``); without, the same API runs in-process on the
configured database, so both modes validate and answer identically. A change made locally is
announced on Redis (when ``storage.redis_url`` is set) so running proxies reload at once;
otherwise they pick it up within ``admin.key_refresh_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from proxy.config import AdminConfig, load_config
from proxy.errors import ConfigError

__all__ = ["add_parsers"]

Request = tuple[str, str, dict[str, Any] | None, dict[str, str] | None]


def _duration(text: str) -> timedelta:
    m = re.fullmatch(r"(\d+)([smhdw])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r}: use a number and s, m, h, d or w (e.g. 30d)")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
    return timedelta(**{unit: int(m.group(1))})


def _tags(items: Iterable[str] | None) -> dict[str, str]:
    out = {}
    for item in items or ():
        k, sep, v = item.partition("=")
        if not sep:
            raise ValueError(f"--tag {item!r}: use key=value")
        out[k] = v
    return out


# -- requests per verb -----------------------------------------------------------------------


def _teams(args: argparse.Namespace) -> Request:
    if args.verb == "create":
        body = {"name": args.name} | ({"description": args.description} if args.description else {})
        return "POST", "/teams", body, None
    if args.verb == "list":
        return "GET", "/teams", None, None
    if args.verb == "show":
        return "GET", f"/teams/{args.name}", None, None
    return "DELETE", f"/teams/{args.name}", None, None


def _keys(args: argparse.Namespace) -> Request:
    if args.verb == "create":
        body: dict[str, Any] = {"team": args.team, "tags": _tags(args.tag)}
        for name in ("project", "name"):
            if getattr(args, name):
                body[name] = getattr(args, name)
        if args.model:
            body["allowed_models"] = args.model
        if args.expires_in:
            body["expires_at"] = (datetime.now(UTC) + args.expires_in).isoformat()
        return "POST", "/keys", body, None
    if args.verb == "list":
        return "GET", "/keys", None, {"team": args.team} if args.team else None
    if args.verb == "revoke":
        return "POST", f"/keys/{args.key_id}/revoke", None, None
    grace = {"grace_seconds": int(args.grace.total_seconds())}
    return "POST", f"/keys/{args.key_id}/rotate", grace, None


def _budgets(args: argparse.Namespace) -> Request:
    if args.verb == "set":
        scope = args.scope or (
            "key" if args.key else "project" if args.project else "team" if args.team else "global"
        )
        body: dict[str, Any] = {"scope": scope, "period": args.period, "mode": args.mode}
        for name, value in (
            ("team", args.team),
            ("project", args.project),
            ("key_id", args.key),
            ("limit_usd", args.limit_usd),
            ("limit_tokens", args.limit_tokens),
            ("limit_requests", args.limit_requests),
        ):
            if value is not None:
                body[name] = value
        if args.alert_at:
            body["alert_at"] = [a.strip() for a in args.alert_at.split(",") if a.strip()]
        return "POST", "/budgets", body, None
    if args.verb == "list":
        return "GET", "/budgets", None, {"team": args.team} if args.team else None
    return "DELETE", f"/budgets/{args.budget_id}", None, None


# -- running a request locally or remotely --------------------------------------------------


async def _local_call(args: argparse.Namespace, request: Request) -> httpx.Response:
    from typing import cast

    from starlette.applications import Starlette

    from proxy.admin import admin_routes
    from proxy.admin.auth import AdminKeys
    from proxy.controlplane.policies import PolicyStore
    from proxy.controlplane.store import Store
    from proxy.db import create_engine
    from proxy.migrations import upgrade
    from proxy.spend import LedgerSpendSource

    config = load_config(args.config)
    engine = create_engine(config.storage.database_url)
    changed = False

    async def on_change() -> None:
        nonlocal changed
        changed = True

    class _Ledger:  # what LedgerSpendSource needs: an engine, and nothing queued
        def __init__(self) -> None:
            self.engine = engine

        async def flush(self) -> None:
            return None

    try:
        await upgrade(engine)
        store = Store(engine, config_keys=config.keys, on_change=on_change)
        control = argparse.Namespace(
            store=store,
            policies=PolicyStore(
                store,
                config_budgets=config.budgets,
                config_rate_limits=config.rate_limits,
                timezone=config.budget_settings.timezone,
                spend_source=LedgerSpendSource(cast(Any, _Ledger())),
            ),
        )
        key = secrets.token_urlsafe(32)  # this process's own, never stored
        state = {"control": control, "admin_keys": AdminKeys(AdminConfig(key=key))}
        api = Starlette(routes=admin_routes(""))

        async def app(scope: Any, receive: Any, send: Any) -> None:
            scope["state"] = state
            await api(scope, receive, send)

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://local") as client:
            method, path, body, params = request
            resp = await client.request(
                method, path, json=body, params=params, headers={"authorization": f"Bearer {key}"}
            )
            await resp.aread()
        if changed and config.storage.redis_url:
            await _announce(config.storage.redis_url)
        return resp
    finally:
        await engine.dispose()


async def _announce(redis_url: str) -> None:
    from redis.asyncio import Redis

    from proxy.controlplane.cache import CHANNEL

    client = Redis.from_url(redis_url)
    try:
        await client.publish(CHANNEL, "cli")
    except Exception as exc:  # running proxies still reload within admin.key_refresh_s
        print(f"spendgate: could not notify proxies through Redis: {exc}", file=sys.stderr)
    finally:
        await client.aclose()


async def _remote_call(args: argparse.Namespace, request: Request) -> httpx.Response:
    key = args.admin_key or os.environ.get("SPENDGATE_ADMIN_KEY")
    if not key:
        raise ConfigError("--url needs --admin-key or SPENDGATE_ADMIN_KEY")
    method, path, body, params = request
    async with httpx.AsyncClient(base_url=args.url.rstrip("/") + "/admin/v1", timeout=30) as c:
        resp = await c.request(
            method, path, json=body, params=params, headers={"authorization": f"Bearer {key}"}
        )
        await resp.aread()
        return resp


# -- output ----------------------------------------------------------------------------------

COLUMNS = {
    "teams": ("name", "active_keys", "projects", "description", "created_at"),
    "keys": ("id", "team", "project", "name", "prefix", "status", "expires_at", "source"),
    "budgets": ("id", "scope", "match", "period", "limit_usd", "limit_tokens", "mode", "source"),
    "spend": ("scope", "match", "period", "spent_usd", "limit_usd", "remaining_usd", "requests"),
}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items()) or "-"
    return str(value)


def table(rows: list[dict[str, Any]], columns: Iterable[str]) -> str:
    cols = list(columns)
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def _render(resource: str, args: argparse.Namespace, data: Any) -> str:
    if isinstance(data, list):
        return table(data, COLUMNS[resource]) if data else f"(no {resource})"
    lines = [f"{k}: {_cell(v)}" for k, v in data.items() if k != "secret"]
    if "secret" in data:
        lines.append("")
        lines.append(f"secret: {data['secret']}")
        lines.append("Store this secret now: it is not shown again.")
    return "\n".join(lines)


def _run(resource: str, build: Callable[[argparse.Namespace], Request]) -> Callable[..., int]:
    def run(args: argparse.Namespace) -> int:
        try:
            request = build(args)
            call = _remote_call if args.url else _local_call
            resp = asyncio.run(call(args, request))
        except (ConfigError, ValueError, OSError, httpx.HTTPError) as exc:
            print(f"spendgate: {exc}", file=sys.stderr)
            return 1
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:300]
            print(f"spendgate: {message} (HTTP {resp.status_code})", file=sys.stderr)
            return 1
        data = resp.json() if resp.content else None
        if args.json:
            print(json.dumps(data, indent=2))
        elif data is None:
            print("done")
        else:
            print(_render(resource, args, data))
        if resource == "teams" and args.verb == "show" and not args.json:
            spend = asyncio.run(call(args, ("GET", f"/teams/{args.name}/spend", None, None)))
            if spend.status_code == 200:
                body = spend.json()
                print(f"\nmonth to date: {body['month_to_date_usd']} USD")
                if body["budgets"]:
                    print(table(body["budgets"], COLUMNS["spend"]))
        return 0

    return run


def _db_upgrade(args: argparse.Namespace) -> int:
    from proxy.db import create_engine, redact_url
    from proxy.migrations import upgrade

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"spendgate: configuration error: {exc}", file=sys.stderr)
        return 2

    async def run() -> tuple[str | None, str | None]:
        engine = create_engine(config.storage.database_url)
        try:
            return await upgrade(engine)
        finally:
            await engine.dispose()

    before, after = asyncio.run(run())
    where = redact_url(config.storage.database_url)
    if before == after:
        print(f"{where}: already at revision {after}")
    else:
        print(f"{where}: upgraded from {before or 'an empty or pre-migration database'} to {after}")
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="config whose database to use (local mode)")
        p.add_argument("--url", help="a running proxy, e.g. http://127.0.0.1:8787")
        p.add_argument("--admin-key", help="admin key for --url (default $SPENDGATE_ADMIN_KEY)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    teams = sub.add_parser("teams", help="create, list, show and delete teams")
    verbs = teams.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("create", help="create a team")
    p.add_argument("name")
    p.add_argument("--description")
    common(p)
    for verb in ("list",):
        common(verbs.add_parser(verb, help="list teams"))
    for verb, text in (("show", "a team, its spend and budgets"), ("delete", "delete a team")):
        p = verbs.add_parser(verb, help=text)
        p.add_argument("name")
        common(p)
    teams.set_defaults(func=_run("teams", _teams))

    keys = sub.add_parser("keys", help="create, list, revoke and rotate virtual keys")
    verbs = keys.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("create", help="create a key (its secret is printed once)")
    p.add_argument("--team", required=True)
    p.add_argument("--project")
    p.add_argument("--name")
    p.add_argument("--tag", action="append", help="default tag key=value (repeatable)")
    p.add_argument("--model", action="append", help="allowed model glob (repeatable)")
    p.add_argument("--expires-in", type=_duration, help="e.g. 90d, 12h")
    common(p)
    p = verbs.add_parser("list", help="list keys")
    p.add_argument("--team")
    common(p)
    p = verbs.add_parser("revoke", help="revoke a key now")
    p.add_argument("key_id")
    common(p)
    p = verbs.add_parser("rotate", help="new secret; the old one works for --grace")
    p.add_argument("key_id")
    p.add_argument("--grace", type=_duration, default=timedelta(hours=1), help="default 1h")
    common(p)
    keys.set_defaults(func=_run("keys", _keys))

    budgets = sub.add_parser("budgets", help="set, list and delete budgets")
    verbs = budgets.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("set", help="create or replace the budget of a target and period")
    p.add_argument("--scope", choices=["global", "team", "project", "key"])
    p.add_argument("--team")
    p.add_argument("--project")
    p.add_argument("--key", help="key id (key_...)")
    p.add_argument("--period", required=True, choices=["hour", "day", "week", "month", "lifetime"])
    p.add_argument("--limit-usd")
    p.add_argument("--limit-tokens", type=int)
    p.add_argument("--limit-requests", type=int)
    p.add_argument("--mode", default="hard", choices=["hard", "soft"])
    p.add_argument("--alert-at", help="fractions of the limit, e.g. 0.5,0.8,1.0")
    common(p)
    p = verbs.add_parser("list", help="list budgets")
    p.add_argument("--team")
    common(p)
    p = verbs.add_parser("delete", help="delete a budget")
    p.add_argument("budget_id")
    common(p)
    budgets.set_defaults(func=_run("budgets", _budgets))

    db = sub.add_parser("db", help="database schema")
    verbs = db.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("upgrade", help="create or upgrade the tables (safe to repeat)")
    p.add_argument("--config", help="config whose storage.database_url to upgrade")
    p.set_defaults(func=_db_upgrade)
