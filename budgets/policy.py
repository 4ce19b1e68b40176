"""Budget and rate-limit policies: raw YAML items in, frozen runtime objects out.

Parsing happens once at start-up (or on an admin change); a mistake names the item index and
key, e.g. ``budgets[1].period: must be one of hour, day, week, month, lifetime``.

A policy applies to a request when the request's subject has a value for the policy's scope
and ``match`` accepts it (a glob; absent means "every value, each counted separately", so
``{scope: key, period: day, limit_tokens: ...}`` gives each key its own daily allowance).
A ``tag`` policy matches ``key=value`` (``env=prod``, or ``env=*`` for each value of ``env``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from fnmatch import fnmatchcase
from typing import Any

from budgets.errors import BudgetConfigError
from budgets.period import Period
from budgets.subject import Subject

__all__ = [
    "FailMode",
    "Mode",
    "Policy",
    "RateLimitPolicy",
    "Scope",
    "parse_policies",
    "parse_rate_limits",
]


class Scope(enum.StrEnum):
    """What a counter is kept per."""

    GLOBAL = "global"
    TEAM = "team"
    PROJECT = "project"
    KEY = "key"
    END_USER = "end_user"
    TAG = "tag"
    MODEL = "model"


class Mode(enum.StrEnum):
    """``hard`` blocks a request that does not fit; ``soft`` only alerts."""

    HARD = "hard"
    SOFT = "soft"


class FailMode(enum.StrEnum):
    """What to do when the store is unreachable: admit and count locally, or refuse (503)."""

    OPEN = "open"
    CLOSED = "closed"


def _choices(enum_type: type[enum.StrEnum]) -> str:
    return ", ".join(m.value for m in enum_type)


def scope_value(scope: Scope, match: str | None, subject: Subject) -> str | None:
    """The subject's value for ``scope`` if ``match`` accepts it, else ``None`` (does not apply)."""
    if scope is Scope.GLOBAL:
        return ""
    if scope is Scope.TAG:
        assert match is not None  # the parser requires key=pattern
        tag_key, _, pattern = match.partition("=")
        tag_value = subject.tags.get(tag_key)
        if tag_value is None or not fnmatchcase(tag_value, pattern):
            return None
        return f"{tag_key}={tag_value}"
    value = {
        Scope.TEAM: subject.team,
        Scope.PROJECT: subject.project,
        Scope.KEY: subject.key_id,
        Scope.END_USER: subject.end_user,
        Scope.MODEL: subject.model,
    }[scope]
    if value is None or (match is not None and not fnmatchcase(value, match)):
        return None
    return value


def value_matches(scope: Scope, match: str | None, value: str) -> bool:
    """Whether a counter value (as ``scope_value`` builds it) is one ``match`` accepts."""
    if scope is Scope.GLOBAL:
        return value == ""
    if scope is Scope.TAG:
        assert match is not None
        tag_key, _, pattern = match.partition("=")
        key, sep, tag_value = value.partition("=")
        return bool(sep) and key == tag_key and fnmatchcase(tag_value, pattern)
    return match is None or fnmatchcase(value, match)


@dataclass(frozen=True, slots=True)
class Policy:
    """One budget: a scope, a period, one or more limits, a mode and alert thresholds.

    ``limit_usd`` is exact USD; ``limit_tokens`` and ``limit_requests`` are counts. Every
    limit given is enforced (``hard``) or watched (``soft``) over the same counter.
    ``fail_mode`` overrides the ``Budgets`` default for requests this policy applies to.
    """

    scope: Scope
    period: Period
    match: str | None = None
    limit_usd: Decimal | None = None
    limit_tokens: int | None = None
    limit_requests: int | None = None
    mode: Mode = Mode.HARD
    alert_at: tuple[Decimal, ...] = ()
    fail_mode: FailMode | None = None

    @property
    def name(self) -> str:
        """A stable, readable identity used in alerts and logs."""
        return f"{self.scope}:{self.match or '*'}:{self.period}"

    def value_for(self, subject: Subject) -> str | None:
        """The counter value this policy keeps for ``subject``, or ``None`` if it does not apply."""
        return scope_value(self.scope, self.match, subject)

    def limits(self) -> tuple[tuple[int, Decimal | int], ...]:
        """``(unit index, limit)`` pairs: 0 USD, 1 tokens, 2 requests (the counter's order)."""
        given = (self.limit_usd, self.limit_tokens, self.limit_requests)
        return tuple((unit, limit) for unit, limit in enumerate(given) if limit is not None)


@dataclass(frozen=True, slots=True)
class RateLimitPolicy:
    """Requests and/or tokens per minute for one scope (a GCRA bucket each, see ratelimit.py)."""

    scope: Scope
    match: str | None = None
    rpm: int | None = None
    tpm: int | None = None

    def value_for(self, subject: Subject) -> str | None:
        """The bucket value for ``subject``, or ``None`` if this limit does not apply."""
        return scope_value(self.scope, self.match, subject)


class _Item:
    """Reads one raw mapping, naming ``section[index].key`` in every error."""

    def __init__(self, section: str, index: int, raw: object, allowed: Iterable[str]) -> None:
        self.where = f"{section}[{index}]"
        if not isinstance(raw, Mapping):
            raise BudgetConfigError(f"{self.where}: must be a mapping, got {type(raw).__name__}")
        self.raw: Mapping[str, Any] = raw
        allowed = set(allowed)
        for key in raw:
            if key not in allowed:
                expected = ", ".join(sorted(allowed))
                raise BudgetConfigError(f"{self.where}.{key}: unknown key (expected: {expected})")

    def fail(self, key: str, message: str) -> BudgetConfigError:
        return BudgetConfigError(f"{self.where}.{key}: {message}")

    def choice(self, key: str, enum_type: type[enum.StrEnum], default: str | None = None) -> Any:
        value = self.raw.get(key, default)
        if value is None:
            raise self.fail(key, "is required")
        if isinstance(value, str):
            value = value.replace("-", "_") if enum_type is Scope else value
            try:
                return enum_type(value)
            except ValueError:
                pass
        raise self.fail(key, f"must be one of {_choices(enum_type)}")

    def text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if not isinstance(value, str | int) or isinstance(value, bool) or str(value) == "":
            raise self.fail(key, "must be a non-empty string")
        return str(value)

    def count(self, key: str, *, positive: bool) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        least = 1 if positive else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise self.fail(key, f"must be an integer >= {least}")
        return value

    def usd(self, key: str) -> Decimal | None:
        value = self.raw.get(key)
        if value is None:
            return None
        try:
            if isinstance(value, bool):
                raise TypeError
            amount = Decimal(str(value))
        except (InvalidOperation, TypeError):
            raise self.fail(key, "must be a number of USD") from None
        if not amount.is_finite() or amount < 0:
            raise self.fail(key, "must be a number of USD >= 0")
        return amount

    def fractions(self, key: str) -> tuple[Decimal, ...]:
        value = self.raw.get(key)
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self.fail(key, "must be a list of fractions of the limit, e.g. [0.5, 0.8, 1.0]")
        out: list[Decimal] = []
        for i, item in enumerate(value):
            try:
                if isinstance(item, bool):
                    raise TypeError
                fraction = Decimal(str(item))
            except (InvalidOperation, TypeError):
                raise self.fail(f"{key}[{i}]", "must be a number") from None
            if not fraction.is_finite() or fraction <= 0:
                raise self.fail(f"{key}[{i}]", "must be > 0")
            out.append(fraction)
        return tuple(sorted(set(out)))


def _match(item: _Item, scope: Scope) -> str | None:
    match = item.text("match")
    if scope is Scope.GLOBAL and match is not None:
        raise item.fail("match", "must be absent for scope global")
    if scope is Scope.TAG and (match is None or "=" not in match or match.startswith("=")):
        raise item.fail(
            "match", "scope tag needs match: key=value (value may be a glob, e.g. env=*)"
        )
    return match


_POLICY_KEYS = (
    "scope match period limit_usd limit_tokens limit_requests mode alert_at fail_mode".split()
)


def parse_policies(raw: object) -> tuple[Policy, ...]:
    """Validate the ``budgets:`` list from the config and return frozen ``Policy`` objects."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BudgetConfigError("budgets: must be a list")
    out: list[Policy] = []
    for index, entry in enumerate(raw):
        item = _Item("budgets", index, entry, _POLICY_KEYS)
        scope: Scope = item.choice("scope", Scope)
        policy = Policy(
            scope=scope,
            match=_match(item, scope),
            period=item.choice("period", Period),
            limit_usd=item.usd("limit_usd"),
            limit_tokens=item.count("limit_tokens", positive=False),
            limit_requests=item.count("limit_requests", positive=False),
            mode=item.choice("mode", Mode, default="hard"),
            alert_at=item.fractions("alert_at"),
            fail_mode=item.choice("fail_mode", FailMode) if "fail_mode" in item.raw else None,
        )
        if (policy.limit_usd, policy.limit_tokens, policy.limit_requests) == (None, None, None):
            raise item.fail(
                "limit_usd", "one of limit_usd, limit_tokens, limit_requests is required"
            )
        out.append(policy)
    return tuple(out)


def parse_rate_limits(raw: object) -> tuple[RateLimitPolicy, ...]:
    """Validate the ``rate_limits:`` list and return frozen ``RateLimitPolicy`` objects."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BudgetConfigError("rate_limits: must be a list")
    out: list[RateLimitPolicy] = []
    for index, entry in enumerate(raw):
        item = _Item("rate_limits", index, entry, ("scope", "match", "rpm", "tpm"))
        scope: Scope = item.choice("scope", Scope)
        limit = RateLimitPolicy(
            scope=scope,
            match=_match(item, scope),
            rpm=item.count("rpm", positive=True),
            tpm=item.count("tpm", positive=True),
        )
        if limit.rpm is None and limit.tpm is None:
            raise item.fail("rpm", "one of rpm, tpm is required")
        out.append(limit)
    return tuple(out)
