"""Hot reload of a gateway worker's routing bundle: load and verify a new bundle off the event loop,
swap it in atomically, retire the old one once its decisions in flight are done, and follow the
host's reload board so that every worker of the host serves the same bundle.

A request takes ``live.decider`` once, when it starts, and decides with it to the end: requests in
flight finish on the old bundle while new ones get the new. A bundle that fails verification (a
missing, truncated or modified file: ``RoutingBundle.load``) or does not fit the upstreams is
refused with the reason, and the old one keeps serving.

A shadow bundle (``POST /admin/shadow``, ``recroute.serve.shadow_serving``) is served the same way: a
new decider over the same live bundle with the shadow beside it, swapped in atomically; the board's
shadow generation makes every worker follow. A live reload keeps the shadow (checked again against the
new live bundle; one that no longer fits is dropped with a warning).
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

    ``make_decider(bundle, previous, shadow=KEEP)`` builds (and checks) a decider for a loaded bundle
    (``shadow``: (shadow bundle, ε, tau), None for none, KEEP for the previous decider's);
    ``host``: the host's shared state, whose board says which bundle to serve; ``slot``: this
    worker's slot on it.
    """

    def __init__(self, decider, make_decider: Callable, host: HostState, slot: int = 0) -> None:
        self.decider = decider
        self.make_decider = make_decider
        self.host, self.slot = host, slot
        self.generation = host.board.generation
        self.shadow_generation = -1  # the first look serves the board's shadow (a worker respawned after one was set)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        host.board.report(slot, decider.checksum)
        host.board.report_shadow(slot, None)

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
            self.host.board.report_shadow(self.slot, None if new.shadow is None else new.shadow.checksum)
            asyncio.get_running_loop().create_task(retire(old))
            logger.warning("serving bundle %s (checksum %s), was %s", path, new.checksum, old.checksum)
            return new.checksum

    @property
    def shadow(self):
        """The shadow served now (``recroute.serve.shadow_serving.Shadow``) or None."""
        return self.decider.shadow

    async def set_shadow(self, path: str | None, epsilon: float = 0.0, tau: float = 0.0) -> str | None:
        """Serve the shadow bundle at ``path`` with ``epsilon`` and ``tau`` beside the live bundle (None:
        remove the shadow); the shadow's checksum. Raises one of ``RELOAD_ERRORS`` naming the problem
        (what was served keeps serving)."""
        from recroute.serve.bundle import RoutingBundle
        from recroute.serve.shadow_serving import check_shadow_settings

        async with self._lock:
            shadow = None
            if path is not None:
                epsilon, tau = check_shadow_settings(epsilon, tau)
                shadow = (await asyncio.to_thread(RoutingBundle.load, path), epsilon, tau)
            new = self.make_decider(self.decider.bundle, self.decider, shadow=shadow)
            await new.start()
            old, self.decider = self.decider, new
            gc.freeze()
            checksum = None if new.shadow is None else new.shadow.checksum
            self.host.board.report_shadow(self.slot, checksum)
            asyncio.get_running_loop().create_task(retire(old))
            logger.warning("shadow %s (checksum %s, epsilon %s, tau %s)", path or "removed", checksum, epsilon, tau)
            return checksum

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
        """Serve the board's bundle if its generation is newer than this worker's, then its shadow if
        the shadow generation is."""
        generation, path, checksum = self.host.board.desired()
        if generation != self.generation:
            self.generation = generation
            if path is None or (checksum is not None and checksum == self.checksum):
                self.host.board.report(self.slot, self.checksum)
            else:
                try:
                    await self.swap_to(path)
                except RELOAD_ERRORS as exc:
                    logger.warning("reload of %s refused (%s): still serving %s", path, exc, self.checksum)
        generation, doc = self.host.board.desired_shadow()
        if generation == self.shadow_generation:
            return
        self.shadow_generation = generation
        now = self.shadow
        if (doc is None and now is None) or (doc is not None and now is not None and doc["checksum"] == now.checksum
                                             and (doc["epsilon"], doc["tau"]) == (now.epsilon, now.tau)):
            self.host.board.report_shadow(self.slot, None if now is None else now.checksum)
            return
        try:
            await self.set_shadow(None if doc is None else doc["bundle"], *(() if doc is None else (doc["epsilon"], doc["tau"])))
        except RELOAD_ERRORS as exc:
            logger.warning("shadow %s refused (%s)", doc, exc)

    async def wait_for_shadow(self, checksum: str | None, timeout_s: float) -> tuple[int, int]:
        """Wait until every live worker serves the shadow ``checksum`` (None: none; at most ``timeout_s``);
        (workers serving it, live workers)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            workers = self.host.board.workers()
            done = sum(w["shadow_checksum"] == checksum for w in workers)
            if done == len(workers) or loop.time() > deadline:
                return done, len(workers)
            await asyncio.sleep(0.02)

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
