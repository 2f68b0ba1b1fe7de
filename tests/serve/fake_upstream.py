"""A small OpenAI-compatible chat server for the gateway tests and benchmark (plain asyncio HTTP/1.1).

    python tests/serve/fake_upstream.py --names a,b,c [--port 0] [--key-env VAR]

prints ``PORT <n>`` once it listens on 127.0.0.1. Each name is an LLM served at ``/<name>/v1``:
``POST /<name>/v1/chat/completions`` answers deterministically ``"<name> says: <last user text>"``
(``usage``: words in the messages / in the answer), as JSON or, with ``"stream": true``, as SSE chunks
of one word each (chunked transfer encoding), plus a usage chunk when ``stream_options.include_usage``.

Faults per name, set with ``POST /_control {"name": ..., "mode": ...}``: ``ok``, ``error500``,
``error400`` (an OpenAI-style 400), ``error429`` (rate-limited, with ``Retry-After: <"retry_after" of the
control, default 1>``), ``hang`` (never answers), ``close`` (closes the connection without
a byte), ``break`` (streams the first event, then closes), ``slow`` (streams an event every 0.2 s); an optional ``"delay_ms"`` makes every answer
of that name wait that long first (a stand-in for an LLM's time to answer). ``GET /_requests?name=N`` returns the
last 50 requests that name received (method, path, headers, body), ``GET /_count?name=N`` how many it
received in all. With ``--key-env VAR`` every chat request
must carry ``Authorization: Bearer $VAR`` (else 401).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from urllib.parse import parse_qs, urlsplit

MODES = ("ok", "error500", "error400", "error429", "hang", "close", "break", "slow")


class Upstream:
    def __init__(self, names: list[str], key: str | None) -> None:
        self.modes = {name: "ok" for name in names}
        self.delays = {name: 0.0 for name in names}
        self.retry_after = {name: "1" for name in names}
        self.requests: dict[str, list[dict]] = {name: [] for name in names}  # the last 50 of each
        self.counts = {name: 0 for name in names}  # every request each name received
        self.key = key

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        key, value = line.split(":", 1)
                        headers[key.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                keep = await self.respond(method, target, headers, body, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    async def respond(self, method: str, target: str, headers: dict, body: bytes, writer) -> bool:
        url = urlsplit(target)
        parts = url.path.strip("/").split("/")
        if url.path == "/_control" and method == "POST":
            doc = json.loads(body)
            if doc.get("name") not in self.modes or doc.get("mode") not in MODES:
                return await send(writer, 400, {"error": "unknown name or mode"})
            self.modes[doc["name"]] = doc["mode"]
            self.delays[doc["name"]] = float(doc.get("delay_ms", self.delays[doc["name"]] * 1e3)) / 1e3
            self.retry_after[doc["name"]] = str(doc.get("retry_after", self.retry_after[doc["name"]]))
            return await send(writer, 200, {"ok": True})
        if url.path == "/_requests":
            name = parse_qs(url.query).get("name", [""])[0]
            return await send(writer, 200, self.requests.get(name, []))
        if url.path == "/_count":
            return await send(writer, 200, self.counts.get(parse_qs(url.query).get("name", [""])[0], 0))
        if len(parts) != 4 or parts[0] not in self.modes or parts[1:] != ["v1", "chat", "completions"]:
            return await send(writer, 404, {"error": {"message": f"no route {url.path}"}})
        name = parts[0]
        self.counts[name] += 1
        self.requests[name].append({"method": method, "path": url.path, "headers": headers,
                                    "body": body.decode("utf-8", "replace")})
        del self.requests[name][:-50]
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            return await send(writer, 401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        mode = self.modes[name]
        if self.delays[name] > 0:
            await asyncio.sleep(self.delays[name])
        if mode == "hang":
            await asyncio.sleep(3600)
        if mode == "close":
            return False
        if mode == "error500":
            return await send(writer, 500, {"error": {"message": f"{name} is down", "type": "server_error"}})
        if mode == "error429":
            return await send(writer, 429, {"error": {"message": f"{name}: rate limit", "type": "rate_limit_error"}},
                              {"retry-after": self.retry_after[name]})
        if mode == "error400":
            return await send(writer, 400, {"error": {"message": f"{name} rejects this", "type": "invalid_request_error",
                                                      "param": None, "code": "bad"}})
        request = json.loads(body)
        text = last_user_text(request.get("messages", []))
        answer = f"{name} says: {text}"
        words = answer.split(" ")
        n_in = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
        usage = {"prompt_tokens": n_in, "completion_tokens": len(words), "total_tokens": n_in + len(words)}
        model = request.get("model")
        if not request.get("stream"):
            return await send(writer, 200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": usage})
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        events = [{"index": 0, "delta": {"role": "assistant", "content": word if i == 0 else " " + word},
                   "finish_reason": None} for i, word in enumerate(words)]
        events.append({"index": 0, "delta": {}, "finish_reason": "stop"})
        chunks = [{"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                   "choices": [choice]} for choice in events]
        if (request.get("stream_options") or {}).get("include_usage"):
            chunks.append({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": model,
                           "choices": [], "usage": usage})
        for i, chunk in enumerate(chunks):
            await write_chunk(writer, b"data: " + json.dumps(chunk).encode() + b"\n\n")
            if mode == "break":
                return False
            if mode == "slow":
                await asyncio.sleep(0.2)
        await write_chunk(writer, b"data: [DONE]\n\n")
        await write_chunk(writer, b"")
        return True


def last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


async def write_chunk(writer, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    await writer.drain()


async def send(writer, status: int, doc, headers: dict | None = None) -> bool:
    body = json.dumps(doc).encode()
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 429: "Too Many Requests",
              500: "Internal Server Error"}[status]
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
                 f"x-request-id: fake-{status}\r\n{extra}\r\n".encode() + body)
    await writer.drain()
    return True


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--names", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key-env", default=None)
    args = parser.parse_args()
    upstream = Upstream(args.names.split(","), os.environ[args.key_env] if args.key_env else None)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", args.port, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
