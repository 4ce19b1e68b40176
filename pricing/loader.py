"""Building a Catalog from YAML: the built-in file, an override file, team rate cards.

Raw config in, frozen catalog out, once at start-up. An override file has the built-in
file's shape; its models are merged into the built-in ones: a version with the same
``effective_from`` replaces the built-in one (and is labelled ``+<file version>`` so the
ledger shows it was overridden), other versions are added, metadata keys replace, and
aliases are united.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from os import PathLike
from pathlib import Path
from typing import Any

from pricing.catalog import Catalog
from pricing.entry import ModelEntry, parse_entry
from pricing.errors import PricingError
from pricing.ratecard import parse_discounts, parse_teams
from pricing.values import as_date, as_mapping, as_str, safe_load

__all__ = [
    "builtin_catalog",
    "builtin_raw",
    "catalog_from_raw",
    "load_catalog",
    "merge_raw",
    "parse_models",
]

TOP_KEYS = frozenset({"version", "currency", "source", "notes", "models", "discounts"})


def _check_top(raw: Mapping[str, object], where: str) -> None:
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise PricingError(f"{where}: unknown top-level keys {sorted(unknown)}")
    currency = raw.get("currency", "USD")
    if currency != "USD":
        raise PricingError(f"{where}: currency must be USD, got {currency!r}")


def parse_models(raw: Mapping[str, object]) -> list[ModelEntry]:
    """Model entries from the ``models:`` mapping of a catalog."""
    models = as_mapping(raw.get("models") or {}, "models")
    return [parse_entry(model.strip().lower(), spec) for model, spec in models.items()]


def catalog_from_raw(raw: object, *, teams: Mapping[str, object] | None = None) -> Catalog:
    """A Catalog from an already parsed (Decimal-yielding) YAML document."""
    document = as_mapping(raw, "catalog")
    _check_top(document, "catalog")
    version = as_str(str(document.get("version", "unversioned")), "catalog: version")
    return Catalog(
        parse_models(document),
        version=version,
        teams=parse_teams(teams),
        discounts=parse_discounts(document.get("discounts")),
    )


@functools.cache
def builtin_raw() -> Mapping[str, Any]:
    """The built-in catalog document (``pricing/data/catalog.yaml``), parsed once."""
    text = resources.files("pricing").joinpath("data/catalog.yaml").read_text(encoding="utf-8")
    document: Mapping[str, Any] = safe_load(text)
    return document


@functools.cache
def builtin_catalog() -> Catalog:
    """The built-in catalog, loaded and normalised once per process."""
    return catalog_from_raw(builtin_raw())


def _versions(
    model: str, prices: object, default_source: object, suffix: str
) -> list[dict[str, object]]:
    items = [prices] if isinstance(prices, Mapping) else prices or []
    if not isinstance(items, list):
        raise PricingError(f"{model}: 'prices' must be a list of versions")
    versions = []
    for item in items:
        version = dict(as_mapping(item, f"{model}: price version"))
        if default_source is not None:
            version.setdefault("source", default_source)
        if suffix and "effective_from" in version and not version.get("price_version"):
            day = as_date(version["effective_from"], f"{model}: effective_from").date().isoformat()
            version["price_version"] = f"{model}@{day}+{suffix}"
        versions.append(version)
    return versions


def merge_raw(base: Mapping[str, object], override: Mapping[str, object]) -> dict[str, object]:
    """The document ``base`` with ``override``'s models, discounts and version merged in."""
    _check_top(override, "override")
    suffix = str(override.get("version", "override"))
    models: dict[str, dict[str, object]] = {}
    for name, spec in as_mapping(base.get("models") or {}, "models").items():
        entry = dict(as_mapping(spec, f"model {name!r}"))
        entry["prices"] = _versions(name, entry.get("prices"), entry.pop("source", None), "")
        models[name.strip().lower()] = entry
    for name, spec in as_mapping(override.get("models") or {}, "override models").items():
        model = name.strip().lower()
        entry = dict(as_mapping(spec, f"model {name!r}"))
        versions = _versions(model, entry.pop("prices", None), entry.pop("source", None), suffix)
        old = models.get(model, {})
        replaced = {as_date(v["effective_from"], model) for v in versions if "effective_from" in v}
        kept = [
            v
            for v in _versions(model, old.get("prices"), None, "")
            if "effective_from" not in v or as_date(v["effective_from"], model) not in replaced
        ]
        aliases = [*(old.get("aliases") or []), *(entry.get("aliases") or [])]  # type: ignore[misc]
        models[model] = {
            **old,
            **entry,
            "aliases": list(dict.fromkeys(aliases)),
            "prices": kept + versions,
        }
    discounts = [*(base.get("discounts") or []), *(override.get("discounts") or [])]  # type: ignore[misc]
    return {
        "version": f"{base.get('version', 'unversioned')}+{suffix}",
        "models": models,
        "discounts": discounts or None,
    }


def load_catalog(
    path: str | PathLike[str] | None, *, teams: Mapping[str, object] | None = None
) -> Catalog:
    """The built-in catalog, extended by the override file at ``path`` if given, with the
    team rate cards of the config's ``teams:`` section."""
    if path is None:
        return catalog_from_raw(builtin_raw(), teams=teams)
    override = safe_load(Path(path).read_text(encoding="utf-8"))
    return catalog_from_raw(
        merge_raw(builtin_raw(), as_mapping(override or {}, str(path))), teams=teams
    )
