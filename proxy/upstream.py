"""The upstream HTTP client, behind a small interface of our own so the transport can change.

aiohttp is the transport: measured on this machine (../shared/reference/perf-baseline.md and
``bench/``), a starlette pass-through forwarding with aiohttp costs ~0.28 ms of CPU per
request against httpx's 2.0 ms, and httpx's pool gets slower as concurrency rises. Every
aiohttp error is translated here, once, into ``UpstreamConnectError`` / ``UpstreamTimeout``
/ ``UpstreamError``; nothing above this module imports aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

import aiohttp

from proxy import errors
from proxy.errors import UpstreamConnectError, UpstreamError

__all__ = ["AiohttpUpstream", "Upstream", "UpstreamResponse"]

Headers = list[tuple[bytes, bytes]]


class UpstreamResponse(Protocol):
    """A response whose headers have arrived; the body is read or streamed, then closed."""

    status: int
    headers: Headers  # lower-cased names, as the provider sent them otherwise

    async def read(self) -> bytes: ...

    def chunks(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None:
        """Release the connection; an unfinished body closes it instead of pooling it."""
        ...


class Upstream(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def _translate(exc: BaseException, host: str) -> UpstreamError:
    # Most specific first: aiohttp's timeout errors subclass its connection errors.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return errors.connect_timed_out(host)
    if isinstance(exc, aiohttp.ServerTimeoutError | asyncio.TimeoutError | TimeoutError):
        return errors.read_timed_out(host)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return errors.connect_failed(host)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return UpstreamConnectError(f"The upstream provider ({host}) closed the connection.")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return errors.ended_early(host)
    return errors.failed(host, exc)


class _AiohttpResponse:
    __slots__ = ("_host", "_resp", "headers", "status")

    def __init__(self, resp: aiohttp.ClientResponse, host: str) -> None:
        self._resp = resp
        self._host = host
        self.status = resp.status
        self.headers = [(k.lower(), v) for k, v in resp.raw_headers]

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._host) from exc
        finally:
            self._resp.release()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc, self._host) from exc

    async def aclose(self) -> None:
        # close() rather than release(): an unfinished body must not go back to the pool.
        if not self._resp.closed:
            self._resp.close()


class AiohttpUpstream:
    """One pooled aiohttp session shared by every request of the process."""

    def __init__(self, *, limit: int = 1000, limit_per_host: int = 0) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._limit = limit
        self._limit_per_host = limit_per_host
        self._timeouts: dict[tuple[float, float], aiohttp.ClientTimeout] = {}

    def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=self._limit,
                limit_per_host=self._limit_per_host,
                ttl_dns_cache=300,
                keepalive_timeout=60,
            )
            # auto_decompress: we read usage from bodies, so we relay decoded bytes and drop
            # content-encoding on the way back.
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> UpstreamResponse:
        session = self._ensure()
        timeout = self._timeouts.get((connect_timeout, read_timeout))
        if timeout is None:
            timeout = aiohttp.ClientTimeout(
                total=None,
                sock_connect=connect_timeout,
                connect=connect_timeout,
                sock_read=read_timeout,
            )
            self._timeouts[(connect_timeout, read_timeout)] = timeout
        host = url.split("/", 3)[2] if "://" in url else url
        try:
            resp = await session.request(
                method,
                url,
                headers=list(headers),
                data=body or None,
                timeout=timeout,
                allow_redirects=False,
            )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _translate(exc, host) from exc
        return _AiohttpResponse(resp, host)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
