"""The gateway's forwarding: send a chat request to the LLMs of a decision's order until one answers
(fallback on a connection error, timeout, 5xx or 429; per-upstream connect / first-byte / per-read /
total timeouts; circuit breakers consulted and told), and rewrite the answer's ``model`` (whole JSON
or server-sent events) to the LLM's name."""

from __future__ import annotations

import asyncio
import email.utils
import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Sequence

import orjson

from recroute.serve.gateway_metrics import GatewayMetrics
from recroute.serve.upstream_client import Target, UpstreamError
from recroute.serve.upstreams import Upstream


@dataclass
class Attempt:
    """The outcome of forwarding to the LLMs of a decision's order."""

    llm: str | None = None  # the LLM that answered (None: every try failed)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (llm, kind) of each failed try
    response: Any = None  # UpstreamResponse: the answer, a stream's open response, or the last 5xx / 429
    first: bytes = b""  # a stream's first chunk, read before committing to it
    chunks: AsyncIterator[bytes] | None = None
    upstream_s: float = 0.0  # seconds spent waiting on upstreams (every try)
    deadline: float | None = None  # a stream's total-timeout deadline (event-loop time), None: none


@functools.lru_cache(maxsize=1024)
def _request_parts(upstream: Upstream, stream: bool) -> tuple[Target, bytes]:
    """(the parsed chat URL, the request's header lines) of one upstream, built once."""
    lines = [b"Content-Type: application/json", b"Accept: " + (b"text/event-stream" if stream else b"application/json")]
    if upstream.api_key:
        lines.append(b"Authorization: Bearer " + upstream.api_key.encode())
    return Target.parse(upstream.chat_url), b"".join(line + b"\r\n" for line in lines)


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    return exc.kind if isinstance(exc, UpstreamError) else "closed"


def retry_after_s(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (a number of seconds or an HTTP date); None when
    absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


async def forward(client, upstreams: Mapping[str, Upstream], order: Sequence[str], body: dict, stream: bool,
                  max_tries: int, metrics: GatewayMetrics, breakers=None) -> Attempt:
    """Try the LLMs of ``order`` (at most ``max_tries`` sent requests) until one answers without a
    connection error, timeout, 5xx or 429. A stream is committed to once its first chunk arrived (no
    retry after that). ``breakers`` (the host's ``Breakers``): an LLM whose breaker refuses is skipped
    (``breaker_open``, not sent), and every answer or failure is reported to it; a 429 keeps its LLM
    out of routing for its ``Retry-After``."""
    attempt = Attempt()
    rows = {n: i for i, n in enumerate(breakers.names)} if breakers is not None else {}
    loop = asyncio.get_running_loop()
    sent = 0
    for i, llm in enumerate(order):
        if sent >= max_tries:
            break
        upstream = upstreams[llm]
        row = rows.get(llm)
        if row is not None and not breakers.acquire(row):
            attempt.failed.append((llm, "breaker_open"))
            continue
        sent += 1
        target, headers = _request_parts(upstream, stream)
        payload = orjson.dumps({**body, "model": upstream.model})
        now = loop.time()
        total_at = now + upstream.total_timeout_s if upstream.total_timeout_s else None
        head_at = now + upstream.first_byte_timeout_s if upstream.first_byte_timeout_s else None
        if total_at is not None and (head_at is None or total_at < head_at):
            head_at = total_at
        response = None
        started = time.perf_counter()
        try:
            async with asyncio.timeout_at(head_at):
                response = await client.post(target, headers, payload, upstream.connect_timeout_s or upstream.timeout_s,
                                             upstream.timeout_s)
                if stream and response.status_code == 200:
                    chunks = response.aiter_bytes()
                    first = b""
                    while not first:  # an empty chunk is not a byte: keep reading
                        first = await chunks.__anext__()
            if response.status_code >= 500 or response.status_code == 429:
                async with asyncio.timeout_at(total_at):
                    await response.aread()
                kind = f"http_{response.status_code}"
            elif not stream or response.status_code != 200:
                async with asyncio.timeout_at(total_at):
                    await response.aread()
                attempt.upstream_s += time.perf_counter() - started
                attempt.llm, attempt.response = llm, response
                if row is not None:
                    breakers.success(row)
                return attempt
            else:
                attempt.upstream_s += time.perf_counter() - started
                attempt.llm, attempt.response = llm, response
                attempt.first, attempt.chunks, attempt.deadline = first, chunks, total_at
                if row is not None:
                    breakers.success(row)
                return attempt
        except (UpstreamError, StopAsyncIteration, TimeoutError) as exc:
            kind = "closed" if isinstance(exc, StopAsyncIteration) else _failure_kind(exc)
            if response is not None:
                await response.aclose()
        attempt.upstream_s += time.perf_counter() - started
        attempt.failed.append((llm, kind))
        metrics.upstream_error(llm, kind, fell_back=sent < max_tries and i + 1 < len(order))
        if row is not None:
            if kind == "http_429":
                breakers.rate_limited(row, retry_after_s(response.headers.get("retry-after")))
            else:
                breakers.failure(row)
        attempt.response = response if kind.startswith("http_") else None
    return attempt


def rewrite_model(payload: bytes, llm: str) -> tuple[bytes, dict | None]:
    """(the JSON body with ``model`` set to ``llm``, its ``usage`` or None); non-JSON passes unchanged."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload, None
    if not isinstance(doc, dict):
        return payload, None
    if "model" in doc:
        doc["model"] = llm
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    return orjson.dumps(doc), usage


class SSERewriter:
    """Feeds raw SSE bytes, yields whole events with each ``data:`` JSON's ``model`` set to the LLM name."""

    def __init__(self, llm: str) -> None:
        self.llm = llm
        self.buffer = b""
        self.usage: dict | None = None

    def feed(self, chunk: bytes) -> bytes:
        self.buffer += chunk.replace(b"\r\n", b"\n")
        events, sep, self.buffer = self.buffer.rpartition(b"\n\n")
        return self._rewrite(events + sep) if sep else b""

    def flush(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        return self._rewrite(rest) if rest else b""

    def _rewrite(self, block: bytes) -> bytes:
        lines = block.split(b"\n")
        for i, line in enumerate(lines):
            if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                data, usage = rewrite_model(line[5:].strip(), self.llm)
                lines[i] = b"data: " + data
                if usage:
                    self.usage = usage
        return b"\n".join(lines)


def _tokens(usage: dict | None) -> tuple[int | None, int | None]:
    if not usage:
        return None, None
    inp, out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (inp if isinstance(inp, int) else None), (out if isinstance(out, int) else None)
