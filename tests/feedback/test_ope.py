"""Off-policy estimators pinned by hand-computed values, intervals, unbiasedness by simulation."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.feedback.ope import (
    decision_terms, estimate, evaluate_targets, parse_target, repeat_means, target_probabilities, true_value,
)

# four decisions over two LLMs (see the comments for the hand computation)
BANDIT = Bandit(
    rows=np.array([0, 1, 2, 3]), allowed=np.ones((4, 2), dtype=bool), chosen=np.array([0, 1, 1, 0]),
    propensity=np.array([0.5, 0.25, 0.5, 0.8]), reward=np.array([1.0, 0.0, 1.0, 0.0]), llm_names=np.array(["a", "b"]),
)
TARGET = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
Q = np.array([[0.6, 0.2], [0.5, 0.4], [0.7, 0.3], [0.2, 0.6]])
# w = pi(a_i)/p_i = [2, 4, 0, 0.625]; q(x_i, a_i) = [0.6, 0.4, 0.3, 0.2]; sum_a pi q = [0.6, 0.4, 0.7, 0.4]
HAND = {
    "dm": (0.6 + 0.4 + 0.7 + 0.4) / 4,                                   # 0.525
    "ips": (2 * 1 + 4 * 0 + 0 * 1 + 0.625 * 0) / 4,                      # 0.5
    "snips": 2 / (2 + 4 + 0 + 0.625),                                    # 0.3019
    "dr": (0.6 + 2 * 0.4 + 0.4 - 4 * 0.4 + 0.7 + 0.4 - 0.625 * 0.2) / 4,  # (1.4 - 1.2 + 0.7 + 0.275) / 4
    "switch_dr": (1.4 + 0.4 + 0.7 + 0.275) / 4,                          # tau = 3 drops w = 4's correction
}


@pytest.mark.parametrize("estimator", list(HAND))
def test_estimators_match_hand_computation(estimator):
    terms = decision_terms(BANDIT, TARGET, Q)
    out = estimate(terms, estimator, tau=3.0)
    assert out["value"] == pytest.approx(HAND[estimator])


def test_normal_interval_of_dr_by_hand():
    out = estimate(decision_terms(BANDIT, TARGET, Q), "dr")
    x = np.array([1.4, -1.2, 0.7, 0.275])
    var = ((x - 0.29375) ** 2).sum() / 3  # 3.620469 / 3
    half = 1.959963984540054 * np.sqrt(var / 4)
    assert out["se"] == pytest.approx(np.sqrt(var / 4))
    assert (out["lower"], out["upper"]) == pytest.approx((0.29375 - half, 0.29375 + half))


def test_cluster_robust_se_by_hand():
    out = estimate(decision_terms(BANDIT, TARGET, Q), "dr", clusters=np.array([0, 0, 1, 1]))
    # centred terms [1.10625, -1.49375, 0.40625, -0.01875]: cluster sums -0.3875 and 0.3875
    assert out["se"] == pytest.approx(np.sqrt(2 * 2 * 0.3875 ** 2) / 4)  # = 0.19375
    singletons = estimate(decision_terms(BANDIT, TARGET, Q), "dr", clusters=np.arange(4))
    assert singletons["se"] == pytest.approx(estimate(decision_terms(BANDIT, TARGET, Q), "dr")["se"])


def test_snips_delta_method_interval_by_hand():
    out = estimate(decision_terms(BANDIT, TARGET, Q), "snips")
    v, mean_w = 2 / 6.625, 6.625 / 4
    psi = np.array([2 * (1 - v), 4 * (0 - v), 0.0, 0.625 * (0 - v)]) / mean_w
    assert out["se"] == pytest.approx(psi.std(ddof=1) / 2)


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded():
    terms = decision_terms(BANDIT, TARGET, Q)
    a = estimate(terms, "dr", interval="bootstrap", n_bootstrap=500, seed=3)
    b = estimate(terms, "dr", interval="bootstrap", n_bootstrap=500, seed=3)
    assert a["lower"] == b["lower"] and a["lower"] <= a["value"] <= a["upper"]
    assert a["lower"] >= -1.2 and a["upper"] <= 1.4  # percentiles of means of the four terms


def test_vectorised_over_leading_axes():
    terms = decision_terms(BANDIT, TARGET, Q)
    stacked = type(terms)(*(np.stack([getattr(terms, f)] * 3) for f in ("r", "w", "q_chosen", "q_pi")))
    out = estimate(stacked, "snips")
    assert out["value"].shape == (3,) and np.allclose(out["value"], HAND["snips"])


def test_estimators_are_unbiased_on_a_synthetic_problem():
    """IPS, DR (with a wrong reward model) and SNIPS recover the target's value; DM with it does not."""
    rng = np.random.default_rng(0)
    n_pop, m, n, seeds = 200, 3, 2000, 200
    truth = (rng.random((n_pop, m)) < np.array([0.3, 0.6, 0.8])).astype(float)
    log_p = np.tile([0.6, 0.3, 0.1], (n_pop, 1))
    target = np.zeros((n_pop, m))
    target[np.arange(n_pop), np.where(rng.random(n_pop) < 0.7, 2, 0)] = 1.0  # mostly the best LLM
    value = true_value(target, truth)
    pick = rng.integers(0, n_pop, (seeds, n))
    u = rng.random((seeds, n))
    chosen = (u[..., None] >= np.cumsum(log_p[pick], axis=-1)).sum(-1)
    r, p = truth[pick, chosen], log_p[pick, chosen]
    w = target[pick, chosen] / p
    q = np.full((n_pop, m), 0.5)  # a poor reward model
    from recroute.feedback.ope import Terms

    terms = Terms(r, w, q[pick, chosen], (target * q).sum(1)[pick])
    for est, tol in (("ips", 0.01), ("dr", 0.01), ("snips", 0.01)):
        vals = estimate(terms, est)["value"]
        assert abs(vals.mean() - value) < tol, (est, vals.mean(), value)
    assert abs(estimate(terms, "dm")["value"].mean() - value) > 0.05
    cover = estimate(terms, "dr")
    assert np.mean((cover["lower"] <= value) & (value <= cover["upper"])) > 0.9


def test_repeat_means_leave_one_out():
    b = Bandit(rows=np.array([7, 7, 7, 8]), allowed=np.ones((4, 2), dtype=bool), chosen=np.array([0, 0, 1, 0]),
               propensity=np.full(4, 0.5), reward=np.array([1.0, 0.0, 1.0, 1.0]), llm_names=np.array(["a", "b"]))
    q = repeat_means(b, np.full((4, 2), 0.3))
    # decision 0 sees decision 1 on (7, a) = 0 and decision 2 on (7, b) = 1; decision 3 is alone on prompt 8
    np.testing.assert_allclose(q, [[0.0, 1.0], [1.0, 1.0], [0.5, 0.3], [0.3, 0.3]])


def test_targets_and_errors():
    assert parse_target("knn:k=3@softmax:temperature=0.5")[1].spec == "softmax:temperature=0.5"
    assert parse_target("linear") == ("linear", None)
    one = Bandit(np.array([0]), np.array([[True, False]]), np.array([0]), np.array([1.0]), np.array([1.0]),
                 np.array(["a", "b"]))
    with pytest.raises(DataError, match="not a candidate"):
        decision_terms(one, np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate(decision_terms(BANDIT, TARGET, Q), "magic")
    with pytest.raises(DataError, match="undefined"):
        true_value(np.array([[1.0, 0.0]]), np.array([[np.nan, 1.0]]))


def test_evaluate_targets_with_fitted_routers():
    from recroute.routers.baselines import RandomRouter

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 3)).astype(np.float32)
    router = RandomRouter().fit(np.array([[1.0, 0.0], [0.0, 1.0]]))
    probs = target_probabilities(router, X, BANDIT.allowed)
    np.testing.assert_allclose(probs, 0.5)
    df = evaluate_targets(BANDIT, X, {"random": router, "given": TARGET}, q_hat=Q, estimators=("dr", "ips"))
    assert list(df.target) == ["random", "random", "given", "given"]
    assert df[(df.target == "given") & (df.estimator == "ips")].value.iloc[0] == pytest.approx(0.5)
