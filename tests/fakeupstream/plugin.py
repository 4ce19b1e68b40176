"""pytest fixtures: one FakeUpstream per session, reset for each test that asks for it.

Enable with ``pytest_plugins = ["tests.fakeupstream.plugin"]`` in tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import FakeUpstream


@pytest.fixture(scope="session")
def fake_upstream() -> Iterator[FakeUpstream]:
    """The session's server; one port for all tests, so a proxy app can be configured once."""
    with FakeUpstream() as up:
        yield up


@pytest.fixture
def upstream(fake_upstream: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's server with no recorded requests, no queued scenarios and a closed gate.

    Reset again afterwards so that a stream a test left paused is released and finishes.
    """
    fake_upstream.reset()
    yield fake_upstream
    errors = list(fake_upstream.errors)
    fake_upstream.reset()
    if errors:
        raise AssertionError(f"the fake upstream failed while answering: {errors!r}") from errors[0]
