"""The shared cost-aware decision step, calibration of lambda and budgeted batches, pinned by hand."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.cost.decide import (
    budget_assign,
    calibrate_cost_weight,
    cost_aware_scores,
    max_cost_mask,
    route_with_costs,
    utility,
)
from recroute.debias.remedies import assignment_lp
from recroute.errors import DataError

S = np.array([[0.9, 0.6, 0.2],
              [0.5, 0.45, 0.1]])
C = np.array([1.0, 0.2, 0.0])


def test_utility_by_hand():
    U = utility(S, C, 0.5)
    np.testing.assert_allclose(U, [[0.4, 0.5, 0.2], [0.0, 0.35, 0.1]])
    # one lambda per prompt, and (n, m) costs
    U2 = utility(S, np.tile(C, (2, 1)), np.array([0.0, 1.0]))
    np.testing.assert_allclose(U2, [[0.9, 0.6, 0.2], [-0.5, 0.25, 0.1]])


def test_route_with_costs_greedy_and_ties():
    idx, sc = route_with_costs(S, C, cost_weight=0.5, k=2)
    assert idx.tolist() == [[1, 0], [1, 2]]
    np.testing.assert_allclose(sc, [[0.6, 0.9], [0.45, 0.1]], rtol=1e-6)
    # lambda = 0 is the plain argmax; a tie goes to the lower index
    idx, _ = route_with_costs(np.array([[0.5, 0.5]]), np.array([0.0, 0.0]), cost_weight=1.0)
    assert idx.tolist() == [[0]]
    idx, _ = route_with_costs(S, C, cost_weight=0.0)
    assert idx[:, 0].tolist() == [0, 0]


def test_max_cost_mask_and_error_names_cheapest():
    mask = max_cost_mask(np.tile(C, (2, 1)), 0.5)
    assert mask.tolist() == [[False, True, True]] * 2
    idx, _ = route_with_costs(S, C, max_cost=0.5)
    assert idx[:, 0].tolist() == [1, 1]
    with pytest.raises(DataError, match="cheapest, b, costs 0.2"):
        max_cost_mask(np.tile(C, (2, 1)), 0.1, allowed=np.array([True, True, False]), names=["a", "b", "c"])


def test_cost_aware_scores_without_costs_is_identity_and_needs_costs():
    values, mask = cost_aware_scores(S, allowed=np.array([True, False, True]))
    np.testing.assert_array_equal(values, S)
    assert mask.tolist() == [[True, False, True]] * 2
    with pytest.raises(DataError, match="no prices"):
        cost_aware_scores(S, None, cost_weight=1.0)


def test_bad_inputs():
    with pytest.raises(DataError, match="cost_weight"):
        utility(S, C, -1.0)
    with pytest.raises(DataError, match="costs must"):
        utility(S, np.array([1.0, np.nan, 0.0]), 1.0)
    with pytest.raises(DataError, match="shape"):
        utility(S, np.array([1.0, 0.0]), 1.0)


def test_calibration_mean_cost_by_hand():
    # prompt 0 switches from LLM 0 (cost 1) to LLM 1 (0.2) at lambda = 0.3/0.8 = 0.375;
    # prompt 1 at lambda = 0.05/0.8 = 0.0625. Mean cost at lambda=0: 1.0, in between: 0.6, after: 0.2
    cal = calibrate_cost_weight(S, C, target_cost=0.6)
    assert cal.cost_weight == pytest.approx(0.0625, rel=1e-6)
    assert cal.mean_cost == pytest.approx(0.6)
    cal = calibrate_cost_weight(S, C, target_cost=0.3)
    assert cal.cost_weight == pytest.approx(0.375, rel=1e-6)
    assert calibrate_cost_weight(S, C, target_cost=5.0).cost_weight == 0.0
    with pytest.raises(DataError, match="below the cheapest"):
        calibrate_cost_weight(S, C, target_cost=-0.0 + 1e-3, allowed=np.array([True, True, False]))


def test_calibration_share_of_named_llms():
    cal = calibrate_cost_weight(S, C, max_share=0.5, llms=[0])
    assert cal.cost_weight == pytest.approx(0.0625, rel=1e-6)
    assert cal.share == 0.5
    with pytest.raises(DataError, match="exactly one"):
        calibrate_cost_weight(S, C)


def test_budget_assign_by_hand():
    S3 = np.array([[0.9, 0.6], [0.8, 0.3], [0.7, 0.65]])
    C3 = np.array([1.0, 0.1])
    # argmax costs 3.0; budget 2.2: upgrade the two prompts with the best gain per cost:
    # gains 0.3, 0.5, 0.05 per 0.9 -> prompts 1 and 0 on LLM 0 (cost 2.1), prompt 2 cheap
    choice = budget_assign(S3, C3, 2.2)
    assert choice.tolist() == [0, 0, 1]
    assert budget_assign(S3, C3, 10.0).tolist() == [0, 0, 0]
    assert budget_assign(S3, C3, 0.3).tolist() == [1, 1, 1]
    with pytest.raises(DataError, match="below the cheapest routing"):
        budget_assign(S3, C3, 0.2)


def test_budget_assign_never_exceeds_and_matches_lp_bound():
    rng = np.random.default_rng(0)
    Sr, Cr = rng.random((60, 5)), rng.random((60, 5))
    for budget in (12.5, 16.0, 22.0):
        choice = budget_assign(Sr, Cr, budget)
        rows = np.arange(60)
        assert Cr[rows, choice].sum() <= budget + 1e-9
        lp = assignment_lp(Sr, costs=Cr, budget=budget)
        gap = (Sr * lp).sum() - Sr[rows, choice].sum()
        assert -1e-9 <= gap <= np.ptp(Sr, axis=1).max() + 1e-9


def test_budget_assign_respects_allowed():
    S3 = np.array([[0.9, 0.6, 0.99], [0.8, 0.3, 0.99]])
    C3 = np.array([1.0, 0.1, 0.0])
    allowed = np.array([True, True, False])
    assert budget_assign(S3, C3, 1.1, allowed=allowed).tolist() == [1, 0]
