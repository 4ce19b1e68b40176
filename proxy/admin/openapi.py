"""The admin API's OpenAPI 3.1 document, generated from ``OPERATIONS`` and the pydantic models.

Request bodies use each model's validation schema, responses its serialization schema, so
what the document promises is exactly what the handlers accept and send.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from proxy import __version__
from proxy.admin.api import OPERATIONS, PATH_PATTERNS
from proxy.controlplane.schemas import ErrorBody

__all__ = ["openapi_document", "openapi_endpoint"]

_REF = "#/components/schemas/{model}"
_ERRORS = {
    "401": "No admin key, or a wrong one",
    "403": "Not allowed for this admin key, or a read-only record",
    "404": "No such record (or not visible to this admin key)",
    "409": "Conflicts with an existing record or its dependants",
    "422": "Invalid input; error.field names it",
}


def _models() -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = [ErrorBody]
    for op in OPERATIONS:
        for model in (op.body, op.response):
            inner = getattr(model, "__args__", (model,))[0] if model is not None else None
            if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
                seen.append(inner)
    return seen


def openapi_document(prefix: str = "/admin/v1") -> dict[str, Any]:
    models = _models()
    keys, defs = models_json_schema(
        [(m, mode) for m in models for mode in ("validation", "serialization")],
        ref_template=_REF,
    )
    schemas: dict[str, Any] = defs.get("$defs", {})

    def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
        return dict(keys[(model, mode)])  # type: ignore[index]

    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        responses: dict[str, Any] = {}
        ok = ["200", "201"] if op.status == 201 and op.path in ("/budgets", "/rate-limits") else []
        for status in ok or [str(op.status)]:
            if op.response is None:
                responses[status] = {"description": "Done"}
                continue
            if getattr(op.response, "__origin__", None) is list:
                schema = {"type": "array", "items": ref(op.response.__args__[0], "serialization")}
            else:
                schema = ref(op.response, "serialization")
            responses[status] = {
                "description": "OK",
                "content": {"application/json": {"schema": schema}},
            }
        for status, text in _ERRORS.items():
            responses[status] = {
                "description": text,
                "content": {"application/json": {"schema": ref(ErrorBody, "serialization")}},
            }
        operation: dict[str, Any] = {
            "summary": op.summary,
            "operationId": op.handler.__name__.strip("_"),
            "responses": responses,
        }
        params = [
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": PATH_PATTERNS[name]},
            }
            for name in re.findall(r"{(\w+)}", op.path)
        ]
        params += [
            {"name": q.name, "in": "query", "required": False, "schema": q.schema} for q in op.query
        ]
        if params:
            operation["parameters"] = params
        if op.body is not None:
            operation["requestBody"] = {
                "required": not op.body_optional,
                "content": {"application/json": {"schema": ref(op.body, "validation")}},
            }
        paths.setdefault(prefix + op.path, {})[op.method.lower()] = operation
    paths[prefix + "/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3.1 document"}},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "spendgate admin API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"adminKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"adminKey": []}],
    }


def openapi_endpoint(prefix: str) -> Callable[[Request], Awaitable[Response]]:
    document: dict[str, Any] | None = None

    async def endpoint(request: Request) -> Response:
        nonlocal document
        if document is None:
            document = openapi_document(prefix)
        return JSONResponse(document)

    return endpoint
