"""The contested probe design (recroute.coldstart.design): allocation, order and the stratified estimate by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.coldstart.design import _allocate, contested_design, stratified_mean, uniform_design
from recroute.errors import DataError


def test_allocation_is_neyman_within_the_floor_and_the_stratum_sizes():
    # sizes 10, 10; spreads 0 and 1; budget 10, floor 0.25: stratum 0 keeps a quarter of its proportional
    # share (1.25), stratum 1 takes the rest (8.75); largest remainders round to 1 and 9
    assert _allocate(10, np.array([10.0, 10.0]), np.array([0.0, 1.0]), 0.25).tolist() == [1, 9]
    # Neyman proper: shares 4 * 0.1 : 4 * 0.3 of 4 probes = 1 : 3, both above the floor 0.5 * 2 = 1
    assert _allocate(4, np.array([4.0, 4.0]), np.array([0.1, 0.3]), 0.5).tolist() == [1, 3]
    # a stratum cannot take more than its size: 3 of 3, the other 7 probes to the second stratum
    assert _allocate(10, np.array([3.0, 17.0]), np.array([1.0, 0.01]), 0.25).tolist() == [3, 7]
    # no spread anywhere: proportional
    assert _allocate(6, np.array([2.0, 4.0]), np.array([0.0, 0.0]), 0.25).tolist() == [2, 4]


def test_contested_design_strata_order_and_its_prefixes():
    # 8 prompts: 0-3 every LLM agrees (spread 0), 4-7 they split 2 against 2 (spread 0.5)
    F = np.vstack([np.ones((2, 4)), np.zeros((2, 4)), np.tile([1.0, 1.0, 0.0, 0.0], (4, 1))])
    plan = contested_design(F, 4, seed=0, strata=2, floor=0.5)
    assert plan.stratum.tolist() == [0, 0, 0, 0, 1, 1, 1, 1] and plan.weight.tolist() == [0.5, 0.5]
    assert len(set(plan.order.tolist())) == 4 and np.sum(plan.order < 4) == 1  # allocation 1 : 3
    assert plan.probe_strata(4).tolist() == plan.stratum[plan.order].tolist()
    big = contested_design(np.vstack([np.zeros((100, 3)), np.tile([0.0, 1.0, 1.0], (100, 1))]), 80, seed=1, strata=2)
    first = big.probe_strata(40)
    assert 0 < np.sum(first == 0) < np.sum(first == 1)  # every prefix is stratified like the whole
    assert np.sum(big.probe_strata(80) == 0) == 2 * np.sum(first == 0)
    with pytest.raises(DataError, match="finite"):
        contested_design(np.full((3, 2), np.nan), 2, seed=0)


def test_uniform_design_is_the_seeded_permutation():
    plan = uniform_design(10, 4, seed=7)
    assert plan.order.tolist() == np.random.default_rng(7).permutation(10)[:4].tolist()
    assert plan.weight.tolist() == [1.0] and not plan.stratum.any()


def test_stratified_mean_by_hand():
    # strata 0: d = 1, 0 (mean 0.5, variance 0.5); 1: d = 0, 0, 1, 1 (mean 0.5, variance 1/3); W = 0.5 each,
    # anchor of 8: variance 0.25 * 0.5 / 2 + 0.25 * (1/3) / 4 + 0 (equal means) = 1/12
    est, se = stratified_mean(np.array([1, 0, 0, 0, 1, 1.0]), np.array([0, 0, 1, 1, 1, 1]), np.array([0.5, 0.5]), 8)
    assert est == pytest.approx(0.5) and se == pytest.approx(np.sqrt(1 / 12))
    # unequal means add the between-strata term: means 1 and 0, est 0.5, + (0.5 * 0.25 + 0.5 * 0.25) / 8
    est, se = stratified_mean(np.array([1, 1, 0, 0.0]), np.array([0, 0, 1, 1]), np.array([0.5, 0.5]), 8)
    assert est == pytest.approx(0.5) and se == pytest.approx(np.sqrt(0.25 / 8))
    # one stratum: the plain mean and sd / sqrt(k)
    est, se = stratified_mean(np.array([1, 0, 1, 1.0]), np.zeros(4, dtype=int), np.ones(1), 100)
    assert est == pytest.approx(0.75) and se == pytest.approx(0.25)
    assert stratified_mean(np.array([1.0]), np.array([0]), np.array([0.5, 0.5]), 8)[1] == float("inf")  # an empty stratum
