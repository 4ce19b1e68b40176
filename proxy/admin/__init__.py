"""The admin API under ``/admin/v1``: the control plane over HTTP, with its OpenAPI document."""

from __future__ import annotations

from proxy.admin.api import admin_routes

__all__ = ["admin_routes"]
