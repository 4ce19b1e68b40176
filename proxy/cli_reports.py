"""``spendgate spend`` and ``spendgate export``: finance's reports on the configured ledger."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import sys
from collections.abc import Sequence
from typing import Any

from proxy.config import load_config
from proxy.db import create_engine
from proxy.errors import ConfigError
from proxy.reports.api import line_json
from proxy.reports.export import FORMATS, export_to_file, make_encoder
from proxy.reports.query import GRANULARITIES, SOURCES, SpendQuery, run_spend
from proxy.reports.selection import (
    ReportError,
    Selection,
    parse_dimension,
    parse_filters,
    parse_instant,
    parse_zone,
)

__all__ = ["add_parser", "run_command"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML config (default: ./spendgate.yaml if present)")
    p.add_argument("--database-url", help="ledger database (default: the config's)")
    p.add_argument("--from", dest="start", help="start, inclusive (2026-11-01 or an ISO time)")
    p.add_argument("--to", dest="end", help="end, exclusive (2026-12-01 or an ISO time)")
    p.add_argument("--tz", help="IANA time zone for dates and buckets (default UTC)")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="DIM=VALUE",
        help="keep rows where DIM (team, project, key, end_user, model, provider, endpoint, "
        "outcome, tag:KEY) is VALUE; repeatable",
    )


def _setup(args: argparse.Namespace) -> tuple[str, Selection, Any]:
    url = args.database_url or load_config(args.config).storage.database_url
    zone = parse_zone(args.tz)
    selection = Selection(
        start=parse_instant(args.start, zone),
        end=parse_instant(args.end, zone),
        filters=parse_filters(args.filter),
    )
    return url, selection, zone


def run_command(func: Any, args: argparse.Namespace) -> int:
    """Run ``func(args)`` to completion; a report or config error is exit status 2."""
    try:
        return int(asyncio.run(func(args)))
    except (ReportError, ConfigError) as exc:
        print(f"spendgate: {exc}", file=sys.stderr)
        return 2


async def _spend(args: argparse.Namespace) -> int:
    url, selection, zone = _setup(args)
    group_by = tuple(parse_dimension(d) for d in (args.by or "").split(",") if d.strip())
    query = SpendQuery(selection, group_by, args.granularity, zone)
    engine = create_engine(url)
    try:
        lines = await run_spend(engine, query, source=args.source)
    finally:
        await engine.dispose()
    records = [line_json(line, group_by) for line in lines]
    if not query.granularity:
        for r in records:
            del r["bucket"]
    if args.json:
        print(json.dumps(records, indent=2))
    elif args.csv:
        fields = list(records[0]) if records else _header(query)
        writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in records)
    else:
        print(_table(records, query))
    return 0


def _header(query: SpendQuery) -> list[str]:
    cols = ["bucket"] if query.granularity else []
    return [*cols, *query.group_by, "cost_usd", "list_cost_usd", "requests", "errors"]


_TABLE_COLUMNS = ("cost_usd", "list_cost_usd", "input_tokens", "output_tokens", "requests",
                  "errors")  # fmt: skip


def _table(records: Sequence[dict[str, Any]], query: SpendQuery) -> str:
    """A readable table: groups, cost, tokens, requests, errors, and a total line."""
    keys = [*(["bucket"] if query.granularity else []), *query.group_by, *_TABLE_COLUMNS]
    rows = [[_cell(r.get(k)) for k in keys] for r in records]
    if not rows:
        return "(no calls in this range)"
    from decimal import Decimal

    total: list[str] = ["total"] + [""] * (len(keys) - len(_TABLE_COLUMNS) - 1)
    for name in _TABLE_COLUMNS:
        if name.endswith("_usd"):
            total.append(format(sum((Decimal(r[name]) for r in records), Decimal(0)), "f"))
        else:
            total.append(str(sum(int(r[name]) for r in records)))
    if len(total) > len(keys):  # no group column to hold the label
        total = total[len(total) - len(keys) :]
    widths = [max(len(str(x)) for x in col) for col in zip(keys, *rows, total, strict=True)]
    numeric = {i for i, k in enumerate(keys) if k in _TABLE_COLUMNS}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(keys), rule, *(fmt(r) for r in rows), rule, fmt(total)])


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


async def _export(args: argparse.Namespace) -> int:
    url, selection, _ = _setup(args)
    encoder = make_encoder(args.format, rollup=args.rollup)
    engine = create_engine(url)
    try:
        written = await export_to_file(engine, selection, encoder, args.output)
    finally:
        await engine.dispose()
    print(f"wrote {written} bytes to {args.output}", file=sys.stderr)
    return 0


def add_parser(sub: Any) -> None:
    """Register ``spend`` and ``export`` on the ``spendgate`` command."""
    spend = sub.add_parser("spend", help="spend report from the ledger")
    _common(spend)
    spend.add_argument("--by", help="group by, e.g. team,model (also tag:KEY)")
    spend.add_argument("--granularity", choices=GRANULARITIES, help="time buckets")
    spend.add_argument(
        "--source",
        choices=SOURCES,
        default="auto",
        help="auto: the hourly rollup when it can answer, else the per-call rows (calls)",
    )
    out = spend.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="JSON lines for scripts")
    out.add_argument("--csv", action="store_true", help="CSV for spreadsheets")
    spend.set_defaults(func=lambda a: run_command(_spend, a))

    export = sub.add_parser("export", help="per-call export (csv, jsonl, parquet, FOCUS)")
    _common(export)
    export.add_argument("--format", choices=FORMATS, default="csv")
    export.add_argument("-o", "--output", required=True, help="file to write")
    export.add_argument("--rollup", choices=["hour"], help="FOCUS: one row per hour and group")
    export.set_defaults(func=lambda a: run_command(_export, a))
