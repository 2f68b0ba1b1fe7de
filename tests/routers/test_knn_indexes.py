"""kNN index choices: approximate FAISS indexes (IVF, HNSW), their recall, persistence and checks."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from recroute.errors import SavedArtifactError
from recroute.routers.base import Router
from recroute.routers.knn import KNNRouter, auto_nlist, exact_neighbours, index_recall, recall_at_k


def clustered(n: int, d: int = 16, n_clusters: int = 20, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d))
    return (centres[rng.integers(0, n_clusters, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


X = clustered(3000)
Q = clustered(200, seed=1)
Y = (np.random.default_rng(2).random((3000, 5)) < 0.5).astype(np.float32)


def test_recall_at_k_by_hand():
    found = np.array([[0, 1, 2], [5, -1, -1]])
    exact = np.array([[2, 1, 9], [5, 6, 7]])
    assert recall_at_k(found, exact) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_at_k(exact, exact) == 1.0


def test_exact_neighbours_equal_flat_router():
    router = KNNRouter(k=5).fit(Y, X)
    np.testing.assert_array_equal(np.sort(exact_neighbours(X, Q, 5), axis=1), np.sort(router.kneighbors(Q), axis=1))


@pytest.mark.parametrize("spec", [{"index": "ivf", "nprobe": 8}, {"index": "hnsw", "ef_search": 256}, {"index": "ivf", "metric": "l2"}])
def test_approximate_indexes_have_high_recall_and_close_scores(spec):
    router = KNNRouter(k=5, **spec).fit(Y, X)
    assert index_recall(router, X, Q) >= 0.9
    exact = KNNRouter(k=5, metric=spec.get("metric", "cosine")).fit(Y, X)
    agree = np.mean(np.all(np.isclose(router.score(Q), exact.score(Q)), axis=1))
    assert agree >= 0.8


def test_nprobe_trades_recall_and_applies_to_a_fitted_router():
    router = KNNRouter(k=5, index="ivf", nlist=64, nprobe=1).fit(Y, X)
    low = index_recall(router, X, Q)
    router.set_params(nprobe=64)  # every cell searched: exact
    assert index_recall(router, X, Q) == 1.0 > low


def test_missing_neighbours_are_skipped_not_read_as_row_minus_one():
    # 100 cells over 300 prompts and one probed cell: some queries find fewer than k neighbours
    router = KNNRouter(k=5, index="ivf", nlist=100, nprobe=1).fit(Y[:300], X[:300])
    found = router.kneighbors(Q)
    assert (found < 0).any()
    scores = router.score(Q)
    for i in np.flatnonzero((found < 0).any(axis=1))[:5]:
        rows = found[i][found[i] >= 0]
        expected = np.nanmean(Y[rows], axis=0) if len(rows) else np.zeros(5)
        np.testing.assert_allclose(scores[i], expected, rtol=1e-6)


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_saved_and_reloaded_with_the_same_answers(tmp_path, index):
    router = KNNRouter(k=3, index=index, nprobe=4, ef_search=32).fit(Y, X)
    router.save(tmp_path / "r")
    assert (tmp_path / "r" / "index.faiss").exists()
    loaded = Router.load(tmp_path / "r")
    assert loaded.get_params() == router.get_params()
    np.testing.assert_array_equal(loaded.score(Q), router.score(Q))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(router)).score(Q), router.score(Q))


def test_index_kind_mismatch_on_load_is_named(tmp_path):
    KNNRouter(index="hnsw").fit(Y, X).save(tmp_path / "r")
    doc = json.loads((tmp_path / "r" / "router.json").read_text())
    doc["params"]["index"] = "flat"
    (tmp_path / "r" / "router.json").write_text(json.dumps(doc))
    with pytest.raises(SavedArtifactError, match="'hnsw' index"):
        Router.load(tmp_path / "r")


def test_default_flat_path_unchanged_by_the_new_parameters():
    base = KNNRouter(k=5).fit(Y, X)
    assert base.get_params()["index"] == "flat"
    other = KNNRouter(k=5, nprobe=3, hnsw_m=8).fit(Y, X)  # ignored by the flat index
    np.testing.assert_array_equal(base.score(Q), other.score(Q))


def test_bad_index_parameters_are_named():
    with pytest.raises(ValueError, match="nprobe"):
        KNNRouter(index="ivf", nprobe=0).fit(Y, X)
    with pytest.raises(ValueError, match="nlist"):
        KNNRouter(index="ivf", nlist=-2).fit(Y, X)
    with pytest.raises(ValueError, match="nlist=5000 is more than the 3000"):
        KNNRouter(index="ivf", nlist=5000).fit(Y, X)
    with pytest.raises(ValueError, match="ef_search"):
        KNNRouter(index="hnsw", ef_search="many").fit(Y, X)


def test_auto_nlist():
    assert auto_nlist(10) == 1
    assert auto_nlist(3000) == 55  # sqrt(3000)
    assert auto_nlist(1000) == 25  # 1000 // 39 caps sqrt(1000) = 32
    assert auto_nlist(1_000_000) == 1000
