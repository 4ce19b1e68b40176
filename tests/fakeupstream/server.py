"""FakeUpstream: a real HTTP/1.1 server on 127.0.0.1 that replays the OpenAI wire fixtures.

It runs its own event loop in a background thread, so sync tests, async tests and the proxy
under test (whatever loop it uses) can all talk to it. Framing details live in wire.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections import deque
from typing import Any

from .fixtures import CATALOG, Catalog, Scenario
from .wire import (
    RecordedRequest,
    azure_refusal,
    float_header,
    head,
    not_found,
    read_request,
    send_json,
    wait_peer,
)

SCENARIO_HEADER = "x-fake-scenario"
DELAY_HEADER = "x-fake-delay"
CHUNK_DELAY_HEADER = "x-fake-chunk-delay"


class FakeUpstream:
    """An OpenAI-speaking server for one test session; see tests/fixtures/openai/index.toml.

    Use ``with FakeUpstream() as up:`` and point clients at ``up.url`` (+ "/v1" for the SDK).
    Controls, all callable from any thread: ``requests``, ``clear()``, ``reset()``,
    ``enqueue(*names)``, ``release()`` with ``paused`` for the slow stream, and
    ``wait_for_requests(n)``.
    """

    def __init__(self, catalog: Catalog = CATALOG, *, release_timeout: float = 30.0) -> None:
        self.catalog = catalog
        # A test that forgets release() gets its stream finished after this, not a hung suite.
        self.release_timeout = release_timeout
        self.paused = threading.Event()
        self._cond = threading.Condition()
        self._requests: list[RecordedRequest] = []
        # Exceptions raised while answering; the `upstream` fixture fails a test that caused one.
        self.errors: list[BaseException] = []
        self._queue: deque[str] = deque()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._gate: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._started = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeUpstream:
        if self._thread is not None:
            raise RuntimeError("FakeUpstream already started")
        self._thread = threading.Thread(target=self._run, name="fake-upstream", daemon=True)
        self._thread.start()
        if not self._started.wait(10) or self._startup_error is not None:
            raise RuntimeError("fake upstream failed to start") from self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving, end open connections (hung ones included) and join the thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # loop already gone
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to start() rather than lost in the thread
            self._startup_error = exc
            self._started.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        self._gate = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, limit=1 << 20)
        self.port = server.sockets[0].getsockname()[1]
        self._started.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await server.wait_closed()

    # --- controls ------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of the requests received so far, oldest first."""
        with self._cond:
            return list(self._requests)

    def wait_for_requests(self, n: int = 1, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until at least n requests have arrived (for hang and timeout tests)."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(f"{len(self._requests)} requests arrived, wanted {n}")
            return list(self._requests)

    def enqueue(self, *names: str) -> None:
        """Answer the next requests with these scenarios, in order, whatever they ask for."""
        for name in names:
            if name not in self.catalog:
                raise KeyError(f"unknown scenario {name!r}")
        with self._cond:
            self._queue.extend(names)

    def release(self) -> None:
        """Let paused slow streams send the rest of their events."""
        self._in_loop(self._open_gate)

    def clear(self) -> None:
        """Forget recorded requests."""
        with self._cond:
            self._requests.clear()

    def reset(self) -> None:
        """Back to a fresh state between tests: no requests, empty queue, a closed gate.

        Streams still paused on the old gate are released so their connections can finish.
        """
        with self._cond:
            self._requests.clear()
            self._queue.clear()
        self.errors.clear()
        self._in_loop(self._new_gate)
        self.paused.clear()

    def _open_gate(self) -> None:
        assert self._gate is not None
        self._gate.set()

    def _new_gate(self) -> None:
        self._open_gate()
        self._gate = asyncio.Event()

    def _in_loop(self, fn: Any) -> None:
        """Run fn on the server loop and wait, so the change is in place before we return."""
        if self._loop is None or self._thread is None:
            raise RuntimeError("FakeUpstream is not running")

        async def call() -> None:
            fn()

        asyncio.run_coroutine_threadsafe(call(), self._loop).result(5)

    # --- HTTP ----------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await read_request(reader)
                if request is None or not await self._answer(request, reader, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the peer went away or spoke garbage; the connection is closed below
        except asyncio.CancelledError:
            pass  # stop(); ending normally keeps asyncio from logging the cancellation
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    def _choose(self, request: RecordedRequest) -> Scenario | str:
        """The scenario for this request, or an error message for a 404."""
        with self._cond:
            name = self._queue.popleft() if self._queue else None
        name = name or request.headers.get(SCENARIO_HEADER)
        if name is not None:
            return self.catalog.scenarios.get(name) or f"fake upstream has no scenario {name!r}"
        return self._default(request)

    def _default(self, request: RecordedRequest) -> Scenario | str:
        name = self.catalog.default_for(request.path, request.json)
        if name is None:
            return f"Invalid URL ({request.method} {request.path})"
        return self.catalog[name]

    async def _answer(
        self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; True if the connection may carry another."""
        refusal = azure_refusal(request)
        if refusal is not None:
            return await self._refuse(request, writer, *refusal)
        scenario = self._choose(request)
        request.scenario = scenario.name if isinstance(scenario, Scenario) else None
        request.request_id = f"req_{uuid.uuid4().hex}"
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
        keep_alive = request.headers.get("connection", "").lower() != "close"
        try:
            if isinstance(scenario, Scenario) and scenario.kind == "hang":
                await wait_peer(reader, None)
                request._finish("client-closed")
                return False
            delay = float_header(request, DELAY_HEADER)
            if delay is None and isinstance(scenario, Scenario):
                delay = scenario.headers_delay
            if delay and await wait_peer(reader, delay):
                request._finish("client-closed")
                return False
            if isinstance(scenario, Scenario) and scenario.kind == "default":
                scenario = self._default(request)
            if isinstance(scenario, str):
                await send_json(writer, request, 404, not_found(scenario), {}, keep_alive)
            elif scenario.is_sse:
                keep_alive = await self._stream(scenario, request, reader, writer, keep_alive)
            else:
                base64 = isinstance(request.json, dict) and (
                    request.json.get("encoding_format") == "base64"
                )
                body = scenario.raw(base64=base64)
                headers = {**scenario.headers, "content-type": scenario.media_type}
                await send_json(writer, request, scenario.status, body, headers, keep_alive)
            return keep_alive
        except asyncio.CancelledError:
            request._finish("server-stopped")
            raise
        except ConnectionError:
            request._finish("client-closed")
            return False
        except Exception as exc:  # a bug here must fail the test, not vanish in the thread
            self.errors.append(exc)
            request._finish("error")
            return False
        finally:
            request._finish("complete")  # only if nothing above said otherwise

    async def _refuse(
        self, request: RecordedRequest, writer: asyncio.StreamWriter, status: int, body: bytes
    ) -> bool:
        """Answer with an error of the API's own, whatever scenario was asked for."""
        request.request_id = f"req_{uuid.uuid4().hex}"
        with self._cond:
            self._requests.append(request)
            self._cond.notify_all()
        keep_alive = request.headers.get("connection", "").lower() != "close"
        try:
            await send_json(writer, request, status, body, {}, keep_alive)
        finally:
            request._finish("complete")
        return keep_alive

    async def _stream(
        self,
        scenario: Scenario,
        request: RecordedRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        keep_alive: bool,
    ) -> bool:
        """Write the SSE body event by event; False if the connection is finished with."""
        options = request.json.get("stream_options") if isinstance(request.json, dict) else None
        options = options if isinstance(options, dict) else {}
        events = scenario.events(
            include_usage=options.get("include_usage") is True,
            include_obfuscation=options.get("include_obfuscation") is not False,
        )
        delay = float_header(request, CHUNK_DELAY_HEADER)
        delay = scenario.delay if delay is None else delay
        headers = {**scenario.headers, "content-type": scenario.media_type}
        # A cut-off stream announces keep-alive like any other: the drop is meant as a surprise.
        writer.write(head(scenario.status, headers, request, None, keep_alive=keep_alive))
        await writer.drain()
        for i, event in enumerate(events):
            if i and i == scenario.pause_after:
                gate = self._gate
                assert gate is not None
                self.paused.set()
                if await wait_peer(reader, self.release_timeout, gate):
                    request._finish("client-closed")
                    return False
            elif i and delay and await wait_peer(reader, delay):
                request._finish("client-closed")
                return False
            writer.write(b"%x\r\n%b\r\n" % (len(event), event))
            await writer.drain()
        if scenario.drop:
            request._finish("dropped")  # closing now leaves the chunked body unterminated
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive
