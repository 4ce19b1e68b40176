"""Report and export scenario: a generated ledger of N rows, a monthly report and a CSV export.

    python bench/reports.py generate --url sqlite:///bench-ledger.db --rows 1000000
    python bench/reports.py measure  --url sqlite:///bench-ledger.db
    python bench/reports.py generate --url postgresql://... --rows 100000
    python bench/reports.py replicate --url postgresql://... --times 10   # 1M rows

``generate`` writes N priced rows (proxy.reports.sample) spread over November 2026 through
the ledger writer. ``measure`` runs each step in a fresh process and prints its wall time and
peak RSS (``ru_maxrss``), so one step's memory does not hide another's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, literal, select

from proxy.db import create_engine
from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.export import export_to_file, make_encoder
from proxy.reports.query import SpendQuery, run_spend
from proxy.reports.sample import sample_rows
from proxy.reports.selection import Selection, parse_instant, parse_zone

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


async def generate(url: str, rows: int) -> None:
    writer = LedgerWriter(url, batch_size=5000, max_backlog=rows + 1)
    await writer.start()
    t0 = time.perf_counter()
    for i, row in enumerate(sample_rows(rows, NOVEMBER, timedelta(days=30), seed=1)):
        writer.submit(row)
        if i % 50_000 == 49_999:
            await writer.flush()
    await writer.flush()
    await writer.aclose()
    print(f"generated {rows} rows in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


async def replicate(url: str, times: int) -> None:
    """Copy the generated rows ``times - 1`` more times under new request ids (same times
    and values): a quick way to a large ledger once a smaller one is priced row by row."""
    engine = create_engine(url)
    table = LedgerRow.metadata.tables[LedgerRow.__tablename__]
    others = [c for c in table.columns if c.name != "request_id"]
    t0 = time.perf_counter()
    async with engine.begin() as conn:
        for k in range(1, times):
            source = select(literal(f"rep{k}_") + table.c.request_id, *others).where(
                table.c.request_id.like("req_%")
            )
            await conn.execute(
                insert(table).from_select(["request_id", *(c.name for c in others)], source)
            )
    await engine.dispose()
    print(f"replicated x{times} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)


async def step(url: str, name: str, out: str) -> dict[str, object]:
    engine = create_engine(url)
    zone = parse_zone("Europe/Paris")
    month = Selection(parse_instant("2026-11-01", zone), parse_instant("2026-12-01", zone))
    t0 = time.perf_counter()
    if name == "report":
        lines = await run_spend(engine, SpendQuery(month, ("team", "model"), "day", zone))
        detail = f"{len(lines)} lines"
    else:
        fmt = name.split("-", 1)[1]
        written = await export_to_file(engine, month, make_encoder(fmt), out)
        detail = f"{written / 1e6:.0f} MB"
    elapsed = time.perf_counter() - t0
    await engine.dispose()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step": name, "seconds": round(elapsed, 2), "peak_rss_mb": round(rss_mb), "out": detail}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["generate", "replicate", "measure", "step"])
    p.add_argument("--url", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--step", default="report")
    p.add_argument("--times", type=int, default=10, help="replicate: total copies")
    p.add_argument("--out", default="/tmp/spendgate-bench-export")
    args = p.parse_args()
    if args.command == "generate":
        asyncio.run(generate(args.url, args.rows))
    elif args.command == "replicate":
        asyncio.run(replicate(args.url, args.times))
    elif args.command == "step":
        print(json.dumps(asyncio.run(step(args.url, args.step, args.out))))
    else:
        for name in ("report", "export-csv", "export-focus"):
            cmd = [sys.executable, __file__, "step", "--url", args.url, "--step", name]
            done = subprocess.run([*cmd, "--out", f"{args.out}.{name}"], capture_output=True,
                                  text=True, check=True, env=os.environ)  # fmt: skip
            print(done.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
