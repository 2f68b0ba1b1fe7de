"""GraphRouter: the LLM nodes' messages by hand, task nodes, inductive new LLMs and the held-out edges."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute.data.dataset import RoutingDataset
from recroute.errors import DataError
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


# ---------------------------------------------------------------------- cost edges and LLM text (real slice)
@pytest.fixture(scope="module")
def nim_slice(shared_data):
    """300 llmrouter_nim prompts × its 9 LLMs (size, description, $/Mtok prices), static embeddings."""
    import warnings

    import recroute
    from recroute.encoders import embed_dataset, get_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = recroute.load_dataset(shared_data / "llmrouter_nim")
    rows = np.sort(np.random.default_rng(0).choice(data.n_prompts, 300, replace=False))
    part = data.subset(prompts=rows)
    embed_dataset(part, get_encoder("static"), use_cache=False)
    return part


def test_cost_edges_learn_the_prices_and_route_through_the_shared_cost_step(nim_slice):
    from recroute.cost.decide import alpha_utility
    from recroute.data.costs import count_prompt_tokens

    data = nim_slice
    C = data.costs()
    # by hand: (prompt tokens · input $/Mtok + 256 output tokens · output $/Mtok) / 1e6
    tokens = count_prompt_tokens(data.texts)
    gemma = data.llm_index("gemma-2-9b-it")[0]
    np.testing.assert_allclose(C[:, gemma], (tokens * 0.1 + 256 * 0.1) / 1e6)
    router = make_router("graphrouter", epochs=10).fit(data)
    assert router.predicts_costs and router.n_cost_ == 1 and router.n_meta_ == 3  # size + two prices
    P = router.predict_costs(data.embeddings)
    assert P.shape == C.shape and (P >= 0).all()
    assert np.median(np.abs(P - C) / C) < 0.35  # the cost edges' scale is learned
    cheap, dear = data.llm_index(["gemma-2-9b-it", "llama3-chatqa-1.5-70b"])
    assert (P[:, dear] > 4 * P[:, cheap]).all()  # 0.9 vs 0.1 $/Mtok: 9x by the prices
    # alpha = 0: cheapest only; the cheapest LLM by its prices is gemma-2-9b-it for every prompt
    choice = alpha_utility(router.score(data.embeddings), P, 0.0).argmax(axis=1)
    assert (choice == cheap).all()
    # alpha = 1: quality only, the router's own argmax
    np.testing.assert_array_equal(alpha_utility(router.score(data.embeddings), P, 1.0).argmax(axis=1),
                                  router.route(data.embeddings)[0][:, 0])


def test_no_costs_no_text_no_metadata_is_the_quality_graph(nim_slice):
    from recroute.errors import NotSupportedError

    Y = nim_slice.dense(np.nan)
    bare = make_router("graphrouter", epochs=3).fit(Y, nim_slice.embeddings)
    assert (bare.n_cost_, bare.n_text_, bare.n_meta_) == (0, 0, 0) and not bare.predicts_costs
    with pytest.raises(NotSupportedError, match="without costs"):
        bare.predict_costs(nim_slice.embeddings)
    with pytest.raises(DataError, match="description"):  # text required but a bare matrix has none
        make_router("graphrouter", epochs=3, llm_text="on").fit(Y, nim_slice.embeddings)
    given = make_router("graphrouter", epochs=3).fit(Y, nim_slice.embeddings, costs=np.full(Y.shape, 2.0))
    assert given.predicts_costs and given.cost_scale_ == 2.0
    with pytest.raises(DataError, match="shape"):
        make_router("graphrouter", epochs=3).fit(Y, nim_slice.embeddings, costs=np.ones((2, 2)))


def test_llm_descriptions_are_encoded_and_sent_as_messages(nim_slice, tmp_path):
    from recroute.encoders import get_encoder
    from recroute.routers.base import Router

    data = nim_slice
    router = make_router("graphrouter", epochs=3).fit(data)
    assert router.text_encoder_ == "minilm-static-256" and router.n_text_ == router.message_dim_ == 32
    E = get_encoder("static").encode(data.llms["description"].tolist())
    messages = (E - router.net_.center.numpy()) @ router.net_.basis.numpy()
    stats = router.net_.stats.numpy()
    first = 1 + router.n_tasks_ + router.n_meta_  # mean score, per-task means, metadata, then the text
    np.testing.assert_allclose(stats[:, first : first + 32], messages, atol=1e-5)
    off = make_router("graphrouter", epochs=3, llm_text="off").fit(data)
    assert off.n_text_ == 0
    with pytest.raises(DataError, match="encoder"):  # embeddings from an unknown encoder: text impossible
        other = data.subset(prompts=np.arange(data.n_prompts))
        other.set_embeddings(data.embeddings, "someone-elses-encoder")
        make_router("graphrouter", epochs=3, llm_text="on").fit(other)
    # inductive: a new LLM's description becomes its text message; saved and loaded without pickle
    new_desc = data.llms["description"].iloc[2]
    grown = router.partial_fit_llms(
        data.embeddings[:10], data.dense(np.nan)[:10, 2], ["gemma-twin"],
        pd.DataFrame({"llm": ["gemma-twin"], "size": ["9B"], "input_price_per_mtok": [0.1],
                      "output_price_per_mtok": [0.1], "description": [new_desc]}))
    np.testing.assert_allclose(grown.net_.stats.numpy()[-1, first : first + 32], messages[2], atol=1e-5)
    grown.save(tmp_path / "g")
    loaded = Router.load(tmp_path / "g")
    np.testing.assert_allclose(loaded.score(data.embeddings[:5]), grown.score(data.embeddings[:5]), atol=1e-6)
    np.testing.assert_allclose(loaded.predict_costs(data.embeddings[:5]), grown.predict_costs(data.embeddings[:5]),
                               rtol=1e-5)
