"""The upstream transport: httpx's interface over a small HTTP/1.1 connection pool.

The engine and the health checks speak ``httpx.AsyncClient`` (timeouts, streams, the
httpx exceptions they map to lai errors); this is the transport behind that client.
Measured with ``bench/run.py`` and its stage runs (bench/README.md), the client side of
a request was the largest part of what lai added: httpx's own pool (httpcore) collapsed
under concurrency (~100 req/s at 32 clients), aiohttp under httpx cost ~340 us per
request. This transport writes a request with one ``write`` and parses the response with
httptools (llhttp, the parser of Node.js and uvicorn) as it is read.

What it does: keep-alive connections per origin (``http`` and ``https``, TLS through
the SSL context), at most ``max_connections`` in all, idle ones kept up to
``max_keepalive_connections`` for ``keepalive_expiry`` seconds; bodies framed by
Content-Length, chunked encoding or the end of the connection; streamed response
bodies with back-pressure; the connect, pool and read timeouts of the request. A
response closed before its end closes its connection, which is how an upstream learns
that a request was cancelled. A request that fails on a reused connection before any
byte of an answer, closed cleanly (the server had just closed it as idle), is sent once
more on a new connection; a reset is a failure like any other.
No proxies, no HTTP/2: lai talks to model servers and APIs directly.

The engine's own chat calls skip httpx's client layers when the client is a plain one
over this transport (``post`` and ``open_stream`` below): the same bytes go upstream,
the same errors come back, ~65 us less CPU a request (bench/README.md, round two). A 200
whose body is not encoded also skips httpx's response: ``Answer`` (read whole) and
``Streamed`` (read as it comes); anything else is an ``httpx.Response`` as before.

Failures are the httpx exceptions httpcore raises for the same events, so ``lai.engine``
keeps one vocabulary: ``ConnectError`` (the ``OSError`` as its cause), ``ConnectTimeout``,
``PoolTimeout``, ``ReadTimeout``, ``RemoteProtocolError`` (closed early, malformed),
``ReadError`` (reset) and ``WriteError``.

Inside: ``_connection`` (one connection: the protocol, httptools' callbacks, waiting
for bytes), ``_pool`` (``PoolTransport`` and its answers); here, the engine's calls.
"""

from __future__ import annotations

import httpx

from lai.transport._pool import BODY_COMPLETE, Answer, PoolTransport, Streamed

__all__ = ["BODY_COMPLETE", "Answer", "NoCookies", "PoolTransport", "Streamed", "open_stream",
           "post"]


class NoCookies(httpx.Cookies):
    """A cookie jar that keeps nothing, for the client in front of this transport.

    The one client serves every user's requests, so a cookie an upstream set on one
    answer would ride along on everyone's later requests. Keeping none also skips
    httpx's cookie parsing of every response (~6% of the proxy's time at 1 client).
    """

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


async def post(client: httpx.AsyncClient, url: httpx.URL, content: bytes,
               headers: dict[str, str], timeout: httpx.Timeout) -> httpx.Response | Answer:
    """``client.post(url, content=..., headers=..., timeout=...)``, read whole: through
    ``PoolTransport.post`` when ``client`` is a plain client over this transport (no
    mounts, hooks or auth), else through ``client``. The same bytes go upstream either
    way (the client's default headers included). A 200 whose body is not encoded comes
    back as an ``Answer``; anything else (errors, a gzip body, which httpx decodes) as
    an ``httpx.Response``. Raises the httpx errors ``client.post`` raises."""
    transport = _lean(client)
    if transport is None:
        return await client.post(url, content=content, headers=headers, timeout=timeout)
    answer = await transport.post(client, url, headers, content, timeout.as_dict())
    if answer.status_code == 200 and not answer.encoded:
        return answer
    return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content,
                          request=httpx.Request("POST", url),
                          extensions={"http_version": b"HTTP/1.1",
                                      "reason_phrase": answer.reason})


async def open_stream(client: httpx.AsyncClient, url: httpx.URL, content: bytes,
                      headers: dict[str, str],
                      timeout: httpx.Timeout) -> httpx.Response | Streamed:
    """``client.send(client.build_request("POST", ...), stream=True)``, through
    ``PoolTransport.open`` when ``client`` is a plain client over this transport (see
    ``post``): a 200 whose body is not encoded comes back as a ``Streamed``, anything
    else as an ``httpx.Response``. The caller owns the response and must close it."""
    transport = _lean(client)
    if transport is None:
        request = client.build_request("POST", url, content=content, headers=headers,
                                       timeout=timeout)
        return await client.send(request, stream=True)
    return await transport.open(client, url, headers, content, timeout.as_dict())


def _lean(client: httpx.AsyncClient) -> PoolTransport | None:
    """The client's PoolTransport when nothing of the client's own would change a
    request (no mounts, hooks or auth), else None."""
    transport = client._transport
    if (not isinstance(transport, PoolTransport) or client._mounts or client._auth is not None
            or client._event_hooks["request"] or client._event_hooks["response"]):
        return None
    return transport
