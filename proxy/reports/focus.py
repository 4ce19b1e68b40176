"""FinOps FOCUS 1.2 (with the 1.3 provider columns): one row per priced meter per call.

A call's list cost is itemised in the ledger by token kind; each non-empty item becomes a
FOCUS ``Usage`` row whose identities hold exactly (``ListCost = ListUnitPrice x
PricingQuantity``, ``ContractedCost = ContractedUnitPrice x PricingQuantity``):

- tokens are priced per ``1000000 Tokens``: ``PricingQuantity = tokens / 10^6`` and the unit
  price is the item's cost divided by it. That division is exact whenever one rate priced
  the item (cost = tokens x rate), the usual case;
- an item that mixes rates (reasoning at its own rate, 5-minute and 1-hour cache writes, audio
  with request fees in "other") or has no token count is priced per ``Requests`` with
  quantity 1, so its identity still holds exactly.

``ContractedCost`` is the item's share of the call's ``cost_usd`` (after the team's rate card):
list x (cost / list) when that factor is exact (a percentage card), else the item is priced
per request and the shares are rounded to 1e-18 USD with the remainder on the call's last
item; either way the call's ``BilledCost`` rows sum exactly to its ``cost_usd``.
Unpriced calls (no catalog price) have no cost to report and are left out.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any

from proxy.reports.selection import ReportError

__all__ = ["FOCUS_COLUMNS", "FocusEncoder", "Meter", "meters"]

_MILLION = Decimal(1_000_000)
_TOKEN_UNIT = "1000000 Tokens"
_REQUEST_UNIT = "Requests"
_QUANTUM = Decimal("1e-18")

FOCUS_COLUMNS: tuple[str, ...] = (
    "AvailabilityZone",
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "CapacityReservationId",
    "CapacityReservationStatus",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountQuantity",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "CommitmentDiscountUnit",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceId",  # null: spendgate is not the invoice; the vendor's number is not known here
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    # FOCUS 1.3
    "HostProviderName",
    "ServiceProviderName",
    # spendgate's own (custom columns are x_-prefixed and come last)
    "x_CallId",
    "x_CallCount",
    "x_UpstreamRequestId",
    "x_TraceId",
    "x_Team",
    "x_Project",
    "x_KeyId",
    "x_EndUser",
    "x_Endpoint",
    "x_ModelRequested",
    "x_Stream",
    "x_StatusCode",
    "x_Outcome",
    "x_UsageSource",
    "x_PriceVersion",
    "x_RateCard",
)

# Configured provider name -> (vendor, service name). Unknown names stand for themselves.
_VENDORS = {
    "openai": ("OpenAI", "OpenAI API"),
    "anthropic": ("Anthropic", "Claude API"),
    "gemini": ("Google", "Gemini API"),
    "google": ("Google", "Gemini API"),
    "mock": ("spendgate", "spendgate mock API"),
}


@dataclass(frozen=True, slots=True)
class Meter:
    """One priced item of one call, as FOCUS sees it."""

    key: str  # input | cached_input | cache_write | output | other
    name: str  # SkuMeter
    consumed: Decimal  # ConsumedQuantity
    consumed_unit: str
    quantity: Decimal  # PricingQuantity
    unit: str  # PricingUnit
    list_unit_price: Decimal
    list_cost: Decimal
    contracted_unit_price: Decimal
    contracted_cost: Decimal


def _n(value: int | None) -> int:
    return max(value or 0, 0)


def _exact_div(a: Decimal, b: Decimal) -> Decimal | None:
    """a / b when it terminates (checked by multiplying back), else None."""
    if b == 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        q = a / b
        return q.normalize() if q * b == a else None


def meters(row: Mapping[str, Any]) -> list[Meter]:
    """The FOCUS meters of one ledger row (none for an unpriced call or one that cost nothing
    and used no tokens)."""
    if row["unpriced"] or row["list_cost_usd"] is None or row["cost_usd"] is None:
        return []
    cached = _n(row["cached_input_tokens"])
    writes = _n(row["cache_write_tokens"]) + _n(row["cache_write_1h_tokens"])
    uncached = max(_n(row["input_tokens"]) - cached - writes, 0)
    items = [
        ("input", "Input Tokens", uncached, row["cost_input_usd"]),
        ("cached_input", "Cached Input Tokens", cached, row["cost_cached_input_usd"]),
        ("cache_write", "Cache Write Tokens", writes, row["cost_cache_write_usd"]),
        ("output", "Output Tokens", _n(row["output_tokens"]), row["cost_output_usd"]),
        ("other", "Requests and Other Usage", 0, row["cost_other_usd"]),
    ]
    items = [(k, n, t, c or Decimal(0)) for k, n, t, c in items if t or c]
    list_cost: Decimal = row["list_cost_usd"]
    cost: Decimal = row["cost_usd"]
    factor = _exact_div(cost, list_cost) if list_cost else None
    if factor is None and list_cost == 0 and cost == 0:
        factor = Decimal(0)
    shares = _shares([c for *_, c in items], list_cost, cost, factor)
    out = []
    for (key, name, tokens, item_list), contracted in zip(items, shares, strict=True):
        quantity = Decimal(tokens) / _MILLION
        unit_price = _exact_div(item_list, quantity) if tokens else None
        contracted_price = _exact_div(contracted, quantity) if tokens else None
        if tokens and item_list == 0 and contracted == 0:
            unit_price = contracted_price = Decimal(0)
        if unit_price is None or contracted_price is None:
            quantity, unit = Decimal(1), _REQUEST_UNIT
            unit_price, contracted_price = item_list, contracted
        else:
            unit = _TOKEN_UNIT
        consumed, consumed_unit = (
            (Decimal(tokens), "Tokens") if tokens else (Decimal(1), _REQUEST_UNIT)
        )
        out.append(
            Meter(
                *(key, name, consumed, consumed_unit, quantity, unit),
                *(unit_price, item_list, contracted_price, contracted),
            )
        )
    return out


def _shares(
    items: Sequence[Decimal], list_cost: Decimal, cost: Decimal, factor: Decimal | None
) -> list[Decimal]:
    """Each item's part of ``cost``; they sum to ``cost`` exactly."""
    if not items:
        return []
    if factor is not None:
        return [item * factor for item in items]
    if list_cost == 0:  # charged though the catalog says free (a custom price): all on one row
        return [Decimal(0)] * (len(items) - 1) + [cost]
    parts = [(item * cost / list_cost).quantize(_QUANTUM) for item in items[:-1]]
    return [*parts, cost - sum(parts, Decimal(0))]


def _second(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _month(at: datetime) -> tuple[datetime, datetime]:
    start = at.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=32)).replace(day=1)
    return start, end


def _num(value: Decimal) -> str:
    return format(value.normalize() if value else Decimal(0), "f")


def _charge_period(row: Mapping[str, Any], hourly: bool) -> tuple[datetime, datetime]:
    start: datetime = row["started_at"].astimezone(UTC)
    if hourly:
        hour = start.replace(minute=0, second=0, microsecond=0)
        return hour, hour + timedelta(hours=1)
    # FOCUS times have whole seconds: widen the call's span outwards to them.
    first = start.replace(microsecond=0)
    end: datetime = row["ended_at"].astimezone(UTC)
    last = end.replace(microsecond=0)
    if last < end or last <= first:
        last += timedelta(seconds=1)
    return first, last


def _tags(row: Mapping[str, Any]) -> str:
    tags: dict[str, str] = {k: str(v) for k, v in (row["tags"] or {}).items()}
    for name in ("team", "project", "key_id", "end_user"):
        if row[name] is not None:
            tags[f"spendgate/{name}"] = str(row[name])
    return json.dumps(tags, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _sku(row: Mapping[str, Any]) -> str:
    version = row["price_version"]
    if version and "@" in version:
        return str(version.split("@", 1)[0])
    return str(row["model_served"] or row["model_requested"] or "unknown")


def _record(row: Mapping[str, Any], meter: Meter, hourly: bool) -> dict[str, str]:
    provider = row["provider"] or "unknown"
    vendor, service = _VENDORS.get(provider.lower(), (provider, f"{provider} API"))
    sku = _sku(row)
    period_start, period_end = _charge_period(row, hourly)
    bill_start, bill_end = _month(row["started_at"])
    blended = meter.unit == _REQUEST_UNIT and meter.key != "other"
    price_id = f"{row['price_version'] or sku}:{meter.key}" + (":per-request" if blended else "")
    details = {"Model": sku, "Meter": meter.key, "PriceVersion": row["price_version"] or ""}
    rec = {
        "BilledCost": _num(meter.contracted_cost),
        "BillingAccountId": provider,
        "BillingAccountName": provider,
        "BillingAccountType": "Provider Account",
        "BillingCurrency": "USD",
        "BillingPeriodEnd": _second(bill_end),
        "BillingPeriodStart": _second(bill_start),
        "ChargeCategory": "Usage",
        "ChargeDescription": f"{meter.name} of {sku} through {provider}",
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": _second(period_end),
        "ChargePeriodStart": _second(period_start),
        "ConsumedQuantity": _num(meter.consumed),
        "ConsumedUnit": meter.consumed_unit,
        "ContractedCost": _num(meter.contracted_cost),
        "ContractedUnitPrice": _num(meter.contracted_unit_price),
        "EffectiveCost": _num(meter.contracted_cost),
        "InvoiceIssuerName": vendor,
        "ListCost": _num(meter.list_cost),
        "ListUnitPrice": _num(meter.list_unit_price),
        "PricingCategory": "Standard",
        "PricingQuantity": _num(meter.quantity),
        "PricingUnit": meter.unit,
        "ProviderName": vendor,
        "PublisherName": vendor,
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": service,
        "ServiceSubcategory": "Generative AI",
        "SkuId": sku,
        "SkuMeter": meter.name,
        "SkuPriceDetails": json.dumps(details, sort_keys=True, separators=(",", ":")),
        "SkuPriceId": price_id,
        "SubAccountId": row["team"],
        "SubAccountName": row["team"],
        "SubAccountType": "Team",
        "Tags": _tags(row),
        "HostProviderName": vendor,
        "ServiceProviderName": vendor,
        "x_Team": row["team"],
        "x_Project": row["project"] or "",
        "x_KeyId": row["key_id"] or "",
        "x_EndUser": row["end_user"] or "",
        "x_Endpoint": row["endpoint"],
        "x_ModelRequested": row["model_requested"] or "",
        "x_PriceVersion": row["price_version"] or "",
        "x_RateCard": row["rate_card"] or "",
    }
    if not hourly:
        rec |= {
            "x_CallId": row["request_id"],
            "x_CallCount": "1",
            "x_UpstreamRequestId": row["upstream_request_id"] or "",
            "x_TraceId": row["trace_id"] or "",
            "x_Stream": "true" if row["stream"] else "false",
            "x_StatusCode": str(row["status_code"]),
            "x_Outcome": row["outcome"],
            "x_UsageSource": row["usage_source"],
        }
    return rec


# Columns that are summed when meter rows are rolled up into an hour; every other column is
# part of the group (so tags, unit prices and price versions never blur together).
_SUMMED = ("BilledCost", "ConsumedQuantity", "ContractedCost", "EffectiveCost", "ListCost",
           "PricingQuantity", "x_CallCount")  # fmt: skip


class FocusEncoder:
    """FOCUS rows as CSV, per call or rolled up per hour (``rollup="hour"``).

    The rollup keeps one accumulator per distinct group within the current hour and writes
    them when the (time-ordered) rows move to the next hour, so memory is bounded by an
    hour's distinct groups, not by the range.
    """

    media_type = "text/csv; charset=utf-8"
    extension = "csv"

    def __init__(self, rollup: str | None = None) -> None:
        if rollup not in (None, "hour"):
            raise ReportError("FOCUS rollup is 'hour' (or none for one row per meter per call)")
        self._hourly = rollup == "hour"
        self._hour: str | None = None
        self._groups: dict[tuple[tuple[str, str], ...], dict[str, Decimal]] = {}

    def begin(self) -> bytes:
        return self._lines([FOCUS_COLUMNS])

    def encode(self, rows: Sequence[Mapping[str, Any]]) -> bytes:
        if not self._hourly:
            return self._lines(
                [self._ordered(_record(row, m, False)) for row in rows for m in meters(row)]
            )
        out: list[list[str]] = []
        for row in rows:
            for meter in meters(row):
                rec = _record(row, meter, True)
                if rec["ChargePeriodStart"] != self._hour:
                    out.extend(self._drain())
                    self._hour = rec["ChargePeriodStart"]
                sums = {name: Decimal(rec.pop(name)) for name in _SUMMED if name in rec}
                sums["x_CallCount"] = Decimal(1)
                key = tuple(sorted(rec.items()))
                acc = self._groups.get(key)
                if acc is None:
                    self._groups[key] = sums
                else:
                    for name, value in sums.items():
                        acc[name] += value
        return self._lines(out)

    def end(self) -> bytes:
        return self._lines(list(self._drain()))

    def _drain(self) -> Iterator[list[str]]:
        for key, sums in self._groups.items():
            yield self._ordered(dict(key) | {k: _num(v) for k, v in sums.items()})
        self._groups.clear()

    @staticmethod
    def _ordered(rec: Mapping[str, str]) -> list[str]:
        return [rec.get(name, "") for name in FOCUS_COLUMNS]

    @staticmethod
    def _lines(records: Sequence[Sequence[str]]) -> bytes:
        if not records:
            return b""
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(records)
        return buf.getvalue().encode("utf-8")
