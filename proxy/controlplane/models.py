"""Control-plane tables: teams, projects, virtual keys, budget and rate-limit policies, audit.

They live in the ledger's database (one engine, one backup) and are changed only through
``proxy.controlplane.store``, which writes an audit row in the same transaction as each change.
A virtual key row never holds its secret: only the SHA-256 of the current secret (and of the
previous one during a rotation's grace period) and a short display prefix.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Index, UniqueConstraint
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from proxy.db import ExactDecimal, UTCDateTime

__all__ = ["AuditEntry", "BudgetRow", "KeyRow", "ProjectRow", "RateLimitRow", "TeamRow"]


def _json(nullable: bool = False) -> Any:
    return Column(JSON().with_variant(JSONB(), "postgresql"), nullable=nullable)


def _when(nullable: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable)


class TeamRow(SQLModel, table=True):
    __tablename__ = "cp_teams"

    name: str = Field(primary_key=True, max_length=64)
    description: str | None = Field(default=None, max_length=500)
    created_at: datetime = _when()


class ProjectRow(SQLModel, table=True):
    __tablename__ = "cp_projects"

    team: str = Field(primary_key=True, foreign_key="cp_teams.name", max_length=64)
    name: str = Field(primary_key=True, max_length=64)
    created_at: datetime = _when()


class KeyRow(SQLModel, table=True):
    """A virtual key. ``previous_hash`` stays valid until ``previous_valid_until`` (rotation)."""

    __tablename__ = "cp_keys"
    __table_args__ = (Index("ix_cp_keys_team", "team"),)

    id: str = Field(primary_key=True, max_length=40)  # the ledger's key_id
    name: str | None = Field(default=None, max_length=100)
    team: str = Field(foreign_key="cp_teams.name", max_length=64)
    project: str | None = Field(default=None, max_length=64)
    prefix: str = Field(max_length=16)  # shown in listings; not enough to use the key
    key_hash: str = Field(unique=True, max_length=64)
    previous_hash: str | None = Field(default=None, max_length=64)
    previous_valid_until: datetime | None = _when(nullable=True)
    tags: dict[str, str] = Field(default_factory=dict, sa_column=_json())
    allowed_models: list[str] | None = Field(default=None, sa_column=_json(nullable=True))
    expires_at: datetime | None = _when(nullable=True)
    revoked_at: datetime | None = _when(nullable=True)
    created_at: datetime = _when()
    rotated_at: datetime | None = _when(nullable=True)


class BudgetRow(SQLModel, table=True):
    """A budget policy (see ``budgets.Policy``); ``team`` owns it (NULL: global admin only)."""

    __tablename__ = "cp_budgets"
    __table_args__ = (UniqueConstraint("scope", "match", "period", name="uq_cp_budgets_target"),)

    id: str = Field(primary_key=True, max_length=40)
    team: str | None = Field(default=None, max_length=64)
    scope: str = Field(max_length=16)
    match: str = Field(max_length=200)  # "" for global
    period: str = Field(max_length=16)
    limit_usd: Decimal | None = Field(default=None, sa_type=ExactDecimal)
    limit_tokens: int | None = Field(default=None, sa_type=BigInteger)
    limit_requests: int | None = Field(default=None, sa_type=BigInteger)
    mode: str = Field(default="hard", max_length=8)
    alert_at: list[str] = Field(default_factory=list, sa_column=_json())
    created_at: datetime = _when()
    updated_at: datetime = _when()


class RateLimitRow(SQLModel, table=True):
    __tablename__ = "cp_rate_limits"
    __table_args__ = (UniqueConstraint("scope", "match", name="uq_cp_rate_limits_target"),)

    id: str = Field(primary_key=True, max_length=40)
    team: str | None = Field(default=None, max_length=64)
    scope: str = Field(max_length=16)
    match: str = Field(max_length=200)
    rpm: int | None = Field(default=None, sa_type=BigInteger)
    tpm: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = _when()
    updated_at: datetime = _when()


class AuditEntry(SQLModel, table=True):
    """Who changed what, when, with the record before and after (never a secret or hash)."""

    __tablename__ = "cp_audit"
    __table_args__ = (Index("ix_cp_audit_team_at", "team", "at"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _when()
    actor: str = Field(max_length=100)
    action: str = Field(max_length=40)  # e.g. "key.revoke"
    team: str | None = Field(default=None, max_length=64)
    target: str = Field(max_length=200)
    before: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=_json(nullable=True))
