"""PRknn on hand-made cases, and neighbour sets identical to sklearn's brute-force cosine kNN."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from recroute.eval.metrics import softmax
from recroute.routers.base import Router
from recroute.routers.knn import TIE_TOL, KNNRouter, choose_neighbours

# four training prompts at angles 0, 10, 80 and 90 degrees (lengths differ: cosine ignores them)
ANGLES = np.deg2rad([0.0, 10.0, 80.0, 90.0])
X_TRAIN = (np.c_[np.cos(ANGLES), np.sin(ANGLES)] * [[1.0], [3.0], [0.5], [2.0]]).astype(np.float32)
Y_TRAIN = np.array([[1, 0, 1], [1, 0, np.nan], [0, 1, np.nan], [0, 1, np.nan]], dtype=np.float32)


def test_scores_are_neighbour_means_by_hand():
    router = KNNRouter(k=2).fit(Y_TRAIN, X_TRAIN)
    queries = np.array([[1.0, 0.05], [0.1, 5.0]], dtype=np.float32)  # near 0-10 degrees; near 80-90
    scores = router.score(queries)
    # LLM 2 has one observed neighbour (1) for the first query and none (-> 0) for the second
    np.testing.assert_allclose(scores, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(router.route(queries)[0][:, 0], [0, 1])  # first on the 1.0 tie
    np.testing.assert_allclose(router.selection_probs(queries), softmax(scores))


def test_k_larger_than_training_set_uses_every_prompt():
    scores = KNNRouter(k=50).fit(Y_TRAIN, X_TRAIN).score(np.ones((1, 2), dtype=np.float32))
    np.testing.assert_allclose(scores, [[0.5, 0.5, 1.0]])


def test_neighbour_sets_match_sklearn_where_no_tie_decides():
    rng = np.random.default_rng(0)
    X, Q = rng.standard_normal((400, 12)).astype(np.float32), rng.standard_normal((100, 12)).astype(np.float32)
    ours = np.sort(KNNRouter(k=5).fit(np.zeros((400, 2), dtype=np.float32), X).kneighbors(Q), axis=1)
    theirs = np.sort(NearestNeighbors(n_neighbors=5, metric="cosine").fit(X).kneighbors(Q)[1], axis=1)
    np.testing.assert_array_equal(ours, theirs)


def rule_by_hand(row: np.ndarray, k: int, tol: float = TIE_TOL) -> list[int]:
    """recroute's tie rule on one distance row, as a plain loop."""
    t = sorted(row)[k - 1]
    chosen = [j for j in range(len(row)) if row[j] < t - tol]
    for j in range(len(row)):  # ascending training position
        if len(chosen) < k and abs(row[j] - t) <= tol:
            chosen.append(j)
    return sorted(chosen)


def test_tied_training_prompts_go_to_the_lower_position():
    """Duplicated training prompts (and one near-tie, row 152: 340 and 394 are 7.6e-6 apart)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((400, 12)).astype(np.float32)
    X[200:260] = X[100:160]  # exact duplicates: equal distances from every query
    Q = np.vstack([rng.standard_normal((100, 12)), X[100:160] + 1e-3]).astype(np.float32)
    ours = np.sort(KNNRouter(k=5).fit(np.zeros((400, 2), dtype=np.float32), X).kneighbors(Q), axis=1)
    unit = lambda A: A / np.linalg.norm(A.astype(np.float64), axis=1, keepdims=True)  # noqa: E731
    by_hand = [rule_by_hand(row, 5) for row in 1.0 - unit(Q) @ unit(X).T]
    np.testing.assert_array_equal(ours, by_hand)
    assert 340 in ours[152] and 394 not in ours[152]


def test_choose_neighbours_by_hand():
    dist = np.array([[0.3, 0.1, 0.3, 0.3, 0.5], [0.2, 0.2 + 5e-6, 0.1, 0.9, np.nan]])
    rows = np.array([[7, 3, 2, 9, 1], [4, 0, 8, 5, -1]])
    # row 0: 3 (0.1) is nearer; of the tied 0.3s the lower positions 2 and 7 win over 9
    # row 1: 8 (0.1) is nearer; 4 and 0 are within the tolerance: position 0 wins
    np.testing.assert_array_equal(choose_neighbours(dist, rows, 3), [[2, 3, 7], [0, 4, 8]])
    np.testing.assert_array_equal(choose_neighbours(dist, rows, 2), [[2, 3], [0, 8]])
    few = choose_neighbours(np.array([[0.5, 0.1]]), np.array([[3, -1]]), 2)  # one candidate for k = 2
    np.testing.assert_array_equal(few, [[3, -1]])


def test_l2_metric_matches_sklearn_euclidean():
    rng = np.random.default_rng(1)
    X, Q = rng.standard_normal((300, 8)).astype(np.float32), rng.standard_normal((50, 8)).astype(np.float32)
    ours = np.sort(KNNRouter(k=4, metric="l2").fit(np.zeros((300, 2)), X).kneighbors(Q), axis=1)
    theirs = np.sort(NearestNeighbors(n_neighbors=4).fit(X).kneighbors(Q)[1], axis=1)
    np.testing.assert_array_equal(ours, theirs)


def test_saves_a_faiss_index(tmp_path):
    router = KNNRouter(k=2).fit(Y_TRAIN, X_TRAIN)
    router.save(tmp_path / "knn")
    assert (tmp_path / "knn" / "index.faiss").exists()
    loaded = Router.load(tmp_path / "knn")
    np.testing.assert_array_equal(loaded.score(X_TRAIN), router.score(X_TRAIN))


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="not implemented"):
        KNNRouter(index="annoy").fit(Y_TRAIN, X_TRAIN)
    with pytest.raises(ValueError, match="metric"):
        KNNRouter(metric="manhattan").fit(Y_TRAIN, X_TRAIN)
    with pytest.raises(ValueError, match="k must"):
        KNNRouter(k=0).fit(Y_TRAIN, X_TRAIN)
