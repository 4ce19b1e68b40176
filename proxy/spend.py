"""The ledger as the budgets' source of truth: spend per scope value for a period.

Budgets keep live counters in Redis (or memory); when those are lost they are rebuilt from
here. Sums are taken in Python ``Decimal`` over a streamed result so they are exact on SQLite
too (which has no decimal type), in constant memory.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Mapping
from decimal import Decimal

from sqlalchemy import select

from budgets import Scope, Spend, SpendQuery
from proxy.ledger import LedgerRow, LedgerWriter

__all__ = ["LedgerSpendSource"]

_COLUMNS = {
    Scope.TEAM: LedgerRow.team,
    Scope.PROJECT: LedgerRow.project,
    Scope.KEY: LedgerRow.key_id,
    Scope.END_USER: LedgerRow.end_user,
    Scope.MODEL: LedgerRow.model_requested,
}


class LedgerSpendSource:
    """A ``budgets.SpendSource`` over the ledger table."""

    def __init__(self, ledger: LedgerWriter) -> None:
        self._ledger = ledger

    async def __call__(self, query: SpendQuery) -> Mapping[str, Spend]:
        try:  # rows still queued are spend too; a database that is down must not stall us
            await asyncio.wait_for(self._ledger.flush(), timeout=5.0)
        except TimeoutError:
            pass
        scope = Scope(query.scope)
        value_col = _COLUMNS.get(scope)
        cols = [
            LedgerRow.cost_usd,
            LedgerRow.input_tokens,
            LedgerRow.output_tokens,
            value_col if value_col is not None else LedgerRow.tags,
        ]
        stmt = select(*cols)  # type: ignore[call-overload]
        if query.start is not None:
            stmt = stmt.where(LedgerRow.started_at >= query.start)
        if query.end is not None:
            stmt = stmt.where(LedgerRow.started_at < query.end)
        usd: dict[str, Decimal] = defaultdict(Decimal)
        tokens: dict[str, int] = defaultdict(int)
        requests: dict[str, int] = defaultdict(int)
        async with self._ledger.engine.connect() as conn:
            result = await conn.stream(stmt)
            async for cost, tin, tout, value in result:
                if scope is Scope.GLOBAL:
                    key = ""
                elif scope is Scope.TAG:
                    tags = value or {}
                    if query.tag_key not in tags:
                        continue
                    key = f"{query.tag_key}={tags[query.tag_key]}"
                elif value is None:
                    continue
                else:
                    key = str(value)
                usd[key] += cost or Decimal(0)
                tokens[key] += (tin or 0) + (tout or 0)
                requests[key] += 1
        return {k: Spend(usd=usd[k], tokens=tokens[k], requests=requests[k]) for k in requests}
