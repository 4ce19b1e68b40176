"""The race across real OS processes sharing one Redis."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from budgets import Budgets, Subject, open_store, parse_policies

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


async def test_two_processes_never_overrun_a_hard_budget(redis_url: str) -> None:
    namespace = f"race{uuid.uuid4().hex[:8]}"
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.budgets.race_worker", redis_url, namespace, "100",
            str(seed), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        )
        for seed in (1, 2)
    ]  # fmt: skip
    outputs = [json.loads((await w.communicate())[0]) for w in workers]
    assert [w.returncode for w in workers] == [0, 0]
    total = sum((Decimal(o["charged"]) for o in outputs), Decimal(0))
    assert total <= Decimal("0.50")
    assert sum(o["admitted"] for o in outputs) >= 50
    assert sum(o["blocked"] for o in outputs) > 0
    store = await open_store(redis_url, namespace=namespace)
    try:
        policies = parse_policies(
            [{"scope": "team", "match": "search", "period": "month", "limit_usd": "0.50"}]
        )
        ((settled, held),) = (await Budgets(store, policies).read(Subject(team="search"))).values()
        assert Decimal(settled[0]).scaleb(-9) == total and held == (0, 0, 0)
    finally:
        await store.aclose()
