"""Hot reload of a gateway worker's routing bundle: load and verify a new bundle off the event loop,
swap it in atomically, retire the old one once its decisions in flight are done, and follow the
host's reload board so that every worker of the host serves the same bundle.

A request takes ``live.decider`` once, when it starts, and decides with it to the end: requests in
flight finish on the old bundle while new ones get the new. A bundle that fails verification (a
missing, truncated or modified file: ``RoutingBundle.load``) or does not fit the upstreams is
refused with the reason, and the old one keeps serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from typing import Awaitable, Callable

from recroute.errors import DataError, SavedArtifactError
from recroute.serve.shared import HostState

logger = logging.getLogger("recroute.gateway")

RELOAD_ERRORS = (SavedArtifactError, DataError, OSError, ValueError)
WATCH_S = 0.5  # how often a worker looks at the reload board (a poke signal wakes it at once)
RETIRE_WAIT_S = 120.0  # longest an old decider waits for its decisions in flight before it is closed
POKE = signal.SIGUSR1  # "look at the board now" (reload, metrics flush), sent between workers


class LiveBundle:
    """The decider a worker serves with (``decider``), swapped by :meth:`swap_to`.

    ``make_decider(bundle, previous)`` builds (and checks) a decider for a loaded bundle;
    ``host``: the host's shared state, whose board says which bundle to serve; ``slot``: this
    worker's slot on it.
    """

    def __init__(self, decider, make_decider: Callable, host: HostState, slot: int = 0) -> None:
        self.decider = decider
        self.make_decider = make_decider
        self.host, self.slot = host, slot
        self.generation = host.board.generation
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        host.board.report(slot, decider.checksum)

    @property
    def checksum(self) -> str | None:
        return self.decider.checksum

    async def swap_to(self, path: str) -> str | None:
        """Load, verify and swap in the bundle at ``path``; its checksum. Raises one of
        ``RELOAD_ERRORS`` naming the problem (the current bundle keeps serving)."""
        from recroute.serve.bundle import RoutingBundle

        async with self._lock:
            bundle = await asyncio.to_thread(RoutingBundle.load, path)
            new = self.make_decider(bundle, self.decider)
            await new.start()
            old, self.decider = self.decider, new
            gc.freeze()  # the new bundle's objects join the start-up ones, out of the collector's reach
            self.host.board.report(self.slot, new.checksum)
            asyncio.get_running_loop().create_task(retire(old))
            logger.warning("serving bundle %s (checksum %s), was %s", path, new.checksum, old.checksum)
            return new.checksum

    def poke(self) -> None:
        """Wake the watcher (a poke signal arrived)."""
        self._wake.set()

    async def follow(self, on_wake: Callable[[], Awaitable[None]] | None = None) -> None:
        """Forever: when the board publishes a new generation, serve its bundle; call ``on_wake``
        after every wake-up (e.g. to flush metrics); end the process when its parent (the
        supervisor) is gone."""
        parent = os.getppid()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), WATCH_S)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self.catch_up()
                if on_wake is not None:
                    await on_wake()
            except Exception:  # the watcher must outlive any one failure
                logger.exception("the reload watcher failed; it keeps watching")
            if self.host.metrics_dir is not None and os.getppid() != parent:
                logger.warning("the gateway supervisor is gone: this worker stops")
                os.kill(os.getpid(), signal.SIGTERM)
                return

    async def catch_up(self) -> None:
        """Serve the board's bundle if its generation is newer than this worker's."""
        generation, path, checksum = self.host.board.desired()
        if generation == self.generation:
            return
        self.generation = generation
        if path is None or (checksum is not None and checksum == self.checksum):
            self.host.board.report(self.slot, self.checksum)
            return
        try:
            await self.swap_to(path)
        except RELOAD_ERRORS as exc:
            logger.warning("reload of %s refused (%s): still serving %s", path, exc, self.checksum)

    async def wait_for_workers(self, checksum: str | None, timeout_s: float) -> tuple[int, int]:
        """Wait until every live worker of the host serves ``checksum`` (at most ``timeout_s``);
        (workers serving it, live workers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            workers = self.host.board.workers()
            done = sum(w["checksum"] == checksum for w in workers)
            if done == len(workers) or loop.time() > deadline:
                return done, len(workers)
            await asyncio.sleep(0.02)


async def retire(decider) -> None:
    """Close ``decider`` once no decision is in flight on it (at most ``RETIRE_WAIT_S``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETIRE_WAIT_S
    while decider.active and loop.time() < deadline:
        await asyncio.sleep(0.01)
    await decider.close()


def poke_workers(host: HostState, skip_self: bool = True) -> None:
    """Send the poke signal to every live worker of the host (but this one)."""
    me = os.getpid()
    for worker in host.board.workers():
        if worker["pid"] != me or not skip_self:
            try:
                os.kill(worker["pid"], POKE)
            except ProcessLookupError:
                pass
