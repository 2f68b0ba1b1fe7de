"""GraphRouter: the LLM nodes' messages by hand, task nodes, inductive new LLMs and the held-out edges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute.data.dataset import RoutingDataset
from recroute.routers.graphrouter import llm_messages, task_centroids
from recroute.routers.registry import make_router


def test_llm_messages_by_hand():
    X = np.array([[1, 0], [0, 1], [2, 2]], dtype=np.float32)
    Y = np.array([[1.0, np.nan], [0.0, np.nan], [0.5, np.nan]], dtype=np.float32)
    tasks = np.array([0, 1, 1])
    prior = np.array([7, 7], dtype=np.float32)
    pos, neg, stats = llm_messages(X, Y, tasks, 2, prior, 0.25)
    # LLM 0: y-weighted mean (1*[1,0] + .5*[2,2]) / 1.5; (1 - y)-weighted ([0,1] + .5*[2,2]) / 1.5
    np.testing.assert_allclose(pos[0], [2 / 1.5, 1 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(neg[0], [1 / 1.5, 2 / 1.5], rtol=1e-6)
    np.testing.assert_allclose(stats[0], [0.5, 1.0, 0.25], rtol=1e-6)  # mean, task 0, task 1 (0 and .5)
    # LLM 1 was never run: the priors
    np.testing.assert_array_equal(pos[1], prior)
    np.testing.assert_array_equal(neg[1], prior)
    np.testing.assert_allclose(stats[1], [0.25, 0.25, 0.25])
    # no prompt at all (a new LLM without probes)
    pos, neg, stats = llm_messages(np.zeros((0, 2)), np.zeros((0, 1)), np.zeros(0, dtype=int), 2, prior, 0.25)
    np.testing.assert_array_equal(pos, [prior])
    np.testing.assert_allclose(stats, [[0.25, 0.25, 0.25]])


def test_task_centroids_are_unit_means():
    X = np.array([[1, 0], [0, 1], [3, 0]], dtype=np.float32)
    C = task_centroids(X, np.array([0, 0, 1]), 3)
    np.testing.assert_allclose(C, [[np.sqrt(0.5), np.sqrt(0.5)], [1, 0], [0, 0]], atol=1e-6)


def _task_dataset(n: int = 240, seed: int = 0) -> RoutingDataset:
    """Two tasks; LLM a is right on task 'math', b on 'law', c is right half the time everywhere."""
    rng = np.random.default_rng(seed)
    task = np.where(np.arange(n) % 2 == 0, "math", "law")
    centre = np.where(task == "math", 1.0, -1.0)[:, None] * np.eye(1, 8)
    X = (centre + 0.3 * rng.standard_normal((n, 8))).astype(np.float32)
    Y = np.stack([task == "math", task == "law", rng.random(n) < 0.5], axis=1).astype(np.float32)
    ids = [f"p{i}" for i in range(n)]
    prompts = pd.DataFrame({"prompt_id": ids, "task": task})
    data = RoutingDataset.from_wide(Y, ids, ["a", "b", "c"], prompts=prompts)
    data.set_embeddings(X, "toy")
    return data


def test_task_column_gives_the_task_nodes_and_routing_follows_it():
    data = _task_dataset()
    router = make_router("graphrouter", epochs=20).fit(data)
    assert router.n_tasks_ == 2  # the dataset's two tasks, not n_tasks k-means clusters
    test = _task_dataset(seed=1)
    choice = router.route(test.embeddings)[0][:, 0]
    expected = np.where(test.prompts["task"].to_numpy() == "math", 0, 1)
    assert (choice == expected).mean() >= 0.95
    bare = make_router("graphrouter", epochs=20, n_tasks=3).fit(data.dense(np.nan), data.embeddings)
    assert bare.n_tasks_ == 3  # a bare matrix: k-means task nodes


def test_new_llm_is_a_node_from_its_probes_and_metadata(tmp_path):
    data = _task_dataset()
    data.llms["size"] = [7.0, 70.0, 13.0]
    router = make_router("graphrouter", epochs=20).fit(data)
    assert router.n_meta_ == 1
    probes = np.arange(20)
    y_new = (data.prompts["task"].to_numpy()[probes] == "law").astype(np.float32)  # a second law specialist
    grown = router.partial_fit_llms(data.embeddings[probes], y_new, ["d"], pd.DataFrame({"llm": ["d"], "size": [30.0]}))
    test = _task_dataset(seed=2)
    scores = grown.score(test.embeddings)
    law = test.prompts["task"].to_numpy() == "law"
    assert scores[law, 3].mean() > scores[~law, 3].mean() + 0.3
    np.testing.assert_allclose(scores[:, :3], router.score(test.embeddings), atol=1e-6)
    grown.save(tmp_path / "grown")
    from recroute.routers.base import Router

    np.testing.assert_allclose(Router.load(tmp_path / "grown").score(test.embeddings), scores, atol=1e-6)


def test_bad_parameters_are_named():
    data = _task_dataset(n=40)
    with pytest.raises(ValueError, match="n_tasks"):
        make_router("graphrouter", n_tasks=0).fit(data.dense(np.nan), data.embeddings)
