"""``spendgate prices import-litellm``: LiteLLM's price map to our catalog format.

Many teams keep their overrides in LiteLLM's ``model_prices_and_context_window.json``
(per-token floats, one flat dict per model). This converts it to our YAML structure: rates
per million tokens, ``long_context`` steps from ``*_above_<N>k_tokens`` keys, service tiers
from ``*_batches`` / ``*_flex`` / ``*_priority`` keys. It is pure: the caller reads the JSON
(preferably with ``json.loads(text, parse_float=Decimal)``) and writes the YAML.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import yaml

from pricing.errors import PricingError
from pricing.values import as_date, as_decimal

__all__ = ["LitellmImport", "dump_catalog", "import_litellm"]

_FIELDS = {
    "input_cost_per_token": "input",
    "cache_read_input_token_cost": "cached_input",
    "cache_creation_input_token_cost": "cache_write",
    "cache_creation_input_token_cost_above_1hr": "cache_write_1h",
    "output_cost_per_token": "output",
    "output_cost_per_reasoning_token": "reasoning",
    "input_cost_per_audio_token": "audio_input",
    "output_cost_per_audio_token": "audio_output",
}
_TIERS = {"batches": "batch", "flex": "flex", "priority": "priority"}
_STEP = re.compile(r"^(?P<field>.+)_above_(?P<k>\d+)k_tokens$")
_TIER = re.compile(r"^(?P<field>.+)_(?P<tier>batches|flex|priority)$")
_COPIED = ("max_input_tokens", "max_output_tokens")


@dataclass(frozen=True, slots=True)
class LitellmImport:
    """The converted catalog document, and what was skipped or ignored (and why)."""

    document: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


def _per_million(value: object, where: str) -> Decimal:
    return as_decimal(value, where).scaleb(6).normalize()


def _model_id(key: str, provider: object) -> str:
    model = key.strip().lower()
    if isinstance(provider, str) and model.startswith(f"{provider.lower()}/"):
        return model.split("/", 1)[1]
    return model


def _convert(key: str, spec: Mapping[str, Any], when: date, notes: list[str]) -> dict[str, Any]:
    version: dict[str, Any] = {}
    steps: dict[int, dict[str, Decimal]] = {}
    tiers: dict[str, dict[str, Decimal]] = {}
    for name, value in spec.items():
        if value is None:
            continue
        step, tier = _STEP.match(name), _TIER.match(name)
        if name in _FIELDS:
            version[_FIELDS[name]] = _per_million(value, f"{key}: {name}")
        elif step and step["field"] in _FIELDS:
            rate = _per_million(value, f"{key}: {name}")
            steps.setdefault(int(step["k"]) * 1000, {})[_FIELDS[step["field"]]] = rate
        elif tier and tier["field"] in _FIELDS:
            rate = _per_million(value, f"{key}: {name}")
            tiers.setdefault(_TIERS[tier["tier"]], {})[_FIELDS[tier["field"]]] = rate
        elif name == "search_context_cost_per_query" and isinstance(value, Mapping) and value:
            per_size = {size: as_decimal(cost, f"{key}: {name}") for size, cost in value.items()}
            version["web_search"] = per_size.get(
                "search_context_size_medium", max(per_size.values())
            )
        elif "cost" in name:
            notes.append(f"{key}: ignored {name}")
    entry: dict[str, Any] = {k: int(spec[k]) for k in _COPIED if isinstance(spec.get(k), int)}
    if isinstance(spec.get("litellm_provider"), str):
        entry["provider"] = spec["litellm_provider"]
    deprecated = spec.get("deprecation_date")
    if deprecated:
        try:
            if as_date(deprecated, key).date() <= when:
                entry["retired"] = as_date(deprecated, key).date()
        except PricingError:
            notes.append(f"{key}: ignored deprecation_date {deprecated!r}")
    if steps:
        version["long_context"] = [
            {"above": above, **rates} for above, rates in sorted(steps.items())
        ]
    if tiers:
        version["tiers"] = tiers
    entry["prices"] = [version]
    return entry


def import_litellm(
    data: Mapping[str, Any],
    *,
    source: str,
    effective_from: date,
    providers: frozenset[str] | None = None,
) -> LitellmImport:
    """Convert LiteLLM's price map (parsed JSON) into a catalog document.

    Every model gets one version starting ``effective_from`` with ``source`` noted. Only
    models with both an input and an output token price are taken; ``providers`` limits
    the import to those ``litellm_provider`` values. The first of two keys that map to the
    same id (``gemini/gemini-2.5-pro`` and ``gemini-2.5-pro``) wins.
    """
    models: dict[str, Any] = {}
    skipped: list[str] = []
    for key, spec in data.items():
        if key == "sample_spec" or not isinstance(spec, Mapping):
            continue
        provider = spec.get("litellm_provider")
        if providers is not None and provider not in providers:
            continue
        if spec.get("input_cost_per_token") is None or spec.get("output_cost_per_token") is None:
            skipped.append(f"{key}: skipped, no input/output token price")
            continue
        model = _model_id(key, provider)
        if model in models:
            skipped.append(f"{key}: skipped, {model!r} already imported")
            continue
        try:
            entry = _convert(key, spec, effective_from, skipped)
        except PricingError as exc:
            skipped.append(f"{key}: skipped, {exc}")
            continue
        entry["prices"][0] = {
            "effective_from": effective_from,
            "source": source,
            **entry["prices"][0],
        }
        models[model] = entry
    document = {
        "version": f"litellm-{effective_from.isoformat()}",
        "currency": "USD",
        "models": models,
    }
    return LitellmImport(document, skipped)


class _Dumper(yaml.SafeDumper):
    """Writes Decimals as plain YAML numbers (read back exactly by ``values.safe_load``)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True  # one shared date object must not become an &anchor


def _represent_decimal(dumper: yaml.SafeDumper, value: Decimal) -> yaml.Node:
    text = format(value, "f")
    return dumper.represent_scalar(
        "tag:yaml.org,2002:float" if "." in text else "tag:yaml.org,2002:int", text
    )


_Dumper.add_representer(Decimal, _represent_decimal)


def dump_catalog(document: Mapping[str, Any]) -> str:
    """A catalog document as YAML text, keys in insertion order, money exact."""
    return yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, allow_unicode=True)
