"""C-cluster on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.eval.metrics import e_p
from recroute.routers.cluster import ClusterRouter

# two tight groups: around (0, 0) LLM 0 is right, around (10, 0) LLM 1 is right
X_TRAIN = np.array([[-1, 0], [1, 0], [0, 0], [9, 0], [11, 0], [10, 0]], dtype=np.float32)
Y_TRAIN = np.array([[1, 0, 0], [1, 0, 1], [1, 0, np.nan], [0, 1, 0], [0, 1, 0], [1, 1, 0]], dtype=np.float32)


@pytest.fixture
def router():
    return ClusterRouter(n_clusters=2, random_state=0).fit(Y_TRAIN, X_TRAIN)


def left_first(router):
    """Cluster order is k-means' own: return (left, right) cluster ids."""
    left = int(np.argmin(router.centers_[:, 0]))
    return left, 1 - left


def test_centres_cluster_means_and_routes(router):
    left, right = left_first(router)
    np.testing.assert_allclose(router.centers_[[left, right]], [[0, 0], [10, 0]], atol=1e-6)
    np.testing.assert_allclose(router.cluster_scores_[left], [1.0, 0.0, 0.5])  # NaN cell skipped
    np.testing.assert_allclose(router.cluster_scores_[right], [1 / 3, 1.0, 0.0])
    queries = np.array([[0.5, 1.0], [8.0, -1.0]], dtype=np.float32)
    np.testing.assert_array_equal(router.route(queries)[0][:, 0], [0, 1])
    np.testing.assert_allclose(router.score(queries), router.cluster_scores_[[left, right]])
    np.testing.assert_array_equal(router.route(queries, candidates=[1, 2])[0][:, 0], [2, 1])


def test_selection_probs_are_inverse_distance_memberships(router):
    query = np.array([[2.0, 0.0]], dtype=np.float32)  # distance 2 to the left centre, 8 to the right
    w_left, w_right = 1 / 2, 1 / 8
    expected = np.array([w_left, w_right, 0.0]) / (w_left + w_right)
    np.testing.assert_allclose(router.selection_probs(query), [expected], rtol=1e-6)
    bits = -(expected[:2] * np.log2(expected[:2])).sum()
    assert e_p(router.selection_probs(query), router.entropy_floor) == pytest.approx(bits)


def test_one_llm_for_every_cluster_has_zero_entropy():
    Y = np.tile([0.0, 1.0, 0.0], (len(X_TRAIN), 1))
    router = ClusterRouter(n_clusters=2).fit(Y, X_TRAIN)
    probs = router.selection_probs(np.array([[3.0, 0.0], [7.0, 1.0]], dtype=np.float32))
    np.testing.assert_allclose(probs, [[0, 1, 0], [0, 1, 0]])
    assert router.entropy_floor == 1e-4
    assert e_p(probs, router.entropy_floor) == pytest.approx(0.0)


def test_too_many_clusters_is_a_data_error():
    with pytest.raises(DataError, match="n_clusters=7"):
        ClusterRouter(n_clusters=7).fit(Y_TRAIN, X_TRAIN)
