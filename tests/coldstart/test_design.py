"""The contested probe design (recroute.coldstart.design): allocation, order and the stratified estimate by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.coldstart.design import _allocate, contested_design, stratified_mean, uniform_design
from recroute.errors import DataError


def test_allocation_is_neyman_within_the_floor_and_the_stratum_sizes():
    # sizes 20, 20; spreads 0 and 1; budget 20, floor 0.25: stratum 0 keeps a quarter of its proportional
    # share (2.5), stratum 1 takes the rest (17.5); largest remainders give the tied half to the first: 3, 17
    assert _allocate(20, np.array([20.0, 20.0]), np.array([0.0, 1.0]), 0.25).tolist() == [3, 17]
    # ... and never fewer than 2 probes (a stratum's variance): a quarter of 5 is 1.25, so 2 and 8
    assert _allocate(10, np.array([10.0, 10.0]), np.array([0.0, 1.0]), 0.25).tolist() == [2, 8]
    # Neyman proper: shares 40 * 0.1 : 40 * 0.3 of 40 probes = 10 : 30, both at or above the floor 0.5 * 20
    assert _allocate(40, np.array([40.0, 40.0]), np.array([0.1, 0.3]), 0.5).tolist() == [10, 30]
    # a stratum cannot take more than its size: 3 of 3, the other 7 probes to the second stratum
    assert _allocate(10, np.array([3.0, 17.0]), np.array([1.0, 0.01]), 0.25).tolist() == [3, 7]
    # no spread anywhere: proportional
    assert _allocate(6, np.array([2.0, 4.0]), np.array([0.0, 0.0]), 0.25).tolist() == [2, 4]


def test_contested_design_strata_order_and_its_prefixes():
    # 16 prompts: 0-7 every LLM agrees (spread 0), 8-15 they split 2 against 2 (spread 0.5); budget 8,
    # floor 0.5 of the proportional 4: allocation 2 : 6
    F = np.vstack([np.ones((4, 4)), np.zeros((4, 4)), np.tile([1.0, 1.0, 0.0, 0.0], (8, 1))])
    plan = contested_design(F, 8, seed=0, strata=2, floor=0.5)
    assert plan.stratum.tolist() == [0] * 8 + [1] * 8 and plan.weight.tolist() == [0.5, 0.5]
    assert len(set(plan.order.tolist())) == 8 and np.sum(plan.order < 8) == 2
    assert plan.probe_strata(8).tolist() == plan.stratum[plan.order].tolist()
    # a small anchor or budget gets fewer strata, each with 2 probes at least
    assert len(contested_design(F[:7], 7, seed=0).weight) == 3 and len(contested_design(F, 3, seed=0).weight) == 1
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
