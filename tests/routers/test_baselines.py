"""RouterEval's reference routers on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.eval.metrics import e_p, mu_o, v_b
from recroute.routers.baselines import BestSingleRouter, OracleRouter, RandomRouter, ROPRouter

TRUTH = np.array([[0.0, 1.0, 0.0], [0.2, 0.5, 0.9], [0.0, 0.0, 0.0], [1.0, 1.0, 0.0]])


def test_random_entropy_is_log2_m_and_decisions_are_uniform():
    router = RandomRouter(random_state=1).fit(np.zeros((2, 4)))
    assert e_p(router.selection_probs(None, n=10)) == pytest.approx(2.0)
    choice = router.route(None, n=8000)[0][:, 0]
    np.testing.assert_allclose(np.bincount(choice, minlength=4) / 8000, 0.25, atol=0.025)


def test_random_draws_advance_but_repeat_per_seed():
    a, b = RandomRouter(random_state=7).fit(np.zeros((2, 3))), RandomRouter(random_state=7).fit(np.zeros((2, 3)))
    first = a.score(None, n=5)
    assert not np.array_equal(first, a.score(None, n=5))  # a single-prompt caller is not pinned to one LLM
    np.testing.assert_array_equal(first, b.score(None, n=5))
    a.fit(np.zeros((2, 3)))  # refitting restarts the sequence
    np.testing.assert_array_equal(first, a.score(None, n=5))


def test_random_expected_mu_is_mean_of_row_means():
    router = RandomRouter().fit(np.zeros((1, 2)))
    assert router.expected_mu(np.array([[1.0, 0.0], [1.0, 1.0]])) == pytest.approx(0.75)


def test_best_single_uses_observed_training_means():
    train = np.array([[1, np.nan, 0], [0, 1, np.nan], [1, 1, 0]], dtype=np.float32)
    router = BestSingleRouter().fit(train)  # means 2/3, 1 (two observed), 0
    np.testing.assert_allclose(router.llm_means_, [2 / 3, 1.0, 0.0], rtol=1e-6)
    idx, _ = router.route(None, n=4)
    assert (idx[:, 0] == 1).all()
    assert (router.route(None, n=4, candidates=[0, 2])[0][:, 0] == 0).all()
    probs = router.selection_probs(None, n=4)
    np.testing.assert_array_equal(probs, np.tile([0.0, 1.0, 0.0], (4, 1)))
    assert e_p(probs) == 0.0


def test_best_single_v_b_is_one_where_training_best_is_test_best_else_below():
    router = BestSingleRouter().fit(np.array([[1, 0], [1, 1], [0, 0]], dtype=np.float32))  # best: LLM 0
    choice = router.route(None, n=4)[0][:, 0]
    same_best = np.array([[1, 0], [1, 1], [1, 0], [0, 0]])
    assert v_b(mu_o(same_best, choice), same_best) == pytest.approx(1.0)
    other_best = np.array([[0, 1], [1, 1], [0, 1], [0, 0]])
    assert v_b(mu_o(other_best, choice), other_best) == pytest.approx(1 / 3)


def test_oracle_mu_is_mean_of_per_prompt_maxima():
    router = OracleRouter().fit(np.zeros((1, 3)))
    choice = router.route_truth(TRUTH)
    np.testing.assert_array_equal(choice, [1, 2, 0, 0])  # ties go to the first LLM
    assert mu_o(TRUTH, choice) == pytest.approx((1 + 0.9 + 0 + 1) / 4)
    assert router.expected_mu(TRUTH) == pytest.approx((1 + 0.9 + 0 + 1) / 4)
    assert v_b(mu_o(TRUTH, choice), TRUTH) == pytest.approx(2.9 / 4 / (2.5 / 4))
    np.testing.assert_array_equal(router.route_truth(TRUTH, candidates=[0, 1]), [1, 1, 0, 0])


def test_oracle_entropy_by_hand():
    router = OracleRouter().fit(np.zeros((1, 3)))
    probs = router.selection_probs_truth(TRUTH)
    p = np.array([0.2, 0.5, 0.9]) / 1.6
    by_hand = [0.0, -sum(x * math.log2(x) for x in p), math.log2(3), 1.0]  # one right; scores; none right; two right
    assert e_p(probs) == pytest.approx(np.mean(by_hand))


def test_r_o_expected_mu_and_distribution_by_hand():
    Y = np.array([[1.0, 0.0], [0.0, 0.0]])
    router = ROPRouter(p=0.5).fit(np.zeros((1, 2)))
    assert router.expected_mu(Y) == pytest.approx((0.5 * 1 + 0.5 * 0.5 + 0.0) / 2)
    np.testing.assert_allclose(router.selection_probs_truth(Y), [[0.75, 0.25], [0.5, 0.5]])


def test_r_o_draws_are_seeded_and_hit_the_best_at_rate_p_plus():
    Y = np.tile([1.0, 0.0], (20000, 1))
    router = ROPRouter(p=0.5, random_state=3).fit(np.zeros((1, 2)))
    choice = router.route_truth(Y)
    np.testing.assert_array_equal(choice, router.route_truth(Y))
    assert (choice == 0).mean() == pytest.approx(0.75, abs=0.015)  # p + (1 - p) / m
    np.testing.assert_array_equal(ROPRouter(p=1.0).fit(np.zeros((1, 2))).route_truth(Y), 0)


def test_truth_routers_refuse_to_score_without_truth():
    for router in (OracleRouter().fit(np.zeros((1, 3))), ROPRouter().fit(np.zeros((1, 3)))):
        with pytest.raises(ValueError, match="true scores"):
            router.score(None, n=2)
        with pytest.raises(ValueError, match="route_truth"):
            router.route(None, n=2)
        with pytest.raises(ValueError, match="route_truth"):
            router.selection_probs(None, n=2)


def test_truth_shape_and_p_are_checked():
    with pytest.raises(DataError, match=r"\(n_prompts, 3\)"):
        OracleRouter().fit(np.zeros((1, 3))).route_truth(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="p must lie"):
        ROPRouter(p=1.5).fit(np.zeros((1, 3))).route_truth(np.zeros((2, 3)))
