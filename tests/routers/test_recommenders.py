"""The recommender routers: explicit wrongs, prompt mapping, metadata, FAISS export, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute import RoutingDataset
from recroute.data.synthetic import make_synthetic
from recroute.routers.features import PromptMap, numeric_llm_features
from recroute.routers.lightfm_router import LightFMRouter
from recroute.routers.mf import ALSRouter, BPRRouter
from recroute.routers.two_tower import FAISS_MIN_LLMS, TextMFRouter, TwoTowerRouter

FAST = {
    "als": lambda: ALSRouter(factors=8, iterations=8),
    "bpr": lambda: BPRRouter(factors=8, iterations=30),
    "lightfm": lambda: LightFMRouter(no_components=8, prompt_dim=16, epochs=10),
    "two_tower": lambda: TwoTowerRouter(dim=16, hidden=(32,), epochs=30, patience=30),
    "text_mf": lambda: TextMFRouter(dim=16, epochs=30, patience=30),
}


@pytest.fixture(scope="module")
def skills():
    return make_synthetic(600, 8, 4, popularity_skew=0.3, embedding_noise=0.3, random_state=5)


@pytest.mark.parametrize("name", list(FAST))
def test_learns_per_skill_specialists_better_than_best_single(name, skills):
    train, test = skills.subset(prompts=np.arange(450)), skills.subset(prompts=np.arange(450, 600))
    router = FAST[name]().fit(train)
    Y = test.dense(0.0)
    P = router.score(test.embeddings)
    routed = Y[np.arange(len(Y)), P.argmax(1)].mean()
    best_single = Y[:, np.nanargmax(train.llm_stats()["accuracy"].to_numpy())].mean()
    assert routed > best_single + 0.03, (name, routed, best_single)
    from recroute.eval.metrics import cell_auc

    assert cell_auc(Y, P) > 0.7


def test_als_treats_observed_wrong_unlike_missing():
    Y = np.array([[1.0, 0.0, np.nan]], dtype=np.float32)
    matrix = ALSRouter(alpha=4.0, beta=2.0)._interactions(Y)
    np.testing.assert_allclose(matrix.toarray(), [[5.0, -3.0, 0.0]])
    assert matrix.nnz == 2  # the missing cell is absent, the wrong one is an explicit negative


def test_bpr_positives_only():
    Y = np.array([[1.0, 0.0, np.nan], [0.2, 0.9, 1.0]], dtype=np.float32)
    np.testing.assert_array_equal(BPRRouter()._interactions(Y).toarray(), [[1, 0, 0], [0, 1, 1]])


def test_ridge_map_recovers_a_linear_relation_and_knn_fold_in():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 10))
    W = rng.normal(size=(10, 3))
    U = X @ W + 0.5
    mapped = PromptMap("ridge", alpha=0.0).fit(X, U).transform(X[:5])
    np.testing.assert_allclose(mapped, U[:5], atol=1e-4)
    knn = PromptMap("knn", k=1).fit(X, U)
    np.testing.assert_allclose(knn.transform(X[:5]), U[:5], atol=1e-4)
    with pytest.raises(ValueError, match="fold_in must be one of"):
        PromptMap("pca")


def test_numeric_llm_features_standardises_and_fills():
    table = pd.DataFrame({"llm": ["a", "b", "c"], "size": [7.0, 70.0, np.nan], "desc": ["x", "y", "z"]})
    F = numeric_llm_features(table, 3)
    assert F.shape == (3, 1)
    assert F[2, 0] == 0.0 and F[0, 0] < 0 < F[1, 0]
    assert numeric_llm_features(table[["llm", "desc"]], 3) is None


def test_lightfm_and_two_tower_use_llm_metadata(skills):
    with_meta = RoutingDataset(skills.scores, skills.prompts, skills.llms, skills.embeddings, "synthetic")
    assert "strength" in with_meta.llms
    tt = TwoTowerRouter(dim=8, hidden=(16,), epochs=3).fit(with_meta)
    assert tt.n_meta_ == 1
    no_meta = TwoTowerRouter(dim=8, hidden=(16,), epochs=3, use_metadata=False).fit(with_meta)
    assert no_meta.n_meta_ == 0
    lfm = LightFMRouter(no_components=4, prompt_dim=8, epochs=2).fit(with_meta)
    assert lfm.llm_vectors_.shape == (8, 4)


def test_two_tower_faiss_route_equals_dense_route_on_a_large_pool(tmp_path):
    data = make_synthetic(300, FAISS_MIN_LLMS + 44, 5, random_state=1)
    router = TwoTowerRouter(dim=8, hidden=(16,), epochs=3).fit(data)
    X = data.embeddings[:50]
    idx, scores = router.route(X, k=5)
    dense = router.score(X)
    expected = np.argsort(-dense, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(np.sort(idx, axis=1), np.sort(expected, axis=1))
    np.testing.assert_allclose(scores, np.take_along_axis(dense, idx, axis=1), rtol=1e-4, atol=1e-5)
    assert router.llm_index().ntotal == data.n_llms
    back = TwoTowerRouter.load(router.save(tmp_path / "tt"))
    np.testing.assert_array_equal(back.route(X, k=5)[0], idx)


def test_two_tower_early_stopping_records_its_epochs():
    data = make_synthetic(400, 6, 3, random_state=2)
    router = TwoTowerRouter(dim=8, hidden=(16,), epochs=200, patience=2, lr=1e-2).fit(data)
    assert router.training_["epochs_run"] < 200
    assert 1 <= router.training_["best_epoch"] <= router.training_["epochs_run"]
