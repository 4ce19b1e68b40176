"""Who a request is for (``Subject``) and what it may cost at worst (``Demand``).

The proxy builds both per request: the subject from the virtual key and the attribution
headers, the demand from the priced worst case (estimated input plus max output tokens).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

__all__ = ["Demand", "Subject"]


@dataclass(frozen=True, slots=True)
class Subject:
    """The attribution of one request; ``None`` = unknown, so no policy of that scope applies."""

    team: str | None = None
    project: str | None = None
    key_id: str | None = None
    end_user: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Demand:
    """The worst-case cost and tokens of one request, reserved before it is forwarded."""

    cost: Decimal
    tokens: int

    def __post_init__(self) -> None:
        if not self.cost.is_finite() or self.cost < 0:
            raise ValueError(f"Demand.cost must be a finite amount >= 0, got {self.cost}")
        if self.tokens < 0:
            raise ValueError(f"Demand.tokens must be >= 0, got {self.tokens}")
