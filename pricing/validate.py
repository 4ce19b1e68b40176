"""``spendgate prices check``: a readable validation report for a catalog file.

Loading a catalog stops at the first error; the check goes on, so one run lists every
problem: unknown keys, negative or missing rates, overlapping versions (per model), alias
shadowing (across models), and warnings for prices that are legal but suspicious.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from pricing.entry import ModelEntry, parse_entry
from pricing.errors import PricingError
from pricing.loader import TOP_KEYS, builtin_raw, merge_raw
from pricing.ratecard import parse_discounts
from pricing.rates import Rates
from pricing.values import as_mapping, safe_load

__all__ = ["Finding", "Report", "check_builtin", "check_document", "check_text"]

_COMPARED = ("input", "cached_input", "cache_write", "cache_write_1h", "output")


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: ``error`` makes the catalog unusable, ``warning`` is worth a look."""

    severity: str
    subject: str
    message: str


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of a check; ``ok`` means no errors (warnings allowed)."""

    version: str
    models: int
    findings: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        """True when the catalog can be loaded and used."""
        return not any(f.severity == "error" for f in self.findings)

    def render(self) -> str:
        """The report as text, errors first."""
        errors = sum(f.severity == "error" for f in self.findings)
        warnings = len(self.findings) - errors
        counts = f"{errors} error(s), {warnings} warning(s)"
        lines = [f"catalog {self.version}: {self.models} models, {counts}"]
        ordered = sorted(self.findings, key=lambda f: (f.severity != "error", f.subject))
        lines += [f"  {f.severity:<7} {f.subject}: {f.message}" for f in ordered]
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)


def _rate_warnings(entry: ModelEntry) -> list[Finding]:
    found = []
    for version in entry.versions:
        for tier, table in version.tiers.items():
            where = f"{version.label} ({tier})"
            if table.base.cached_input > table.base.input:
                found.append(Finding("warning", where, "cache reads cost more than input"))
            below: Rates = table.base
            for above, step in table.long_context:
                if any(getattr(step, k) < getattr(below, k) for k in _COMPARED):
                    message = f"long_context above {above} is cheaper than below it"
                    found.append(Finding("warning", where, message))
                below = step
    return found


def _alias_findings(entries: list[ModelEntry]) -> list[Finding]:
    found = []
    ids = {entry.id for entry in entries}
    owners: dict[str, str] = {}
    for entry in entries:
        for alias in entry.aliases:
            if alias in ids:
                kind = "repeats the model id" if alias == entry.id else f"shadows model {alias!r}"
                found.append(Finding("error", entry.id, f"alias {alias!r} {kind}"))
            elif alias in owners and owners[alias] != entry.id:
                message = f"alias {alias!r} is also an alias of {owners[alias]!r}"
                found.append(Finding("error", entry.id, message))
            owners.setdefault(alias, entry.id)
            if alias.endswith("*"):
                for other in sorted(ids - {entry.id}):
                    if other.startswith(alias[:-1]):
                        message = f"pattern {alias!r} also matches model {other!r} (exact ids win)"
                        found.append(Finding("warning", entry.id, message))
    return found


def check_document(raw: object) -> Report:
    """Check an already parsed (Decimal-yielding) catalog document."""
    try:
        document = as_mapping(raw, "catalog")
    except PricingError as exc:
        return Report("?", 0, (Finding("error", "catalog", str(exc)),))
    findings = [
        Finding("error", "catalog", f"unknown top-level key {key!r}")
        for key in document
        if key not in TOP_KEYS
    ]
    if document.get("currency", "USD") != "USD":
        findings.append(Finding("error", "catalog", "currency must be USD"))
    try:
        parse_discounts(document.get("discounts"))
    except PricingError as exc:
        findings.append(Finding("error", "discounts", str(exc)))
    entries = []
    try:
        models = as_mapping(document.get("models") or {}, "models")
    except PricingError as exc:
        models = {}
        findings.append(Finding("error", "models", str(exc)))
    for name, spec in models.items():
        try:
            entries.append(parse_entry(name.strip().lower(), spec))
        except PricingError as exc:
            findings.append(Finding("error", name, str(exc)))
    for entry in entries:
        findings += _rate_warnings(entry)
    findings += _alias_findings(entries)
    return Report(str(document.get("version", "unversioned")), len(models), tuple(findings))


def check_text(text: str, *, as_override: bool = False) -> Report:
    """Check a catalog file's text; ``as_override`` checks it merged over the built-in one
    (how ``pricing.overrides`` uses it), so shadowing across the two is found too."""
    try:
        document = safe_load(text)
        if as_override:
            document = merge_raw(builtin_raw(), as_mapping(document or {}, "override"))
    except (yaml.YAMLError, PricingError) as exc:
        return Report("?", 0, (Finding("error", "file", " ".join(str(exc).split())),))
    return check_document(document)


def check_builtin() -> Report:
    """Check the built-in catalog (``spendgate prices check`` with no file)."""
    return check_document(builtin_raw())
