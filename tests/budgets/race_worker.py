"""One "process" of the cross-process race: ``python -m tests.budgets.race_worker URL NS N SEED``.

Runs N concurrent reserve/settle calls against the shared $0.50 team budget and prints
``{"charged": "<USD>", "admitted": n, "blocked": n}``.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from decimal import Decimal

from budgets import BudgetExceeded, Budgets, Demand, Subject, open_store, parse_policies


async def main(url: str, namespace: str, n: int, seed: int) -> None:
    store = await open_store(url, namespace=namespace, socket_timeout=2.0)
    policies = parse_policies(
        [{"scope": "team", "match": "search", "period": "month", "limit_usd": "0.50"}]
    )
    budgets = Budgets(store, policies)
    rng = random.Random(seed)
    charged: list[Decimal] = []
    blocked = 0

    async def call() -> None:
        nonlocal blocked
        actual = Decimal(rng.randint(4000, 10000)) / 1_000_000
        try:
            async with budgets.reserve(Subject(team="search"), Demand(Decimal("0.01"), 100)) as r:
                r.mark_sent()
                await asyncio.sleep(rng.random() / 100)
                await r.settle(cost=actual, tokens=80)
                charged.append(actual)
        except BudgetExceeded:
            blocked += 1

    await asyncio.gather(*(call() for _ in range(n)))
    await store.aclose()
    total = sum(charged, Decimal(0))
    print(json.dumps({"charged": str(total), "admitted": len(charged), "blocked": blocked}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
