"""``spendgate ledger rebuild-rollups`` and ``spendgate ledger prune``: ledger upkeep."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from typing import Any

from proxy.cli_reports import run_command
from proxy.config import load_config
from proxy.db import create_engine
from proxy.reports.selection import parse_instant, parse_zone

__all__ = ["add_parser"]


def _url(args: argparse.Namespace) -> str:
    return str(args.database_url or load_config(args.config).storage.database_url)


def _instant(text: str | None) -> datetime | None:
    return parse_instant(text, parse_zone(None))  # dates are midnight UTC


async def _prepare(url: str) -> Any:
    from proxy.migrations import upgrade

    engine = create_engine(url)
    await upgrade(engine)  # the rollup table exists from revision 0003 on
    return engine


async def _rebuild(args: argparse.Namespace) -> int:
    from proxy import rollup

    engine = await _prepare(_url(args))

    def progress(day: datetime, rows: int) -> None:
        if args.verbose:
            print(f"  {day:%Y-%m-%d %H:%M}Z done ({rows} rollup rows so far)", file=sys.stderr)

    try:
        done = await rollup.rebuild(
            engine, _instant(args.start), _instant(args.end), progress=progress
        )
    finally:
        await engine.dispose()
    if done.start is None or done.end is None:
        print("no calls in the ledger: nothing to rebuild")
        return 0
    if done.clamped:
        print(
            f"calls before {done.start.isoformat()} are gone (pruned): their rollup is kept",
            file=sys.stderr,
        )
    if done.start >= done.end:
        print("no calls in that range: nothing to rebuild")
        return 0
    print(
        f"rebuilt the hourly rollup from {done.start.isoformat()} to {done.end.isoformat()}: "
        f"{done.rows} rows"
    )
    return 0


async def _prune(args: argparse.Namespace) -> int:
    from proxy import retention

    before = _instant(args.before)
    assert before is not None
    engine = await _prepare(_url(args))
    try:
        pruned = await retention.prune(engine, before, dry_run=args.dry_run, detach=args.detach)
    finally:
        await engine.dispose()
    verb = "would" if args.dry_run else "did"
    action = "detach" if args.detach else "drop"
    print(f"calls started before {pruned.before.isoformat()} ({verb} go):")
    for name, calls in pruned.partitions:
        print(f"  {action} partition {name}: {calls} calls")
    print(f"  delete {pruned.rows} calls, in batches")
    print(f"total: {pruned.calls} calls; the hourly rollup keeps their sums")
    return 0


def add_parser(sub: Any) -> None:
    """Register ``ledger`` (``rebuild-rollups``, ``prune``) on the ``spendgate`` command."""
    ledger = sub.add_parser("ledger", help="ledger upkeep: rollups and retention")
    verbs = ledger.add_subparsers(dest="verb", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="YAML config (default: ./spendgate.yaml if present)")
        p.add_argument("--database-url", help="ledger database (default: the config's)")

    rebuild = verbs.add_parser(
        "rebuild-rollups", help="recompute the hourly rollup from the calls (safe while serving)"
    )
    common(rebuild)
    rebuild.add_argument("--from", dest="start", help="start (2026-11-01 = midnight UTC)")
    rebuild.add_argument("--to", dest="end", help="end, exclusive (default: the last call)")
    rebuild.add_argument("-v", "--verbose", action="store_true", help="print each day")
    rebuild.set_defaults(func=lambda a: run_command(_rebuild, a))

    prune = verbs.add_parser("prune", help="remove calls older than a date (rollups are kept)")
    common(prune)
    prune.add_argument("--before", required=True, help="cutoff (2026-06-01 = midnight UTC)")
    prune.add_argument("--dry-run", action="store_true", help="print what would go, remove none")
    prune.add_argument(
        "--detach",
        action="store_true",
        help="PostgreSQL: keep old months as tables ledger_calls_archive_YYYY_MM, not dropped",
    )
    prune.set_defaults(func=lambda a: run_command(_prune, a))
