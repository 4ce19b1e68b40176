"""Configuration: raw YAML in, a frozen runtime ``Config`` out, once at start-up.

Every key is optional; what is missing takes the embedded defaults (SQLite ledger, in-process
budget store, built-in catalog, providers ``openai`` and ``mock``). ``${VAR}`` and
``${VAR:-default}`` are interpolated from the environment; an unset ``${VAR}`` without a
default is an error, so a missing secret never silently becomes an empty one. Unknown keys
are errors too: a typo must not turn a budget off. Every error names the key, e.g.
``providers.openai.base_url: must be an http(s) URL``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from budgets import BudgetConfigError, Policy, RateLimitPolicy, parse_policies, parse_rate_limits
from proxy.errors import ConfigError

__all__ = [
    "AdminConfig",
    "Config",
    "KeyConfig",
    "PricingConfig",
    "ProviderConfig",
    "ServerConfig",
    "ShutdownConfig",
    "StorageConfig",
    "hash_key",
    "load_config",
]

PROVIDER_KINDS = ("openai", "mock", "anthropic", "gemini", "azure")
DEFAULT_CONFIG_FILE = "spendgate.yaml"


@dataclass(frozen=True, slots=True)
class ShutdownConfig:
    """What SIGTERM does, in order (see proxy/lifecycle.py and the README's Deploy section).

    ``drain_seconds``: ``/readyz`` answers 503 at once and the process keeps serving this long,
    so load balancers stop sending before it stops accepting; new calls meanwhile are served
    or refused (503) per ``new_requests``. ``grace_seconds``: it stops accepting, and calls and
    streams in flight may finish this long before they are cut (and recorded as cut).
    ``flush_seconds``: the ledger writer may write its queue this long; what is left goes to
    ``storage.spill_path``. A Kubernetes terminationGracePeriodSeconds must cover the sum.
    """

    drain_seconds: float = 0.0
    grace_seconds: float = 30.0
    flush_seconds: float = 10.0
    new_requests: str = "serve"  # or "refuse"

    @property
    def total_seconds(self) -> float:
        return self.drain_seconds + self.grace_seconds + self.flush_seconds


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8787
    workers: int = 1
    max_body_bytes: int = 20 * 1024 * 1024
    upstream_client: str = "aiohttp"  # or "httpx", "httpx-aiohttp" (see docs/performance.md)
    shutdown: ShutdownConfig = ShutdownConfig()

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


@dataclass(frozen=True, slots=True)
class StorageConfig:
    database_url: str = "sqlite:///spendgate.db"
    redis_url: str | None = None
    ledger_batch_size: int = 500
    ledger_flush_interval: float = 0.1
    ledger_max_backlog: int = 100_000
    spill_path: str | None = "spendgate-ledger-spill.jsonl"  # rows the DB could not take at exit
    # Prune calls older than this many days (None: keep all); the hourly rollup is kept.
    # At least 32, so the calendar month that budgets rebuild from is always whole.
    ledger_retention_days: int | None = None


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str
    api_key: str | None = field(default=None, repr=False)
    models: tuple[str, ...] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 600.0
    headers: tuple[tuple[str, str], ...] = ()
    # mock only: simulated time to first byte and between stream chunks
    latency_ms: float = 0.0
    chunk_delay_ms: float = 0.0
    # azure only: the ``api-version`` sent upstream ("v1": Azure's /openai/v1/ paths instead
    # of deployment paths), and deployment name -> the model it serves (which prices it)
    api_version: str | None = None
    deployments: tuple[tuple[str, str], ...] = ()

    @property
    def needs_key(self) -> bool:
        """Whether calls are refused while ``api_key`` is unset. Not for the mock, nor for an
        OpenAI-compatible server of one's own (vLLM, Ollama: any base_url but OpenAI's)."""
        if self.kind == "mock":
            return False
        return self.kind != "openai" or self.base_url == _DEFAULT_BASE_URLS["openai"]


@dataclass(frozen=True, slots=True)
class KeyConfig:
    key_hash: str = field(repr=False)
    team: str
    project: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    name: str | None = None

    @property
    def key_id(self) -> str:
        """A short, non-secret id for logs and the ledger (a prefix of the hash)."""
        return self.name or f"cfg-{self.key_hash[:12]}"


@dataclass(frozen=True, slots=True)
class PricingConfig:
    catalog: str = "builtin"
    unknown_model: str = "record"


@dataclass(frozen=True, slots=True)
class BudgetSettings:
    """How budgets are enforced (the policies themselves are ``Config.budgets``)."""

    timezone: str = "UTC"
    fail_mode: str = "open"  # when Redis is unreachable: admit and reconcile, or 503
    reservation_ttl_s: float = 900.0
    reservation_cap_usd: Decimal | None = None
    default_max_output_tokens: int = 16_384  # reserve this when neither request nor catalog says
    alert_webhook: str | None = None


@dataclass(frozen=True, slots=True)
class AdminConfig:
    """The admin API's credentials: a global key, and per-team keys that see one team.

    ``key`` falls back to ``$SPENDGATE_ADMIN_KEY``; with neither, the admin API refuses
    every call (401). ``key_refresh_s`` bounds how long a replica may serve a revoked key
    when no change notice reaches it (see proxy/controlplane/cache.py).
    """

    key: str | None = field(default=None, repr=False)
    team_keys: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (team, key)
    key_refresh_s: float = 5.0


@dataclass(frozen=True, slots=True)
class TelemetryConfig:
    """Prometheus at ``/metrics`` and the JSON access log; OTLP export is configured by the
    standard ``OTEL_*`` environment variables."""

    prometheus: bool = True
    access_log: bool = True
    budget_refresh_s: float = 15.0  # how often spendgate.budget.utilization re-reads the store


@dataclass(frozen=True, slots=True)
class Config:
    server: ServerConfig = ServerConfig()
    storage: StorageConfig = StorageConfig()
    providers: tuple[ProviderConfig, ...] = ()
    keys: tuple[KeyConfig, ...] = ()
    pricing: PricingConfig = PricingConfig()
    teams: Mapping[str, Any] = field(default_factory=dict)
    budgets: tuple[Policy, ...] = ()
    rate_limits: tuple[RateLimitPolicy, ...] = ()
    budget_settings: BudgetSettings = BudgetSettings()
    store_content: bool = False
    admin: AdminConfig = AdminConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    source: str | None = None

    def with_server(self, **changes: Any) -> Config:
        """A copy with server settings replaced (for CLI flags that override the file)."""
        from dataclasses import replace

        return replace(self, server=replace(self.server, **changes))


def hash_key(secret: str) -> str:
    """The stored form of a virtual key: hex SHA-256. Keys are random, so no salt is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _interpolate(value: Any, path: str, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(f"{path}: environment variable {name} is not set")

        return _ENV.sub(sub, value)
    if isinstance(value, dict):
        return {
            k: _interpolate(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    return value


class _Section:
    """Typed access to one mapping of the raw config, with errors that name the key."""

    def __init__(self, raw: Any, path: str, known: tuple[str, ...]) -> None:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: must be a mapping")
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ConfigError(
                f"{self._key(path, unknown[0])}: unknown key (known: {', '.join(known)})"
            )
        self.raw = raw
        self.path = path

    @staticmethod
    def _key(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def key(self, key: str) -> str:
        return self._key(self.path, key)

    def text(self, key: str, default: str | None) -> str | None:
        v = self.raw.get(key, default)
        if v is None or isinstance(v, str):
            return v
        if isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        raise ConfigError(f"{self.key(key)}: must be a string")

    def integer(self, key: str, default: int, *, minimum: int = 0) -> int:
        v = self.raw.get(key, default)
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ConfigError(f"{self.key(key)}: must be an integer >= {minimum}")
        return v

    def number(self, key: str, default: float, *, minimum: float = 0.0) -> float:
        v = self.raw.get(key, default)
        try:
            f = float(v) if not isinstance(v, bool) else None
        except (TypeError, ValueError):
            f = None
        if f is None or f < minimum:
            raise ConfigError(f"{self.key(key)}: must be a number >= {minimum}")
        return f

    def flag(self, key: str, default: bool) -> bool:
        v = self.raw.get(key, default)
        if isinstance(v, str) and v.lower() in ("true", "false", "1", "0", "yes", "no"):
            return v.lower() in ("true", "1", "yes")
        if not isinstance(v, bool):
            raise ConfigError(f"{self.key(key)}: must be true or false")
        return v

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.raw.get(key, default)
        if v not in choices:
            raise ConfigError(f"{self.key(key)}: must be one of {', '.join(choices)}")
        return str(v)

    def str_list(self, key: str) -> tuple[str, ...]:
        v = self.raw.get(key, [])
        if isinstance(v, str):
            v = [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise ConfigError(f"{self.key(key)}: must be a list of strings")
        return tuple(v)

    def str_map(self, key: str) -> tuple[tuple[str, str], ...]:
        v = self.raw.get(key, {})
        if not isinstance(v, dict):
            raise ConfigError(f"{self.key(key)}: must be a mapping of strings")
        return tuple((str(k), str(x)) for k, x in v.items())


def _url(value: str | None, key: str, schemes: tuple[str, ...]) -> str:
    if not value or value.split("://", 1)[0] not in schemes or "://" not in value:
        raise ConfigError(
            f"{key}: must be a URL starting with {' or '.join(s + '://' for s in schemes)}"
        )
    return value


def _shutdown(raw: Any) -> ShutdownConfig:
    s = _Section(
        raw, "server.shutdown", ("drain_seconds", "grace_seconds", "flush_seconds", "new_requests")
    )
    d = ShutdownConfig()
    return ShutdownConfig(
        drain_seconds=s.number("drain_seconds", d.drain_seconds),
        grace_seconds=s.number("grace_seconds", d.grace_seconds),
        flush_seconds=s.number("flush_seconds", d.flush_seconds),
        new_requests=s.choice("new_requests", d.new_requests, ("serve", "refuse")),
    )


def _server(raw: Any) -> ServerConfig:
    s = _Section(
        raw,
        "server",
        ("host", "port", "workers", "max_body_bytes", "upstream_client", "shutdown"),
    )
    d = ServerConfig()
    return ServerConfig(
        host=s.text("host", d.host) or d.host,
        port=s.integer("port", d.port, minimum=0),
        workers=s.integer("workers", d.workers, minimum=1),
        max_body_bytes=s.integer("max_body_bytes", d.max_body_bytes, minimum=1),
        upstream_client=s.choice(
            "upstream_client", d.upstream_client, ("aiohttp", "httpx", "httpx-aiohttp")
        ),
        shutdown=_shutdown(s.raw.get("shutdown")),
    )


def _storage(raw: Any) -> StorageConfig:
    s = _Section(
        raw,
        "storage",
        (
            "database_url",
            "redis_url",
            "ledger_batch_size",
            "ledger_flush_interval",
            "ledger_max_backlog",
            "spill_path",
            "ledger_retention_days",
        ),
    )
    d = StorageConfig()
    db = _url(
        s.text("database_url", d.database_url),
        s.key("database_url"),
        ("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+asyncpg", "postgres"),
    )
    redis = s.text("redis_url", None)
    if redis:
        redis = _url(redis, s.key("redis_url"), ("redis", "rediss", "unix", "memory"))
    return StorageConfig(
        database_url=db,
        redis_url=redis or None,
        ledger_batch_size=s.integer("ledger_batch_size", d.ledger_batch_size, minimum=1),
        ledger_flush_interval=s.number("ledger_flush_interval", d.ledger_flush_interval),
        ledger_max_backlog=s.integer("ledger_max_backlog", d.ledger_max_backlog, minimum=1),
        spill_path=s.text("spill_path", d.spill_path),
        ledger_retention_days=(
            s.integer("ledger_retention_days", 0, minimum=32)
            if s.raw.get("ledger_retention_days") is not None
            else None
        ),
    )


AZURE_API_VERSION = "2024-10-21"  # Azure OpenAI's latest GA inference API (dated)

_DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
    "mock": "mock://local",
}


def _provider(name: str, raw: Any) -> ProviderConfig:
    path = f"providers.{name}"
    s = _Section(
        raw,
        path,
        (
            "kind",
            "base_url",
            "api_key",
            "models",
            "connect_timeout",
            "read_timeout",
            "headers",
            "latency_ms",
            "chunk_delay_ms",
            "api_version",
            "deployments",
        ),
    )
    kind = s.choice("kind", name if name in PROVIDER_KINDS else "openai", PROVIDER_KINDS)
    _check_prefix(name, kind)
    if kind == "azure" and not s.raw.get("base_url"):
        raise ConfigError(
            f"{s.key('base_url')}: required for kind azure (https://NAME.openai.azure.com)"
        )
    base_url = s.text("base_url", _DEFAULT_BASE_URLS.get(kind))
    if kind != "mock":
        base_url = _url(base_url, s.key("base_url"), ("http", "https")).rstrip("/")
    models = s.str_list("models")
    api_version, deployments = None, s.str_map("deployments")
    for deployment, model in deployments:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", deployment) or not model:
            raise ConfigError(
                f"{s.key('deployments')}.{deployment}: a deployment name (letters, digits, "
                ". _ -) mapped to the model it serves"
            )
    if kind == "azure":
        base_url = (base_url or "").removesuffix("/openai")  # our paths start with /openai/
        api_version = s.text("api_version", AZURE_API_VERSION) or AZURE_API_VERSION
        # routed by the models its deployments serve, unless told otherwise
        if "models" not in s.raw:
            models = tuple(dict.fromkeys(model for _, model in deployments))
    else:
        for key in ("api_version", "deployments"):
            if key in s.raw:
                raise ConfigError(f"{s.key(key)}: only for kind azure")
    return ProviderConfig(
        name=name,
        kind=kind,
        base_url=base_url or "",
        api_key=s.text("api_key", None) or None,
        models=models,
        connect_timeout=s.number("connect_timeout", 10.0),
        read_timeout=s.number("read_timeout", 600.0),
        headers=s.str_map("headers"),
        latency_ms=s.number("latency_ms", 0.0),
        chunk_delay_ms=s.number("chunk_delay_ms", 0.0),
        api_version=api_version,
        deployments=deployments,
    )


# First path segments of the built-in routes. A provider gets a /{name}/... route of its own,
# so these names are refused, or (for the native-format prefixes) allowed only with the kind
# that prefix already speaks: /anthropic/... is Anthropic's API, /openai/deployments/... Azure's.
_RESERVED_NAMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "v1": ("", ()),
    "v1beta": ("", ()),
    "admin": ("", ()),
    "healthz": ("", ()),
    "readyz": ("", ()),
    "metrics": ("", ()),
    "anthropic": ("Anthropic", ("anthropic",)),
    "gemini": ("Gemini", ("gemini",)),
    "openai": ("Azure OpenAI", ("openai", "azure")),
}


def _check_prefix(name: str, kind: str) -> None:
    label, kinds = _RESERVED_NAMES.get(name, ("", (kind,)))
    if kind in kinds:
        return
    if not kinds:
        raise ConfigError(
            f"providers.{name}: '{name}' is taken by spendgate's own /{name}/ routes and "
            "cannot name a provider (its /{provider}/ route would clash); choose another name"
        )
    raise ConfigError(
        f"providers.{name}: /{name}/ is spendgate's built-in {label} route, so a provider "
        f"named '{name}' must be of kind {' or '.join(kinds)}; give this kind {kind} provider "
        "another name"
    )


def default_providers(env: Mapping[str, str]) -> tuple[ProviderConfig, ...]:
    """``openai`` (key from OPENAI_API_KEY) takes every model; ``mock`` takes ``mock-*``."""
    return (
        ProviderConfig(
            name="openai",
            kind="openai",
            base_url=env.get("OPENAI_BASE_URL", _DEFAULT_BASE_URLS["openai"]).rstrip("/"),
            api_key=env.get("OPENAI_API_KEY") or None,
            models=("*",),
        ),
        ProviderConfig(name="mock", kind="mock", base_url="mock://local", models=("mock-*",)),
    )


def _providers(raw: Any, env: Mapping[str, str]) -> tuple[ProviderConfig, ...]:
    if raw is None:
        return default_providers(env)
    if not isinstance(raw, dict) or not raw:
        raise ConfigError("providers: must be a mapping of provider name to settings")
    out = []
    for name, body in raw.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", str(name)):
            raise ConfigError(f"providers.{name}: names are lowercase letters, digits, - and _")
        out.append(_provider(str(name), body))
    return tuple(out)


def _keys(raw: Any) -> tuple[KeyConfig, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("keys: must be a list")
    out: list[KeyConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        s = _Section(item, f"keys[{i}]", ("key", "key_sha256", "team", "project", "tags", "name"))
        secret, digest = s.text("key", None), s.text("key_sha256", None)
        if bool(secret) == bool(digest):
            raise ConfigError(f"{s.key('key')}: give exactly one of key or key_sha256")
        if secret is not None and len(secret) < 8:
            raise ConfigError(f"{s.key('key')}: must be at least 8 characters")
        if digest is not None and not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"{s.key('key_sha256')}: must be 64 lowercase hex digits")
        key_hash = digest or hash_key(secret or "")
        if key_hash in seen:
            raise ConfigError(f"{s.key('key')}: the same key is declared twice")
        seen.add(key_hash)
        team = s.text("team", None)
        if not team:
            raise ConfigError(f"{s.key('team')}: required")
        out.append(
            KeyConfig(
                key_hash=key_hash,
                team=team,
                project=s.text("project", None),
                tags=s.str_map("tags"),
                name=s.text("name", None),
            )
        )
    return tuple(out)


def _admin(raw: Any, env: Mapping[str, str]) -> AdminConfig:
    s = _Section(raw, "admin", ("key", "team_keys", "key_refresh_s"))
    key = s.text("key", None) or env.get("SPENDGATE_ADMIN_KEY") or None
    team_keys = tuple((t, k) for t, k in s.str_map("team_keys") if k)  # "" means unset
    for where, value in [
        (s.key("key"), key),
        *((s.key(f"team_keys.{t}"), k) for t, k in team_keys),
    ]:
        if value is not None and len(value) < 16:
            raise ConfigError(f"{where}: must be at least 16 characters")
    secrets = [k for _, k in team_keys] + ([key] if key else [])
    if len(set(secrets)) != len(secrets):
        raise ConfigError(f"{s.key('team_keys')}: every admin key must be different")
    return AdminConfig(
        key=key,
        team_keys=team_keys,
        key_refresh_s=s.number("key_refresh_s", AdminConfig().key_refresh_s, minimum=0.05),
    )


def _pricing(raw: Any) -> PricingConfig:
    s = _Section(raw, "pricing", ("catalog", "overrides", "unknown_model"))
    catalog = s.text("overrides", None) or s.text("catalog", "builtin") or "builtin"
    return PricingConfig(
        catalog=catalog, unknown_model=s.choice("unknown_model", "record", ("record", "reject"))
    )


def _budget_settings(raw: Any) -> BudgetSettings:
    s = _Section(
        raw,
        "budget_settings",
        (
            "timezone",
            "fail_mode",
            "reservation_ttl_s",
            "reservation_cap_usd",
            "default_max_output_tokens",
            "alert_webhook",
        ),
    )
    d = BudgetSettings()
    tz = s.text("timezone", d.timezone) or d.timezone
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{s.key('timezone')}: unknown IANA time zone {tz!r}") from None
    cap = s.text("reservation_cap_usd", None)
    try:
        cap_usd = Decimal(cap) if cap is not None else None
    except InvalidOperation:
        cap_usd = None
    if cap is not None and (cap_usd is None or not cap_usd.is_finite() or cap_usd <= 0):
        raise ConfigError(f"{s.key('reservation_cap_usd')}: must be a positive amount")
    hook = s.text("alert_webhook", None)
    return BudgetSettings(
        timezone=tz,
        fail_mode=s.choice("fail_mode", d.fail_mode, ("open", "closed")),
        reservation_ttl_s=s.number("reservation_ttl_s", d.reservation_ttl_s, minimum=1.0),
        reservation_cap_usd=cap_usd,
        default_max_output_tokens=s.integer(
            "default_max_output_tokens", d.default_max_output_tokens, minimum=1
        ),
        alert_webhook=_url(hook, s.key("alert_webhook"), ("http", "https")) if hook else None,
    )


def _policies(raw: Any, name: str, parse: Any) -> Any:
    if raw is None:
        return ()
    try:
        return tuple(parse(raw))
    except BudgetConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(name) else f"{name}: {message}") from None


_TOP = (
    "budget_settings",
    "server",
    "storage",
    "providers",
    "keys",
    "teams",
    "budgets",
    "rate_limits",
    "pricing",
    "telemetry",
    "admin",
    "logging",
)


def parse_config(
    raw: Any, *, env: Mapping[str, str] | None = None, source: str | None = None
) -> Config:
    """Validate a raw mapping (as read from YAML) into a frozen ``Config``."""
    env = os.environ if env is None else env
    top = _Section(raw, "", _TOP)
    data = _interpolate(top.raw, "", env)
    teams = data.get("teams") or {}
    if not isinstance(teams, dict):
        raise ConfigError("teams: must be a mapping of team name to settings")
    logging_ = _Section(data.get("logging"), "logging", ("store_content",))
    tel = _Section(
        data.get("telemetry"), "telemetry", ("prometheus", "access_log", "budget_refresh_s")
    )
    return Config(
        server=_server(data.get("server")),
        storage=_storage(data.get("storage")),
        providers=_providers(data.get("providers"), env),
        keys=_keys(data.get("keys")),
        pricing=_pricing(data.get("pricing")),
        teams=teams,
        budgets=_policies(data.get("budgets"), "budgets", parse_policies),
        rate_limits=_policies(data.get("rate_limits"), "rate_limits", parse_rate_limits),
        budget_settings=_budget_settings(data.get("budget_settings")),
        store_content=logging_.flag("store_content", False),
        telemetry=TelemetryConfig(
            prometheus=tel.flag("prometheus", True),
            access_log=tel.flag("access_log", True),
            budget_refresh_s=tel.number("budget_refresh_s", 15.0, minimum=0.1),
        ),
        admin=_admin(data.get("admin"), env),
        source=source,
    )


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Read ``path`` (or ``./spendgate.yaml`` when present) into a ``Config``.

    With no file at all, the embedded defaults apply.
    """
    if path is None:
        if not Path(DEFAULT_CONFIG_FILE).is_file():
            return parse_config({}, source=None)
        path = DEFAULT_CONFIG_FILE
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"config file {p}: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p}: not valid YAML: {exc}") from None
    return parse_config(raw or {}, source=str(p))
