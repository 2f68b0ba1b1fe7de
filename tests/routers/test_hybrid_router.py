"""Hybrid LLM's quality-gap labels (generalised to n LLMs) and r_trans relaxation on hand cases."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.routers.hybrid import HybridRouter, best_other, quality_gap_labels


def test_best_other_llm_per_cell():
    Y = np.array([[0.2, 0.9, 0.5], [1, 1, 0], [0.3, np.nan, 0.1], [0.4, np.nan, np.nan]])
    expected = [[0.9, 0.5, 0.9], [1, 1, 1], [0.1, 0.3, 0.3], [np.nan, 0.4, 0.4]]
    np.testing.assert_allclose(best_other(Y), expected)


def test_binary_labels_are_right_or_all_wrong():
    Y = np.array([[1, 0, 1], [0, 0, 0], [0, 1, np.nan]], dtype=np.float32)
    labels, t = quality_gap_labels(Y, "auto")
    np.testing.assert_array_equal(t, [0, 0, 0])
    np.testing.assert_array_equal(labels, [[1, 0, 1], [1, 1, 1], [0, 1, np.nan]])


def test_r_trans_picks_the_most_balanced_relaxation():
    Y = np.array([[0.5, 0.6], [0.5, 0.7], [0.5, 0.8], [0.5, 0.9]])  # LLM 0 trails by .1, .2, .3, .4
    labels, t = quality_gap_labels(Y, "auto")
    np.testing.assert_allclose(t, [0.2, 0.0])  # half of LLM 0's labels positive at t = .2; LLM 1 always best
    np.testing.assert_array_equal(labels[:, 0], [1, 1, 0, 0])
    fixed, t = quality_gap_labels(Y, 0.35)
    np.testing.assert_array_equal(fixed[:, 0], [1, 1, 1, 0])
    with pytest.raises(ValueError, match="relaxation"):
        quality_gap_labels(Y, "wide")


def test_router_learns_who_is_good_enough_and_saves_relaxations(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 0] <= 0, np.zeros(200, bool)], axis=1).astype(np.float32)
    router = HybridRouter(epochs=30).fit(Y, X)
    picks = router.route(X)[0][:, 0]
    assert (picks == np.where(X[:, 0] > 0, 0, 1)).mean() >= 0.9
    router.save(tmp_path / "h")
    again = HybridRouter.load(tmp_path / "h")
    np.testing.assert_array_equal(again.relaxation_, router.relaxation_)
    with pytest.raises(DataError, match="needs prompt features"):
        HybridRouter().fit(Y)
