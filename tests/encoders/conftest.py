"""Fixtures for encoder tests: a fast fake encoder that counts its calls, and a private cache."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest


class CountingEncoder:
    """Deterministic hash-based vectors; records every text it is asked to encode."""

    def __init__(self, name: str = "fake-encoder", dim: int = 8) -> None:
        self.name = name
        self.dim = dim
        self.calls: list[list[str]] = []

    @property
    def n_encoded(self) -> int:
        return sum(len(c) for c in self.calls)

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(f"{self.name}|{text}".encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def encode(self, texts, batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
        texts = list(texts)
        self.calls.append(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts]).astype(np.float32)


@pytest.fixture
def counting_encoder() -> CountingEncoder:
    return CountingEncoder()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every encoder test gets its own cache root (never the user's ~/.cache)."""
    root = tmp_path / "embedding-cache"
    monkeypatch.setenv("RECROUTE_CACHE", str(root))
    return root


@pytest.fixture
def make_encoder():
    """The CountingEncoder class, to build encoders with other names or dims."""
    return CountingEncoder
