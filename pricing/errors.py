"""Errors raised by the pricing core.

    PricingError                 (ValueError)  a catalog, rate card or price is unusable

Every message names the model (or team) and the field, so a bad catalog is fixed from the
message alone. The proxy maps ``PricingError`` at start-up to a configuration error.
"""

from __future__ import annotations

__all__ = ["PricingError"]


class PricingError(ValueError):
    """A price catalog or rate card is invalid (negative rate, unknown key, bad date...)."""
