"""The price catalog: model-name resolution, pricing a call, worst-case reservations.

Built once at start-up (see ``loader``) and immutable afterwards, so request-time work is
a dictionary lookup and a few Decimal multiplications.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from pricing.cost import PricedCall, itemise, total
from pricing.entry import SERVICE_TIERS, STANDARD, ModelEntry
from pricing.errors import PricingError
from pricing.ratecard import NegotiatedDiscount, RateCard, RateCardVersion
from pricing.rates import RateTable
from pricing.usage import Usage
from pricing.values import utc

__all__ = ["PROVIDER_PREFIXES", "Catalog"]

# Prefixes callers put in front of a model name (LiteLLM style, Gemini REST ``models/``).
PROVIDER_PREFIXES = ("openai/", "anthropic/", "gemini/", "google/", "models/")
# A dated snapshot suffix: -2024-08-06 (OpenAI) or -20250929 (Anthropic).
_SNAPSHOT = re.compile(r"^(?P<base>.+?)-(?:\d{4}-\d{2}-\d{2}|20\d{6})$")
_MEMO_SIZE = 4096
# Reserving for an estimated prompt: a local count can be a little low, so a long-context
# step is assumed once the estimate is within this factor of its threshold.
LONG_CONTEXT_MARGIN = Decimal("1.1")
# Aliases the service_tier field of a response uses for the standard tier.
_STANDARD_NAMES = frozenset({"standard", "default", "auto", "on_demand", "standard_only"})


def _candidates(name: str) -> Iterator[str]:
    """The name, then with each known provider prefix stripped in turn."""
    yield name
    while name.startswith(PROVIDER_PREFIXES):
        name = name.split("/", 1)[1]
        yield name


class Catalog:
    """An immutable, versioned price catalog with optional team rate cards."""

    def __init__(
        self,
        entries: Sequence[ModelEntry],
        *,
        version: str,
        teams: Mapping[str, RateCard] | None = None,
        discounts: Sequence[NegotiatedDiscount] = (),
    ) -> None:
        self.version = version
        self._entries = {entry.id: entry for entry in entries}
        self._names: dict[str, str] = {}
        self._patterns: list[tuple[str, str]] = []
        for entry in entries:
            self._names[entry.id] = entry.id
        for entry in entries:
            for alias in entry.aliases:
                if alias.endswith("*"):
                    self._patterns.append((alias[:-1], entry.id))
                else:
                    self._names.setdefault(alias, entry.id)
        self._patterns.sort(key=lambda item: len(item[0]), reverse=True)
        self._memo: dict[str, str | None] = {}  # resolve() runs several times per call
        self._teams = {team: self._resolved_card(card) for team, card in (teams or {}).items()}
        self._discounts = tuple(self._resolved_discount(d) for d in discounts)

    # -- names ------------------------------------------------------------------------

    def _required(self, model: str, where: str) -> str:
        canonical = self.resolve(model)
        if canonical is None:
            raise PricingError(f"{where}: unknown model {model!r}")
        return canonical

    def _resolved_card(self, card: RateCard) -> RateCard:
        versions = tuple(
            replace(
                v, custom={self._required(m, f"team {card.team!r}"): t for m, t in v.custom.items()}
            )
            for v in card.versions
        )
        return replace(card, versions=versions)

    def _resolved_discount(self, discount: NegotiatedDiscount) -> NegotiatedDiscount:
        models = frozenset(self._required(m, "discounts") for m in discount.models)
        return replace(discount, models=models)

    def resolve(self, model: str, at: datetime | None = None) -> str | None:
        """The canonical catalog id for a model name, or None if unknown.

        Understands provider prefixes (``openai/gpt-4o``), aliases, dated snapshots
        (``gpt-4o-2024-08-06`` -> ``gpt-4o``, the longest id wins since the whole base must
        match) and ``*`` alias patterns (longest pattern wins). ``at`` is accepted for
        aliases that move over time; today every alias is fixed, so it is not consulted.
        """
        del at
        try:
            return self._memo[model]
        except KeyError:
            pass
        found = self._lookup(model)
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()  # model names come from clients: keep the memo bounded
        self._memo[model] = found
        return found

    def _lookup(self, model: str) -> str | None:
        for name in _candidates(model.strip().lower()):
            if name in self._names:
                return self._names[name]
            snapshot = _SNAPSHOT.match(name)
            if snapshot and snapshot["base"] in self._names:
                return self._names[snapshot["base"]]
            for prefix, canonical in self._patterns:
                if name.startswith(prefix):
                    return canonical
        return None

    def models(self) -> list[str]:
        """Canonical model ids, sorted."""
        return sorted(self._entries)

    def entry(self, model: str) -> ModelEntry | None:
        """The full entry (versions, aliases, caps) behind a model name, or None."""
        canonical = self.resolve(model)
        return None if canonical is None else self._entries[canonical]

    def max_output_tokens(self, model: str) -> int | None:
        """The model's output cap from the catalog (None if unknown or not stated)."""
        entry = self.entry(model)
        return None if entry is None else entry.max_output_tokens

    def teams(self) -> list[str]:
        """Teams with a rate card."""
        return sorted(self._teams)

    # -- pricing ----------------------------------------------------------------------

    @staticmethod
    def _tier(tiers: Mapping[str, RateTable], service_tier: str | None) -> tuple[str, RateTable]:
        name = (service_tier or STANDARD).strip().lower()
        name = STANDARD if name in _STANDARD_NAMES else name
        if name in tiers:
            return name, tiers[name]
        # A tier the catalog has no rates for is billed at standard rates, and says so in
        # PricedCall.service_tier.
        return STANDARD, tiers[STANDARD]

    def _adjustment(
        self, entry: ModelEntry, at: datetime, team: str | None
    ) -> tuple[RateCardVersion | None, Decimal]:
        """The team's card version in effect, and the factor list cost is multiplied by."""
        discounts = [d for d in self._discounts if d.applies(entry.id, entry.provider, at)]
        factor = max(discounts, key=lambda d: d.specificity).factor if discounts else Decimal(1)
        card = self._teams[team].at(at) if team in self._teams else None
        if card is not None:
            factor *= card.factor
        return card, factor

    def price(
        self,
        model: str,
        usage: Usage,
        *,
        at: datetime,
        team: str | None = None,
        service_tier: str | None = None,
    ) -> PricedCall | None:
        """Price one call started at ``at``; None when the model is not in the catalog.

        ``service_tier`` is the tier the response reports (``batch``, ``flex``,
        ``priority``; ``default``/``auto``/None mean standard).
        """
        canonical = self.resolve(model)
        if canonical is None:
            return None
        at = utc(at)
        entry = self._entries[canonical]
        version = entry.version_at(at)
        tier, table = self._tier(version.tiers, service_tier)
        items, crossed = itemise(table, usage)
        list_cost = total(items)
        card, factor = self._adjustment(entry, at, team)
        if card is not None and canonical in card.custom:
            _, custom_table = self._tier(card.custom[canonical], tier)
            cost = total(itemise(custom_table, usage)[0])
        else:
            cost = list_cost * factor
        return PricedCall(
            model=canonical,
            price_version=version.label,
            list_cost=list_cost,
            cost=cost,
            breakdown=items,
            service_tier=tier,
            long_context_above=crossed,
            rate_card=None if card is None else card.label,
            retired=entry.retired,
        )

    def worst_case_cost(
        self,
        model: str,
        *,
        input_tokens: int,
        max_output_tokens: int,
        at: datetime,
        team: str | None = None,
        service_tier: str | None = None,
    ) -> Decimal | None:
        """An upper bound of the cost, for reserving budget before the call.

        Every input token at the dearest input rate (cache writes included), every output
        token at the dearest output rate, the long-context step if the estimate comes
        within ``LONG_CONTEXT_MARGIN`` of it, the dearer of standard and the requested
        tier, then the team's factor (only ever applied as it is to the real cost).
        """
        canonical = self.resolve(model)
        if canonical is None:
            return None
        at = utc(at)
        entry = self._entries[canonical]
        tiers = dict(entry.version_at(at).tiers)
        card, factor = self._adjustment(entry, at, team)
        if card is not None and canonical in card.custom:
            tiers, factor = dict(card.custom[canonical]), Decimal(1)
        names = {STANDARD} | (
            {service_tier.strip().lower()} & SERVICE_TIERS if service_tier else set()
        )
        inputs, outputs = max(input_tokens, 0), max(max_output_tokens, 0)
        bounds = []
        for name in names & set(tiers):
            rates, _ = tiers[name].for_input(int(inputs * LONG_CONTEXT_MARGIN))
            bounds.append(
                inputs * rates.highest_input + outputs * rates.highest_output + rates.per_request
            )
        return max(bounds) * factor
