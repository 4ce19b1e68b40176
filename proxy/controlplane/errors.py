"""Control-plane errors, each with its HTTP status; the admin API and the CLI render them.

ControlPlaneError
├── Invalid      422: an input is wrong; ``field`` names it
├── Forbidden    403: a team admin acting outside its team, or on a read-only record
├── Missing      404: no such team, project, key, budget or rate limit (or not yours)
└── Conflict     409: it already exists, or something still depends on it
"""

from __future__ import annotations

__all__ = ["Conflict", "ControlPlaneError", "Forbidden", "Invalid", "Missing"]


class ControlPlaneError(Exception):
    status = 500
    kind = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class Invalid(ControlPlaneError):
    status = 422
    kind = "invalid_request"


class Forbidden(ControlPlaneError):
    status = 403
    kind = "forbidden"


class Missing(ControlPlaneError):
    status = 404
    kind = "not_found"


class Conflict(ControlPlaneError):
    status = 409
    kind = "conflict"
