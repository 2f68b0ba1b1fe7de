"""Quality–cost metrics pinned by hand-computed values (definitions in docs/cost.md)."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.cost import curves
from recroute.errors import DataError

# 4 prompts, a cheap weak LLM (cost 1) and a dear strong one (cost 3)
Y = np.array([[1, 1], [0, 1], [0, 1], [0, 0]], dtype=float)
C = np.array([1.0, 3.0])


def test_single_points_oracle_and_zero_router():
    np.testing.assert_allclose(curves.single_llm_points(Y, C), [[1, 0.25], [3, 0.75]])
    # cheapest correct: weak, strong, strong, (none correct) weak -> cost (1+3+3+1)/4, quality 3/4
    assert curves.oracle_point(Y, C) == (2.0, 0.75)
    np.testing.assert_allclose(curves.zero_router(Y, C), [[1, 0.25], [3, 0.75]])


def test_hull_drops_dominated_collinear_and_costlier_points():
    pts = [(1, 0.2), (2, 0.4), (3, 0.6), (4, 0.5), (2, 0.1), (5, 0.6)]
    np.testing.assert_allclose(curves.hull(pts), [[1, 0.2], [3, 0.6]])
    np.testing.assert_allclose(curves.hull([(1, 0.2), (1, 0.5), (2, 0.5)]), [[1, 0.5]])
    np.testing.assert_allclose(curves.hull([(1, 0.1), (2, 0.5), (3, 0.6)]), [[1, 0.1], [2, 0.5], [3, 0.6]])


def test_aiq_by_hand():
    zero = curves.zero_router(Y, C)
    assert curves.aiq(zero, 1, 3) == pytest.approx(0.5)  # mean of a line from .25 to .75
    with_oracle = curves.hull([(1, 0.25), (2, 0.75), (3, 0.75)])
    assert curves.aiq(with_oracle, 1, 3) == pytest.approx((0.5 + 0.75) / 2)
    # a hull starting inside the range counts 0 before its first point
    assert curves.aiq([[2, 0.5], [3, 1.0]], 1, 3) == pytest.approx(0.75 / 2)
    # flat after the last vertex
    assert curves.aiq([[1, 0.5]], 1, 3) == pytest.approx(0.5)
    with pytest.raises(DataError):
        curves.aiq(zero, 3, 1)


def test_cost_to_reach_and_quality_at_cost():
    zero = curves.zero_router(Y, C)
    assert curves.cost_to_reach(zero, 0.5) == pytest.approx(2.0)
    assert curves.cost_to_reach(zero, 0.75) == pytest.approx(3.0)
    assert curves.cost_to_reach(zero, 0.1) == pytest.approx(1.0)
    assert np.isnan(curves.cost_to_reach(zero, 0.8))
    assert curves.quality_at_cost(zero, 2.0) == pytest.approx(0.5)
    assert curves.quality_at_cost(zero, 0.5) == 0.0
    assert curves.quality_at_cost(zero, 9.0) == pytest.approx(0.75)
    assert curves.realised_cost_to_reach([(1, 0.25), (2.5, 0.6), (3, 0.75)], 0.5) == 2.5


def test_utility_curve_by_hand():
    S = np.array([[0.2, 0.9], [0.6, 0.7]])
    Y2 = np.array([[0, 1], [1, 1]], dtype=float)
    out = curves.utility_curve(S, Y2, C, weights=[0.0, 0.06, 1.0])
    np.testing.assert_allclose(out, [[0, 3, 1], [0.06, 2, 1], [1, 1, 0.5]])


def test_pgr_apgr_cpt_by_hand():
    S = np.array([[0.0, 0.1], [0.0, 0.9], [0.0, 0.5], [0.0, 0.3]])  # advantage order: 1, 2, 3, 0
    curve = curves.pgr_curve(S, Y, strong=1, weak=0)
    np.testing.assert_allclose(curve, [[0, 0], [0.25, 0.5], [0.5, 1], [0.75, 1], [1, 1]])
    assert curves.apgr(curve) == pytest.approx(0.75)
    assert curves.cpt(curve, 0.5) == 0.25
    assert curves.cpt(curve, 0.8) == 0.5
    # a random-like router (worst order first) recovers the gap only late
    worst = curves.pgr_curve(-S, Y, strong=1, weak=0)
    assert curves.apgr(worst) == pytest.approx(0.25 * (0 + 0) / 2 + 0.25 * 0 / 2 + 0.25 * 0.5 / 2 + 0.25 * 1.5 / 2)
    with pytest.raises(DataError, match="strong LLM to beat"):
        curves.pgr_curve(S, Y, strong=0, weak=1)
