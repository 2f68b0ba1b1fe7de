"""Micro-batching of routing decisions: concurrent requests are encoded once and routed once
(``DecisionBatcher``, on a worker thread), or scored together on the event loop for a fast encoder
(``LoopBatcher``, used by the gateway).

Requests arrive on the asyncio event loop (``await batcher.decide(texts, options)``). A collector
task gathers them until the batch holds ``max_batch`` prompts or its oldest request has waited
``max_wait_ms``, whichever comes first; then one worker thread encodes every text of the batch in
one encoder call and routes the rows of each distinct set of route options (``k``, ``candidates``,
...) in one router call, and each request gets its own rows back. While a batch computes, the next
one gathers, so batches grow with the load by themselves, and an idle service adds at most
``max_wait_ms`` to a request. With batching off every request is encoded and routed alone (on the
same single worker thread: encoders are not re-entrant).

A failure never spreads across requests: if the batch's encoder call fails, each request is encoded
on its own; if a group's router call fails, each request of it is routed on its own; only the
requests that still fail get their error.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

EncodeFn = Callable[[list[str]], np.ndarray]
"""texts -> float32 (len(texts), d)."""
RouteFn = Callable[[Optional[np.ndarray], int, dict], tuple[np.ndarray, ...]]
"""(X (n, d) or None, n, options) -> (llm_idx int64 (n, k), scores float32 (n, k)[, propensity (n,)])."""


@dataclass(frozen=True)
class BatchSettings:
    """``enabled``: gather concurrent requests; ``max_batch``: most prompts per batch; ``max_wait_ms``:
    longest a request waits for companions before its batch starts. The default 0 waits for nothing:
    a batch holds the requests that arrived while the previous one computed (see docs/serving.md)."""

    enabled: bool = True
    max_batch: int = 64
    max_wait_ms: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ValueError(f"batching enabled must be true or false; got {self.enabled!r}")
        if isinstance(self.max_batch, bool) or not isinstance(self.max_batch, (int, np.integer)) or self.max_batch < 1:
            raise ValueError(f"micro-batch max_batch must be an integer of at least 1; got {self.max_batch!r}")
        wait = self.max_wait_ms
        if isinstance(wait, bool) or not isinstance(wait, (int, float)) or not math.isfinite(wait) or wait < 0:
            raise ValueError(f"micro-batch max_wait_ms must be a finite number of milliseconds >= 0; got {wait!r}")


@dataclass
class Decided:
    """One request's rows: llm_idx int64 (n, k), scores float32 (n, k), the prompts in its batch, under
    a stochastic policy the propensity float64 (n,) of each choice, and the features X (n, d) its prompts
    were encoded to (None without an encoder)."""

    idx: np.ndarray
    scores: np.ndarray
    batch_prompts: int
    propensity: np.ndarray | None = None
    X: np.ndarray | None = None


@dataclass
class _Request:
    texts: list[str]
    options: dict
    key: tuple
    future: asyncio.Future
    arrived: float
    result: Any = field(default=None)


def _freeze(value: Any) -> Any:
    """A hashable stand-in for route options (lists become tuples, dicts sorted item tuples)."""
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


class DecisionBatcher:
    """Encode + route requests in micro-batches on one worker thread (see the module docstring).

    ``encode``: texts -> (n, d), or None for a router that takes no prompt features; ``route``:
    (X, n, options) -> (idx (n, k), scores (n, k)); ``thread_setup``: run once on the worker thread
    before its first batch (thread-pool settings of torch / FAISS are per thread).
    Use inside a running event loop: ``await start()``, ``await decide(...)``, ``await close()``.
    """

    def __init__(self, encode: EncodeFn | None, route: RouteFn, settings: BatchSettings | None = None,
                 thread_setup: Callable[[], Any] | None = None) -> None:
        self._encode = encode
        self._route = route
        self.settings = settings or BatchSettings()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="recroute-decide", initializer=thread_setup)
        self._pending: deque[_Request] = deque()
        self._pending_prompts = 0
        self._arrived: asyncio.Event | None = None
        self._collector: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.batch_sizes: deque[int] = deque(maxlen=10_000)  # prompts per batch, most recent last

    async def start(self) -> None:
        """Start the collector on the running loop (needed before :meth:`decide` with batching on)."""
        self._loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()
        if self.settings.enabled:
            self._collector = self._loop.create_task(self._collect())

    async def on_worker(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the worker thread (between batches) and return its result."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def decide(self, texts: Sequence[str], options: dict | None = None) -> Decided:
        """This request's decisions; raises the error its own encoding or routing raised."""
        if self._closed or self._loop is None:
            raise RuntimeError("the decision batcher is not running (start() it; closed ones stay closed)")
        options = dict(options or {})
        item = _Request(list(texts), options, _freeze(options), self._loop.create_future(), self._loop.time())
        if not self.settings.enabled:
            [result] = await self._loop.run_in_executor(self._executor, self._run, [item])
        else:
            self._pending.append(item)
            self._pending_prompts += len(item.texts)
            self._arrived.set()
            result = await item.future
        if isinstance(result, BaseException):
            raise result
        return result

    async def close(self) -> None:
        """Finish the requests already queued, then stop the collector and the worker thread."""
        if self._closed:
            return
        self._closed = True
        if self._arrived is not None:
            self._arrived.set()
        if self._collector is not None:
            await self._collector
        self._executor.shutdown(wait=True)

    # ------------------------------------------------------------------ the event-loop side
    async def _collect(self) -> None:
        loop, wait, cap = self._loop, self.settings.max_wait_ms / 1000.0, int(self.settings.max_batch)
        while True:
            if not self._pending:
                if self._closed:
                    return
                self._arrived.clear()
                await self._arrived.wait()
                continue
            deadline = self._pending[0].arrived + wait
            while self._pending_prompts < cap and not self._closed:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = self._take(cap)
            try:
                results = await loop.run_in_executor(self._executor, self._run, batch)
            except BaseException as exc:  # the worker itself failed: every request of the batch hears it
                results = [exc] * len(batch)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            for item, result in zip(batch, results):
                if not item.future.done():  # a request whose client left is cancelled: nothing to answer
                    item.future.set_result(result)

    def _take(self, cap: int) -> list[_Request]:
        """The oldest pending requests holding at most ``cap`` prompts (always at least one)."""
        batch, size = [], 0
        while self._pending and (not batch or size + len(self._pending[0].texts) <= cap):
            item = self._pending.popleft()
            batch.append(item)
            size += len(item.texts)
        self._pending_prompts -= size
        return batch

    # ------------------------------------------------------------------ the worker side
    def _run(self, batch: list[_Request]) -> list[Decided | BaseException]:
        """Encode the batch once, route each option group once; per-request errors as values."""
        sizes = [len(item.texts) for item in batch]
        total = sum(sizes)
        self.batch_sizes.append(total)
        parts = self._encode_parts(batch, sizes)
        results: list[Decided | BaseException | None] = [p if isinstance(p, BaseException) else None for p in parts]
        groups: dict[tuple, list[int]] = {}
        for i, item in enumerate(batch):
            if results[i] is None:
                groups.setdefault(item.key, []).append(i)
        for members in groups.values():
            try:
                self._route_group(batch, parts, members, results, total)
            except Exception:
                for i in members:  # route one by one: only the requests that fail alone get an error
                    try:
                        self._route_group(batch, parts, [i], results, total)
                    except Exception as exc:
                        results[i] = exc
        return results  # type: ignore[return-value]

    def _encode_parts(self, batch: list[_Request], sizes: list[int]) -> list[np.ndarray | BaseException | None]:
        if self._encode is None:
            return [None] * len(batch)
        try:
            X = self._encode([t for item in batch for t in item.texts])
            ends = np.cumsum(sizes)
            return [X[end - size : end] for size, end in zip(sizes, ends)]
        except Exception as exc:
            if len(batch) == 1:
                return [exc]
        parts: list[np.ndarray | BaseException | None] = []
        for item in batch:
            try:
                parts.append(self._encode(item.texts))
            except Exception as exc:
                parts.append(exc)
        return parts

    def _route_group(self, batch, parts, members: list[int], results: list, total: int) -> None:
        sizes = [len(batch[i].texts) for i in members]
        X = None
        if self._encode is not None:
            X = parts[members[0]] if len(members) == 1 else np.concatenate([parts[i] for i in members])
        rows = self._route(X, sum(sizes), batch[members[0]].options)  # (idx, scores[, propensity])
        ends = np.cumsum(sizes)
        for i, size, end in zip(members, sizes, ends):
            idx, scores, *rest = (a[end - size : end] for a in rows)
            results[i] = Decided(idx, scores, total, rest[0] if rest else None, parts[i])


class LoopBatcher:
    """``score(items) -> n rows`` batched across the requests waiting in one event-loop turn.

    For encoders cheap enough to run on the event loop (no worker thread): each ``await submit(item)``
    queues its item (a prompt text, or whatever ``score`` takes), and one callback run ``turns`` loop
    turns after the first queued item scores every queued item in batches of at most ``max_batch``, on
    the loop, or with ``off_loop`` on the loop's default executor (a worker thread; the loop goes on
    meanwhile). One request alone waits ``turns`` loop turns (microseconds); concurrent requests share
    one encoder + router call (a kNN search reads the whole index whatever the number of queries). Rows
    are scored independently, so each equals its own one-item call.
    """

    def __init__(self, score: Callable[[list[Any]], Sequence[Any]], max_batch: int = 64, turns: int = 1,
                 off_loop: bool = False) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        if turns < 1:
            raise ValueError(f"turns must be at least 1; got {turns}")
        self._score = score
        self.max_batch = int(max_batch)
        self.turns = int(turns)
        self.off_loop = bool(off_loop)
        self._pending: list[tuple[Any, asyncio.Future]] = []
        self.calls = 0  # scoring calls made (for tests and benchmarks)

    async def submit(self, item: Any) -> Any:
        """The item's row of ``score`` (a text's score row, shape (m,), for a router's scores)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush_after, self.turns)
        return await future

    def _flush_after(self, turns: int) -> None:
        if turns > 1:
            asyncio.get_running_loop().call_soon(self._flush_after, turns - 1)
        else:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for start in range(0, len(pending), self.max_batch):
            chunk = pending[start : start + self.max_batch]
            self.calls += 1
            items = [item for item, _ in chunk]
            if self.off_loop:
                done = asyncio.get_running_loop().run_in_executor(None, self._score, items)
                done.add_done_callback(functools.partial(self._answer_from, chunk))
                continue
            try:
                rows = self._score(items)
            except Exception as exc:  # noqa: BLE001 (every request of the batch gets the error)
                self._answer(chunk, None, exc)
                continue
            self._answer(chunk, rows, None)

    def _answer_from(self, chunk: list, done: asyncio.Future) -> None:
        """Answer ``chunk`` from an off-loop scoring call's future (cancelled with it, at shutdown)."""
        if done.cancelled():
            for _, future in chunk:
                future.cancel()
            return
        exc = done.exception()
        self._answer(chunk, None if exc is not None else done.result(), exc)

    @staticmethod
    def _answer(chunk: list, rows, exc: BaseException | None) -> None:
        """Each request of ``chunk`` its row of ``rows``, or ``exc`` (every request of the batch gets it)."""
        for i, (_, future) in enumerate(chunk):
            if future.done():  # a client that went away cancelled its future
                continue
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(rows[i])
