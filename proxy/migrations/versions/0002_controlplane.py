"""Control plane: teams, projects, virtual keys, budgets, rate limits, audit log.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from proxy.db import ExactDecimal, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "cp_teams",
        sa.Column("name", sa.String(64), primary_key=True, nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "cp_projects",
        sa.Column(
            "team", sa.String(64), sa.ForeignKey("cp_teams.name"), primary_key=True, nullable=False
        ),
        sa.Column("name", sa.String(64), primary_key=True, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "cp_keys",
        sa.Column("id", sa.String(40), primary_key=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("team", sa.String(64), sa.ForeignKey("cp_teams.name"), nullable=False),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("previous_hash", sa.String(64), nullable=True),
        sa.Column("previous_valid_until", UTCDateTime(), nullable=True),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("allowed_models", _JSON, nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("rotated_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_cp_keys_team", "cp_keys", ["team"])
    op.create_table(
        "cp_budgets",
        sa.Column("id", sa.String(40), primary_key=True, nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("match", sa.String(200), nullable=False),
        sa.Column("period", sa.String(16), nullable=False),
        sa.Column("limit_usd", ExactDecimal(), nullable=True),
        sa.Column("limit_tokens", sa.BigInteger(), nullable=True),
        sa.Column("limit_requests", sa.BigInteger(), nullable=True),
        sa.Column("mode", sa.String(8), nullable=False),
        sa.Column("alert_at", _JSON, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("scope", "match", "period", name="uq_cp_budgets_target"),
    )
    op.create_table(
        "cp_rate_limits",
        sa.Column("id", sa.String(40), primary_key=True, nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("match", sa.String(200), nullable=False),
        sa.Column("rpm", sa.BigInteger(), nullable=True),
        sa.Column("tpm", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("scope", "match", name="uq_cp_rate_limits_target"),
    )
    op.create_table(
        "cp_audit",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("team", sa.String(64), nullable=True),
        sa.Column("target", sa.String(200), nullable=False),
        sa.Column("before", _JSON, nullable=True),
        sa.Column("after", _JSON, nullable=True),
    )
    op.create_index("ix_cp_audit_team_at", "cp_audit", ["team", "at"])


def downgrade() -> None:
    for table in ("cp_audit", "cp_rate_limits", "cp_budgets", "cp_keys", "cp_projects"):
        op.drop_table(table)
    op.drop_table("cp_teams")
