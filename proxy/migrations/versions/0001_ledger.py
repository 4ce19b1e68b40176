"""The ledger table as it was before migrations existed (``create_all`` of proxy/ledger.py).

A database created by an earlier spendgate already has this table and no ``alembic_version``;
``proxy.migrations.upgrade`` detects that and stamps this revision instead of running it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from proxy.db import ExactDecimal, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "ledger_calls",
        sa.Column("request_id", sa.String(), nullable=False, primary_key=True),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=False),
        sa.Column("team", sa.String(), nullable=False),
        sa.Column("project", sa.String(), nullable=True),
        sa.Column("key_id", sa.String(), nullable=True),
        sa.Column("end_user", sa.String(), nullable=True),
        sa.Column("tags", _JSON, nullable=False),
        sa.Column("provider", sa.String(), nullable=True),
        sa.Column("endpoint", sa.String(), nullable=False),
        sa.Column("model_requested", sa.String(), nullable=True),
        sa.Column("model_served", sa.String(), nullable=True),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(), nullable=False),
        sa.Column("error_type", sa.String(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("cached_input_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_write_tokens", sa.Integer(), nullable=True),
        sa.Column("cache_write_1h_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("reasoning_tokens", sa.Integer(), nullable=True),
        sa.Column("audio_input_tokens", sa.Integer(), nullable=True),
        sa.Column("audio_output_tokens", sa.Integer(), nullable=True),
        sa.Column("usage_source", sa.String(), nullable=False),
        sa.Column("list_cost_usd", ExactDecimal(), nullable=True),
        sa.Column("cost_usd", ExactDecimal(), nullable=True),
        sa.Column("cost_input_usd", ExactDecimal(), nullable=True),
        sa.Column("cost_cached_input_usd", ExactDecimal(), nullable=True),
        sa.Column("cost_cache_write_usd", ExactDecimal(), nullable=True),
        sa.Column("cost_output_usd", ExactDecimal(), nullable=True),
        sa.Column("cost_other_usd", ExactDecimal(), nullable=True),
        sa.Column("price_version", sa.String(), nullable=True),
        sa.Column("rate_card", sa.String(), nullable=True),
        sa.Column("unpriced", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("ttft_ms", sa.Integer(), nullable=True),
        sa.Column("trace_id", sa.String(), nullable=True),
        sa.Column("span_id", sa.String(), nullable=True),
        sa.Column("upstream_request_id", sa.String(), nullable=True),
    )
    op.create_index("ix_ledger_calls_started_at", "ledger_calls", ["started_at"])
    op.create_index("ix_ledger_calls_team_started_at", "ledger_calls", ["team", "started_at"])


def downgrade() -> None:
    op.drop_table("ledger_calls")
