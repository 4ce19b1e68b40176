"""Admin API handlers, declared once in ``OPERATIONS`` for both routing and the OpenAPI doc.

Each operation authenticates (Bearer admin key), validates path, query and body (422 naming
the field), calls the store as the key's principal, and answers JSON. Errors are
``{"error": {"message", "type", "field"}}`` with 401/403/404/409/422. No handler ever echoes
a key's hash, and a key's secret appears only in the answer to create and rotate.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from proxy.admin.auth import AdminKeys
from proxy.controlplane.errors import ControlPlaneError, Invalid, Missing
from proxy.controlplane.runtime import ControlPlane
from proxy.controlplane.schemas import (
    KEY_ID_PATTERN,
    NAME_PATTERN,
    AuditRecord,
    Budget,
    BudgetSet,
    Key,
    KeyCreate,
    KeyCreated,
    KeyRotate,
    Project,
    ProjectCreate,
    RateLimit,
    RateLimitSet,
    Team,
    TeamCreate,
    TeamSpend,
)
from proxy.controlplane.store import Principal

__all__ = ["OPERATIONS", "Operation", "admin_routes"]

log = logging.getLogger("spendgate.admin")

ID_PATTERN = r"^[a-z]{2,4}_[0-9a-f]{12}$|^cfg-[a-z-]+-[0-9]+$"
PATH_PATTERNS = {
    "team": NAME_PATTERN,
    "project": NAME_PATTERN,
    "key_id": KEY_ID_PATTERN + "|^cfg-[0-9a-f]{12}$|" + NAME_PATTERN,
    "budget_id": ID_PATTERN,
    "limit_id": ID_PATTERN,
}


@dataclass(frozen=True)
class Query:
    name: str
    schema: dict[str, Any]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # relative to /admin/v1
    summary: str
    handler: Callable[..., Awaitable[Any]]
    status: int = 200
    body: type[BaseModel] | None = None
    body_optional: bool = False
    response: Any = None  # a model, list[model], or None for 204
    query: tuple[Query, ...] = field(default=())


def error(status: int, kind: str, message: str, field: str | None = None) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"message": message, "type": kind, "field": field}},
        status_code=status,
        headers=headers,
    )


def _field(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    name = ".".join(str(p) for p in first["loc"]) or "body"
    return name, f"{name}: {first['msg']}"


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _endpoint(op: Operation) -> Callable[[Request], Awaitable[Response]]:
    adapter = TypeAdapter(op.response) if op.response is not None else None

    async def endpoint(request: Request) -> Response:
        control: ControlPlane = request.state.control
        keys: AdminKeys = request.state.admin_keys
        who = keys.principal(_bearer(request))
        if who is None:
            if not keys.enabled:
                return error(401, "unauthorized", "the admin API is off: set admin.key")
            return error(401, "unauthorized", "missing or wrong admin key (Authorization: Bearer)")
        try:
            args: dict[str, Any] = {}
            for name, value in request.path_params.items():
                if not re.fullmatch(PATH_PATTERNS[name], value):
                    raise Missing(f"no {name.replace('_id', '')} {value!r}", field=name)
                args[name] = value
            for q in op.query:
                raw = request.query_params.get(q.name)
                if raw is not None:
                    args[q.name] = _query(q, raw)
            if op.body is not None:
                args["data"] = await _body(request, op)
            result = await op.handler(control, who, **args)
        except ControlPlaneError as exc:
            return error(exc.status, exc.kind, exc.message, exc.field)
        if op.status == 204:
            return Response(status_code=204)
        status = op.status
        if isinstance(result, tuple):  # (record, created) from the upserts
            result, created = result
            status = 201 if created else 200
        assert adapter is not None
        return Response(
            adapter.dump_json(result), status_code=status, media_type="application/json"
        )

    return endpoint


def _query(q: Query, raw: str) -> Any:
    if q.schema.get("type") == "integer":
        lo, hi = q.schema.get("minimum", 0), q.schema.get("maximum", 10**9)
        if not (raw.isdigit() and lo <= int(raw) <= hi):
            raise Invalid(f"{q.name}: must be an integer from {lo} to {hi}", field=q.name)
        return int(raw)
    if "pattern" in q.schema and not re.fullmatch(q.schema["pattern"], raw):
        raise Invalid(f"{q.name}: must match {q.schema['pattern']}", field=q.name)
    return raw


async def _body(request: Request, op: Operation) -> BaseModel:
    assert op.body is not None
    raw = await request.body()
    if not raw.strip() and op.body_optional:
        return op.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("body: must be a JSON object", field="body") from None
    if not isinstance(data, dict):
        raise Invalid("body: must be a JSON object", field="body")
    try:
        return op.body.model_validate(data)
    except ValidationError as exc:
        name, message = _field(exc)
        raise Invalid(message, field=name) from None


# -- handlers: (control, principal, **path/query/body) -> result ----------------------------


async def _list_teams(c: ControlPlane, who: Principal) -> list[Team]:
    return await c.store.list_teams(who)


async def _create_team(c: ControlPlane, who: Principal, data: TeamCreate) -> Team:
    return await c.store.create_team(who, data)


async def _get_team(c: ControlPlane, who: Principal, team: str) -> Team:
    return await c.store.get_team(who, team)


async def _delete_team(c: ControlPlane, who: Principal, team: str) -> None:
    await c.store.delete_team(who, team)


async def _list_projects(c: ControlPlane, who: Principal, team: str) -> list[Project]:
    return await c.store.list_projects(who, team)


async def _create_project(
    c: ControlPlane, who: Principal, team: str, data: ProjectCreate
) -> Project:
    return await c.store.create_project(who, team, data)


async def _delete_project(c: ControlPlane, who: Principal, team: str, project: str) -> None:
    await c.store.delete_project(who, team, project)


async def _team_spend(c: ControlPlane, who: Principal, team: str) -> TeamSpend:
    return await c.policies.team_spend(who, team)


async def _list_keys(c: ControlPlane, who: Principal, team: str | None = None) -> list[Key]:
    return await c.store.list_keys(who, team)


async def _create_key(c: ControlPlane, who: Principal, data: KeyCreate) -> KeyCreated:
    return await c.store.create_key(who, data)


async def _get_key(c: ControlPlane, who: Principal, key_id: str) -> Key:
    return await c.store.get_key(who, key_id)


async def _revoke_key(c: ControlPlane, who: Principal, key_id: str) -> Key:
    return await c.store.revoke_key(who, key_id)


async def _rotate_key(c: ControlPlane, who: Principal, key_id: str, data: KeyRotate) -> KeyCreated:
    return await c.store.rotate_key(who, key_id, data)


async def _list_budgets(c: ControlPlane, who: Principal, team: str | None = None) -> list[Budget]:
    return await c.policies.list_budgets(who, team)


async def _set_budget(c: ControlPlane, who: Principal, data: BudgetSet) -> tuple[Budget, bool]:
    return await c.policies.set_budget(who, data)


async def _delete_budget(c: ControlPlane, who: Principal, budget_id: str) -> None:
    await c.policies.delete_budget(who, budget_id)


async def _list_rate_limits(c: ControlPlane, who: Principal) -> list[RateLimit]:
    return await c.policies.list_rate_limits(who)


async def _set_rate_limit(
    c: ControlPlane, who: Principal, data: RateLimitSet
) -> tuple[RateLimit, bool]:
    return await c.policies.set_rate_limit(who, data)


async def _delete_rate_limit(c: ControlPlane, who: Principal, limit_id: str) -> None:
    await c.policies.delete_rate_limit(who, limit_id)


async def _audit(c: ControlPlane, who: Principal, limit: int = 100) -> list[AuditRecord]:
    return await c.store.audit(who, limit)


TEAM_QUERY = Query("team", {"type": "string", "pattern": NAME_PATTERN})
OPERATIONS: tuple[Operation, ...] = (
    Operation("GET", "/teams", "List teams", _list_teams, response=list[Team]),
    Operation("POST", "/teams", "Create a team", _create_team, 201, TeamCreate, response=Team),
    Operation("GET", "/teams/{team}", "Show a team", _get_team, response=Team),
    Operation("DELETE", "/teams/{team}", "Delete a team", _delete_team, 204),
    Operation(
        "GET", "/teams/{team}/projects", "List projects", _list_projects, response=list[Project]
    ),
    Operation(
        "POST",
        "/teams/{team}/projects",
        "Create a project",
        _create_project,
        201,
        ProjectCreate,
        response=Project,
    ),
    Operation(
        "DELETE", "/teams/{team}/projects/{project}", "Delete a project", _delete_project, 204
    ),
    Operation(
        "GET",
        "/teams/{team}/spend",
        "Current spend and remaining budget per budget of the team",
        _team_spend,
        response=TeamSpend,
    ),
    Operation("GET", "/keys", "List keys", _list_keys, response=list[Key], query=(TEAM_QUERY,)),
    Operation(
        "POST",
        "/keys",
        "Create a key (the secret is shown once)",
        _create_key,
        201,
        KeyCreate,
        response=KeyCreated,
    ),
    Operation("GET", "/keys/{key_id}", "Show a key", _get_key, response=Key),
    Operation("POST", "/keys/{key_id}/revoke", "Revoke a key", _revoke_key, response=Key),
    Operation(
        "POST",
        "/keys/{key_id}/rotate",
        "Rotate a key; the old secret stays valid for grace_seconds",
        _rotate_key,
        200,
        KeyRotate,
        body_optional=True,
        response=KeyCreated,
    ),
    Operation(
        "GET", "/budgets", "List budgets", _list_budgets, response=list[Budget], query=(TEAM_QUERY,)
    ),
    Operation(
        "POST",
        "/budgets",
        "Set (create or replace) the budget of a target and period",
        _set_budget,
        201,
        BudgetSet,
        response=Budget,
    ),
    Operation("DELETE", "/budgets/{budget_id}", "Delete a budget", _delete_budget, 204),
    Operation(
        "GET", "/rate-limits", "List rate limits", _list_rate_limits, response=list[RateLimit]
    ),
    Operation(
        "POST",
        "/rate-limits",
        "Set (create or replace) the rate limit of a target",
        _set_rate_limit,
        201,
        RateLimitSet,
        response=RateLimit,
    ),
    Operation("DELETE", "/rate-limits/{limit_id}", "Delete a rate limit", _delete_rate_limit, 204),
    Operation(
        "GET",
        "/audit",
        "Control-plane changes, newest first",
        _audit,
        response=list[AuditRecord],
        query=(Query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}),),
    ),
)


def admin_routes(prefix: str = "/admin/v1") -> list[Route]:
    """Starlette routes for every operation, plus ``GET {prefix}/openapi.json``."""
    from proxy.admin.openapi import openapi_endpoint

    grouped: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in OPERATIONS:
        grouped.setdefault(op.path, {})[op.method] = _endpoint(op)

    class Dispatch:
        """A plain ASGI endpoint, so every method reaches it: a wrong one gets 405 with
        ``Allow``, in the admin API's error format."""

        def __init__(self, by_method: dict[str, Callable[[Request], Awaitable[Response]]]):
            self.by_method = by_method

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            request = Request(scope, receive)
            handler = self.by_method.get(request.method)
            resp: Response
            if handler is None:
                resp = error(405, "method_not_allowed", f"{request.method} is not allowed here")
                resp.headers["allow"] = ", ".join(self.by_method)
            else:
                resp = await handler(request)
            await resp(scope, receive, send)

    routes: list[Route] = [
        Route(prefix + "/openapi.json", Dispatch({"GET": openapi_endpoint(prefix)}))
    ]
    for path, by_method in grouped.items():
        routes.append(Route(prefix + path, Dispatch(by_method)))
    return routes
