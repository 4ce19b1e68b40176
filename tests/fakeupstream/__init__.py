"""A fake OpenAI upstream for end-to-end tests: real sockets, byte-exact recorded-shape bodies.

``FakeUpstream`` serves the scenarios in tests/fixtures/openai/index.toml; ``CATALOG`` holds
them (with each one's expected usage) for assertions. The pytest fixtures are in ``plugin``.
"""

from __future__ import annotations

from .fixtures import (
    CATALOG,
    FIXTURES_DIR,
    JSON_CONTENT_TYPE,
    SSE_CONTENT_TYPE,
    Catalog,
    Scenario,
    load_catalog,
    split_events,
)
from .server import CHUNK_DELAY_HEADER, DELAY_HEADER, SCENARIO_HEADER, FakeUpstream
from .wire import RecordedRequest

__all__ = [
    "CATALOG",
    "CHUNK_DELAY_HEADER",
    "DELAY_HEADER",
    "FIXTURES_DIR",
    "JSON_CONTENT_TYPE",
    "SCENARIO_HEADER",
    "SSE_CONTENT_TYPE",
    "Catalog",
    "FakeUpstream",
    "RecordedRequest",
    "Scenario",
    "load_catalog",
    "split_events",
]
