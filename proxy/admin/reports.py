"""``/admin/v1/spend`` and ``/admin/v1/export`` behind the admin key.

The report endpoints live in ``proxy.reports.api``; here they get the admin API's auth. A
team admin sees only its own team: any ``team`` filter it sends is replaced by its team.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from proxy.admin.api import _bearer, error
from proxy.admin.auth import AdminKeys
from proxy.reports import api as reports

__all__ = ["report_routes"]

Endpoint = Callable[[Request], Awaitable[Response]]


def _guarded(endpoint: Endpoint) -> Endpoint:
    async def guarded(request: Request) -> Response:
        keys: AdminKeys = request.state.admin_keys
        who = keys.principal(_bearer(request))
        if who is None:
            return error(401, "unauthorized", "missing or wrong admin key (Authorization: Bearer)")
        if who.team is not None:
            params = [
                (k, v)
                for k, v in parse_qsl(request.scope.get("query_string", b"").decode("latin-1"))
                if not (k == "filter" and v.split("=", 1)[0].strip() == "team")
            ]
            params.append(("filter", f"team={who.team}"))
            scope = dict(request.scope, query_string=urlencode(params).encode("latin-1"))
            request = Request(scope, request.receive)
        return await endpoint(request)

    return guarded


def report_routes(prefix: str = "/admin/v1") -> list[Route]:
    return [
        Route(prefix + r.path, _guarded(r.endpoint), methods=list(r.methods or ["GET"]))
        for r in reports.routes
    ]
