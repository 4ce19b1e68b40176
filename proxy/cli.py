"""The ``spendgate`` command."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from proxy import __version__
from proxy.config import Config, load_config
from proxy.errors import ConfigError

__all__ = ["main"]


def _serve(args: argparse.Namespace) -> int:
    try:
        config: Config = load_config(args.config)
        from proxy.telemetry import check_otlp_env

        check_otlp_env()  # OTEL_EXPORTER_OTLP_PROTOCOL, before any worker starts
    except ConfigError as exc:
        print(f"spendgate: configuration error: {exc}", file=sys.stderr)
        return 2
    overrides = {
        k: v
        for k, v in (("host", args.host), ("port", args.port), ("workers", args.workers))
        if v is not None
    }
    config = config.with_server(**overrides) if overrides else config
    if config.server.workers > 1 and not config.storage.redis_url:
        print(
            "spendgate: refusing to start: --workers > 1 needs storage.redis_url. Without "
            "Redis each worker would keep its own budget counters, so budgets and rate "
            "limits would split between workers and could be overrun.",
            file=sys.stderr,
        )
        return 2

    import uvicorn

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    common: dict[str, Any] = dict(
        host=config.server.host,
        port=config.server.port,
        log_level=args.log_level,
        access_log=args.access_log,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=config.server.shutdown.grace_seconds,
    )
    print(
        f"spendgate {__version__} on http://{config.server.host}:{config.server.port} "
        f"(config: {config.source or 'embedded defaults'}, ledger: "
        f"{_redact(config.storage.database_url)})",
        file=sys.stderr,
    )
    if config.server.workers > 1:
        if args.config:
            os.environ["SPENDGATE_CONFIG"] = os.path.abspath(args.config)
        os.environ["SPENDGATE_SERVER_OVERRIDES"] = json.dumps(overrides)
        uvicorn.run(
            "proxy.app:create_app_from_env",
            factory=True,
            workers=config.server.workers,
            **common,
        )
    else:
        from proxy.app import create_app

        uvicorn.run(create_app(config), **common)
    return 0


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{host}"
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spendgate", description="LLM API cost-metering proxy.")
    parser.add_argument("--version", action="version", version=f"spendgate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the proxy")
    serve.add_argument("--config", help="YAML config (default: ./spendgate.yaml if present)")
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8787)")
    serve.add_argument("--workers", type=int, help="worker processes (more than 1 needs Redis)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--access-log", action="store_true", help="log every request line")
    serve.set_defaults(func=_serve)
    from proxy import cli_prices

    cli_prices.add_parser(sub)
    from proxy import cli_reports

    cli_reports.add_parser(sub)
    from proxy import cli_ledger

    cli_ledger.add_parser(sub)
    from proxy import cli_admin

    cli_admin.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
