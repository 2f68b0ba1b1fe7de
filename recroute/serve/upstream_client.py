"""A small HTTP/1.1 client for the gateway's upstream calls: keep-alive connections per upstream,
responses parsed by httptools (uvicorn's C parser), bodies streamed as they arrive.

It does what the gateway's forwarding needs and no more: POST a body with headers, read the status
and headers, then the body whole or chunk by chunk (Content-Length or chunked), with a connect
timeout and a per-read timeout. Measured on the gateway, httpx + httpcore spent more CPU per
request than the whole routing decision (its pool scans and polls every idle connection on each
request); here an idle connection closed by its server is known from the event loop's
``connection_lost``, and a request whose reused connection closes before any byte of an answer is
sent once more on a fresh one. http and https (the system's CA store); no proxies, no HTTP/2.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass
from typing import AsyncIterator
from urllib.parse import urlsplit

import httptools


class UpstreamError(Exception):
    """An upstream call failed: ``kind`` is "connect", "timeout" or "closed"."""

    kind = "closed"


class UpstreamConnectError(UpstreamError):
    kind = "connect"


class UpstreamTimeout(UpstreamError, TimeoutError):
    kind = "timeout"


@dataclass(frozen=True)
class Target:
    """A parsed upstream URL: where to connect and the request line's path."""

    scheme: str
    host: str
    port: int
    path: bytes
    host_header: bytes

    @classmethod
    def parse(cls, url: str) -> "Target":
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        default = port == (443 if parts.scheme == "https" else 80)
        host = parts.hostname if default else f"{parts.hostname}:{port}"
        return cls(parts.scheme, parts.hostname, port, path.encode(), host.encode())


class UpstreamResponse:
    """One answer: ``status_code`` and ``headers`` (lower-case names) once the head arrived; the body
    with :meth:`aread` (then ``content``) or :meth:`aiter_bytes`; :meth:`aclose` drops the connection
    when the body was not read to its end."""

    def __init__(self, conn: "_Connection", read_timeout: float | None) -> None:
        self._conn = conn
        self._read_timeout = read_timeout
        self._head = asyncio.get_running_loop().create_future()
        self._chunks: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self.complete = False
        self.error: UpstreamError | None = None
        self.got_bytes = False
        self.status_code = 0
        self.headers: dict[str, str] = {}
        self.content = b""

    # called by the connection
    def _on_head(self, status: int, headers: dict[str, str]) -> None:
        self.status_code, self.headers = status, headers
        if not self._head.done():
            self._head.set_result(None)

    def _on_chunk(self, data: bytes) -> None:
        self._chunks.append(data)
        self._wake.set()

    def _on_complete(self) -> None:
        self.complete = True
        self._wake.set()

    def _on_error(self, error: UpstreamError) -> None:
        if self.complete:
            return
        self.error = error
        if not self._head.done():
            self._head.set_exception(error)
        self._wake.set()

    async def _wait_head(self) -> None:
        await _within(self._head, self._read_timeout)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body's chunks as they arrive (a chunk may hold several network reads)."""
        while True:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                yield data
                continue
            if self.complete:
                return
            if self.error is not None:
                raise self.error
            self._wake.clear()
            await _within(self._wake.wait(), self._read_timeout)

    async def aread(self) -> bytes:
        """The whole body (also kept in ``content``)."""
        parts = [chunk async for chunk in self.aiter_bytes()]
        self.content = b"".join(parts)
        return self.content

    async def aclose(self) -> None:
        if not self.complete:
            self._conn.close()


async def _within(awaitable, seconds: float | None):
    if seconds is None:
        return await awaitable
    try:
        async with asyncio.timeout(seconds):
            return await awaitable
    except TimeoutError:
        raise UpstreamTimeout(f"no answer within {seconds:g} s") from None


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses each answer into the current UpstreamResponse."""

    def __init__(self, pool: deque, max_idle: int) -> None:
        self.pool, self.max_idle = pool, max_idle
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.response: UpstreamResponse | None = None
        self.closed = False
        self._headers: dict[str, str] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        response = self.response
        if response is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        response.got_bytes = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            response._on_error(UpstreamError(f"malformed answer from the upstream ({exc})"))
            self.close()

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.response is not None:
            self.response._on_error(UpstreamError("the upstream closed the connection"))
            self.response = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        if self.response is not None:
            self.response._on_head(self.parser.get_status_code(), self._headers)

    def on_body(self, body: bytes) -> None:
        if self.response is not None:
            self.response._on_chunk(body)

    def on_message_complete(self) -> None:
        response, self.response = self.response, None
        keep = self.parser.should_keep_alive() and not self.closed
        if response is not None:
            response._on_complete()
        if keep and len(self.pool) < self.max_idle:
            self.pool.append(self)
        else:
            self.close()


class UpstreamClient:
    """Keep-alive HTTP/1.1 connections per (scheme, host, port), at most ``max_idle`` idle each.
    ``resend_on_stale``: send a request once more on a fresh connection when its reused one closed
    before any byte of an answer (an idle connection its server had just closed)."""

    def __init__(self, max_idle: int = 256, resend_on_stale: bool = True) -> None:
        self.max_idle = max_idle
        self.resend_on_stale = resend_on_stale
        self._pools: dict[tuple, deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, target: Target, headers: bytes, body: bytes, connect_timeout: float | None,
                   read_timeout: float | None) -> UpstreamResponse:
        """POST ``body`` to ``target`` with ``headers`` (b"Name: value\\r\\n" lines, no Host or
        Content-Length) and wait for the answer's head. UpstreamError on failure."""
        request = (b"POST " + target.path + b" HTTP/1.1\r\nHost: " + target.host_header + b"\r\n" + headers
                   + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        pool = self._pools.setdefault((target.scheme, target.host, target.port), deque())
        for fresh in (False, True):
            conn = None if fresh else self._idle(pool)
            if conn is None:
                conn = await self._connect(target, pool, connect_timeout)
                fresh = True
            response = UpstreamResponse(conn, read_timeout)
            conn.response = response
            try:
                conn.transport.write(request)
                await response._wait_head()
                return response
            except UpstreamError as exc:
                conn.close()
                if fresh or response.got_bytes or isinstance(exc, UpstreamTimeout) or not self.resend_on_stale:
                    raise
            except BaseException:  # cancelled (a deadline of the caller): the connection is unusable
                conn.close()
                raise
        raise AssertionError("unreachable")

    def _idle(self, pool: deque) -> _Connection | None:
        while pool:
            conn = pool.pop()
            if not conn.closed and not conn.transport.is_closing():
                return conn
        return None

    async def _connect(self, target: Target, pool: deque, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        context = None
        if target.scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(lambda: _Connection(pool, self.max_idle), target.host, target.port,
                                                       ssl=context, server_hostname=target.host if context else None)
        except TimeoutError:
            raise UpstreamTimeout(f"no connection to {target.host}:{target.port} within {timeout:g} s") from None
        except (OSError, ssl.SSLError) as exc:
            raise UpstreamConnectError(f"cannot connect to {target.host}:{target.port} ({exc})") from None
        return conn

    async def aclose(self) -> None:
        for pool in self._pools.values():
            while pool:
                pool.pop().close()
