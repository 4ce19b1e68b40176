"""The ledger database (and Redis) going away under a running replica, and coming back.

A real ``spendgate serve`` process on a dedicated embedded PostgreSQL that the test stops and
starts (``pg_server``), under steady load from several clients.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deploy.serve import ServeProcess
from tests.e2e.proxyserver import ProxyServer, read_ledger
from tests.services.postgres import EmbeddedPostgres
from tests.services.redis import RedisServer

CHAT = {
    "model": "mock-gpt-4o-mini",
    "max_tokens": 5,
    "messages": [{"role": "user", "content": "hi"}],
}


def _config(
    db_url: str, tmp_path: Path, fail_mode: str = "open", **shutdown: Any
) -> dict[str, Any]:
    return {
        "server": {"shutdown": shutdown},
        "storage": {
            "database_url": db_url,
            "spill_path": str(tmp_path / "spill.jsonl"),
            "ledger_flush_interval": 0.01,
        },
        "providers": {"mock": {"kind": "mock", "models": ["mock-*"]}},
        "budget_settings": {"fail_mode": fail_mode},
    }


class Load:
    """``threads`` clients sending calls back to back (bounded), recording every answer."""

    def __init__(self, base_url: str, threads: int = 4, pause: float = 0.02) -> None:
        self.base_url = base_url
        self.stop = threading.Event()
        self.answers: list[tuple[int, str | None]] = []
        self.errors: list[Exception] = []
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(pause,)) for _ in range(threads)]

    def _run(self, pause: float) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            for _ in range(5_000):  # bounded, whatever happens
                if self.stop.is_set():
                    return
                try:
                    resp = client.post("/v1/chat/completions", json=CHAT)
                    with self._lock:
                        self.answers.append(
                            (resp.status_code, resp.headers.get("x-spendgate-request-id"))
                        )
                except httpx.HTTPError as exc:
                    self.errors.append(exc)
                time.sleep(pause)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)


def _wait_rows(url: str, n: int, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        rows = read_ledger(url)
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def _readyz(base_url: str) -> httpx.Response:
    time.sleep(1.1)  # readiness probes are cached for a second
    return httpx.get(base_url + "/readyz")


def test_database_down_for_10s_under_load_loses_and_duplicates_no_row(
    pg_server: EmbeddedPostgres, tmp_path: Path
):
    with ServeProcess(tmp_path, _config(pg_server.url, tmp_path)) as sg:
        with Load(sg.base_url) as load:
            time.sleep(1.0)
            before = len(load.answers)
            pg_server.stop()  # fast: open sessions are ended, as a failover would
            outage_started = time.monotonic()
            # fail_mode open: the replica stays ready (the ledger buffers), so a database
            # blip does not take every replica out of its Service at once.
            ready = _readyz(sg.base_url)
            assert ready.status_code == 200, ready.text
            assert ready.json()["status"] == "degraded" and ready.json()["database"] == "down"
            time.sleep(max(0.0, 10.0 - (time.monotonic() - outage_started)))
            during = len(load.answers) - before
            pg_server.start()
            time.sleep(1.0)
        assert not load.errors, load.errors[:3]
        statuses = Counter(status for status, _ in load.answers)
        assert statuses == {200: len(load.answers)}  # served throughout the outage
        assert during > 100  # the outage really was under load
        ids = [rid for _, rid in load.answers]
        rows = _wait_rows(pg_server.url, len(ids))
        assert _readyz(sg.base_url).json() == {
            "status": "ready",
            "database": "ok",
            "ledger_backlog": 0,
        }
        sg.signal(signal.SIGTERM)
        assert sg.wait(timeout=30) in (0, -signal.SIGTERM)

    stored = [row.request_id for row in rows]
    assert len(stored) == len(set(stored))  # none duplicated
    assert sorted(stored) == sorted(ids)  # none lost, none invented
    assert "ledger writes resumed" in sg.output


def test_rows_spilled_at_shutdown_with_the_database_down_are_written_at_next_start(
    pg_server: EmbeddedPostgres, tmp_path: Path
):
    config = _config(pg_server.url, tmp_path, fail_mode="closed", flush_seconds=1)
    spill = tmp_path / "spill.jsonl"
    with ServeProcess(tmp_path, config) as sg:
        pg_server.stop()
        # fail_mode closed: a replica whose database is down is not ready.
        not_ready = _readyz(sg.base_url)
        assert not_ready.status_code == 503
        assert not_ready.json()["status"] == "not ready"
        assert not_ready.json()["database"] == "down"
        ids = []
        with httpx.Client(base_url=sg.base_url) as client:
            for _ in range(20):
                resp = client.post("/v1/chat/completions", json=CHAT)
                assert resp.status_code == 200
                ids.append(resp.headers["x-spendgate-request-id"])
        sg.signal(signal.SIGTERM)
        assert sg.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "ledger spilled 20 unwritten rows" in sg.output
    assert len(spill.read_text().splitlines()) == 20

    pg_server.start()
    with ServeProcess(tmp_path, config) as restarted:
        assert "ledger replayed 20 spilled rows" in restarted.output
        assert sorted(r.request_id for r in read_ledger(pg_server.url)) == sorted(ids)
        assert not spill.exists()
        restarted.signal(signal.SIGTERM)
        assert restarted.wait(timeout=30) in (0, -signal.SIGTERM)


@pytest.mark.parametrize(("fail_mode", "status"), [("open", 200), ("closed", 503)])
def test_readiness_follows_redis_and_the_fail_mode(
    redis_server: RedisServer, tmp_path: Path, fail_mode: str, status: int
):
    config = _config(f"sqlite:///{tmp_path / 'ledger.db'}", tmp_path, fail_mode)
    config["storage"]["redis_url"] = redis_server.url
    with ProxyServer(config) as proxy:
        ok = httpx.get(proxy.base_url + "/readyz")
        assert ok.status_code == 200 and ok.json()["redis"] == "ok"
        redis_server.stop()
        down = _readyz(proxy.base_url)
        assert down.status_code == status and down.json()["redis"] == "down"
        assert down.json()["status"] == ("degraded" if fail_mode == "open" else "not ready")
        redis_server.start()
        assert _readyz(proxy.base_url).json()["redis"] == "ok"
