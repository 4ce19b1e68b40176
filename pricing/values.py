"""Reading raw config values (YAML or JSON) into exact Decimals, dates and strings.

Money must never pass through a binary float: ``0.15`` is not representable. ``safe_load``
is a YAML loader that yields ``Decimal`` for every float literal, so ``0.15`` in the file is
``Decimal("0.15")`` in memory. Callers that already hold floats (config parsed by another
loader) are converted through ``repr``, the shortest string that round-trips, which is the
literal the user wrote whenever it had 15 significant digits or fewer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import yaml

from pricing.errors import PricingError

__all__ = ["as_date", "as_decimal", "as_int", "as_mapping", "as_str", "safe_load", "utc"]


class _DecimalLoader(yaml.SafeLoader):
    """SafeLoader whose floats are Decimals."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")  # type: ignore[arg-type]
    try:
        return Decimal(text)
    except InvalidOperation:
        # YAML spells infinities and NaN .inf/.nan; keep them as strings so the rate
        # check rejects them with the model's name instead of failing here without one.
        return text


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


def safe_load(text: str) -> Any:
    """Parse YAML like ``yaml.safe_load`` but with every float literal as a ``Decimal``."""
    return yaml.load(text, Loader=_DecimalLoader)


def as_decimal(value: object, where: str, *, allow_negative: bool = False) -> Decimal:
    """A finite Decimal from a YAML/JSON number or numeric string; negative is an error."""
    if isinstance(value, bool):
        raise PricingError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, Decimal | int):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip().replace("_", ""))
        except InvalidOperation:
            raise PricingError(f"{where}: not a number: {value!r}") from None
    else:
        raise PricingError(f"{where}: expected a number, got {value!r}")
    if not number.is_finite():
        raise PricingError(f"{where}: not a finite number: {value!r}")
    if number < 0 and not allow_negative:
        raise PricingError(f"{where}: negative value {value} (a price can not be negative)")
    return number


def as_int(value: object, where: str) -> int:
    """A non-negative integer (token counts and caps)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str | float):
        raise PricingError(f"{where}: expected an integer, got {value!r}")
    number = as_decimal(value, where)
    if number != number.to_integral_value():
        raise PricingError(f"{where}: expected an integer, got {value!r}")
    return int(number)


def as_str(value: object, where: str) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise PricingError(f"{where}: expected a non-empty string, got {value!r}")
    return value.strip()


def as_mapping(value: object, where: str) -> Mapping[str, object]:
    """A mapping with string keys."""
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise PricingError(f"{where}: expected a mapping, got {value!r}")
    return value


def utc(when: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def as_date(value: object, where: str) -> datetime:
    """An effective date as an aware UTC datetime; a bare date means 00:00 UTC that day."""
    if isinstance(value, datetime):
        return utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        try:
            return as_date(datetime.fromisoformat(value.strip()), where)
        except ValueError:
            pass
    raise PricingError(f"{where}: expected a date (YYYY-MM-DD), got {value!r}")
