"""Each remedy's defining property, and the DebiasedRouter wrapper."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from recroute.data.synthetic import make_synthetic
from recroute.debias import remedies as rem
from recroute.debias.router import DebiasedRouter
from recroute.errors import DataError
from recroute.routers.base import Router
from recroute.routers.registry import make_router


# ---------------------------------------------------------------------- capacity
@pytest.mark.parametrize("n, m, cap", [(30, 3, 0.34), (200, 5, 0.25), (301, 4, 0.5), (97, 10, 0.11)])
def test_capacity_never_exceeds_the_cap_and_is_optimal(n, m, cap):
    rng = np.random.default_rng(n)
    S = rng.random((n, m)) + np.linspace(0.5, 0.0, m)  # LLM 0 is popular: the argmax overflows
    choice = rem.capacity_assign(S, cap)
    limit = int(np.floor(cap * n))
    assert choice.shape == (n,) and choice.dtype == np.int64
    assert np.bincount(choice, minlength=m).max() <= limit
    slots = np.repeat(np.arange(m), limit)  # reference: assignment on the replicated cost matrix
    rows, cols = linear_sum_assignment(-S[:, slots])
    assert S[np.arange(n), choice].sum() == pytest.approx(S[rows, slots[cols]].sum(), abs=1e-9)


def test_capacity_equals_argmax_when_not_binding():
    rng = np.random.default_rng(0)
    S = rng.random((60, 4))
    S[::3, 1] = S[::3, 2] = 2.0  # ties go to the first LLM, as in argmax
    for cap in (1.0, 0.9):
        np.testing.assert_array_equal(rem.capacity_assign(S, cap), np.argmax(S, axis=1))


def test_capacity_rejects_infeasible_caps():
    with pytest.raises(DataError, match=r"cap >= 0\.34"):
        rem.capacity_assign(np.zeros((100, 3)), 0.33)
    with pytest.raises(DataError, match="share in"):
        rem.capacity_assign(np.zeros((10, 3)), 1.5)
    assert rem.batch_cap(100, 3, 0.2) == pytest.approx(0.34)
    assert rem.cap_for_strength(0.0, 4) == 1.0 and rem.cap_for_strength(1.0, 4) == 0.25


def test_capped_distribution_respects_the_cap():
    rng = np.random.default_rng(1)
    P = rng.dirichlet(np.ones(4), size=500)
    P[:, 0] += 2.0
    P /= P.sum(axis=1, keepdims=True)
    Q = rem.capped_distribution(P, 0.3)
    np.testing.assert_allclose(Q.sum(axis=1), 1.0)
    assert (Q.sum(axis=0) <= 0.3 * 500 * (1 + 1e-6)).all()
    np.testing.assert_allclose(rem.capped_distribution(P, 1.0), P)  # no cap: unchanged


# ---------------------------------------------------------------------- logit adjustment
def test_tau_zero_leaves_routing_unchanged():
    rng = np.random.default_rng(2)
    S = rng.random((50, 4))
    prior = rem.training_prior((rng.random((80, 4)) < [0.9, 0.5, 0.3, 0.2]).astype(float))
    np.testing.assert_array_equal(rem.logit_adjust(S, prior, 0.0), S)
    adjusted = rem.logit_adjust(S, prior, 1.0)
    np.testing.assert_allclose(adjusted - S, -np.log(prior)[None, :].repeat(50, axis=0))
    assert np.bincount(adjusted.argmax(1), minlength=4)[0] <= np.bincount(S.argmax(1), minlength=4)[0]


def test_priors():
    Y = np.array([[1, 0, np.nan], [1, 1, 0], [0, 0, 0], [1, 0, 0]], dtype=float)
    np.testing.assert_allclose(rem.positive_rate(Y), [0.75, 0.25, 0.0])
    p = rem.training_prior(Y)  # zero rate floored at 1 / (n + 1)
    np.testing.assert_allclose(p, np.array([0.75, 0.25, 0.2]) / 1.2)
    S = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(rem.selection_prior(S), [3 / 5, 2 / 5])  # (count + 1) / (n + m)
    with pytest.raises(DataError, match="prior"):
        rem.training_prior(Y, "popularity")


# ---------------------------------------------------------------------- calibration
@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrated_scores_are_monotone_in_the_raw_ones(method):
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(400, 3)) * [1.0, 5.0, 0.2]
    Y = (rng.random((400, 3)) < 1 / (1 + np.exp(-raw * [2.0, 0.3, 10.0]))).astype(float)
    Y[:, 2] = 1 - Y[:, 2]  # LLM 2's raw scores are anti-correlated with correctness
    Y[rng.random(Y.shape) < 0.1] = np.nan
    cal = rem.PerLLMCalibrator(method).fit(raw[:200], Y[:200])
    test = rng.normal(size=(300, 3)) * [1.0, 5.0, 0.2]
    out = cal.transform(test)
    assert ((out >= 0) & (out <= 1)).all()
    for j in range(3):
        order = np.argsort(test[:, j])
        assert (np.diff(out[order, j]) > 0).all()  # strictly increasing per LLM
    restored = rem.PerLLMCalibrator.from_state(method, cal.state())
    np.testing.assert_array_equal(restored.transform(test), out)


def test_calibration_matches_the_base_rate():
    rng = np.random.default_rng(4)
    raw = rng.random((1000, 2))
    Y = (rng.random((1000, 2)) < raw * [0.5, 1.0]).astype(float)  # LLM 0 over-confident by 2x
    out = rem.PerLLMCalibrator("isotonic").fit(raw, Y).transform(raw)
    np.testing.assert_allclose(out.mean(axis=0), Y.mean(axis=0), atol=1e-3)


# ---------------------------------------------------------------------- IPW
def test_ipw_weights_by_hand():
    Y = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0], [0, 0, 0]], dtype=float)  # rates .8 .4 .2
    np.testing.assert_allclose(rem.ipw_weights(Y, 1.0), [0.25, 0.5, 1.0])
    np.testing.assert_allclose(rem.ipw_weights(Y, 0.5), [0.5, np.sqrt(0.5), 1.0])
    np.testing.assert_allclose(rem.ipw_weights(Y, 0.0), 1.0)
    np.testing.assert_allclose(rem.ipw_targets(Y, 1.0, "scale"), Y * [0.25, 0.5, 1.0])
    with pytest.raises(DataError):
        rem.ipw_weights(Y, -1)


def test_ipw_sampling_thins_positives_at_the_weight():
    rng = np.random.default_rng(5)
    Y = (rng.random((20000, 2)) < [0.8, 0.2]).astype(np.float32)
    T = rem.ipw_targets(Y, 1.0, "sample", random_state=0)
    kept = np.nansum(T, axis=0) / Y.sum(axis=0)
    np.testing.assert_allclose(kept, [0.25, 1.0], atol=0.01)
    assert np.array_equal(np.isnan(T), (Y == 1) & np.isnan(T))  # only positives are dropped
    assert set(np.unique(T[~np.isnan(T)])) <= {0.0, 1.0}
    assert rem.ipw_mode("knn") == "scale" and rem.ipw_mode("bpr") == "sample"


@pytest.mark.parametrize("inner", ["knn:k=20", "bpr:factors=8,iterations=30", "linear:epochs=5"])
def test_ipw_routes_less_to_the_popular_llm(inner):
    data = make_synthetic(2000, 5, 4, popularity_skew=2.5, random_state=0)
    Y, X = data.dense(np.nan), data.embeddings
    train, test = slice(0, 1600), slice(1600, None)
    popular = int(np.argmax(rem.positive_rate(Y[train])))
    shares = []
    for ipw in (0.0, 1.0):
        router = DebiasedRouter(inner=inner.replace(",", ";"), ipw=ipw).fit(Y[train], X[train])
        shares.append(np.mean(router.route(X[test])[0][:, 0] == popular))
    assert shares[0] > 0.3  # the skew makes the router lean on the popular LLM
    assert shares[1] < shares[0] - 0.1


# ---------------------------------------------------------------------- the wrapper
def _fitted(**params) -> tuple[DebiasedRouter, np.ndarray, np.ndarray]:
    data = make_synthetic(500, 4, 3, popularity_skew=2.0, random_state=2)
    Y, X = data.dense(np.nan), data.embeddings
    return DebiasedRouter(**params).fit(Y[:400], X[:400]), X[400:], Y[:400]


def test_wrapper_without_remedies_is_the_inner_router():
    router, X, Y = _fitted(inner="knn:k=7")
    inner = make_router("knn:k=7").fit(Y, router.inner_.index_.reconstruct_n(0, 400))
    assert router.needs_features and router.entropy_floor == 1e-10
    np.testing.assert_array_equal(router.score(X), inner.score(X))
    np.testing.assert_array_equal(router.selection_probs(X), inner.selection_probs(X))


def test_wrapper_logit_adjustment_matches_the_function():
    router, X, Y = _fitted(inner="knn", tau=0.5)
    raw = router.inner_.score(X).astype(np.float64)
    prior, unit = rem.adjustment_terms(Y, router.inner_.score(router.inner_.index_.reconstruct_n(0, 400)))
    np.testing.assert_allclose(router.score(X), rem.logit_adjust(raw, prior, 0.5 * unit), atol=1e-6)


def test_wrapper_save_load_and_pickle(tmp_path):
    router, X, _ = _fitted(inner="two_tower:dim=8;hidden=[16];epochs=3", ipw=0.5, calibration="platt", tau=0.3)
    router.save(tmp_path / "saved")
    for copy in (Router.load(tmp_path / "saved"), pickle.loads(pickle.dumps(router))):
        assert isinstance(copy, DebiasedRouter) and copy.get_params() == router.get_params()
        np.testing.assert_array_equal(copy.score(X), router.score(X))


def test_wrapper_capped_routing():
    router, X, _ = _fitted(inner="cluster")
    choice = router.route_capped(X, cap=0.3)
    assert np.bincount(choice, minlength=4).max() <= int(0.3 * len(X))
    restricted = router.route_capped(X, cap=0.6, candidates=[1, 3])
    assert set(restricted.tolist()) <= {1, 3} and np.bincount(restricted).max() <= int(0.6 * len(X))
    assert router.entropy_floor == 1e-4  # C-cluster's floor carries over


def test_wrapper_errors():
    data = make_synthetic(100, 3, 2, random_state=0)
    with pytest.raises(DataError, match="cannot be debiased"):
        DebiasedRouter(inner="oracle").fit(data)
    with pytest.raises(DataError, match="unknown router"):
        DebiasedRouter(inner="nope").fit(data)
    with pytest.raises(DataError, match="calibration"):
        DebiasedRouter(calibration="temperature").fit(data)
    with pytest.raises(DataError, match="tau"):
        DebiasedRouter(tau=-1).fit(data)
