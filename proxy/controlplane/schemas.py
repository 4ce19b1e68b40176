"""What the admin API and the CLI exchange: validated inputs and the records they return.

One set of pydantic models serves the HTTP API, the CLI (local and remote) and the OpenAPI
document, so the three cannot drift apart. Inputs refuse what the database would choke on
(NUL bytes, out-of-range integers) with a message that names the field, rather than letting
it surface later as a 500.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

__all__ = [
    "NAME_PATTERN",
    "AuditRecord",
    "Budget",
    "BudgetSet",
    "ErrorBody",
    "Key",
    "KeyCreate",
    "KeyCreated",
    "KeyRotate",
    "Project",
    "ProjectCreate",
    "RateLimit",
    "RateLimitSet",
    "SpendLine",
    "Team",
    "TeamCreate",
    "TeamSpend",
]

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
KEY_ID_PATTERN = r"^key_[0-9a-f]{12}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
# Printable text without control characters (PostgreSQL refuses NUL in text).
Text = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]*$", max_length=200)]
TagText = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f,=]+$", max_length=100)]
ModelPattern = Annotated[
    str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f\s]+$", min_length=1, max_length=200)
]
Count = Annotated[int, Field(ge=0, le=10**15)]
PerMinute = Annotated[int, Field(ge=1, le=10**12)]
Usd = Annotated[Decimal, Field(ge=0, le=10**12, allow_inf_nan=False, max_digits=30)]
Scope = Literal["global", "team", "project", "key"]
Period = Literal["hour", "day", "week", "month", "lifetime"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """``{"error": {"message", "type", "field"}}``; ``field`` names the offending input."""

    class Detail(BaseModel):
        message: str
        type: str
        field: str | None = None

    error: Detail


class TeamCreate(_In):
    name: Name
    description: Text | None = None


class Team(BaseModel):
    name: str
    description: str | None
    created_at: datetime
    projects: list[str]
    active_keys: int


class ProjectCreate(_In):
    name: Name


class Project(BaseModel):
    team: str
    name: str
    created_at: datetime


class KeyCreate(_In):
    team: Name
    project: Name | None = None
    name: Text | None = None
    tags: dict[TagText, TagText] = Field(default_factory=dict, max_length=50)
    allowed_models: list[ModelPattern] | None = Field(default=None, max_length=200)
    expires_at: AwareDatetime | None = None


class KeyRotate(_In):
    grace_seconds: int = Field(default=3600, ge=0, le=30 * 86400)


class Key(BaseModel):
    id: str
    name: str | None
    team: str
    project: str | None
    prefix: str
    tags: dict[str, str]
    allowed_models: list[str] | None
    expires_at: datetime | None
    revoked_at: datetime | None
    created_at: datetime | None
    rotated_at: datetime | None
    previous_valid_until: datetime | None
    status: Literal["active", "revoked", "expired"]
    source: Literal["api", "config"]


class KeyCreated(Key):
    """Returned once, at creation and rotation: ``secret`` is never shown again."""

    secret: str


class BudgetSet(_In):
    """Create or replace the budget of one scope target and period."""

    scope: Scope
    team: Name | None = None
    project: Name | None = None
    key_id: Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)] | None = None
    period: Period
    limit_usd: Usd | None = None
    limit_tokens: Count | None = None
    limit_requests: Count | None = None
    mode: Literal["hard", "soft"] = "hard"
    alert_at: list[Annotated[Decimal, Field(gt=0, le=10, allow_inf_nan=False)]] = Field(
        default_factory=list, max_length=20
    )


class Budget(BaseModel):
    id: str
    scope: Scope | Literal["end_user", "tag", "model"]
    match: str | None
    team: str | None
    period: Period
    limit_usd: Decimal | None
    limit_tokens: int | None
    limit_requests: int | None
    mode: Literal["hard", "soft"]
    alert_at: list[Decimal]
    source: Literal["api", "config"]


class RateLimitSet(_In):
    scope: Scope
    team: Name | None = None
    project: Name | None = None
    key_id: Annotated[str, StringConstraints(pattern=KEY_ID_PATTERN)] | None = None
    rpm: PerMinute | None = None
    tpm: PerMinute | None = None


class RateLimit(BaseModel):
    id: str
    scope: Scope | Literal["end_user", "tag", "model"]
    match: str | None
    team: str | None
    rpm: int | None
    tpm: int | None
    source: Literal["api", "config"]


class SpendLine(BaseModel):
    """One budget's current window: what the ledger holds and what is left."""

    budget_id: str
    scope: str
    match: str | None
    period: str
    window_start: datetime | None
    spent_usd: Decimal
    spent_tokens: int
    requests: int
    limit_usd: Decimal | None
    remaining_usd: Decimal | None
    limit_tokens: int | None
    limit_requests: int | None


class TeamSpend(BaseModel):
    team: str
    month_to_date_usd: Decimal
    budgets: list[SpendLine]


class AuditRecord(BaseModel):
    id: int
    at: datetime
    actor: str
    action: str
    team: str | None
    target: str
    before: dict[str, object] | None
    after: dict[str, object] | None
