"""Micro-batching: texts from concurrent requests are encoded together on one worker thread
(``EncodeBatcher``), or on the event loop for a fast encoder (``LoopBatcher``).

Each caller blocks on its own future while the worker drains the queue into one encoder batch
(up to ``max_batch`` texts), so under load many small requests cost about one batched encoder call,
and the (not re-entrant) encoder is only ever used from one thread.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from concurrent.futures import Future
from typing import Callable, Sequence

import numpy as np


class EncodeBatcher:
    """``encode(texts) -> float32 (len(texts), d)``, batched across threads by a worker thread."""

    def __init__(self, encode: Callable[[list[str]], np.ndarray], max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        self._encode = encode
        self.max_batch = int(max_batch)
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="recroute-encoder", daemon=True)
        self._worker.start()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), d); blocks the calling thread until its batch is encoded."""
        return self.submit(texts).result()

    def submit(self, texts: Sequence[str]) -> Future:
        """A future of float32 (len(texts), d), without blocking (``asyncio.wrap_future`` awaits it)."""
        if self._closed:
            raise RuntimeError("the encoder batcher is closed")
        future: Future = Future()
        self._queue.put((list(texts), future))
        return future

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._worker.join(timeout=30)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, size, stop = [item], len(item[0]), False
            while size < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
                size += len(nxt[0])
            self._encode_batch(batch)
            if stop:
                return

    def _encode_batch(self, batch: list[tuple[list[str], Future]]) -> None:
        texts = [t for part, _ in batch for t in part]
        try:
            X = self._encode(texts)
        except BaseException as exc:  # every waiting request gets the error, the worker lives on
            for _, future in batch:
                future.set_exception(exc)
            return
        start = 0
        for part, future in batch:
            future.set_result(X[start : start + len(part)])
            start += len(part)


class LoopBatcher:
    """``score(texts) -> (n, m)`` batched across the requests waiting in one event-loop turn, on the loop.

    For encoders cheap enough to run on the event loop (no worker thread): each ``await submit(text)``
    queues its text, and one callback run ``turns`` loop turns after the first queued text scores every
    queued text in batches of at most ``max_batch``. One request alone waits ``turns`` loop turns
    (microseconds); concurrent requests share one encoder + router call (a kNN search reads the whole
    index whatever the number of queries). Rows are scored independently, so each equals its own
    one-text call.
    """

    def __init__(self, score: Callable[[list[str]], np.ndarray], max_batch: int = 64, turns: int = 1) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1; got {max_batch}")
        if turns < 1:
            raise ValueError(f"turns must be at least 1; got {turns}")
        self._score = score
        self.max_batch = int(max_batch)
        self.turns = int(turns)
        self._pending: list[tuple[str, asyncio.Future]] = []
        self.calls = 0  # scoring calls made (for tests and benchmarks)

    async def submit(self, text: str) -> np.ndarray:
        """The text's score row, shape (m,)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._pending.append((text, future))
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
            try:
                scores = self._score([text for text, _ in chunk])
            except Exception as exc:  # noqa: BLE001 (every request of the batch gets the error)
                for _, future in chunk:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for row, (_, future) in zip(scores, chunk):
                if not future.done():  # a client that went away cancelled its future
                    future.set_result(row)
