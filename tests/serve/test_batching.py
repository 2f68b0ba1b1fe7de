"""The encoder micro-batcher: concurrent callers share encoder calls and get their own rows back."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from recroute.serve.batching import EncodeBatcher


class SlowEncoder:
    """Rows = [len(text), call number]; each call takes a little while and records its size."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.threads: set[str] = set()

    def __call__(self, texts):
        self.threads.add(threading.current_thread().name)
        self.sizes.append(len(texts))
        time.sleep(0.02)
        return np.array([[len(t), len(self.sizes)] for t in texts], dtype=np.float32)


def test_concurrent_requests_are_batched_and_get_their_own_rows():
    encoder = SlowEncoder()
    batcher = EncodeBatcher(encoder, max_batch=64)
    texts = [["a" * (i + 1)] * (1 + i % 3) for i in range(40)]
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(batcher.encode, texts))
    batcher.close()
    for sent, got in zip(texts, results):
        assert got.shape == (len(sent), 2) and (got[:, 0] == len(sent[0])).all()
    assert sum(encoder.sizes) == sum(len(t) for t in texts)
    assert len(encoder.sizes) < len(texts)  # some requests shared an encoder call
    assert max(encoder.sizes) <= 64 + 2 and encoder.threads == {"recroute-encoder"}


def test_an_encoder_error_reaches_every_waiting_caller_and_the_worker_survives():
    calls = []

    def flaky(texts):
        calls.append(texts)
        if "bad" in texts:
            raise RuntimeError("encoder failed")
        return np.zeros((len(texts), 2), dtype=np.float32)

    batcher = EncodeBatcher(flaky)
    with pytest.raises(RuntimeError, match="encoder failed"):
        batcher.encode(["bad"])
    assert batcher.encode(["fine"]).shape == (1, 2)
    batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.encode(["late"])


def test_max_batch_must_be_positive():
    with pytest.raises(ValueError, match="max_batch"):
        EncodeBatcher(lambda t: t, max_batch=0)
