"""A cheap HTTP/1.1 load generator (asyncio, raw sockets, keep-alive), and a trivial server to
measure the generator's own ceiling against.

    python benchmarks/loadgen.py load --url http://127.0.0.1:8000/route --payloads p.jsonl \\
        --concurrency 16 --seconds 8          # prints one JSON object
    python benchmarks/loadgen.py trivial --port 8001   # answers every request 200 {"ok":true}

``load`` opens ``--concurrency`` keep-alive connections; each sends its next request as soon as the
previous answer is complete (closed loop), cycling through the payloads (one JSON body per line;
no payload file: GET). After ``--warmup`` seconds it records, for ``--seconds``, every request's
latency and status, and the ``x-recroute-batch-size`` header when the server sends one. Requests
are prebuilt bytes and answers are parsed by Content-Length, so the client spends a few tens of
microseconds per request; its ceiling on this machine is what ``load`` reaches against
``trivial``. Uses uvloop when installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

import numpy as np

BATCH_HEADER = b"x-recroute-batch-size:"


class _Connection(asyncio.Protocol):
    """One keep-alive connection: ``request(data)`` resolves to (status, batch size or None) when the
    answer's body is complete."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport = None
        self.closed: asyncio.Future = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._try_complete()

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection closed by the server ({exc})"))
        if not self.closed.done():
            self.closed.set_result(None)

    def request(self, data: bytes) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def _try_complete(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        batch = None
        for line in head.split(b"\r\n")[1:]:
            if line.startswith(b"content-length:"):
                length = int(line[15:])
            elif line.startswith(BATCH_HEADER):
                batch = int(line[len(BATCH_HEADER):])
            elif line.startswith(b"transfer-encoding:"):
                self.waiter.set_exception(RuntimeError("chunked answers are not supported by this load generator"))
                return
        if len(self.buffer) < end + 4 + length:
            return
        status = int(head[9:12])
        del self.buffer[: end + 4 + length]
        waiter, self.waiter = self.waiter, None
        waiter.set_result((status, batch))


def _requests(url: str, payload_file: str | None) -> list[bytes]:
    parts = urlsplit(url)
    host = parts.netloc
    path = parts.path or "/"
    if not payload_file:
        return [f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()]
    out = []
    with open(payload_file, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                body = json.dumps(json.loads(line), separators=(",", ":")).encode()
                out.append(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                           f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    if not out:
        raise SystemExit(f"{payload_file}: no payloads")
    return out


async def load(url: str, payload_file: str | None, concurrency: int, seconds: float, warmup: float) -> dict:
    """Closed-loop load; latencies of requests started in the measured window."""
    parts = urlsplit(url)
    requests = _requests(url, payload_file)
    loop = asyncio.get_running_loop()
    connections = []
    for _ in range(concurrency):
        _, conn = await loop.create_connection(_Connection, parts.hostname, parts.port)
        connections.append(conn)
    start = time.perf_counter()
    t0, t1 = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    batches: list[int] = []
    last_done = [t0]

    async def client(i: int, conn: _Connection) -> None:
        n = i
        while True:
            began = time.perf_counter()
            if began >= t1:
                return
            try:
                status, batch = await conn.request(requests[n % len(requests)])
            except (ConnectionError, RuntimeError) as exc:
                status, batch = type(exc).__name__, None
            done = time.perf_counter()
            n += concurrency
            if began >= t0:
                latencies.append(done - began)
                statuses[str(status)] = statuses.get(str(status), 0) + 1
                last_done[0] = max(last_done[0], done)
                if batch is not None:
                    batches.append(batch)
            if not isinstance(status, int):
                return

    await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
    for conn in connections:
        conn.transport.close()
    wall = max(last_done[0] - t0, 1e-9)
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"concurrency": concurrency, "requests": len(latencies), "seconds": wall,
            "requests_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "statuses": statuses,
            "mean_batch_prompts": float(np.mean(batches)) if batches else None}


class _Trivial(asyncio.Protocol):
    """Answers each complete request (headers + Content-Length body) with a fixed 200."""

    ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}'

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, bytearray()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            length = 0
            for line in bytes(self.buffer[:end]).lower().split(b"\r\n")[1:]:
                if line.startswith(b"content-length:"):
                    length = int(line[15:])
            if len(self.buffer) < end + 4 + length:
                return
            del self.buffer[: end + 4 + length]
            self.transport.write(self.ANSWER)


async def trivial(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Trivial, "127.0.0.1", port)
    print(f"trivial server on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


def _run(coro):
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    p_load = sub.add_parser("load", help="closed-loop load; prints one JSON object")
    p_load.add_argument("--url", required=True)
    p_load.add_argument("--payloads", default=None, help="JSON Lines of request bodies (POST); none: GET")
    p_load.add_argument("--concurrency", type=int, default=16)
    p_load.add_argument("--seconds", type=float, default=8.0)
    p_load.add_argument("--warmup", type=float, default=1.0)
    p_triv = sub.add_parser("trivial", help="a server answering every request 200")
    p_triv.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.mode == "trivial":
        _run(trivial(args.port))
        return
    result = _run(load(args.url, args.payloads, args.concurrency, args.seconds, args.warmup))
    json.dump(result, sys.stdout)
    print()


if __name__ == "__main__":
    main()
