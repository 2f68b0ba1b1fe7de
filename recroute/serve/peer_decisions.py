"""Decisions of the other workers of one gateway, explained by the worker that made them.

With ``--workers N`` each worker keeps its own ring of recent decisions (recroute.serve.recent_decisions)
and the kernel hands a ``GET /v1/decisions/{id}`` to any worker. So every worker also answers its peers
on a Unix socket in the host's private folder (``decisions-<pid>.sock``): one line in (the decision id),
one JSON line out (the explanation, or ``null`` when it does not hold that decision). A worker asked for
a decision it does not hold asks each peer in turn; the routing path pays nothing for this.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any, Callable

import orjson

PEER_TIMEOUT_S = 10.0  # longest one peer may take to explain a decision (it encodes the prompt again)
MAX_ID_BYTES = 512  # a decision id is a short token; a longer line is refused unread
_SOCKET_GLOB = "decisions-*.sock"


def socket_path(folder: str | Path, pid: int | None = None) -> Path:
    """This worker's (or ``pid``'s) answering socket in the host's private folder."""
    return Path(folder) / f"decisions-{os.getpid() if pid is None else pid}.sock"


async def serve_peers(folder: str | Path, explain: Callable[[str], dict[str, Any] | None],
                      pid: int | None = None) -> asyncio.AbstractServer:
    """Answer the peers' lookups with ``explain(decision_id)`` (run off the event loop) until closed, on
    the socket of this process (or of ``pid``)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            decision_id = line.decode("utf-8", "replace").strip()
            found = None
            if 0 < len(line) <= MAX_ID_BYTES:
                found = await asyncio.to_thread(explain, decision_id)
            writer.write(orjson.dumps(found, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
            await writer.drain()
        finally:
            writer.close()

    path = socket_path(folder, pid)
    path.unlink(missing_ok=True)  # a socket left by a dead process with this pid
    return await asyncio.start_unix_server(answer, path=str(path))


async def ask_peers(folder: str | Path, decision_id: str) -> dict[str, Any] | None:
    """The explanation from the first peer that holds ``decision_id``, or None (a peer that is gone,
    slow or broken is skipped: its decisions are lost with it)."""
    if "\n" in decision_id or len(decision_id.encode()) >= MAX_ID_BYTES:
        return None
    own = socket_path(folder)
    for path in sorted(Path(folder).glob(_SOCKET_GLOB)):
        if path == own:
            continue
        try:
            found = await asyncio.wait_for(_ask(path, decision_id), PEER_TIMEOUT_S)
        except (OSError, asyncio.TimeoutError, orjson.JSONDecodeError):
            continue
        if isinstance(found, dict):
            return found
    return None


async def _ask(path: Path, decision_id: str) -> Any:
    reader, writer = await asyncio.open_unix_connection(str(path))
    try:
        writer.write(decision_id.encode() + b"\n")
        await writer.drain()
        return orjson.loads(await reader.readline())
    finally:
        writer.close()
