"""The control plane: teams, projects, virtual keys, budgets and rate limits in the database.

``models`` (tables), ``schemas`` (what the API and CLI exchange), ``store`` and ``policies``
(CRUD with access rules and audit), ``keys`` (secrets), ``cache`` (the proxy's in-memory copy,
kept fresh across replicas), ``runtime`` (wiring it into a running proxy).
"""

from __future__ import annotations
