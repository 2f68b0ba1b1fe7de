"""Avengers-Pro (clusters, normalised per-LLM performance, top-p) and its cost trade-off, on hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.cost.decide import alpha_utility
from recroute.errors import DataError
from recroute.routers.avengers import AvengersRouter

# two tight groups: around (0, 0) and around (10, 0)
X_TRAIN = np.array([[-1, 0], [1, 0], [0, 0], [9, 0], [11, 0], [10, 0]], dtype=np.float32)
Y_TRAIN = np.array(
    [[1, 0.5, 0], [1, 0.5, 0], [1, np.nan, 0], [0.2, 0.4, np.nan], [0.2, 0.4, np.nan], [0.2, 0.4, np.nan]],
    dtype=np.float32,
)
QUERIES = np.array([[0.5, 1.0], [8.0, -1.0]], dtype=np.float32)


def fit(**params) -> AvengersRouter:
    return AvengersRouter(n_clusters=2, **params).fit(Y_TRAIN, X_TRAIN)


def test_cluster_means_skip_nan_and_fall_back_to_the_llm_mean():
    router = fit(top_p=1)
    left = int(np.argmin(router.centers_[:, 0]))
    np.testing.assert_allclose(router.cluster_scores_[left], [1.0, 0.5, 0.0])  # NaN cell skipped
    np.testing.assert_allclose(router.cluster_scores_[1 - left], [0.2, 0.4, 0.0])  # never observed: overall 0/3
    # min-max per cluster: left [1, .5, 0]; right (0.2, 0.4, 0.0) -> [.5, 1, 0]
    np.testing.assert_allclose(router.cluster_profiles()[[left, 1 - left]], [[1, 0.5, 0], [0.5, 1, 0]], atol=1e-6)
    np.testing.assert_allclose(router.score(QUERIES), [[1, 0.5, 0], [0.5, 1, 0]], atol=1e-6)
    np.testing.assert_array_equal(router.route(QUERIES)[0][:, 0], [0, 1])


def test_top_p_averages_the_nearest_clusters():
    router = fit(top_p=2)  # both clusters for every prompt: the mean of the two profiles
    np.testing.assert_allclose(router.score(QUERIES), [[0.75, 0.75, 0.0]] * 2, atol=1e-6)
    raw = fit(top_p=1, normalise=False)
    np.testing.assert_allclose(raw.score(QUERIES), [[1, 0.5, 0], [0.2, 0.4, 0]], atol=1e-6)


def test_more_clusters_than_prompts_and_missing_features():
    router = AvengersRouter(n_clusters=60).fit(Y_TRAIN, X_TRAIN)  # the default k on 6 prompts
    assert len(router.centers_) <= 6 and np.isfinite(router.score(QUERIES)).all()
    with pytest.raises(DataError, match="needs prompt features"):
        AvengersRouter().fit(Y_TRAIN)
    with pytest.raises(ValueError, match="top_p"):
        AvengersRouter(top_p=0).fit(Y_TRAIN, X_TRAIN)


def test_alpha_utility_is_the_papers_performance_efficiency_score():
    scores, costs = np.array([[0.9, 0.6, 0.3]]), np.array([[10.0, 2.0, 1.0]])
    # s~ = [1, .5, 0], c~ = [1, 1/9, 0]: 0.5 s~ + 0.5 (1 - c~)
    np.testing.assert_allclose(alpha_utility(scores, costs, 0.5), [[0.5, 0.25 + 0.5 * 8 / 9, 0.5]])
    np.testing.assert_allclose(alpha_utility(scores, costs, 1.0), [[1.0, 0.5, 0.0]])
    np.testing.assert_allclose(alpha_utility(scores, costs, 0.0), [[0.0, 8 / 9, 1.0]])
    np.testing.assert_allclose(alpha_utility(scores, np.array([3.0, 3.0, 3.0]), 0.5), [[1.0, 0.75, 0.5]])
    with pytest.raises(DataError, match="alpha"):
        alpha_utility(scores, costs, 1.5)
