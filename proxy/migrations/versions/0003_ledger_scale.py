"""Ledger at scale: the hourly rollup, and on PostgreSQL monthly partitions.

Creates ``ledger_hourly`` (see proxy/rollup.py) and fills it from the calls already stored.
On PostgreSQL it also turns ``ledger_calls`` into a table range-partitioned by
``started_at``: one partition per UTC month holding calls, this month and the next few, and
a DEFAULT partition; the primary key becomes ``(request_id, started_at)`` (a partitioned
table's unique keys must hold the partition key). The calls are copied over, which takes a
while on a large ledger: run ``spendgate db upgrade`` before rolling out the new version.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from proxy.db import ExactDecimal, UTCDateTime
from proxy.retention import PARTITIONS_AHEAD, create_partitions, month_start
from proxy.rollup import COUNTS, DIMENSIONS, KEY, MONEY, TOKENS, backfill_sql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_INDEXES = ("ix_ledger_calls_started_at", "ix_ledger_calls_team_started_at")


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "ledger_hourly",
        sa.Column("bucket", UTCDateTime(), nullable=False),
        *(sa.Column(name, sa.String(), nullable=False) for name in DIMENSIONS),
        sa.Column("nulls", sa.SmallInteger(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in COUNTS),
        *(sa.Column(name, ExactDecimal(), nullable=False) for name in MONEY),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in TOKENS),
        sa.PrimaryKeyConstraint("bucket", *KEY),
    )
    if bind.dialect.name == "postgresql":
        _partition(bind)
    bind.exec_driver_sql(backfill_sql(bind.dialect.name))


def _partition(bind: sa.engine.Connection) -> None:
    bind.exec_driver_sql("ALTER TABLE ledger_calls RENAME TO ledger_calls_unpartitioned")
    bind.exec_driver_sql(
        "ALTER TABLE ledger_calls_unpartitioned DROP CONSTRAINT IF EXISTS ledger_calls_pkey"
    )
    for index in _INDEXES:
        bind.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
    bind.exec_driver_sql(
        "CREATE TABLE ledger_calls (LIKE ledger_calls_unpartitioned INCLUDING DEFAULTS) "
        "PARTITION BY RANGE (started_at)"
    )
    bind.exec_driver_sql(
        "ALTER TABLE ledger_calls ADD CONSTRAINT ledger_calls_pkey "
        "PRIMARY KEY (request_id, started_at)"
    )
    bind.exec_driver_sql(f"CREATE INDEX {_INDEXES[0]} ON ledger_calls (started_at)")
    bind.exec_driver_sql(f"CREATE INDEX {_INDEXES[1]} ON ledger_calls (team, started_at)")
    bind.exec_driver_sql("CREATE TABLE ledger_calls_default PARTITION OF ledger_calls DEFAULT")
    oldest, newest = bind.exec_driver_sql(
        "SELECT min(started_at), max(started_at) FROM ledger_calls_unpartitioned"
    ).one()
    now = month_start(datetime.now(UTC))
    months = [_shift(now, k) for k in range(PARTITIONS_AHEAD + 1)]
    if oldest is not None:
        month = month_start(oldest)
        while month <= newest:
            months.append(month)
            month = _shift(month, 1)
    create_partitions(bind, months)
    bind.exec_driver_sql("INSERT INTO ledger_calls SELECT * FROM ledger_calls_unpartitioned")
    bind.exec_driver_sql("DROP TABLE ledger_calls_unpartitioned")


def _shift(month: datetime, n: int) -> datetime:
    index = month.year * 12 + month.month - 1 + n
    return month.replace(year=index // 12, month=index % 12 + 1)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        bind.exec_driver_sql("ALTER TABLE ledger_calls RENAME TO ledger_calls_partitioned")
        bind.exec_driver_sql(
            "ALTER TABLE ledger_calls_partitioned DROP CONSTRAINT ledger_calls_pkey"
        )
        for index in _INDEXES:
            bind.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
        bind.exec_driver_sql(
            "CREATE TABLE ledger_calls (LIKE ledger_calls_partitioned INCLUDING DEFAULTS)"
        )
        bind.exec_driver_sql("ALTER TABLE ledger_calls ADD PRIMARY KEY (request_id)")
        bind.exec_driver_sql("INSERT INTO ledger_calls SELECT * FROM ledger_calls_partitioned")
        bind.exec_driver_sql("DROP TABLE ledger_calls_partitioned CASCADE")
        op.create_index(_INDEXES[0], "ledger_calls", ["started_at"])
        op.create_index(_INDEXES[1], "ledger_calls", ["team", "started_at"])
    op.drop_table("ledger_hourly")
