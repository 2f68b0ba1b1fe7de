"""soft_cluster: soft k-means memberships over several partitions, smoothed cluster means."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.routers.cluster import ClusterRouter, SoftClusterRouter

# two tight groups on the unit circle: around angle 0 LLM 0 is right, around angle pi/2 LLM 1 is
ANGLES = np.array([-0.05, 0.0, 0.05, np.pi / 2 - 0.05, np.pi / 2, np.pi / 2 + 0.05])
X_TRAIN = np.stack([np.cos(ANGLES), np.sin(ANGLES)], axis=1).astype(np.float32)
Y_TRAIN = np.array([[1, 0, 0], [1, 0, 1], [1, 0, np.nan], [0, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)


def first_cluster_is_right(router: SoftClusterRouter, p: int = 0) -> tuple[int, int]:
    """(right, up) cluster ids of partition p (k-means numbers clusters in its own order)."""
    right = int(np.argmax(router.centres_[p, :, 0]))
    return right, 1 - right


def test_profiles_are_smoothed_membership_weighted_means():
    router = SoftClusterRouter(n_clusters=2, n_partitions=1, temperature=0.05, prior=2.0).fit(Y_TRAIN, X_TRAIN)
    C = router.centres_[0].astype(np.float64)
    S = X_TRAIN.astype(np.float64) @ C.T / 0.05
    W = np.exp(S - S.max(axis=1, keepdims=True))
    W /= W.sum(axis=1, keepdims=True)
    observed = ~np.isnan(Y_TRAIN)
    Y0 = np.where(observed, Y_TRAIN, 0.0)
    means = Y0.sum(axis=0) / observed.sum(axis=0)  # NaN cell skipped: LLM 2's mean is 1/5
    expected = (W.T @ Y0 + 2.0 * means) / (W.T @ observed + 2.0)
    np.testing.assert_allclose(router.profiles_[0], expected, rtol=1e-5)
    np.testing.assert_allclose(router.score(X_TRAIN), W @ expected, rtol=1e-5)


def test_cold_limit_is_the_hard_cluster_mean():
    """temperature -> 0 and prior 0: each prompt gets its cluster's plain mean, as in C-cluster."""
    soft = SoftClusterRouter(n_clusters=2, n_partitions=1, temperature=1e-4, prior=0.0).fit(Y_TRAIN, X_TRAIN)
    right, up = first_cluster_is_right(soft)
    np.testing.assert_allclose(soft.profiles_[0, right], [1.0, 0.0, 0.5], atol=1e-6)
    np.testing.assert_allclose(soft.profiles_[0, up], [1 / 3, 1.0, 0.0], atol=1e-6)
    queries = np.array([[1.0, 0.1], [0.1, 1.0]], dtype=np.float32)
    hard = ClusterRouter(n_clusters=2).fit(Y_TRAIN, X_TRAIN)
    np.testing.assert_allclose(soft.score(queries), hard.score(queries), atol=1e-6)
    np.testing.assert_array_equal(soft.route(queries)[0][:, 0], [0, 1])


def test_scores_are_probabilities_and_partitions_average():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 8)).astype(np.float32)
    Y = (rng.random((200, 4)) < 0.5).astype(np.float32)
    router = SoftClusterRouter(n_clusters=10, n_partitions=3, random_state=7).fit(Y, X)
    assert router.centres_.shape == (3, 10, 8) and router.profiles_.shape == (3, 10, 4)
    assert not np.allclose(router.centres_[0], router.centres_[1])  # distinct seeds per partition
    S = router.score(X[:20])
    assert ((S >= 0) & (S <= 1)).all()
    singles = []
    for p in range(3):
        one = SoftClusterRouter(n_clusters=10, n_partitions=1).fit(Y, X)
        one.centres_, one.profiles_ = router.centres_[p : p + 1], router.profiles_[p : p + 1]
        singles.append(one.score(X[:20]))
    np.testing.assert_allclose(S, np.mean(singles, axis=0), rtol=1e-5)


def test_more_clusters_than_prompts_are_clipped():
    router = SoftClusterRouter(n_clusters=50, n_partitions=1).fit(Y_TRAIN, X_TRAIN)
    assert router.centres_.shape[1] == len(X_TRAIN)


@pytest.mark.parametrize("params", [{"n_clusters": 0}, {"n_partitions": 0}, {"temperature": 0.0}, {"prior": -1.0}])
def test_bad_parameters_raise(params):
    with pytest.raises(ValueError, match="soft_cluster"):
        SoftClusterRouter(**params).fit(Y_TRAIN, X_TRAIN)
