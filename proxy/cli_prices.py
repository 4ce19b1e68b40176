"""``spendgate prices ...``: show, quote, check and import price catalogs from the shell."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from pricing import Catalog, PricingError, Usage, load_catalog
from pricing.explain import quote, show
from pricing.litellm_import import dump_catalog, import_litellm
from pricing.validate import check_builtin, check_text
from proxy.config import load_config
from proxy.errors import ConfigError

__all__ = ["add_parser"]


def _catalog(args: argparse.Namespace) -> Catalog:
    """The catalog the proxy would use: --catalog FILE, else the config's, else built-in."""
    if args.catalog:
        return load_catalog(args.catalog)
    config = load_config(args.config)
    path = None if config.pricing.catalog == "builtin" else config.pricing.catalog
    return load_catalog(path, teams=config.teams or None)


def _at(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    at = datetime.fromisoformat(value)
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _show(args: argparse.Namespace) -> int:
    text = show(_catalog(args), args.model, at=_at(args.at))
    if text is None:
        print(f"spendgate: no price for model {args.model!r}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _quote(args: argparse.Namespace) -> int:
    usage = Usage(
        input_tokens=args.input,
        cached_input_tokens=args.cached,
        cache_write_tokens=args.cache_write,
        cache_write_1h_tokens=args.cache_write_1h,
        output_tokens=args.output,
        reasoning_tokens=args.reasoning,
    )
    text = quote(
        _catalog(args), args.model, usage, at=_at(args.at), team=args.team, service_tier=args.tier
    )
    if text is None:
        print(f"spendgate: no price for model {args.model!r}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _check(args: argparse.Namespace) -> int:
    if args.file:
        report = check_text(Path(args.file).read_text(), as_override=not args.standalone)
    else:
        report = check_builtin()
    print(report.render())
    return 0 if report.ok else 1


def _import_litellm(args: argparse.Namespace) -> int:
    data = json.loads(Path(args.file).read_text(), parse_float=Decimal)
    result = import_litellm(
        data,
        source=args.source or f"LiteLLM price map {Path(args.file).name}",
        effective_from=date.fromisoformat(args.effective_from)
        if args.effective_from
        else date.today(),
        providers=frozenset(args.provider) if args.provider else None,
    )
    text = dump_catalog(result.document)
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    for note in result.skipped:
        print(f"skipped: {note}", file=sys.stderr)
    return 0


def _run(handler: object) -> object:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))  # type: ignore[operator]
        except (PricingError, ConfigError, OSError, ValueError) as exc:
            print(f"spendgate: {exc}", file=sys.stderr)
            return 1

    return run


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    prices = sub.add_parser("prices", help="inspect and check price catalogs")
    verbs = prices.add_subparsers(dest="verb", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help="config whose catalog and team rate cards to use")
        p.add_argument("--catalog", help="a catalog YAML merged over the built-in one")
        p.add_argument("--at", help="ISO date/time the prices apply at (default: now)")

    p = verbs.add_parser("show", help="the resolved entry, version and rates of a model")
    p.add_argument("model")
    common(p)
    p.set_defaults(func=_run(_show))

    p = verbs.add_parser("quote", help="the itemised cost of a hypothetical call")
    p.add_argument("model")
    for flag in ("input", "cached", "cache-write", "cache-write-1h", "output", "reasoning"):
        p.add_argument(f"--{flag}", type=int, default=None, metavar="N")
    p.add_argument("--team", help="apply this team's rate card")
    p.add_argument("--tier", help="service tier: standard, batch, flex, priority")
    common(p)
    p.set_defaults(func=_run(_quote))

    p = verbs.add_parser("check", help="validate a catalog file (default: the built-in one)")
    p.add_argument("file", nargs="?")
    p.add_argument("--standalone", action="store_true", help="check FILE alone, not merged")
    p.set_defaults(func=_run(_check))

    p = verbs.add_parser("import-litellm", help="convert LiteLLM's model_prices JSON")
    p.add_argument("file")
    p.add_argument("-o", "--output", help="write the catalog YAML here (default: stdout)")
    p.add_argument("--provider", action="append", help="only this provider (repeatable)")
    p.add_argument("--effective-from", help="effective_from of the imported prices")
    p.add_argument("--source", help="source note recorded on every entry")
    p.set_defaults(func=_run(_import_litellm))
