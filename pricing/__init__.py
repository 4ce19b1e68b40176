"""spendgate's pricing core: a versioned price catalog and exact per-call cost.

Pure: standard library, Decimal and PyYAML only (enforced by import-linter). The proxy
builds one ``Catalog`` at start-up (``builtin_catalog()`` or ``load_catalog(...)``) and
calls ``catalog.price(...)`` per call and ``catalog.worst_case_cost(...)`` per reservation.
"""

from __future__ import annotations

from pricing.catalog import Catalog
from pricing.cost import PricedCall
from pricing.errors import PricingError
from pricing.loader import builtin_catalog, load_catalog
from pricing.usage import Usage

__all__ = ["Catalog", "PricedCall", "PricingError", "Usage", "builtin_catalog", "load_catalog"]
