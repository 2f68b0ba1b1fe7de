"""Stochastic policies: hand-computed probabilities, propensities of draws, spec round trips, errors."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.feedback.policies import EpsilonGreedy, Greedy, Softmax, parse_policy, sample_rows

S = np.array([[0.2, 0.9, 0.5], [0.7, 0.7, 0.1]])


def test_greedy_ties_to_lower_index_and_propensity_one():
    P = Greedy().probabilities(S)
    np.testing.assert_array_equal(P, [[0, 1, 0], [1, 0, 0]])
    chosen, prop = Greedy().choose(S, None, np.random.default_rng(0))
    np.testing.assert_array_equal(chosen, [1, 0])
    np.testing.assert_array_equal(prop, [1.0, 1.0])


def test_epsilon_greedy_hand_computed_with_mask():
    allowed = np.array([[True, False, True], [True, True, True]])
    P = EpsilonGreedy(0.2).probabilities(S, allowed)
    # row 0: allowed {0, 2}, greedy = 2: 0.8 + 0.1 on 2, 0.1 on 0; row 1: greedy 0: 0.8 + 0.2/3
    np.testing.assert_allclose(P, [[0.1, 0.0, 0.9], [0.8 + 0.2 / 3, 0.2 / 3, 0.2 / 3]])
    np.testing.assert_allclose(P.sum(axis=1), 1.0)


def test_softmax_hand_computed():
    P = Softmax(0.5).probabilities(np.array([[0.0, 0.5, np.nan]]), np.array([True, True, False]))
    e = np.exp([0.0, 1.0])
    np.testing.assert_allclose(P, [[e[0] / e.sum(), e[1] / e.sum(), 0.0]])


def test_choose_returns_the_probability_of_the_drawn_llm_and_matches_frequencies():
    policy = parse_policy("epsilon_greedy:epsilon=0.3")
    scores = np.tile([[0.1, 0.8, 0.3, 0.2]], (20000, 1))
    chosen, prop = policy.choose(scores, None, np.random.default_rng(1))
    P = policy.probabilities(scores[:1])[0]
    np.testing.assert_allclose(prop, P[chosen])
    freq = np.bincount(chosen, minlength=4) / len(chosen)
    np.testing.assert_allclose(freq, P, atol=0.01)


def test_sample_rows_never_picks_zero_probability_columns():
    P = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]] * 500)
    chosen = sample_rows(P, np.random.default_rng(3))
    assert (P[np.arange(len(P)), chosen] > 0).all()


@pytest.mark.parametrize("spec", ["greedy", "epsilon_greedy:epsilon=0.2", "softmax:temperature=0.1"])
def test_spec_round_trip(spec):
    assert parse_policy(spec).spec == spec
    assert parse_policy(parse_policy(spec).spec) == parse_policy(spec)


@pytest.mark.parametrize(
    "spec, message",
    [("boltzmann", "unknown policy"), ("epsilon_greedy:epsilon=2", "epsilon must be in"),
     ("softmax:temperature=0", "temperature must be"), ("softmax:tau=1", "bad parameter"),
     ("epsilon_greedy:epsilon=x", "must be a number")],
)
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_policy(spec)


def test_bad_scores_name_rows():
    with pytest.raises(DataError, match="no allowed candidate at row 1"):
        Greedy().probabilities(S, np.array([[True, False, False], [False, False, False]]))
    with pytest.raises(DataError, match="NaN or inf for an allowed LLM at row 0"):
        Greedy().probabilities(np.array([[np.nan, 1.0]]))
    with pytest.raises(DataError, match="shape"):
        Greedy().probabilities(S, np.ones((2, 2), dtype=bool))
