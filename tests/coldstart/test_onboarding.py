"""New-LLM onboarding: the shared math pinned by hand, metadata-only placement, and clear errors.

Each family's behaviour on a learnable case is in the conformance suite (test_new_llm_onboarding).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from recroute.data.dataset import RoutingDataset
from recroute.errors import DataError, NotSupportedError
from recroute.routers.new_llms import (
    LLMMetadata, VectorPrior, llm_similarity_weights, map_llm_vectors,
)
from recroute.routers.registry import make_router, routers_supporting_new_llms


def test_routers_supporting_new_llms():
    assert set(routers_supporting_new_llms()) == {"knn", "als", "lightfm", "two_tower", "text_mf", "graphrouter", "irt"}


def test_map_squared_is_the_ridge_solution():
    rng = np.random.default_rng(0)
    P, y = rng.standard_normal((8, 3)), rng.random(8)
    mean, precision = np.array([0.1, -0.2, 0.3]), np.diag([2.0, 1.0, 0.5])
    got = map_llm_vectors(P, y[:, None], mean[None], precision, loss="squared", noise=0.5)[0]
    # argmin ||y - P v||^2 / 0.5 + (v - mean)' precision (v - mean)  <=>  (P'P + 0.5 precision) v = P'y + 0.5 precision mean
    want = np.linalg.solve(P.T @ P + 0.5 * precision, P.T @ y + 0.5 * precision @ mean)
    np.testing.assert_allclose(got, want, rtol=1e-10)


def test_map_logistic_zeroes_the_posterior_gradient():
    rng = np.random.default_rng(1)
    P, y, offset = rng.standard_normal((20, 2)), (rng.random(20) < 0.6).astype(float), rng.standard_normal(20)
    mean, precision = np.array([0.5, 0.0]), np.eye(2)
    v = map_llm_vectors(P, y[:, None], mean[None], precision, offset=offset)[0]
    p = 1 / (1 + np.exp(-(P @ v + offset)))
    np.testing.assert_allclose(P.T @ (p - y) + precision @ (v - mean), 0.0, atol=1e-8)


def test_map_unprobed_llm_keeps_its_prior_and_separable_data_stay_finite():
    P = np.array([[1.0], [2.0]])
    Y = np.array([[1.0, np.nan], [1.0, np.nan]])  # LLM 0: all right (separable); LLM 1: not probed
    out = map_llm_vectors(P, Y, np.array([[0.0], [0.7]]), np.eye(1))
    assert np.isfinite(out).all() and out[0, 0] > 0 and out[1, 0] == 0.7


def test_vector_prior_regresses_vectors_on_metadata():
    meta = np.array([[-1.0], [0.0], [1.0], [2.0]])
    V = np.hstack([2.0 * meta + 1.0, np.ones((4, 1))])  # first coordinate = 1 + 2 x metadata
    prior = VectorPrior(V, meta, ridge=0.0)
    np.testing.assert_allclose(prior.means(1, np.array([[3.0]])), [[7.0, 1.0]], atol=1e-9)
    np.testing.assert_allclose(prior.means(2), [[1.0, 1.0]] * 2, atol=1e-9)  # no metadata: the intercept
    np.testing.assert_allclose(VectorPrior(V).means(1), [V.mean(axis=0)])


def test_similarity_weights_by_hand():
    at_probes = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])  # 2 probes x 3 existing LLMs
    Y = np.array([[1.0], [0.0]])  # the new LLM: right, wrong -> exactly like LLM 0
    W = llm_similarity_weights(at_probes, Y, k=2, eps=0.1)
    # log-likelihoods: LLM0 2 log .9, LLM1 log .1 + log .9, LLM2 log .9 + log .1 (tied with LLM1: both kept)
    w = np.array([0.81, 0.09, 0.09])
    np.testing.assert_allclose(W[0], w / w.sum())
    W1 = llm_similarity_weights(at_probes, Y, k=1, eps=0.1)
    np.testing.assert_allclose(W1[0], [1.0, 0.0, 0.0])


def test_similarity_weights_without_probes_use_metadata_or_everyone():
    empty = np.zeros((0, 3))
    np.testing.assert_allclose(llm_similarity_weights(empty, np.zeros((0, 1)), 2, 0.1), [[1 / 3] * 3])
    known = np.array([[0.0], [5.0], [1.0]])
    W = llm_similarity_weights(empty, np.zeros((0, 1)), 2, 0.1, known, np.array([[0.4]]))
    np.testing.assert_allclose(W, [[0.5, 0.0, 0.5]])


def test_metadata_sizes_are_parsed_and_standardised():
    table = pd.DataFrame({"llm": ["a", "b", "c"], "size": ["7B", "70B", "350M"], "price": [0.2, np.nan, 1.0]})
    meta = LLMMetadata.from_table(table, 3)
    assert meta.columns == ["size", "price"]
    np.testing.assert_allclose(meta.mean, [(7 + 70 + 0.35) / 3, 0.6])
    assert meta.values[1, 1] == 0.0  # a missing price sits at the mean
    row = meta.rows_for(pd.DataFrame({"llm": ["new"], "size": ["13B"], "price": [0.6]}), ["new"])
    np.testing.assert_allclose(row, [[(13 - meta.mean[0]) / meta.std[0], 0.0]], rtol=1e-6)


# ---------------------------------------------------------------------- routers with metadata
def _dataset_with_metadata():
    rng = np.random.default_rng(0)
    n, sizes = 120, np.array([1.0, 3.0, 7.0, 13.0, 34.0, 70.0])
    X = rng.standard_normal((n, 6)).astype(np.float32)
    skill = np.log(sizes)[None, :] - 2.0 + X[:, :1]  # bigger LLMs right more often
    Y = (rng.random((n, len(sizes))) < 1 / (1 + np.exp(-skill))).astype(np.float32)
    names = [f"llm{int(s)}b" for s in sizes]
    llms = pd.DataFrame({"llm": names, "size": [f"{int(s)}B" for s in sizes]})
    data = RoutingDataset.from_wide(Y, [f"p{i}" for i in range(n)], names, llms=llms)
    data.set_embeddings(X, "test")
    return data, X


@pytest.mark.parametrize("spec", ["als:factors=4,iterations=5", "knn:onboard_k=2", "lightfm:no_components=4,epochs=5",
                                  "two_tower:dim=4,epochs=5"])
def test_metadata_only_onboarding(spec, tmp_path):
    data, X = _dataset_with_metadata()
    router = make_router(spec).fit(data.subset(llms=[0, 1, 2, 3, 4]), X)
    assert router.llm_metadata_.columns == ["size"]
    big = router.partial_fit_llms(None, None, "big", metadata=pd.DataFrame({"llm": ["big"], "size": ["70B"]}))
    small = router.partial_fit_llms(None, None, "small", metadata=pd.DataFrame({"llm": ["small"], "size": ["1B"]}))
    blind = router.partial_fit_llms(None, None, "blind")
    s_big, s_small, s_blind = (r.score(X)[:, -1].mean() for r in (big, small, blind))
    assert s_big != s_blind and s_small != s_blind  # metadata moves the placement
    assert s_big > s_small  # larger LLMs are right more often in this data
    assert big.llm_metadata_.values.shape == (6, 1)
    big.save(tmp_path / "big")
    from recroute.routers.base import Router

    loaded = Router.load(tmp_path / "big")
    np.testing.assert_allclose(loaded.score(X), big.score(X), atol=1e-6)
    assert loaded.llm_metadata_.columns == ["size"]


def test_metadata_errors():
    data, X = _dataset_with_metadata()
    router = make_router("als:factors=4,iterations=5").fit(data.subset(llms=[0, 1, 2]), X)
    with pytest.raises(DataError, match="no row for the new LLM"):
        router.partial_fit_llms(None, None, "x", metadata=pd.DataFrame({"llm": ["y"], "size": ["7B"]}))
    with pytest.raises(DataError, match="lacks the column"):
        router.partial_fit_llms(None, None, "x", metadata=pd.DataFrame({"llm": ["x"], "price": [1.0]}))
    bare = make_router("als:factors=4,iterations=5").fit(data.scores.toarray()[:, :3], X)
    with pytest.raises(DataError, match="without numeric LLM metadata"):
        bare.partial_fit_llms(None, None, "x", metadata=pd.DataFrame({"llm": ["x"], "size": ["7B"]}))


def test_probe_shape_errors_and_unsupported_router():
    data, X = _dataset_with_metadata()
    router = make_router("knn").fit(data, X)
    with pytest.raises(DataError, match="no probe embeddings"):
        router.partial_fit_llms(None, np.ones(3), "x")
    with pytest.raises(DataError, match=r"\(k, n_new=2\)"):
        router.partial_fit_llms(X[:3], np.ones((3, 1)), ["x", "y"])
    with pytest.raises(DataError, match="repeat"):
        router.partial_fit_llms(X[:3], np.ones((3, 2)), ["x", "x"])
    with pytest.raises(DataError, match="rows but the scores have"):
        router.partial_fit_llms(X[:2], np.ones(3), "x")
    with pytest.raises(NotSupportedError, match="knn"):
        make_router("best_single").fit(data).partial_fit_llms(None, None, "x")


def test_knn_probe_on_a_training_prompt_uses_the_result_itself():
    data, X = _dataset_with_metadata()
    router = make_router("knn:k=1").fit(data, X)
    grown = router.partial_fit_llms(X[[3, 7]], np.array([1.0, 0.0]), "x")
    assert grown.train_scores_[3, -1] == 1.0 and grown.train_scores_[7, -1] == 0.0
    np.testing.assert_allclose(grown.score(X[[3, 7]])[:, -1], [1.0, 0.0])


def test_real_llmrouter_nim_metadata_is_used(shared_data):
    from recroute.data.catalog import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the table lists 5 LLMs without results
        data = load_dataset(shared_data / "llmrouter_nim")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((data.n_prompts, 8)).astype(np.float32)  # features do not matter here
    router = make_router("als:factors=4,iterations=3").fit(data.subset(llms=list(range(8))), X)
    assert router.llm_metadata_.columns == ["size", "input_price_per_mtok", "output_price_per_mtok"]
    grown = router.partial_fit_llms(None, None, [str(data.llm_names[8])], metadata=data.llms.iloc[[8]])
    assert grown.n_llms_ == 9 and np.isfinite(grown.score(X[:5])).all()


def test_lightfm_metadata_only_placement_uses_its_own_feature_embeddings():
    data, X = _dataset_with_metadata()
    router = make_router("lightfm:no_components=4,epochs=5").fit(data.subset(llms=[0, 1, 2, 3, 4]), X)
    E = router.meta_vectors_  # (1 metadata column, 4 components + bias)
    V = np.hstack([router.llm_vectors_, router.llm_bias_[:, None]])
    identity = V - router.llm_metadata_.values @ E
    meta = router.llm_metadata_.rows_for(pd.DataFrame({"llm": ["big"], "size": ["70B"]}), ["big"])
    big = router.partial_fit_llms(None, None, "big", metadata=pd.DataFrame({"llm": ["big"], "size": ["70B"]}))
    want = identity.mean(axis=0) + meta[0] @ E  # mean identity part + LightFM's size-feature embedding
    np.testing.assert_allclose(big.llm_vectors_[-1], want[:-1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(big.llm_bias_[-1], want[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spec", ["knn:index='ivf',nlist=8", "knn:index='hnsw'", "knn:metric='l2'"])
def test_knn_recognises_training_probes_with_every_index(spec):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    Y = (rng.random((300, 6)) < 0.5).astype(np.float32)
    grown = make_router(spec).fit(Y, X).partial_fit_llms(X[[3, 9]], np.array([1.0, 0.0]), "x")
    assert grown.train_scores_[3, -1] == 1.0 and grown.train_scores_[9, -1] == 0.0
    unmatched = make_router(spec).fit(Y, X).partial_fit_llms(X[[3]] + 5.0, np.array([1.0]), "x")
    assert np.isfinite(unmatched.train_scores_[:, -1]).all()  # a new prompt: its result is not pinned to a row
