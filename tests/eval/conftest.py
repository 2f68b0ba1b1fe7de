"""Fixtures of the evaluation tests: a small synthetic dataset with learnable structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute.data.dataset import RoutingDataset


def synthetic_dataset(n_prompts: int = 300, n_llms: int = 12, continuous: bool = False, seed: int = 0,
                      benchmark: str | None = "gsm8k") -> RoutingDataset:
    """A dataset whose LLM skill depends on a 2-cluster prompt feature, with 8-d embeddings."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 2, n_prompts)
    skill = np.linspace(0.15, 0.85, n_llms)
    bias = np.where(np.arange(n_llms) % 2 == 0, 0.25, -0.25)
    p = np.clip(skill[None, :] + np.where(cluster[:, None] == 0, bias, -bias), 0.02, 0.98)
    Y = (rng.random((n_prompts, n_llms)) < p).astype(np.float32)
    if continuous:
        Y = np.clip(Y * rng.uniform(0.6, 1.0, Y.shape), 0, 1).astype(np.float32)
    X = rng.normal(size=(n_prompts, 8)).astype(np.float32) + cluster[:, None] * 2.0
    prompts = pd.DataFrame({
        "prompt_id": [f"p{i:04d}" for i in range(n_prompts)],
        "task": np.where(np.arange(n_prompts) % 3 == 0, "t1", "t2"),
        "benchmark": benchmark,
    })
    data = RoutingDataset.from_wide(Y, prompts["prompt_id"].tolist(), [f"llm{j:02d}" for j in range(n_llms)],
                                    prompts=prompts)
    data.set_embeddings(X, "synthetic")
    return data


@pytest.fixture
def synthetic():
    """``synthetic(n_prompts=300, n_llms=12, continuous=False, seed=0, benchmark="gsm8k")``."""
    return synthetic_dataset
