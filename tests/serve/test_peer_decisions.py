"""A worker asks its peers for a decision it does not hold (recroute.serve.peer_decisions)."""

from __future__ import annotations

import asyncio
import os

from recroute.serve.peer_decisions import ask_peers, serve_peers, socket_path


def test_the_peer_that_holds_a_decision_answers_and_the_others_are_skipped(tmp_path):
    held = {"d-7": {"decision_id": "d-7", "chosen": "math-llm", "propensity": 0.98}}
    asked: list[str] = []

    def peer_explain(decision_id: str):
        asked.append(decision_id)
        return held.get(decision_id)

    async def scenario():
        own = await serve_peers(tmp_path, lambda _id: {"never": "asked"})  # this process: never asked itself
        peer = await serve_peers(tmp_path, peer_explain, pid=os.getpid() + 1)
        dead = socket_path(tmp_path, os.getpid() + 2)
        dead.write_bytes(b"")  # a socket file left by a worker that died: skipped
        try:
            return (await ask_peers(tmp_path, "d-7"), await ask_peers(tmp_path, "d-8"),
                    await ask_peers(tmp_path, "two\nlines"))
        finally:
            own.close()
            peer.close()

    found, missing, refused = asyncio.run(scenario())
    assert found == held["d-7"]
    assert missing is None and refused is None
    assert asked == ["d-7", "d-8"]  # an id with a newline is never sent


def test_no_peers_means_none(tmp_path):
    assert asyncio.run(ask_peers(tmp_path, "d-1")) is None
