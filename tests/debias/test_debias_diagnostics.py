"""Each diagnostic pinned on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recroute.data.synthetic import make_synthetic
from recroute.debias import diagnostics as dg
from recroute.errors import DataError
from recroute.eval import metrics
from recroute.routers.registry import make_router


# ---------------------------------------------------------------------- the selection distribution
def test_gini_by_hand():
    assert dg.gini([1 / 3, 1 / 3, 1 / 3]) == pytest.approx(0.0)
    assert dg.gini([1.0, 0.0, 0.0]) == pytest.approx(2 / 3)  # (m - 1) / m
    # pairs |x_i - x_j| over i, j: 0.5 four times = 2; / (2 m^2 mean) = 2 / (2 * 9 * 1/3) = 1/3
    assert dg.gini([0.5, 0.5, 0.0]) == pytest.approx(1 / 3)
    # 0.7, 0.2, 0.1: sum |x_i - x_j| = 2 (0.5 + 0.6 + 0.1) = 2.4; / (2 * 9 / 3) = 0.4
    assert dg.gini([0.1, 0.7, 0.2]) == pytest.approx(0.4)
    assert dg.gini([0.0, 0.0]) == 0.0


def test_normalized_entropy_by_hand():
    assert dg.normalized_entropy([0.25] * 4) == pytest.approx(1.0)
    assert dg.normalized_entropy([0.5, 0.5, 0.0, 0.0]) == pytest.approx(0.5)  # 1 bit of 2
    assert dg.normalized_entropy([0.5, 0.25, 0.25]) == pytest.approx(1.5 / math.log2(3))
    assert dg.normalized_entropy([0.0, 1.0, 0.0]) == pytest.approx(0.0)
    assert dg.normalized_entropy([1.0]) == 0.0


def test_coverage_and_summary():
    assert dg.coverage([0.5, 0.5, 0.0, 0.0]) == 0.5
    assert dg.coverage([0.2, 0.3, 0.5]) == 1.0
    out = dg.selection_summary(np.array([0, 0, 1, 3]), 4)
    np.testing.assert_allclose(out["shares"], [0.5, 0.25, 0.0, 0.25])
    assert out["coverage"] == 0.75
    assert out["selection_entropy"] == pytest.approx(1.5 / 2)
    with pytest.raises(DataError):
        dg.gini([0.5, -0.5])


# ---------------------------------------------------------------------- the long tail
def test_tail_mu_o_by_hand():
    Y = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=float)
    choice = np.array([2, 1, 0, 0])
    np.testing.assert_array_equal(dg.tail_mask(Y, 0), [False, True, True, False])
    assert dg.tail_mu_o(Y, choice, best_llm=0) == pytest.approx(0.5)  # rows 1 (right), 2 (nobody right)
    assert dg.tail_mu_o(Y, np.zeros(4, dtype=int), best_llm=0) == 0.0  # collapsed on the best LLM
    assert math.isnan(dg.tail_mu_o(Y[[0, 3]], choice[[0, 3]], best_llm=0))  # no tail
    with pytest.raises(DataError, match="out of range"):
        dg.tail_mask(Y, 3)


def test_best_llm_index_skips_unobserved_cells():
    Y = np.array([[1, np.nan, 0], [0, 1, 1], [1, np.nan, 1]], dtype=float)
    assert dg.best_llm_index(Y) == 1  # 1/1 observed beats 2/3
    assert dg.best_llm_index(np.array([[1, 1], [0, 0]], dtype=float)) == 0  # ties: first


# ---------------------------------------------------------------------- calibration
def test_ece_and_reliability_by_hand():
    scores = np.array([[0.1, 0.55], [0.1, 0.55], [0.9, 0.55], [0.95, 0.55]])
    Y = np.array([[0, 1], [1, 0], [1, np.nan], [1, 1]], dtype=float)
    # LLM 0: bin 1 holds 0.1, 0.1 (accuracy 0.5) -> 2/4 * 0.4; bin 9 holds 0.9, 0.95 (accuracy 1) -> 2/4 * 0.075
    # LLM 1: one bin (0.55) over the 3 observed cells, accuracy 2/3 -> |2/3 - 0.55|
    np.testing.assert_allclose(dg.ece(scores, Y), [0.2 + 0.0375, 2 / 3 - 0.55])
    table = dg.reliability(scores, Y, n_bins=10)
    assert list(table["llm"]) == [0, 0, 1] and list(table["bin"]) == [1, 9, 5]
    np.testing.assert_allclose(table["accuracy"], [0.5, 1.0, 2 / 3])
    np.testing.assert_allclose(table["mean_score"], [0.1, 0.925, 0.55])
    assert list(table["count"]) == [2, 2, 3]
    assert dg.ece(np.array([[1.0], [0.0]]), np.array([[1.0], [0.0]]))[0] == 0.0  # 1.0 falls in the last bin


def test_calibration_needs_probabilities():
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        dg.ece(np.array([[1.5, 0.2]]), np.array([[1.0, 0.0]]))
    out = dg.diagnostics_from_scores(np.array([[2.0, -1.0], [0.0, 3.0]]), np.array([[1.0, 0.0], [0.0, 1.0]]), 0)
    assert math.isnan(out["ece"]) and out["mu_o"] == 1.0


def test_diagnostics_from_scores_by_hand():
    scores = np.array([[0.9, 0.1, 0.2], [0.8, 0.3, 0.1], [0.2, 0.7, 0.1], [0.6, 0.5, 0.4]])
    Y = np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=float)
    out = dg.diagnostics_from_scores(scores, Y, best_llm=0)
    assert out["mu_o"] == pytest.approx(0.75)  # choices 0, 0, 1, 0
    np.testing.assert_allclose(out["shares"], [0.75, 0.25, 0.0])
    assert out["coverage"] == pytest.approx(2 / 3)
    assert out["tail_size"] == 2 and out["tail_mu_o"] == pytest.approx(0.5)  # rows 1 (wrong), 2 (right)
    assert out["e_p"] == pytest.approx(metrics.e_p(metrics.softmax(scores)))


def test_diagnose_a_fitted_router():
    data = make_synthetic(600, 5, 3, popularity_skew=2.0, random_state=1)
    Y = data.dense(np.nan)
    router = make_router("knn:k=10").fit(Y[:500], data.embeddings[:500])
    best = dg.best_llm_index(Y[:500])
    out = dg.diagnose(router, data.embeddings[500:], Y[500:], best)
    assert out["best_llm"] == "llm_0" and best == 0  # the synthetic LLMs come strongest first
    assert out["per_llm"]["share"].sum() == pytest.approx(1.0)
    assert 0 <= out["gini"] <= 0.8 and 0 <= out["selection_entropy"] <= 1
    assert out["reliability"] is not None and np.isfinite(out["ece"])
    by_name = dg.diagnose(router, data.embeddings[500:], Y[500:], "llm_0")
    assert by_name["mu_o"] == out["mu_o"]
    with pytest.raises(DataError, match="unknown LLM"):
        dg.diagnose(router, data.embeddings[500:], Y[500:], "nobody")
