"""kNN's opt-in ``k="auto"``: k chosen from K_GRID by leave-one-out routed mean target on the training data.

Hand-computed cases use the squared-L2 metric on points of a line, so every distance is an integer."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recroute.errors import SavedArtifactError
from recroute.routers.base import Router
from recroute.routers.knn import K_GRID, TIE_TOL, KNNRouter, loo_routed_means
from recroute.routers.registry import make_router


def line(*xs: float) -> np.ndarray:
    return np.array([[x, 0.0] for x in xs], dtype=np.float32)


# two clusters on a line; in each, the middle point is equidistant from its two neighbours
X6 = line(0, 1, 2, 10, 11, 12)
Y6 = np.array([[1, 0], [0, 1], [1, 0], [0, 1], [1, 1], [0, 1]], dtype=np.float32)


def test_leave_one_out_curve_and_choice_by_hand():
    # k=1: p0<-p1 routes LLM1 (0); p1<-p0 (p0, p2 tie at 1: lower position) LLM0 (0); p2<-p1 LLM1 (0);
    #      p3<-p4 [1,1] LLM0 (0); p4<-p3 (tie with p5) LLM1 (1); p5<-p4 LLM0 (0): 1/6
    # k=2: p0 [.5,.5] LLM0 (1); p1 [1,0] LLM0 (0); p2 [.5,.5] LLM0 (1); p3 [.5,1] LLM1 (1);
    #      p4 [0,1] LLM1 (1); p5 [.5,1] LLM1 (1): 5/6
    # k=3 adds the nearest of the other cluster: sums [1,2] [2,1] [1,2] [2,2] [1,2] [2,2] -> 0,0,0,0,1,0: 1/6
    # k=5 (every other prompt): column sums [3,4] minus the prompt's own row -> 0,0,0,0,1,0: 1/6
    router = KNNRouter(k="auto", metric="l2").fit(Y6, X=X6)
    assert router.k_loo_ == pytest.approx({1: 1 / 6, 2: 5 / 6, 3: 1 / 6, 5: 1 / 6}, abs=1e-12)
    assert router.k_ == 2 and router.n_neighbours() == 2 and router.k == "auto"
    queries = line(0.4, 5.0, 11.6)
    np.testing.assert_array_equal(router.score(queries), KNNRouter(k=2, metric="l2").fit(Y6, X=X6).score(queries))
    np.testing.assert_array_equal(router.kneighbors(queries), KNNRouter(k=2, metric="l2").fit(Y6, X=X6).kneighbors(queries))


def test_ties_follow_the_position_rule_and_equal_means_take_the_smaller_k():
    # p1 (x=1) is at distance 1 from both others: at k=1 the lower position is its neighbour
    X, Y = line(0, 1, 2), np.array([[1, 0], [1, 0], [0, 1]], dtype=np.float32)
    # k=1: p0<-p1 LLM0 (1); p1<-p0 LLM0 (1); p2<-p1 LLM0 (0): 2/3
    # k=2: p0 [1,1]/2 tie -> LLM0 (1); p1 [1,1]/2 -> LLM0 (1); p2 [2,0]/2 -> LLM0 (0): 2/3, equal: k=1
    router = KNNRouter(k="auto", metric="l2").fit(Y, X=X)
    assert router.k_loo_ == pytest.approx({1: 2 / 3, 2: 2 / 3}, abs=1e-12) and router.k_ == 1
    # the same prompts in reverse order: now x=2 (Y [0,1]) holds the lower position and wins p1's tie
    # k=1: x=2<-x=1 LLM0 (0); x=1<-x=2 LLM1 (0); x=0<-x=1 LLM0 (1): 1/3; k=2: 0, 1, 1: 2/3
    reverse = KNNRouter(k="auto", metric="l2").fit(Y[::-1].copy(), X=X[::-1].copy())
    assert reverse.k_loo_ == pytest.approx({1: 1 / 3, 2: 2 / 3}, abs=1e-12) and reverse.k_ == 2
    same = KNNRouter(k="auto").fit(np.ones((12, 3), dtype=np.float32), X=np.random.default_rng(0).random((12, 4)))
    assert set(same.k_loo_) == {1, 2, 3, 5, 7, 10} and set(same.k_loo_.values()) == {1.0} and same.k_ == 1


def brute_force_loo(X: np.ndarray, Y: np.ndarray, k: int) -> float:
    """The documented rule written out per prompt: cosine distances in float64, t the k-th smallest
    distance to the other prompts, those nearer than t - TIE_TOL, then the band within TIE_TOL of t by
    position; NaN-mean of their rows; argmax (first on ties); the prompt's own cell, NaN left out."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    got = []
    for i in range(len(X)):
        others = np.array([j for j in range(len(X)) if j != i])
        d = 1.0 - U[others] @ U[i]
        t = np.sort(d)[k - 1]
        nearer = list(others[d < t - TIE_TOL])
        band = [j for j, dj in zip(others, d) if abs(dj - t) <= TIE_TOL]
        chosen = nearer + band[: k - len(nearer)]
        rows = Y[chosen]
        mean = np.array([np.mean(c[~np.isnan(c)]) if (~np.isnan(c)).any() else 0.0 for c in rows.T])
        got.append(Y[i, int(np.argmax(mean))])
    got = np.array(got, dtype=np.float64)
    return float(np.mean(got[~np.isnan(got)]))


def test_matches_the_rule_written_out_on_data_full_of_ties():
    # 60 prompts with small integer vectors: many exact duplicates and equal distances at every k
    rng = np.random.default_rng(3)
    X = rng.integers(1, 3, size=(60, 3)).astype(np.float32)
    Y = (rng.random((60, 4)) < 0.5).astype(np.float32)
    Y[rng.random(Y.shape) < 0.2] = np.nan
    router = KNNRouter(k="auto").fit(Y, X=X)
    for k in K_GRID:
        assert router.k_loo_[k] == pytest.approx(brute_force_loo(X, Y, k), abs=1e-12), k
    assert router.k_ == min(k for k, v in router.k_loo_.items() if v == max(router.k_loo_.values()))


def test_saved_with_the_router_and_read_back(tmp_path):
    router = make_router("knn:k=auto", metric="l2").fit(Y6, X=X6)
    router.save(tmp_path / "knn")
    doc = json.loads((tmp_path / "knn" / "router.json").read_text())
    assert doc["params"]["k"] == "auto" and doc["state"]["k_chosen"] == 2
    assert doc["state"]["k_loo"]["2"] == pytest.approx(5 / 6)
    loaded = Router.load(tmp_path / "knn")
    assert loaded.k_ == 2 and loaded.k_loo_ == router.k_loo_
    np.testing.assert_array_equal(loaded.score(line(0.4, 11.6)), router.score(line(0.4, 11.6)))
    del doc["state"]["k_chosen"]
    (tmp_path / "knn" / "router.json").write_text(json.dumps(doc))
    with pytest.raises(SavedArtifactError, match="records no chosen k"):
        Router.load(tmp_path / "knn")


def test_default_stays_five_and_bad_k_is_named():
    router = KNNRouter().fit(Y6, X=X6)
    assert router.k == 5 and router.n_neighbours() == 5 and not hasattr(router, "k_")
    for bad in ("five", True, 2.5):
        with pytest.raises(ValueError, match="k must be a positive integer or 'auto'"):
            KNNRouter(k=bad).fit(Y6, X=X6)
    with pytest.raises(ValueError, match=r"k must be at least 1 \(or 'auto'\); got 0"):
        KNNRouter(k=0).fit(Y6, X=X6)
    auto = KNNRouter(k="auto", metric="l2").fit(Y6, X=X6)
    auto.set_params(k=3)  # an explicit k takes over at once
    assert auto.n_neighbours() == 3
    np.testing.assert_array_equal(auto.kneighbors(line(0.4)), [[0, 1, 2]])


def test_tiny_and_approximate_training_sets():
    one = KNNRouter(k="auto").fit(np.ones((1, 2), dtype=np.float32), X=np.ones((1, 3), dtype=np.float32))
    assert one.k_loo_ == {} and one.k_ == 1
    two = KNNRouter(k="auto", metric="l2").fit(Y6[:2], X=X6[:2])
    assert two.k_loo_ == {1: 0.0} and two.k_ == 1  # each routes by the other, whose best LLM it got wrong
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((200, 8)).astype(np.float32), (rng.random((200, 3)) < 0.5).astype(np.float32)
    hnsw = KNNRouter(k="auto", index="hnsw").fit(Y, X=X)  # its own candidates, the same rule
    assert hnsw.k_ in K_GRID and set(hnsw.k_loo_) == set(K_GRID) and all(0 <= v <= 1 for v in hnsw.k_loo_.values())
    exact = KNNRouter(k="auto").fit(Y, X=X)
    assert loo_routed_means(exact) == exact.k_loo_
