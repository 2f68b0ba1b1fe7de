"""Simulated logs (RouterEval split, true propensities, unobserved cells never revealed) and learning from logs."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.data.synthetic import make_synthetic
from recroute.errors import DataError, NotSupportedError
from recroute.feedback.bandit import Bandit, bandit_from_log, log_matrix
from recroute.feedback.learn import dr_matrix, fit_from_log, ips_matrix
from recroute.feedback.policies import Greedy
from recroute.feedback.simulate import (
    LoggingPolicy, fit_logging_policy, population, simulate_arrays, simulate_logs, split_positions,
)


@pytest.fixture(scope="module")
def data():
    return make_synthetic(600, 6, 3, missing_rate=0.2, random_state=1)


@pytest.fixture(scope="module")
def policy(data):
    return fit_logging_policy(data, "knn", "epsilon_greedy:epsilon=0.3", split="train")


def test_split_positions_follow_routereval(data):
    from recroute.data.routereval import build_router_dataset

    rd = build_router_dataset(data, {"easy": (3,)})
    order = np.argsort(data.prompt_ids.astype(str), kind="stable")
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(split_positions(data, part), np.sort(order[rd["split_index"][f"{part}_indices"]]))
    with pytest.raises(DataError, match="split must be one of"):
        split_positions(data, "holdout")


def test_simulated_log_reveals_only_observed_chosen_cells(data, policy):
    log = simulate_logs(data, policy, 3000, seed=0, split="test")
    Y = data.dense(np.nan)
    test = set(data.prompt_ids[split_positions(data, "test")])
    rows = data.prompt_index(log.prompt_id.tolist())
    cols = data.llm_index(log.chosen.tolist())
    assert set(log.prompt_id) <= test
    np.testing.assert_array_equal(log.outcome.to_numpy(), Y[rows, cols])  # the true cell, never a filled 0
    for cands, row in zip(log.candidates.head(200), rows[:200]):  # candidates = the observed LLMs of the prompt
        assert sorted(cands) == sorted(data.llm_names[~np.isnan(Y[row])])
    assert log.attrs["simulation"]["unobserved_candidate_cells"] > 0
    assert log.policy.iloc[0] == "epsilon_greedy:epsilon=0.3" and log.decision_id.is_unique


def test_recorded_propensities_are_the_policy_probabilities(data, policy):
    bandit, _ = simulate_arrays(data, policy, 4000, seed=1)
    pos, allowed, _ = population(data, "test")
    P = policy.probabilities(data.embeddings[pos], allowed)
    where = {p: i for i, p in enumerate(pos)}
    idx = np.array([where[r] for r in bandit.rows])
    np.testing.assert_allclose(bandit.propensity, P[idx, bandit.chosen])
    # empirical choice frequencies match the recorded probabilities on the most frequent prompt
    top = np.bincount(idx).argmax()
    freq = np.bincount(bandit.chosen[idx == top], minlength=data.n_llms) / (idx == top).sum()
    assert np.abs(freq - P[top]).max() < 0.25


def test_log_round_trip_to_bandit(data, policy, tmp_path):
    from recroute.feedback.logs import read_decision_log, write_decision_log

    log = simulate_logs(data, policy, 300, seed=2)
    path = write_decision_log(log, tmp_path / "log.jsonl")
    bandit, _ = bandit_from_log(read_decision_log(path), data.llm_names, data.prompt_ids)
    direct, _ = simulate_arrays(data, policy, 300, seed=2)
    np.testing.assert_array_equal(bandit.rows, direct.rows)
    np.testing.assert_array_equal(bandit.chosen, direct.chosen)
    np.testing.assert_allclose(bandit.propensity, direct.propensity)
    np.testing.assert_array_equal(bandit.allowed, direct.allowed)
    with pytest.raises(DataError, match="not one of the"):
        bandit_from_log(log, data.llm_names[:2], data.prompt_ids)


SMALL = Bandit(rows=np.array([5, 5, 9]), allowed=np.array([[True, True, False], [True, True, False], [True, True, True]]),
               chosen=np.array([0, 1, 2]), propensity=np.array([0.5, 0.25, 0.8]), reward=np.array([1.0, 0.0, 1.0]),
               llm_names=np.array(["a", "b", "c"]))


def test_naive_dr_and_ips_matrices_by_hand():
    rows, Y = log_matrix(SMALL)
    np.testing.assert_array_equal(rows, [5, 9])
    np.testing.assert_array_equal(Y, [[1.0, 0.0, np.nan], [np.nan, np.nan, 1.0]])
    q = np.array([[0.4, 0.6, 0.0], [0.2, 0.2, 0.0], [0.5, 0.5, 0.5]])
    _, G = dr_matrix(SMALL, q)
    # prompt 5: decision 0 -> a: 0.4 + (1 - 0.4)/0.5 = 1.6, b: 0.6; decision 1 -> a: 0.2, b: 0.2 + (0 - 0.2)/0.25 = -0.6
    # prompt 9: a, b: 0.5; c: 0.5 + (1 - 0.5)/0.8 = 1.125
    np.testing.assert_allclose(G, [[0.9, 0.0, np.nan], [0.5, 0.5, 1.125]], atol=1e-12)
    _, Gc = dr_matrix(SMALL, q, clip=(0.0, 1.0))
    np.testing.assert_allclose(Gc[1], [0.5, 0.5, 1.0])
    _, Yi, W = ips_matrix(SMALL)
    np.testing.assert_allclose(W, [[(1 / 0.5) / 2, (1 / 0.25) / 2, 0.0], [0.0, 0.0, 1 / 0.8]])


def test_learning_from_a_log_with_every_method(data, policy):
    bandit, _ = simulate_arrays(data, policy, 3000, seed=0, split="train")
    X = data.embeddings
    for method in ("naive", "dr"):
        router = fit_from_log("knn:k=10", bandit, X, method, reward_router="linear", folds=2)
        assert router.score(X[:5]).shape == (5, data.n_llms)
    router = fit_from_log("linear", bandit, X, "ips")
    assert router.score(X[:5]).shape == (5, data.n_llms)
    with pytest.raises(NotSupportedError, match="needs a torch router"):
        fit_from_log("knn", bandit, X, "ips")


def test_torch_cell_weights_change_the_fit_and_zero_weights_ignore_cells():
    from recroute.routers.linear import LinearRouter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    Y = (rng.random((80, 3)) < 0.5).astype(np.float32)
    W = np.ones_like(Y)
    a = LinearRouter(epochs=3).fit(Y, X).score(X)
    b = LinearRouter(epochs=3).fit(Y, X, cell_weights=W).score(X)
    np.testing.assert_allclose(a, b, atol=1e-6)  # unit weights = the unweighted loss
    W0 = W.copy()
    W0[:, 2] = 0.0
    Y2 = Y.copy()
    Y2[:, 2] = 1.0 - Y2[:, 2]  # flipping a zero-weight column changes nothing
    c = LinearRouter(epochs=3).fit(Y, X, cell_weights=W0).score(X)
    d = LinearRouter(epochs=3).fit(Y2, X, cell_weights=W0).score(X)
    np.testing.assert_allclose(c, d, atol=1e-6)
    with pytest.raises(DataError, match="cell_weights"):
        LinearRouter(epochs=1).fit(Y, X, cell_weights=-W)


def test_greedy_logging_policy_has_propensity_one(data):
    lp = fit_logging_policy(data, "best_single", Greedy(), split="train")
    assert isinstance(lp, LoggingPolicy)
    bandit, info = simulate_arrays(data, lp, 200, seed=0)
    assert (bandit.propensity == 1.0).all() and info["n"] == 200
