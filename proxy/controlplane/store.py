"""Async CRUD over the control-plane tables, with access rules and an audit row per change.

Every method takes the acting ``Principal``: the global admin (``team`` None) or a team
admin, who sees and changes only its own team (anything else is "not found", so a team admin
cannot even learn another team's key ids). Each change commits together with its audit entry,
then ``on_change`` runs (the proxy reloads its key cache and tells the other replicas).
Keys, budgets and rate limits declared in YAML are listed too, read-only (``source: config``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from proxy.config import KeyConfig
from proxy.controlplane import keys as keymod
from proxy.controlplane.errors import Conflict, Forbidden, Missing
from proxy.controlplane.models import AuditEntry, KeyRow, ProjectRow, TeamRow
from proxy.controlplane.schemas import (
    AuditRecord,
    Key,
    KeyCreate,
    KeyCreated,
    KeyRotate,
    Project,
    ProjectCreate,
    Team,
    TeamCreate,
)

__all__ = ["GLOBAL_ADMIN", "Principal", "Store"]

R = TypeVar("R", bound=SQLModel)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who acts: ``actor`` goes to the audit log; ``team`` limits a team admin."""

    actor: str
    team: str | None = None

    def sees(self, team: str | None) -> bool:
        return self.team is None or self.team == team


GLOBAL_ADMIN = Principal("admin")


def now() -> datetime:
    return datetime.now(UTC)


def key_record(row: KeyRow, at: datetime) -> Key:
    return Key(
        id=row.id,
        name=row.name,
        team=row.team,
        project=row.project,
        prefix=row.prefix,
        tags=dict(row.tags or {}),
        allowed_models=list(row.allowed_models) if row.allowed_models is not None else None,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        created_at=row.created_at,
        rotated_at=row.rotated_at,
        previous_valid_until=row.previous_valid_until,
        status=keymod.key_status(row, at),  # type: ignore[arg-type]
        source="api",
    )


def config_key_record(k: KeyConfig) -> Key:
    return Key(
        id=k.key_id,
        name=k.name,
        team=k.team,
        project=k.project,
        prefix="",
        tags=dict(k.tags),
        allowed_models=None,
        expires_at=None,
        revoked_at=None,
        created_at=None,
        rotated_at=None,
        previous_valid_until=None,
        status="active",
        source="config",
    )


class Store:
    """The control plane's data, on the ledger's database (``engine``)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        config_keys: Sequence[KeyConfig] = (),
        on_change: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.engine = engine
        self.config_keys = tuple(config_keys)
        self.on_change = on_change

    def session(self) -> AsyncSession:
        return AsyncSession(self.engine, expire_on_commit=False)

    async def _commit(self, s: AsyncSession, what: str) -> None:
        try:
            await s.commit()
        except IntegrityError:
            await s.rollback()
            raise Conflict(f"{what} conflicts with an existing record") from None
        if self.on_change is not None:
            await self.on_change()

    @staticmethod
    def _audit(
        s: AsyncSession,
        who: Principal,
        action: str,
        team: str | None,
        target: str,
        before: Any = None,
        after: Any = None,
    ) -> None:
        def dump(value: Any) -> dict[str, Any] | None:
            return None if value is None else value.model_dump(mode="json")

        s.add(
            AuditEntry(
                at=now(),
                actor=who.actor,
                action=action,
                team=team,
                target=target,
                before=dump(before),
                after=dump(after),
            )
        )

    # -- teams ---------------------------------------------------------------------------

    async def _team_row(self, s: AsyncSession, who: Principal, name: str) -> TeamRow:
        row = await s.get(TeamRow, name) if who.sees(name) else None
        if row is None:
            raise Missing(f"no team named {name!r}", field="team")
        return row

    async def _team(self, s: AsyncSession, row: TeamRow) -> Team:
        projects = await s.exec(
            select(ProjectRow.name).where(ProjectRow.team == row.name).order_by(ProjectRow.name)
        )
        at = now()
        active = await s.exec(
            select(func.count())
            .select_from(KeyRow)
            .where(KeyRow.team == row.name, col(KeyRow.revoked_at).is_(None))
            .where(col(KeyRow.expires_at).is_(None) | (col(KeyRow.expires_at) > at))
        )
        return Team(
            name=row.name,
            description=row.description,
            created_at=row.created_at,
            projects=list(projects.all()),
            active_keys=int(active.one()),
        )

    async def create_team(self, who: Principal, data: TeamCreate) -> Team:
        if who.team is not None:
            raise Forbidden("only the global admin key can create teams")
        async with self.session() as s:
            if await s.get(TeamRow, data.name) is not None:
                raise Conflict(f"team {data.name!r} already exists", field="name")
            row = TeamRow(name=data.name, description=data.description, created_at=now())
            s.add(row)
            team = Team(
                name=row.name,
                description=row.description,
                created_at=row.created_at,
                projects=[],
                active_keys=0,
            )
            self._audit(s, who, "team.create", row.name, row.name, after=team)
            await self._commit(s, f"team {data.name!r}")
            return team

    async def list_teams(self, who: Principal) -> list[Team]:
        async with self.session() as s:
            stmt = select(TeamRow).order_by(TeamRow.name)
            if who.team is not None:
                stmt = stmt.where(TeamRow.name == who.team)
            return [await self._team(s, row) for row in (await s.exec(stmt)).all()]

    async def get_team(self, who: Principal, name: str) -> Team:
        async with self.session() as s:
            return await self._team(s, await self._team_row(s, who, name))

    async def delete_team(self, who: Principal, name: str) -> None:
        """Delete a team with no active keys; its projects and revoked keys go with it."""
        if who.team is not None:
            raise Forbidden("only the global admin key can delete teams")
        from proxy.controlplane.models import BudgetRow, RateLimitRow

        async with self.session() as s:
            row = await self._team_row(s, who, name)
            before = await self._team(s, row)
            if before.active_keys:
                raise Conflict(
                    f"team {name!r} has {before.active_keys} active key(s); revoke them first"
                )
            for model in (KeyRow, ProjectRow, BudgetRow, RateLimitRow):
                for child in (await s.exec(select(model).where(model.team == name))).all():
                    await s.delete(child)
            await s.flush()
            await s.delete(row)
            self._audit(s, who, "team.delete", name, name, before=before)
            await self._commit(s, f"deleting team {name!r}")

    # -- projects ------------------------------------------------------------------------

    async def create_project(self, who: Principal, team: str, data: ProjectCreate) -> Project:
        async with self.session() as s:
            await self._team_row(s, who, team)
            if await s.get(ProjectRow, (team, data.name)) is not None:
                raise Conflict(f"project {data.name!r} already exists in {team!r}", field="name")
            row = ProjectRow(team=team, name=data.name, created_at=now())
            s.add(row)
            out = Project(team=team, name=row.name, created_at=row.created_at)
            self._audit(s, who, "project.create", team, f"{team}/{row.name}", after=out)
            await self._commit(s, f"project {data.name!r}")
            return out

    async def list_projects(self, who: Principal, team: str) -> list[Project]:
        async with self.session() as s:
            await self._team_row(s, who, team)
            rows = await s.exec(
                select(ProjectRow).where(ProjectRow.team == team).order_by(ProjectRow.name)
            )
            return [Project(team=r.team, name=r.name, created_at=r.created_at) for r in rows]

    async def delete_project(self, who: Principal, team: str, name: str) -> None:
        async with self.session() as s:
            await self._team_row(s, who, team)
            row = await s.get(ProjectRow, (team, name))
            if row is None:
                raise Missing(f"no project {name!r} in team {team!r}", field="project")
            await s.delete(row)
            before = Project(team=team, name=name, created_at=row.created_at)
            self._audit(s, who, "project.delete", team, f"{team}/{name}", before=before)
            await self._commit(s, f"deleting project {name!r}")

    # -- keys ----------------------------------------------------------------------------

    async def create_key(self, who: Principal, data: KeyCreate) -> KeyCreated:
        at = now()
        if data.expires_at is not None and data.expires_at <= at:
            from proxy.controlplane.errors import Invalid

            raise Invalid("expires_at: must be in the future", field="expires_at")
        async with self.session() as s:
            await self._team_row(s, who, data.team)
            if (
                data.project is not None
                and await s.get(ProjectRow, (data.team, data.project)) is None
            ):
                raise Missing(f"no project {data.project!r} in team {data.team!r}", field="project")
            secret = keymod.generate_secret()
            row = KeyRow(
                id=keymod.new_id("key"),
                name=data.name,
                team=data.team,
                project=data.project,
                prefix=keymod.display_prefix(secret),
                key_hash=keymod.hash_key(secret),
                tags=dict(data.tags),
                allowed_models=list(data.allowed_models)
                if data.allowed_models is not None
                else None,
                expires_at=data.expires_at,
                created_at=at,
            )
            s.add(row)
            record = key_record(row, at)
            self._audit(s, who, "key.create", row.team, row.id, after=record)
            await self._commit(s, "key")
            return KeyCreated(**record.model_dump(), secret=secret)

    async def _key_row(self, s: AsyncSession, who: Principal, key_id: str) -> KeyRow:
        row = await s.get(KeyRow, key_id)
        if row is None or not who.sees(row.team):
            if any(k.key_id == key_id and who.sees(k.team) for k in self.config_keys):
                raise Forbidden(f"key {key_id!r} is declared in the config file (read-only)")
            raise Missing(f"no key with id {key_id!r}", field="key_id")
        return row

    async def list_keys(self, who: Principal, team: str | None = None) -> list[Key]:
        if team is not None and not who.sees(team):
            raise Missing(f"no team named {team!r}", field="team")
        team = team or who.team
        at = now()
        async with self.session() as s:
            stmt = select(KeyRow).order_by(col(KeyRow.team), col(KeyRow.created_at))
            if team is not None:
                stmt = stmt.where(KeyRow.team == team)
            out = [key_record(r, at) for r in (await s.exec(stmt)).all()]
        out += [config_key_record(k) for k in self.config_keys if team in (None, k.team)]
        return out

    async def get_key(self, who: Principal, key_id: str) -> Key:
        for k in self.config_keys:
            if k.key_id == key_id and who.sees(k.team):
                return config_key_record(k)
        async with self.session() as s:
            return key_record(await self._key_row(s, who, key_id), now())

    async def revoke_key(self, who: Principal, key_id: str) -> Key:
        """Revoke now (idempotent); the previous secret of a rotation goes with it."""
        at = now()
        async with self.session() as s:
            row = await self._key_row(s, who, key_id)
            before = key_record(row, at)
            if row.revoked_at is None:
                row.revoked_at = at
                row.previous_hash = None
                row.previous_valid_until = None
                s.add(row)
            after = key_record(row, at)
            self._audit(s, who, "key.revoke", row.team, row.id, before=before, after=after)
            await self._commit(s, "revoking the key")
            return after

    async def rotate_key(self, who: Principal, key_id: str, data: KeyRotate) -> KeyCreated:
        at = now()
        async with self.session() as s:
            row = await self._key_row(s, who, key_id)
            if keymod.key_status(row, at) != "active":
                raise Conflict(f"key {key_id!r} is {keymod.key_status(row, at)}; cannot rotate")
            before = key_record(row, at)
            secret = keymod.rotate(row, at, timedelta(seconds=data.grace_seconds))
            s.add(row)
            after = key_record(row, at)
            self._audit(s, who, "key.rotate", row.team, row.id, before=before, after=after)
            await self._commit(s, "rotating the key")
            return KeyCreated(**after.model_dump(), secret=secret)

    async def active_keys(self) -> tuple[list[KeyRow], bool]:
        """Every key that may still authenticate (for the proxy's cache), and whether the
        database holds any key at all (revoked and expired ones included)."""
        at = now()
        async with self.session() as s:
            rows = await s.exec(
                select(KeyRow)
                .where(col(KeyRow.revoked_at).is_(None))
                .where(col(KeyRow.expires_at).is_(None) | (col(KeyRow.expires_at) > at))
            )
            active = list(rows.all())
            if active:
                return active, True
            any_key = (await s.exec(select(KeyRow.id).limit(1))).first()
            return active, any_key is not None

    # -- audit ---------------------------------------------------------------------------

    async def audit(self, who: Principal, limit: int = 100) -> list[AuditRecord]:
        async with self.session() as s:
            stmt = select(AuditEntry).order_by(col(AuditEntry.id).desc()).limit(limit)
            if who.team is not None:
                stmt = stmt.where(AuditEntry.team == who.team)
            return [
                AuditRecord.model_validate(r, from_attributes=True)
                for r in (await s.exec(stmt)).all()
            ]
