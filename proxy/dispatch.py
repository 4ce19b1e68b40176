"""The hot path's front door: exact data-plane paths go straight to their endpoint.

Starlette's router tries every route in order (the admin API first) and wraps each call in two
exception middlewares; for ``POST /v1/chat/completions`` that was ~10 % of the proxy's CPU per
call (docs/benchmarks.md). Data-plane endpoints are pure ASGI apps that answer every error
themselves, in the provider's format, so for a fixed path and method nothing of that is needed.
Everything else (path parameters, the admin API, probes, unknown paths) goes to starlette.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FastDispatch"]


class FastDispatch:
    """Pure ASGI: ``(method, path)`` of fixed data-plane routes -> endpoint, else ``app``."""

    def __init__(self, app: ASGIApp, routes: Iterable[tuple[str, Iterable[str], ASGIApp]]) -> None:
        self.app = app
        self.exact: dict[tuple[str, str], ASGIApp] = {}
        for path, methods, endpoint in routes:
            if "{" in path:
                continue  # path parameters: the router parses them
            for method in methods:
                self.exact.setdefault((method, path), endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self.exact.get((scope["method"], scope["path"]))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)
