"""RouteLLM's similarity-weighted Bradley-Terry ranking on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from recroute.errors import DataError, FitTooLargeError
from recroute.routers.sw_ranking import SWRankingRouter, average_win_counts, bradley_terry_mm


def test_win_counts_halve_ties_and_skip_unobserved():
    Y = np.array([[1, 0, 1, np.nan], [0.2, 0.5, 0.9, 0.5]], dtype=np.float32)
    # row 0: LLM 0 beats 1, ties 2 -> 1.5; row 1: 0.5 ties 0.5 -> 1 + 0.5
    np.testing.assert_allclose(average_win_counts(Y), [[1.5, 0, 1.5, 0], [0, 1.5, 3, 1.5]])


def test_two_llms_strength_ratio_is_the_win_ratio():
    xi = bradley_terry_mm(np.array([[3.0, 1.0]]), np.array([[[0, 4.0], [4.0, 0]]]), prior=0.0, n_iter=500)
    np.testing.assert_allclose(xi, [[np.log(3) / 2, -np.log(3) / 2]], atol=1e-6)


def test_mm_reaches_the_maximum_likelihood_with_prior():
    wins, N, prior = np.array([2.0, 3.5, 0.5]), np.array([[0, 3, 2], [3, 0, 1], [2, 1, 0]], dtype=float), 1.0

    def nll(xi):  # BT with ties counted as half wins + prior virtual ties vs strength 1
        pi = np.exp(xi)
        pairs = sum(N[j, k] * np.log(pi[j] + pi[k]) for j in range(3) for k in range(j + 1, 3))
        virtual = prior * (np.log(pi + 1.0) - 0.5 * xi).sum()
        return -(wins @ xi) + pairs + virtual

    expected = minimize(nll, np.zeros(3), method="BFGS", options={"gtol": 1e-10}).x
    got = bradley_terry_mm(wins[None], N[None], prior=prior, n_iter=2000, tol=1e-12)[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)
    c, total = np.array([[4.0, 4.0, 4.0]]), np.array([4.0])  # fully observed: N_jk = 4 either way
    full = np.full((1, 3, 3), 4.0)
    np.testing.assert_allclose(bradley_terry_mm(wins[None], (c, total), 1.0, 300),
                               bradley_terry_mm(wins[None], full, 1.0, 300), atol=1e-10)


def test_gamma_one_is_the_global_ranking_and_elo_scale():
    # prompt 1: A right, B wrong; prompt 2: both right -> wins A 1.5, B 0.5 over 2 battles
    X = np.array([[1, 0], [0, 1]], dtype=np.float32)
    Y = np.array([[1, 0], [1, 1]], dtype=np.float32)
    router = SWRankingRouter(gamma=1.0, prior=0.0, n_iter=500).fit(Y, X)
    scores = router.score(np.array([[1, 0], [0.3, 0.9]], dtype=np.float32)).astype(np.float64)
    np.testing.assert_allclose(scores[:, 0] - scores[:, 1], np.log(3), atol=1e-5)
    elo = router.elo(np.array([[1, 0]], dtype=np.float32))
    np.testing.assert_allclose(elo[0, 0] - elo[0, 1], 400 * np.log10(3), atol=1e-3)


def test_similarity_weighting_makes_the_ranking_local():
    X = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=np.float32)
    Y = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=np.float32)  # A wins near (1, 0), B near (0, 1)
    router = SWRankingRouter().fit(Y, X)  # RouteLLM's gamma = 10: weights 100 vs 10
    np.testing.assert_array_equal(router.route(np.array([[1, 0.1], [0.1, 1]], dtype=np.float32))[0][:, 0], [0, 1])


def test_pair_counts_exact_with_missing_cells():
    X = np.eye(2, dtype=np.float32)
    Y = np.array([[1, 0, np.nan], [1, np.nan, 0]], dtype=np.float32)
    router = SWRankingRouter().fit(Y, X)
    N = router._pairs(np.ones((1, 2)), router._pair_products())[0]
    np.testing.assert_allclose(N, [[2, 1, 1], [1, 1, 0], [1, 0, 1]])  # B and C never met (diagonal unused)


def test_refuses_pools_above_its_limit_and_needs_features(monkeypatch):
    monkeypatch.setattr(SWRankingRouter, "max_fit_llms", 4)
    monkeypatch.delenv("RECROUTE_FIT_LIMIT", raising=False)
    with pytest.raises(FitTooLargeError, match=r"takes at most 4 LLMs \(.*n_llms² work\); got 5") as info:  # a DataError
        SWRankingRouter().fit(np.zeros((3, 5)), np.eye(3, dtype=np.float32))
    assert info.value.can_take == "4 LLMs"  # the size it takes, for the zoo's refused rows
    with pytest.raises(DataError, match="needs prompt features"):
        SWRankingRouter().fit(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="gamma"):
        SWRankingRouter(gamma=0.5).fit(np.zeros((3, 3)), np.eye(3, dtype=np.float32))
