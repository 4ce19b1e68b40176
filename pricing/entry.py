"""One model of the catalog: its metadata and its dated price versions.

A price change adds a version with a later ``effective_from``; earlier versions stay, so a
call is always priced with the version in effect when it started and old ledger rows can
be re-priced exactly. A retired model keeps its prices and is only marked.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time

from pricing.errors import PricingError
from pricing.rates import BLOCK_KEYS, RateTable, parse_block
from pricing.values import as_date, as_int, as_mapping, as_str, utc

__all__ = ["SERVICE_TIERS", "ModelEntry", "PriceVersion", "parse_entry", "parse_tiers"]

STANDARD = "standard"
SERVICE_TIERS = frozenset({STANDARD, "batch", "flex", "priority"})
VERSION_KEYS = BLOCK_KEYS | {"effective_from", "source", "price_version", "tiers", "notes"}
ENTRY_KEYS = frozenset(
    {
        "provider",
        "aliases",
        "max_input_tokens",
        "max_output_tokens",
        "retired",
        "source",
        "notes",
        "prices",
    }
)


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """The prices of one model from ``effective_from`` on, per service tier."""

    effective_from: datetime
    label: str
    source: str
    tiers: Mapping[str, RateTable]  # "standard" always present


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """A canonical model: aliases, token caps, retirement and price versions (ascending)."""

    id: str
    versions: tuple[PriceVersion, ...]
    provider: str | None = None
    aliases: tuple[str, ...] = ()
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    retired: bool = False
    retired_on: datetime | None = None
    notes: str | None = field(default=None, compare=False)

    def version_at(self, at: datetime) -> PriceVersion:
        """The version in effect at ``at``.

        A call before the first version uses the first: the model can not have been called
        before it existed, and a skewed clock must not leave a call unpriced.
        """
        starts = [version.effective_from for version in self.versions]
        index = bisect.bisect_right(starts, utc(at)) - 1
        return self.versions[max(index, 0)]


def parse_tiers(raw: Mapping[str, object], where: str) -> dict[str, RateTable]:
    """The standard table from the block's own rates plus each service tier under ``tiers``."""
    block = {k: v for k, v in raw.items() if k in BLOCK_KEYS}
    standard = parse_block(block, where)
    tables = {STANDARD: standard}
    for name, tier in as_mapping(raw.get("tiers") or {}, f"{where}: field 'tiers'").items():
        if name not in SERVICE_TIERS - {STANDARD}:
            raise PricingError(f"{where}: unknown service tier {name!r} (batch, flex, priority)")
        tier_raw = as_mapping(tier, f"{where}: tier {name!r}")
        tables[name] = parse_block(tier_raw, f"{where} tier {name}", inherit=standard)
    return tables


def _version(model: str, raw: object, default_source: str | None) -> PriceVersion:
    spec = as_mapping(raw, f"{model}: price version")
    if "effective_from" not in spec:
        raise PricingError(f"{model}: a price version needs 'effective_from'")
    start = as_date(spec["effective_from"], f"{model}: field 'effective_from'")
    where = f"{model} ({start.date().isoformat()})"
    unknown = set(spec) - VERSION_KEYS
    if unknown:
        raise PricingError(f"{where}: unknown keys {sorted(unknown)}")
    source = spec.get("source", default_source)
    if source is None:
        raise PricingError(f"{where}: every price needs a 'source' (where it came from, and when)")
    label = spec.get("price_version") or f"{model}@{start.date().isoformat()}"
    return PriceVersion(
        effective_from=start,
        label=as_str(label, f"{where}: field 'price_version'"),
        source=as_str(source, f"{where}: field 'source'"),
        tiers=parse_tiers(spec, where),
    )


def parse_entry(model: str, raw: object) -> ModelEntry:
    """A model entry from its raw mapping (one item of the catalog's ``models:``)."""
    spec = as_mapping(raw, f"model {model!r}")
    unknown = set(spec) - ENTRY_KEYS
    if unknown:
        raise PricingError(f"{model}: unknown keys {sorted(unknown)}")
    source = spec.get("source")
    prices = spec.get("prices") or []
    if isinstance(prices, Mapping):
        prices = [prices]
    if not isinstance(prices, list) or not prices:
        raise PricingError(f"{model}: 'prices' must be a non-empty list of versions")
    source_text = None if source is None else as_str(source, f"{model}: field 'source'")
    versions = sorted(
        (_version(model, item, source_text) for item in prices),
        key=lambda version: version.effective_from,
    )
    for earlier, later in itertools.pairwise(versions):
        if earlier.effective_from == later.effective_from:
            start = later.effective_from
            day = start.date().isoformat() if start.time() == time(0) else start.isoformat()
            raise PricingError(f"{model}: overlapping price versions, two start at {day}")
    aliases = spec.get("aliases") or []
    if not isinstance(aliases, list):
        raise PricingError(f"{model}: 'aliases' must be a list")
    retired = spec.get("retired", False)
    retired_on = (
        None if isinstance(retired, bool) else as_date(retired, f"{model}: field 'retired'")
    )
    caps = {
        key: None if spec.get(key) is None else as_int(spec[key], f"{model}: field {key!r}")
        for key in ("max_input_tokens", "max_output_tokens")
    }
    notes = spec.get("notes")
    return ModelEntry(
        id=model,
        versions=tuple(versions),
        provider=None
        if spec.get("provider") is None
        else as_str(spec["provider"], f"{model}: provider"),
        aliases=tuple(as_str(alias, f"{model}: alias").lower() for alias in aliases),
        max_input_tokens=caps["max_input_tokens"],
        max_output_tokens=caps["max_output_tokens"],
        retired=retired_on is not None or retired is True,
        retired_on=retired_on,
        notes=None if notes is None else str(notes),
    )
