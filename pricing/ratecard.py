"""What a team is charged (chargeback) and what the organisation negotiated.

A team's rate card is a list of dated versions, each a discount or markup in percent and
optional custom prices per model (a custom price is final: no percentage and no negotiated
discount applies on top). Before a card's first version the team pays the list price.
A negotiated discount (an enterprise agreement) applies to every team, optionally limited
to one provider or some models; the most specific one in effect wins.

Config shape (``teams:`` section; ``rate_card`` may be one mapping or a list of versions)::

    search: {rate_card: {discount_pct: 10}}
    research:
      rate_card:
        - {effective_from: 2026-01-01, markup_pct: 5}
        - effective_from: 2026-07-01
          markup_pct: 8
          models: {gpt-4o: {input: 2.0, output: 8.0}}
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from pricing.entry import parse_tiers
from pricing.errors import PricingError
from pricing.rates import RateTable
from pricing.values import as_date, as_decimal, as_mapping, as_str, utc

__all__ = ["NegotiatedDiscount", "RateCard", "RateCardVersion", "parse_discounts", "parse_teams"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CARD_KEYS = frozenset({"effective_from", "discount_pct", "markup_pct", "models", "notes"})
_DISCOUNT_KEYS = frozenset(
    {"discount_pct", "provider", "models", "effective_from", "effective_until", "source", "notes"}
)


def _factor(raw: Mapping[str, object], where: str) -> Decimal:
    """1 - discount/100 or 1 + markup/100 (exact); both at once is ambiguous."""
    if "discount_pct" in raw and "markup_pct" in raw:
        raise PricingError(f"{where}: give discount_pct or markup_pct, not both")
    if "discount_pct" in raw:
        pct = as_decimal(raw["discount_pct"], f"{where}: discount_pct")
        if pct > 100:
            raise PricingError(f"{where}: discount_pct above 100 would make costs negative")
        return 1 - pct / 100
    if "markup_pct" in raw:
        return 1 + as_decimal(raw["markup_pct"], f"{where}: markup_pct") / 100
    return Decimal(1)


@dataclass(frozen=True, slots=True)
class RateCardVersion:
    """One dated version of a team's card: a factor on list cost, and custom model prices."""

    effective_from: datetime
    label: str
    factor: Decimal = Decimal(1)
    custom: Mapping[str, Mapping[str, RateTable]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RateCard:
    """A team's card, versions ascending by ``effective_from``."""

    team: str
    versions: tuple[RateCardVersion, ...]

    def at(self, when: datetime) -> RateCardVersion | None:
        """The version in effect at ``when``; None before the first (list price applies)."""
        starts = [version.effective_from for version in self.versions]
        index = bisect.bisect_right(starts, utc(when)) - 1
        return self.versions[index] if index >= 0 else None


def _card_version(team: str, raw: object) -> RateCardVersion:
    spec = as_mapping(raw, f"team {team!r}: rate_card")
    unknown = set(spec) - _CARD_KEYS
    if unknown:
        raise PricingError(f"team {team!r}: unknown rate_card keys {sorted(unknown)}")
    start = _EPOCH
    if spec.get("effective_from") is not None:
        start = as_date(spec["effective_from"], f"team {team!r}: effective_from")
    label = team if start == _EPOCH else f"{team}@{start.date().isoformat()}"
    models = as_mapping(spec.get("models") or {}, f"team {team!r}: rate_card.models")
    custom = {
        model.lower(): parse_tiers(
            as_mapping(block, f"team {team!r}: {model}"), f"team {team!r}: {model}"
        )
        for model, block in models.items()
    }
    return RateCardVersion(start, label, _factor(spec, f"team {team!r}"), custom)


def parse_teams(raw: Mapping[str, object] | None) -> dict[str, RateCard]:
    """Rate cards from the config's ``teams:`` section (teams without a card are skipped)."""
    cards: dict[str, RateCard] = {}
    for team, spec in as_mapping(raw or {}, "teams").items():
        team_spec = as_mapping(spec or {}, f"team {team!r}")
        raw_card = team_spec.get("rate_card")
        if raw_card is None:
            continue
        items = raw_card if isinstance(raw_card, list) else [raw_card]
        versions = sorted(
            (_card_version(team, item) for item in items), key=lambda v: v.effective_from
        )
        for earlier, later in itertools.pairwise(versions):
            if earlier.effective_from == later.effective_from:
                raise PricingError(f"team {team!r}: two rate_card versions start at {later.label}")
        cards[team] = RateCard(team, tuple(versions))
    return cards


@dataclass(frozen=True, slots=True)
class NegotiatedDiscount:
    """A provider discount for the whole organisation, for a date range."""

    factor: Decimal
    provider: str | None = None
    models: frozenset[str] = frozenset()
    effective_from: datetime = _EPOCH
    effective_until: datetime | None = None

    def applies(self, model: str, provider: str | None, when: datetime) -> bool:
        """Does it cover this (canonical) model of this provider at this time?"""
        if not self.effective_from <= when or (
            self.effective_until and when >= self.effective_until
        ):
            return False
        if self.models:
            return model in self.models
        return self.provider is None or self.provider == provider

    @property
    def specificity(self) -> tuple[int, datetime]:
        """Model-specific beats provider-wide beats global; then the latest start."""
        return (2 if self.models else 1 if self.provider else 0, self.effective_from)


def parse_discounts(raw: object) -> tuple[NegotiatedDiscount, ...]:
    """Negotiated discounts from the catalog's ``discounts:`` list."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise PricingError("discounts: expected a list of {discount_pct, provider?, models?, ...}")
    found = []
    for item in raw:
        spec = as_mapping(item, "discounts entry")
        unknown = set(spec) - _DISCOUNT_KEYS
        if unknown:
            raise PricingError(f"discounts: unknown keys {sorted(unknown)}")
        if "discount_pct" not in spec:
            raise PricingError("discounts: each entry needs discount_pct")
        models = spec.get("models") or []
        if not isinstance(models, list):
            raise PricingError("discounts: 'models' must be a list")
        until = spec.get("effective_until")
        found.append(
            NegotiatedDiscount(
                factor=_factor({"discount_pct": spec["discount_pct"]}, "discounts"),
                provider=None
                if spec.get("provider") is None
                else as_str(spec["provider"], "discounts"),
                models=frozenset(as_str(m, "discounts: model").lower() for m in models),
                effective_from=as_date(
                    spec.get("effective_from") or _EPOCH, "discounts: effective_from"
                ),
                effective_until=None
                if until is None
                else as_date(until, "discounts: effective_until"),
            )
        )
    return tuple(found)
