"""The upstream transport: httpx's interface, aiohttp's connection pool underneath.

The engine and the health checks speak ``httpx.AsyncClient`` (timeouts, streams, the
httpx exceptions they map to lai errors). Under concurrency httpx's own pool (httpcore)
spends most of a request assigning connections: measured with ``bench/run.py``, 32
clients through lai got ~100 req/s with it. aiohttp's pool and its C HTTP parser do the
same work for a fraction of the cost, so ``AiohttpTransport`` sits behind the client.

Failures are raised as the httpx exceptions httpcore would raise for the same event, so
``lai.engine`` keeps one vocabulary: a refused connection is ``ConnectError`` (with the
``OSError`` as its cause), a connect timeout ``ConnectTimeout``, a read timeout
``ReadTimeout``, a connection closed early ``RemoteProtocolError``, a reset ``ReadError``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import httpx


@contextlib.contextmanager
def _httpx_errors(request: httpx.Request) -> Iterator[None]:
    try:
        yield
    except aiohttp.ClientConnectorError as exc:
        # Connection refused, unreachable, DNS, TLS: nothing was sent.
        raise httpx.ConnectError(str(exc), request=request) from exc.os_error
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timeout", request=request) from exc
    except aiohttp.SocketTimeoutError as exc:
        raise httpx.ReadTimeout(str(exc) or "read timeout", request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a complete response.", request=request
        ) from exc
    except aiohttp.ClientPayloadError as exc:
        raise httpx.RemoteProtocolError(
            f"peer closed connection without sending complete message body ({exc})",
            request=request,
        ) from exc
    except aiohttp.ClientResponseError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientOSError as exc:
        raise httpx.ReadError(str(exc) or "connection reset", request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request) from exc


class _Body(httpx.AsyncByteStream):
    """An aiohttp response body as an httpx stream. Closing it before the end closes the
    connection, which is how the upstream learns that the request was cancelled."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        with _httpx_errors(self._request):
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk

    async def aclose(self) -> None:
        if self._response.content.at_eof():
            self._response.release()  # back to the pool
        else:
            self._response.close()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` over one ``aiohttp.ClientSession``, made on the
    first request (aiohttp wants a running loop) and closed by ``aclose``."""

    def __init__(self, *, limits: httpx.Limits, verify: ssl.SSLContext | None = None) -> None:
        self._limits = limits
        self._ssl = verify if verify is not None else httpx.create_ssl_context(trust_env=False)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=(
                self._limits.keepalive_expiry if self._limits.keepalive_expiry is not None
                else 15.0
            ),
            ssl=self._ssl,
        )
        return aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),  # httpx.AsyncClient keeps the cookies
            auto_decompress=False,  # httpx decodes Content-Encoding itself
            trust_env=False,
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._session
        if session is None or session.closed:
            session = self._session = self._open()
        t: dict[str, Any] = request.extensions.get("timeout", {})
        pool, connect = t.get("pool"), t.get("connect")
        timeout = aiohttp.ClientTimeout(
            total=None,
            # aiohttp's ``connect`` covers waiting for a pooled connection too.
            connect=None if pool is None or connect is None else pool + connect,
            sock_connect=connect,
            sock_read=t.get("read"),
        )
        try:
            data: bytes | None = request.content or None
        except httpx.RequestNotRead:
            data = await request.aread() or None
        with _httpx_errors(request):
            response = await session.request(
                request.method,
                str(request.url),
                headers=request.headers.multi_items(),
                data=data,
                allow_redirects=False,
                timeout=timeout,
            )
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_Body(response, request),
            request=request,
            extensions={"http_version": b"HTTP/1.1",
                        "reason_phrase": (response.reason or "").encode()},
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
