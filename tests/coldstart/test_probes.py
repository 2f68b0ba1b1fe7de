"""Probe strategies: hand-checked choices, determinism under a seed, candidates and errors."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.coldstart.probes import STRATEGIES, ProbeSet, select_probes
from recroute.errors import DataError

RNG = np.random.default_rng(0)
N, M = 60, 12
Y = (RNG.random((N, M)) < np.linspace(0.1, 0.9, N)[:, None]).astype(float)
X = RNG.standard_normal((N, 8))
TASKS = np.array(["a"] * 30 + ["b"] * 20 + ["c"] * 10)


def probes(strategy, k, seed=0, candidates=None):
    return select_probes(strategy, k, Y=Y, X=X, tasks=TASKS, seed=seed, candidates=candidates,
                         answer=lambda i: float(Y[i, 0]))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_deterministic_sized_and_distinct(strategy):
    first, again = probes(strategy, 7, seed=3), probes(strategy, 7, seed=3)
    np.testing.assert_array_equal(first.rows, again.rows)
    np.testing.assert_array_equal(first.weights, again.weights)
    assert len(first.rows) == 7 and len(np.unique(first.rows)) == 7
    assert np.isclose(first.weights.sum(), 1.0) and (first.weights >= 0).all()


@pytest.mark.parametrize("strategy", ["random", "stratified"])
def test_random_strategies_change_with_the_seed(strategy):
    assert not np.array_equal(probes(strategy, 7, seed=0).rows, probes(strategy, 7, seed=1).rows)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_candidates_are_respected(strategy):
    allowed = np.arange(0, N, 2)
    assert set(probes(strategy, 6, candidates=allowed).rows) <= set(allowed)


def test_stratified_allocates_by_largest_remainder():
    rows = probes("stratified", 6).rows  # quotas 3, 2, 1 exactly
    assert [int(np.sum(TASKS[rows] == t)) for t in "abc"] == [3, 2, 1]
    rows = probes("stratified", 4).rows  # quotas 2, 1.33, 0.67: floors 2, 1, 0; the largest remainder (c) gets 1
    assert [int(np.sum(TASKS[rows] == t)) for t in "abc"] == [2, 1, 1]


def test_anchor_weights_are_cluster_shares():
    # two tight, well separated groups of 40 and 20 prompts: one anchor each, weights 2/3 and 1/3
    Z = np.vstack([np.zeros((40, 2)), np.full((20, 2), 10.0)]) + 0.01 * RNG.standard_normal((60, 2))
    chosen = select_probes("anchor_embedding", 2, X=Z)
    assert sorted((chosen.rows < 40).tolist()) == [False, True]
    np.testing.assert_allclose(chosen.weights[np.argsort(chosen.rows)], [2 / 3, 1 / 3])
    assert chosen.weighted_mean(np.array([1.0, 0.0])) == pytest.approx(2 / 3)


def test_anchor_correctness_clusters_result_vectors():
    # prompts 0-29 answered right by LLMs 0-5 only, prompts 30-59 by LLMs 6-11 only
    R = np.zeros((60, 12))
    R[:30, :6] = 1.0
    R[30:, 6:] = 1.0
    chosen = select_probes("anchor_correctness", 2, Y=R)
    assert sorted((chosen.rows < 30).tolist()) == [False, True]
    np.testing.assert_allclose(chosen.weights, [0.5, 0.5])


def test_informative_picks_the_discriminating_prompt_in_each_difficulty_bin():
    # 4 LLMs of rising ability; within each pair of equally difficult prompts, the one that the strong
    # LLMs get right (discriminating) must be chosen over the one the weak ones get right
    R = np.array([
        [0, 0, 0, 1], [1, 0, 0, 0],  # difficulty 0.25: prompt 0 discriminates, prompt 1 is reversed
        [0, 0, 1, 1], [1, 1, 0, 0],  # difficulty 0.5
        [0, 1, 1, 1], [1, 1, 1, 0],  # difficulty 0.75
    ], dtype=float)
    assert select_probes("informative", 3, Y=R).rows.tolist() == [0, 2, 4]


def test_weighted_mean_ignores_unobserved_probes():
    chosen = ProbeSet(np.array([0, 1, 2]), np.array([0.5, 0.25, 0.25]))
    assert chosen.weighted_mean(np.array([1.0, np.nan, 0.0])) == pytest.approx(0.5 / 0.75)
    assert np.isnan(chosen.weighted_mean(np.array([np.nan] * 3)))


def test_k_zero_and_errors():
    assert probes("anchor_correctness", 0).rows.size == 0
    with pytest.raises(DataError, match="unknown probe strategy"):
        probes("clever", 3)
    with pytest.raises(DataError, match="only 5 candidate"):
        probes("random", 6, candidates=np.arange(5))
    with pytest.raises(DataError, match="task labels"):
        select_probes("stratified", 3, Y=Y)
    with pytest.raises(DataError, match="embeddings"):
        select_probes("anchor_embedding", 3, Y=Y)
    with pytest.raises(DataError, match="results Y"):
        select_probes("informative", 3, X=X)
    with pytest.raises(DataError, match="disagree"):
        select_probes("random", 3, Y=Y, X=X[:10])
