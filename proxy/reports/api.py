"""HTTP endpoints for spend reports and exports (mounted under the admin router, which
authenticates): ``GET /spend`` and ``GET /export``.

Both take ``from``, ``to`` (half-open; dates are midnight in ``tz``), ``tz`` (IANA, default
UTC) and repeated ``filter=dimension=value``. ``/spend`` adds ``group_by=team,model``,
``granularity=hour|day|month`` and ``source=auto|rollup|calls`` (the answer says which it
read); ``/export`` adds ``format=csv|jsonl|parquet|focus`` and
``rollup=hour`` (FOCUS). Exports stream: rows are read and encoded batch by batch.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from proxy.reports.export import export_chunks, make_encoder
from proxy.reports.query import SpendLine, SpendQuery, plan_source, run_spend
from proxy.reports.selection import (
    ReportError,
    Selection,
    parse_dimension,
    parse_filters,
    parse_instant,
    parse_zone,
)

__all__ = ["export", "line_json", "routes", "spend"]


def _engine(request: Request) -> AsyncEngine:
    """The ledger writer's engine from the app's lifespan state (``runtime.ledger``), or
    ``app.state.reports_engine`` where an app serves reports alone."""
    runtime = getattr(request.state, "runtime", None)
    if runtime is not None:
        return runtime.ledger.engine  # type: ignore[no-any-return]
    return request.app.state.reports_engine  # type: ignore[no-any-return]


def _selection(request: Request) -> tuple[Selection, Any]:
    params = request.query_params
    zone = parse_zone(params.get("tz"))
    selection = Selection(
        start=parse_instant(params.get("from"), zone),
        end=parse_instant(params.get("to"), zone),
        filters=parse_filters(params.getlist("filter")),
    )
    return selection, zone


def _error(exc: ReportError) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": str(exc), "type": "invalid_request_error"}}, status_code=400
    )


def line_json(line: SpendLine, group_by: tuple[str, ...]) -> dict[str, Any]:
    """A report line as JSON: money as decimal strings (exact), bucket in the report's zone."""
    return {
        "bucket": line.bucket.isoformat() if line.bucket is not None else None,
        **dict(zip(group_by, line.group, strict=True)),
        "cost_usd": format(line.cost_usd, "f"),
        "list_cost_usd": format(line.list_cost_usd, "f"),
        **line.tokens,
        "requests": line.requests,
        "errors": line.errors,
        "unpriced": line.unpriced,
    }


async def spend(request: Request) -> Response:
    try:
        selection, zone = _selection(request)
        raw = request.query_params.get("group_by", "")
        group_by = tuple(parse_dimension(d) for d in raw.split(",") if d.strip())
        query = SpendQuery(
            selection=selection,
            group_by=group_by,
            granularity=request.query_params.get("granularity") or None,
            zone=zone,
        )
        engine = _engine(request)
        source = request.query_params.get("source") or "auto"
        if source == "auto":
            source, _ = await plan_source(engine, query)
        lines = await run_spend(engine, query, source=source)
    except ReportError as exc:
        return _error(exc)
    return JSONResponse(
        {
            "from": selection.start.isoformat() if selection.start else None,
            "to": selection.end.isoformat() if selection.end else None,
            "group_by": list(group_by),
            "granularity": query.granularity,
            "tz": str(getattr(zone, "key", "UTC")),
            "source": source,
            "lines": [line_json(line, group_by) for line in lines],
        }
    )


async def export(request: Request) -> Response:
    try:
        selection, _ = _selection(request)
        fmt = request.query_params.get("format", "csv")
        encoder = make_encoder(fmt, rollup=request.query_params.get("rollup") or None)
    except ReportError as exc:
        return _error(exc)
    name = f"spendgate-{'focus' if fmt == 'focus' else 'ledger'}.{encoder.extension}"
    return StreamingResponse(
        export_chunks(_engine(request), selection, encoder),
        media_type=encoder.media_type,
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


routes: list[Route] = [
    Route("/spend", spend, methods=["GET"]),
    Route("/export", export, methods=["GET"]),
]
