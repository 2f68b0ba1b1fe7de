"""Fixtures of the audit tests: the bundled MMLU-Pro (shipped MiniLM embeddings) split by RouterEval's rule,
a kNN router fitted on the training part and flat per-prompt prices for the cost terms."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def mmlu():
    import recroute

    return recroute.load_dataset("mmlu_pro")


@pytest.fixture(scope="session")
def mmlu_split(mmlu):
    from recroute.data.splits import routereval_split

    split = routereval_split(mmlu.prompts["task"])
    train = np.sort(split.train)
    held = np.sort(np.concatenate([split.val, split.test]))
    return train, held


@pytest.fixture(scope="session")
def mmlu_train(mmlu, mmlu_split):
    return mmlu.subset(prompts=mmlu_split[0])


@pytest.fixture(scope="session")
def knn_router(mmlu, mmlu_split, mmlu_train):
    from recroute.routers.knn import KNNRouter

    return KNNRouter(k=5).fit(mmlu_train, mmlu.embeddings[mmlu_split[0]])


@pytest.fixture(scope="session")
def flat_prices(mmlu):
    from recroute.data.costs import Prices

    rng = np.random.default_rng(7)
    return Prices.flat([str(n) for n in mmlu.llm_names], rng.uniform(0.001, 0.02, mmlu.n_llms))
