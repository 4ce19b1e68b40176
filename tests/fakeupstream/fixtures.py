"""Wire fixtures: tests/fixtures/{openai,anthropic,gemini,azure}/index.toml, byte-exact bodies.

Kept apart from the server so that tests can compute what a client should receive (and what
the ledger should say) without starting anything.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

FIXTURES_ROOT = Path(__file__).resolve().parents[1] / "fixtures"
FIXTURES_DIR = FIXTURES_ROOT / "openai"
PROVIDER_DIRS = ("openai", "anthropic", "gemini", "azure")

JSON_CONTENT_TYPE = "application/json"
SSE_CONTENT_TYPE = "text/event-stream; charset=utf-8"

_USAGE_NULL = b',"usage":null'
_OBFUSCATION = re.compile(rb',"obfuscation":"[^"]*"')


@dataclass(frozen=True)
class Scenario:
    """One canned upstream answer, as described by index.toml (see its header for the keys)."""

    name: str
    description: str = ""
    kind: str = "body"  # "body" | "hang" | "default"
    status: int = 200
    body: str | None = None
    body_base64: str | None = None
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    usage: Mapping[str, int] | None = None
    drop: bool = False
    pause_after: int | None = None
    delay: float = 0.0
    headers_delay: float = 0.0
    honours_include_usage: bool = True
    # The conformance corpus (tests/e2e/test_corpus.py): how to call it, what the ledger says.
    call: Mapping[str, Any] | None = None
    expect: Mapping[str, Any] | None = None
    directory: Path = FIXTURES_DIR

    @property
    def is_sse(self) -> bool:
        return self.body is not None and self.body.endswith(".sse")

    @property
    def media_type(self) -> str:
        if self.content_type:
            return self.content_type
        return SSE_CONTENT_TYPE if self.is_sse else JSON_CONTENT_TYPE

    def raw(self, *, base64: bool = False) -> bytes:
        """The body file's bytes, exactly as stored."""
        name = self.body_base64 if base64 and self.body_base64 else self.body
        if name is None:
            raise ValueError(f"scenario {self.name!r} has no body")
        return _read(self.directory / name)

    def events(
        self, *, include_usage: bool = True, include_obfuscation: bool = True
    ) -> list[bytes]:
        """The SSE events as written to the wire, one per HTTP chunk.

        With include_usage=False the usage chunk and the ``"usage":null`` fields go, as OpenAI
        leaves them out unless asked. A truncated tail (a cut-off stream) is its own event.
        """
        events = split_events(self.raw())
        if self.honours_include_usage and not include_usage:
            events = [e.replace(_USAGE_NULL, b"") for e in events if not _is_usage_chunk(e)]
        if not include_obfuscation:
            events = [_OBFUSCATION.sub(b"", e) for e in events]
        return events

    def wire_body(self, *, include_usage: bool = True, include_obfuscation: bool = True) -> bytes:
        """The whole body a client receives for a request with these stream options."""
        if not self.is_sse:
            return self.raw()
        events = self.events(include_usage=include_usage, include_obfuscation=include_obfuscation)
        return b"".join(events)

    def expected_usage(self) -> dict[str, int]:
        """The usage the body reports, flattened; a key that is absent was not reported."""
        if self.usage is None:
            raise LookupError(f"scenario {self.name!r} reports no usage")
        return dict(self.usage)


def split_events(data: bytes) -> list[bytes]:
    """Split an SSE body after each blank line, keeping separators so the parts rejoin exactly."""
    parts = re.split(rb"(?<=\n\n)|(?<=\r\n\r\n)", data)
    return [p for p in parts if p]


def _is_usage_chunk(event: bytes) -> bool:
    if not (event.startswith(b"data: {") and event.endswith(b"\n\n")):
        return False  # [DONE], or the torn tail of a cut-off stream
    chunk = json.loads(event[len(b"data: ") :])
    return chunk.get("choices") == [] and chunk.get("usage") is not None


@cache
def _read(path: Path) -> bytes:
    return path.read_bytes()


@dataclass(frozen=True)
class Catalog:
    """All scenarios and the per-path defaults."""

    scenarios: Mapping[str, Scenario]
    defaults: Mapping[str, Mapping[str, str]]

    def __getitem__(self, name: str) -> Scenario:
        return self.scenarios[name]

    def __contains__(self, name: object) -> bool:
        return name in self.scenarios

    def default_for(self, path: str, body: Any) -> str | None:
        """The scenario for a request that names none: by path, then by its stream flag."""
        path = normalise_path(path)
        by_mode = self.defaults.get(path)
        if by_mode is None and path.startswith("/openai/"):  # Azure without its own scenario
            by_mode = self.defaults.get(path.removeprefix("/openai"))
        if by_mode is None and ":" in path:  # Gemini: models/{model}:generateContent
            by_mode = self.defaults.get(":" + path.rsplit(":", 1)[1])
        if by_mode is None:
            return None
        streaming = isinstance(body, dict) and body.get("stream") is True
        return by_mode.get("stream" if streaming else "json") or by_mode.get("json")


def normalise_path(path: str) -> str:
    """Drop what comes before the API's own path: a /v1, with base URLs with and without it
    matching, and any path of the base URL before it (OpenRouter's /api/v1/...). Azure's
    /openai/deployments/{deployment}/X and /openai/v1/X both become /openai/X."""
    path = path.rstrip("/") or "/"
    if path.startswith("/openai/deployments/"):
        return "/openai/" + path.removeprefix("/openai/deployments/").partition("/")[2]
    if path.startswith("/openai/"):
        return path.replace("/openai/v1/", "/openai/", 1)
    _, v1, rest = path.partition("/v1/")
    return "/" + rest if v1 else path


def load_catalog(directory: Path = FIXTURES_DIR) -> Catalog:
    """Read index.toml; fails fast on a missing body file, so typos show at collection time."""
    index = tomllib.loads((directory / "index.toml").read_text())
    scenarios: dict[str, Scenario] = {}
    for name, raw in index["scenarios"].items():
        raw = dict(raw)
        headers = raw.get("headers", {})
        raw["headers"] = MappingProxyType({k.lower(): str(v) for k, v in headers.items()})
        for key in ("usage", "call", "expect"):
            if key in raw:
                raw[key] = MappingProxyType(dict(raw[key]))
        scenario = Scenario(name=name, directory=directory, **raw)
        for file in (scenario.body, scenario.body_base64):
            if file is not None and not (directory / file).is_file():
                raise FileNotFoundError(f"scenario {name!r}: no fixture file {file}")
        scenarios[name] = scenario
    defaults = {path: MappingProxyType(dict(v)) for path, v in index.get("defaults", {}).items()}
    for path, by_mode in defaults.items():
        for target in by_mode.values():
            if target not in scenarios:
                raise KeyError(f"default for {path} names unknown scenario {target!r}")
    return Catalog(MappingProxyType(scenarios), MappingProxyType(defaults))


def load_all(root: Path = FIXTURES_ROOT) -> Catalog:
    """Every provider's scenarios in one catalog (scenario names are unique across them)."""
    scenarios: dict[str, Scenario] = {}
    defaults: dict[str, Mapping[str, str]] = {}
    for name in PROVIDER_DIRS:
        part = load_catalog(root / name)
        clash = scenarios.keys() & part.scenarios.keys()
        if clash:
            raise KeyError(f"scenario names used twice: {sorted(clash)}")
        scenarios.update(part.scenarios)
        defaults.update(part.defaults)
    return Catalog(MappingProxyType(scenarios), MappingProxyType(defaults))


CATALOG = load_all()
