"""Fixtures of the serving tests: a small text dataset whose best LLM depends on the topic, and
TF-IDF kNN bundles built from it (no model download, a second to build)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recroute.data.dataset import RoutingDataset

TOPICS = {
    "math": "integral derivative equation algebra matrix prime number theorem proof geometry".split(),
    "code": "python function compile bug loop variable class recursion array pointer".split(),
    "history": "empire war king revolution century treaty dynasty battle ancient medieval".split(),
}
LLMS = ["math-llm", "code-llm", "history-llm", "generalist"]


def topic_dataset(n_prompts: int = 120, seed: int = 0, llms: pd.DataFrame | None = None) -> RoutingDataset:
    """Prompts drawn from three topics; LLM j is right on topic j, the generalist half the time.
    ``llms``: an LLM table (e.g. with price columns) for the four LLMs."""
    rng = np.random.default_rng(seed)
    names = list(TOPICS)
    topic = np.arange(n_prompts) % len(names)
    texts = [" ".join(rng.choice(TOPICS[names[t]], size=8)) + f" question {i}" for i, t in enumerate(topic)]
    Y = np.zeros((n_prompts, len(LLMS)), dtype=np.float32)
    Y[np.arange(n_prompts), topic] = 1.0
    Y[:, 3] = rng.random(n_prompts) < 0.5
    prompts = pd.DataFrame({"prompt_id": [f"q{i}" for i in range(n_prompts)], "text": texts,
                            "task": [names[t] for t in topic], "benchmark": "topics"})
    return RoutingDataset.from_wide(Y, prompts.prompt_id.tolist(), LLMS, prompts=prompts, llms=llms, name="topics")


@pytest.fixture(scope="session")
def topics() -> RoutingDataset:
    return topic_dataset()


@pytest.fixture(scope="session")
def tfidf_bundle_dir(tmp_path_factory, topics) -> Path:
    """A saved TF-IDF + kNN bundle over the topic dataset."""
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    encoder = get_encoder("tfidf", dim=16)
    X = encoder.fit_encode(topics.texts)
    router = KNNRouter(k=3).fit(topics, X)
    return RoutingBundle.build(router, encoder).save(tmp_path_factory.mktemp("bundles") / "topics")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every serving test gets its own embedding cache (never the user's ~/.cache)."""
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "embedding-cache"))


@pytest.fixture(scope="session")
def topics_folder(tmp_path_factory, topics) -> Path:
    return topics.save(tmp_path_factory.mktemp("data") / "topics")

