"""An ``Upstream`` on httpx, with its own transport or with httpx-aiohttp's.

Not the default: it exists so the transports can be measured side by side in ``bench/``
(``server.upstream_client``) and as a fallback where aiohttp cannot be used. httpx errors
are translated here, once, like aiohttp's are in ``proxy.upstream``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import aiohttp
import httpx

from proxy import errors
from proxy.errors import UpstreamError

__all__ = ["HttpxUpstream"]


def _translate(exc: httpx.HTTPError, host: str) -> UpstreamError:
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientConnectorError) and not isinstance(
        cause, aiohttp.ConnectionTimeoutError
    ):
        # httpx-aiohttp maps a refused connection to ConnectTimeout; it is not a timeout.
        return errors.connect_failed(host)
    if isinstance(exc, httpx.ConnectTimeout):
        return errors.connect_timed_out(host)
    if isinstance(exc, httpx.TimeoutException):
        return errors.read_timed_out(host)
    if isinstance(exc, httpx.ConnectError):
        return errors.connect_failed(host)
    if isinstance(exc, httpx.RemoteProtocolError):
        return errors.ended_early(host)
    return errors.failed(host, exc)


class _HttpxResponse:
    __slots__ = ("_host", "_resp", "headers", "status")

    def __init__(self, resp: httpx.Response, host: str) -> None:
        self._resp = resp
        self._host = host
        self.status = resp.status_code
        self.headers = [(k.lower(), v) for k, v in resp.headers.raw]

    async def read(self) -> bytes:
        try:
            return await self._resp.aread()
        except httpx.HTTPError as exc:
            raise _translate(exc, self._host) from exc
        finally:
            await self._resp.aclose()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._resp.aiter_bytes():
                yield chunk
        except httpx.HTTPError as exc:
            raise _translate(exc, self._host) from exc

    async def aclose(self) -> None:
        await self._resp.aclose()


class HttpxUpstream:
    """``transport``: "httpx" (httpcore) or "httpx-aiohttp" (aiohttp under httpx's API)."""

    def __init__(self, transport: str = "httpx") -> None:
        limits = httpx.Limits(
            max_connections=1000, max_keepalive_connections=1000, keepalive_expiry=60
        )
        if transport == "httpx-aiohttp":
            from httpx_aiohttp import AiohttpTransport

            self._client = httpx.AsyncClient(transport=AiohttpTransport(), timeout=None)
        else:
            self._client = httpx.AsyncClient(limits=limits, timeout=None)

    async def send(
        self,
        method: str,
        url: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        *,
        connect_timeout: float,
        read_timeout: float,
    ) -> _HttpxResponse:
        host = url.split("/", 3)[2] if "://" in url else url
        timeout = httpx.Timeout(read_timeout, connect=connect_timeout, pool=None)
        request = self._client.build_request(
            method, url, headers=list(headers), content=body or None, timeout=timeout
        )
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise _translate(exc, host) from exc
        return _HttpxResponse(resp, host)

    async def aclose(self) -> None:
        await self._client.aclose()
