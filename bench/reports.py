"""Report and export scenario: a generated ledger of N rows, a monthly report and a CSV export.

    python bench/reports.py generate --url sqlite:///bench-ledger.db --rows 1000000
    python bench/reports.py measure  --url sqlite:///bench-ledger.db
    python bench/reports.py generate --url postgresql://... --rows 100000
    python bench/reports.py replicate --url postgresql://... --times 10   # 1M rows

``generate`` writes N priced rows (proxy.reports.sample) spread over November 2026 through
the ledger writer and prints the writer's throughput and CPU per row. ``replicate`` copies
them in SQL and rebuilds the hourly rollup. ``measure`` runs each step in a fresh process and
prints its wall time and peak RSS (``ru_maxrss``), so one step's memory does not hide
another's: ``report`` is a month by team and model per day (Europe/Paris) from the hourly
rollup, ``report-calls`` the same from the per-call rows, ``export-csv`` / ``export-focus``
the month's full export.
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
from itertools import islice

from sqlalchemy import insert, literal, select

from proxy import rollup
from proxy.db import create_engine
from proxy.ledger import LedgerRow, LedgerWriter
from proxy.reports.export import export_to_file, make_encoder
from proxy.reports.query import SpendQuery, run_spend
from proxy.reports.sample import sample_rows
from proxy.reports.selection import Selection, parse_instant, parse_zone

NOVEMBER = datetime(2026, 11, 1, tzinfo=UTC)


async def generate(url: str, rows: int, batch_size: int = 500) -> None:
    """Write ``rows`` sample rows through the ledger writer and print its throughput.

    Rows are priced and turned into plain dicts (what the proxy submits) 50,000 at a time
    outside the clock; only ``submit`` and the writer's batches are timed.
    """
    writer = LedgerWriter(url, batch_size=batch_size, max_backlog=rows + 1)
    await writer.start()
    columns = [c.name for c in LedgerRow.metadata.tables[LedgerRow.__tablename__].columns]
    source = sample_rows(rows, NOVEMBER, timedelta(days=30), seed=1)
    t_total = time.perf_counter()
    writing = cpu = 0.0
    while chunk := [{c: getattr(r, c) for c in columns} for r in islice(source, 50_000)]:
        t0, c0 = time.perf_counter(), time.process_time()
        for entry in chunk:
            writer.submit(entry)
        await writer.flush()
        writing += time.perf_counter() - t0
        cpu += time.process_time() - c0
    await writer.aclose()
    total = time.perf_counter() - t_total
    print(
        f"generated {rows} rows in {total:.1f}s; writer: {writing:.1f}s, "
        f"{rows / writing:,.0f} rows/s, {cpu / rows * 1e6:.1f} us CPU/row in this "
        f"process (batch {batch_size})",
        file=sys.stderr,
    )


async def replicate(url: str, times: int) -> None:
    """Copy the generated rows ``times - 1`` more times under new request ids (same times
    and values): a quick way to a large ledger once a smaller one is priced row by row."""
    engine = create_engine(url)
    table = LedgerRow.metadata.tables[LedgerRow.__tablename__]
    others = [c for c in table.columns if c.name != "request_id"]
    t0 = time.perf_counter()
    for k in range(1, times):
        async with engine.begin() as conn:
            source = select(literal(f"rep{k}_") + table.c.request_id, *others).where(
                table.c.request_id.like("req_%")
            )
            await conn.execute(
                insert(table).from_select(["request_id", *(c.name for c in others)], source)
            )
    print(f"replicated x{times} in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    # The copies bypassed the writer, so the hourly rollup does not have them yet.
    t0 = time.perf_counter()
    rebuilt = await rollup.rebuild(engine)
    await engine.dispose()
    print(f"rebuilt the rollup ({rebuilt.rows} rows) in {time.perf_counter() - t0:.1f}s",
          file=sys.stderr)  # fmt: skip


async def step(url: str, name: str, out: str) -> dict[str, object]:
    engine = create_engine(url)
    zone = parse_zone("Europe/Paris")
    month = Selection(parse_instant("2026-11-01", zone), parse_instant("2026-12-01", zone))
    t0 = time.perf_counter()
    if name in ("report", "report-calls"):
        query = SpendQuery(month, ("team", "model"), "day", zone)
        source = "calls" if name == "report-calls" else "rollup"
        lines = await run_spend(engine, query, source=source)
        detail = f"{len(lines)} lines from the {source}"
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
    p.add_argument("--batch-size", type=int, default=500, help="generate: ledger batch size")
    p.add_argument("--step", default="report")
    p.add_argument("--times", type=int, default=10, help="replicate: total copies")
    p.add_argument("--out", default="/tmp/spendgate-bench-export")
    p.add_argument(
        "--steps",
        default="report,report-calls,export-csv",
        help="measure: comma-separated, of report, report-calls, export-csv, export-focus, ...",
    )
    args = p.parse_args()
    if args.command == "generate":
        asyncio.run(generate(args.url, args.rows, args.batch_size))
    elif args.command == "replicate":
        asyncio.run(replicate(args.url, args.times))
    elif args.command == "step":
        print(json.dumps(asyncio.run(step(args.url, args.step, args.out))))
    else:
        for name in args.steps.split(","):
            cmd = [sys.executable, __file__, "step", "--url", args.url, "--step", name]
            done = subprocess.run([*cmd, "--out", f"{args.out}.{name}"], capture_output=True,
                                  text=True, check=True, env=os.environ)  # fmt: skip
            print(done.stdout.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
