"""Schema migrations (alembic), shipped with the package: ``spendgate db upgrade``.

Revision 0001 is the ledger table exactly as ``create_all`` made it before migrations
existed, so a database from an earlier spendgate (a ``ledger_calls`` table and no
``alembic_version``) is stamped at 0001 and upgraded in place, its rows untouched. The proxy
runs the same upgrade at start; a lock (PostgreSQL advisory, SQLite write lock) makes
replicas and workers starting together take turns.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "BASELINE",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
    "upgrade_database",
]

log = logging.getLogger("spendgate.migrations")

BASELINE = "0001"  # the pre-alembic ledger
_LOCK_ID = 0x5E9D6A7E  # pg_advisory_xact_lock key: one migrator at a time


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent))
    cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def _current(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Connection, target: str) -> tuple[str | None, str | None]:
    # One migrator at a time: replicas and workers may start together.
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
    elif connection.dialect.name == "sqlite":
        # The driver opens no transaction before the first write, so two processes could
        # both see "no revision"; take the write lock first (others wait: busy_timeout).
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    tables = set(inspect(connection).get_table_names())
    before = _current(connection)
    cfg = _config(connection)
    if before is None and "ledger_calls" in tables:
        command.stamp(cfg, BASELINE)  # made by create_all before migrations existed
    command.upgrade(cfg, target)
    return before, _current(connection)


async def upgrade(engine: AsyncEngine, target: str = "head") -> tuple[str | None, str | None]:
    """Bring the database to ``target``; returns the revisions before and after."""
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # start-up noise
    async with engine.begin() as conn:
        return await conn.run_sync(_upgrade, target)


async def downgrade(engine: AsyncEngine, target: str) -> tuple[str | None, str | None]:
    """Take the database back to revision ``target``; returns the revisions before and after."""

    def run(connection: Connection) -> tuple[str | None, str | None]:
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
        before = _current(connection)
        command.downgrade(_config(connection), target)
        return before, _current(connection)

    async with engine.begin() as conn:
        return await conn.run_sync(run)


async def upgrade_database(url: str, target: str = "head") -> tuple[str | None, str | None]:
    """``upgrade`` on a short-lived engine for ``url`` (before the ledger opens its own)."""
    from proxy.db import create_engine, redact_url

    engine = create_engine(url)
    try:
        before, after = await upgrade(engine, target)
    finally:
        await engine.dispose()
    if before != after:
        log.info("database %s upgraded from %s to %s", redact_url(url), before or "nothing", after)
    return before, after


async def current_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return await conn.run_sync(_current)
