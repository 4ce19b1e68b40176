"""``spendgate serve`` as a real process, as Kubernetes runs it: started, signalled, read back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.e2e.proxyserver import free_port

__all__ = ["ServeProcess", "stream_chat"]

SPENDGATE = [sys.executable, "-m", "proxy", "serve"]


class ServeProcess:
    """``with ServeProcess(tmp_path, config) as sg: sg.base_url``; output in ``sg.output``."""

    def __init__(self, cwd: Path, config: dict[str, Any]) -> None:
        self.cwd = cwd
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config_path = cwd / f"spendgate-{self.port}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = cwd / f"spendgate-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> str:
        # A file, not a pipe: an unread pipe fills up under load and blocks the server.
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __enter__(self) -> ServeProcess:
        env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        with self.log_path.open("ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [*SPENDGATE, "--config", str(self.config_path), "--port", str(self.port)],
                cwd=self.cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(self.base_url + "/healthz").status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.wait(timeout=5)
                raise RuntimeError(f"spendgate serve did not start:\n{self.output}")
            time.sleep(0.05)

    def signal(self, sig: int = signal.SIGTERM) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit status."""
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def stream_chat(base_url: str, max_tokens: int, started: Any, result: dict[str, Any]) -> None:
    """One streamed chat call read to its end; ``started`` is set at the first chunk."""
    body = {
        "model": "mock-gpt-4o-mini",
        "stream": True,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": "Tell me about metering."}],
    }
    events: list[str] = []
    try:
        with (
            httpx.Client(timeout=30) as client,
            client.stream("POST", base_url + "/v1/chat/completions", json=body) as resp,
        ):
            result["status"] = resp.status_code
            result["request_id"] = resp.headers.get("x-spendgate-request-id")
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
                    started.set()
    except httpx.HTTPError as exc:
        result["error"] = exc
    finally:
        started.set()
        result["events"] = events
        result["ended_at"] = time.monotonic()
