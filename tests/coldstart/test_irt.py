"""2PL IRT: EAP ability and predicted mean by hand, the gp-IRT weight, parameter recovery, NaN cells."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.coldstart.irt import (
    IRTFit,
    ability_posterior,
    eap_ability,
    fit_irt,
    gp_irt_weight,
    map_ability,
    predict_results,
    sigmoid,
)
from recroute.errors import DataError

# 3 items, a = (1, 2, 1), b = (0, -1, 1); grid theta in {-1, 0, 1} with prior (.25, .5, .25)
HAND = IRTFit(a=np.array([1.0, 2.0, 1.0]), b=np.array([0.0, -1.0, 1.0]), theta=np.zeros(2),
              grid=np.array([-1.0, 0.0, 1.0]), prior=np.array([0.25, 0.5, 0.25]))


def test_eap_on_three_items_by_hand():
    # probes: item 0 right, item 1 wrong. Likelihood P0 (1 - P1) at theta = -1, 0, 1:
    #   s(-1)(1 - s(-3)) = .268941 * .952574 = .256186;  s(0)(1 - s(-1)) = .5 * .731059 = .365529;
    #   s(1)(1 - s(1)) = .731059 * .268941 = .196612; times the prior .25/.5/.25, normalised:
    post = ability_posterior(HAND, [[0, 1]], [[1.0, 0.0]])
    np.testing.assert_allclose(post, [[0.21639996, 0.61752263, 0.16607741]], atol=1e-7)
    eap, sd = eap_ability(HAND, [[0, 1]], [[1.0, 0.0]])
    np.testing.assert_allclose(eap, [-0.21639996 + 0.16607741], atol=1e-7)  # -0.0503225
    np.testing.assert_allclose(sd, [0.61639680], atol=1e-7)
    np.testing.assert_allclose(map_ability(HAND, [[0, 1]], [[1.0, 0.0]]), [0.0])  # mode: .6175 at theta = 0
    np.testing.assert_allclose(map_ability(HAND, [[0, 1]], [[1.0, 1.0]]), [1.0])  # both right: .25 s(1)^2 = .134 > .5 s(0) s(-1) = .067
    # item 2 unprobed: E[s(theta + 1)] = .2164 * .5 + .6175 * .731059 + .1661 * .880797 = .705926
    pred = predict_results(HAND, [[0, 1]], [[1.0, 0.0]])
    np.testing.assert_allclose(pred[:, 0], [1.0, 0.0, 0.70592569], atol=1e-7)
    assert pred[:, 0].mean() == pytest.approx((1 + 0 + 0.70592569) / 3)


def test_nan_probe_and_no_probe_leave_the_prior():
    post = ability_posterior(HAND, [[0, 1]], [[np.nan, np.nan]])
    np.testing.assert_allclose(post, [HAND.prior])
    np.testing.assert_allclose(ability_posterior(HAND, np.zeros((2, 0), int), np.zeros((2, 0))), [HAND.prior] * 2)


def test_gp_irt_weight_by_hand():
    # v = 0.2, k = 20 -> v / k = 0.01; b^2 = 0.0004 -> 0.01 / 0.0104
    np.testing.assert_allclose(gp_irt_weight(0.0004, 0.2, np.array([20, 0, 5])), [0.01 / 0.0104, 1.0, 0.04 / 0.0404])
    assert gp_irt_weight(0.0, 0.2, np.array([10]))[0] == 1.0  # a perfect fit takes all the weight


def synthetic(n_items=60, n_llms=1200, seed=0, nan_share=0.0):
    rng = np.random.default_rng(seed)
    a, b, theta = rng.uniform(0.5, 2.0, n_items), rng.normal(0, 1.2, n_items), rng.normal(0, 1, n_llms)
    Y = (rng.random((n_items, n_llms)) < sigmoid(a[:, None] * theta + b[:, None])).astype(float)
    Y[rng.random(Y.shape) < nan_share] = np.nan
    return Y, a, b, theta


@pytest.mark.parametrize("nan_share", [0.0, 0.3])
def test_fit_recovers_the_2pl_parameters(nan_share):
    Y, a, b, theta = synthetic(nan_share=nan_share)
    fit = fit_irt(Y)
    assert np.corrcoef(fit.a, a)[0, 1] > 0.9 and np.corrcoef(fit.b, b)[0, 1] > 0.97
    assert np.corrcoef(fit.theta, theta)[0, 1] > 0.9
    assert fit.prior.shape == fit.grid.shape and fit.prior.sum() == pytest.approx(1.0)
    # the fitted curves reproduce each LLM's mean result on its observed prompts
    observed = ~np.isnan(Y)
    fitted = np.where(observed, fit.curves(fit.theta), 0).sum(0) / observed.sum(0)
    assert np.abs(fitted - np.nanmean(Y, axis=0)).mean() < 0.02


def test_fit_stays_finite_on_real_leaderboard_results(shared_data):
    # OLLB v1 MMLU (102 items x 4,278 LLMs, many at chance level): undamped Newton steps diverged here
    import pandas as pd

    records = pd.read_parquet(shared_data / "open_llm_leaderboard_v1_mmlu" / "records.parquet")
    Y = records.pivot_table(index="prompt_id", columns="llm", values="score").to_numpy(dtype=float)
    fit = fit_irt(Y)
    assert np.isfinite(fit.a).all() and np.abs(fit.theta).max() < 10 and np.abs(fit.a).max() < 50
    assert np.abs(fit.curves(fit.theta).mean(0) - np.nanmean(Y, axis=0)).mean() < 0.05


def test_fit_errors():
    with pytest.raises(DataError, match="in \\[0, 1\\]"):
        fit_irt(np.array([[0.0, 2.0], [1.0, 0.0]]))
    with pytest.raises(DataError, match="n_llms >= 2"):
        fit_irt(np.ones((3, 1)))
    with pytest.raises(DataError, match="prior"):
        fit_irt(np.ones((3, 4)) * 0.5, prior="flat")
    with pytest.raises(DataError, match="same shape"):
        ability_posterior(HAND, [[0, 1]], [[1.0]])
