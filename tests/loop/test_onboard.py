"""Onboarding a new LLM live: the regression placement, the cross-fitted full-information evidence and its
gate, with hand-computed values and a small real slice (MMLU-Pro's first 400 prompts)."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.coldstart.estimators import ProbeEstimator, ResultRegression
from recroute.errors import DataError
from recroute.loop.onboard import evidence, looks, onboard_llm, place, placement_prompts
from recroute.loop.refit import Anchor
from recroute.loop.simulate import tie_split_share
from recroute.routers.knn import KNNRouter


def test_result_regression_recovers_a_planted_column_and_falls_back_to_the_mean():
    rng = np.random.default_rng(0)
    F = (rng.random((120, 4)) < 0.5).astype(float)
    y = F[:, 2]  # the new LLM answers exactly as existing LLM 2
    fit = ResultRegression(F[:60], y[:60])
    assert np.abs(fit.predict(F[60:]) - y[60:]).max() < 0.1
    assert ResultRegression(F[:2], y[:2]).predict(F[:3]) == pytest.approx([y[:2].mean()] * 3)  # < 3 probes
    assert ResultRegression(F[:5], np.ones(5)).predict(F[:2]) == pytest.approx([1.0, 1.0])  # probes all alike
    with pytest.raises(DataError, match="finite"):
        ResultRegression(np.full((3, 2), np.nan), np.zeros(3))


def test_ridge_estimator_predicts_a_held_out_real_llm_better_calibrated_than_the_mixture():
    from recroute.data.catalog import load_dataset

    data = load_dataset("mmlu_pro")
    Y = data.dense(np.nan)[:400].astype(np.float64)
    j = [str(n) for n in data.llm_names].index("gpt-4o-2024-05-13")
    base = [i for i in range(Y.shape[1]) if i != j]
    y = np.nan_to_num(Y[:, j])
    rows = np.random.default_rng(0).choice(400, 150, replace=False)
    rest = np.setdiff1d(np.arange(400), rows)

    def brier(spec: str) -> float:
        pred = ProbeEstimator(spec, Y[:, base]).predict(rows[None], y[rows][None])[:, 0]
        assert pred[rows] == pytest.approx(y[rows])  # a probed prompt keeps its own result
        return float(np.mean((pred[rest] - y[rest]) ** 2))

    constant = float(np.mean((y[rows].mean() - y[rest]) ** 2))
    ridge = brier("ridge")  # measured 0.105 against 0.163 (the probe mean) and 0.147 (the mixture)
    assert ridge < 0.8 * constant and ridge < brier("llm_mixture:irt_share=0")


def _anchor_and_router(k: int, n: int = 80, seed: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6)).astype(np.float32)
    Y = (rng.random((n, 2)) < np.array([0.5, 0.6])).astype(float)
    router = KNNRouter(k=k).fit(Y.astype(np.float32), X)
    router.llm_names_ = np.array(["a", "b"], dtype=object)
    return X, Y, router, Anchor(X, np.column_stack([Y, np.full(n, np.nan)]), ["a", "b", "new"])


def test_place_sets_the_knn_column_to_the_probes_and_the_regression_elsewhere():
    X, Y, router, anchor = _anchor_and_router(k=3)
    prompts = placement_prompts(router, anchor.with_llms(["a", "b"]))
    rows = np.arange(0, 80, 2)
    y = Y[rows, 1]  # the new LLM answers as b
    placed = place(router, prompts, rows, y, "new")
    column = placed.train_scores_[:, -1]
    assert list(placed.llm_names_) == ["a", "b", "new"]
    assert column[rows] == pytest.approx(y)
    expected = ResultRegression(Y[rows], y).predict(Y)
    assert column[1::2] == pytest.approx(expected[1::2], abs=1e-6)


def test_evidence_is_the_out_of_sample_paired_difference_by_hand():
    # every prompt twice (2i, 2i + 1), only the even ones probed: with k = 1 the proxy fitted without a
    # fold's prompts scores each by its twin, so live picks the prompt's own best existing result (a before
    # b); a new LLM right everywhere is predicted 1.0 everywhere, so it is chosen exactly where a and b are
    # both wrong, and gains 1 there
    rng = np.random.default_rng(3)
    X = np.repeat(rng.normal(size=(40, 6)).astype(np.float32), 2, axis=0)
    Y = np.repeat((rng.random((40, 2)) < np.array([0.5, 0.6])).astype(float), 2, axis=0)
    router = KNNRouter(k=1).fit(Y.astype(np.float32), X)
    router.llm_names_ = np.array(["a", "b"], dtype=object)
    rows = np.arange(0, 80, 2)
    got = evidence(router, Anchor(X, Y, ["a", "b"]), rows, np.ones(40), "new", folds=5, alpha=0.05)
    d = (Y[rows].max(axis=1) == 0).astype(float)
    assert got.n == 40 and got.support == d.sum() > 0
    assert got.delta == pytest.approx(d.mean()) and got.value_live == pytest.approx(Y[rows].max(axis=1).mean())
    assert got.se == pytest.approx(d.std(ddof=1) / np.sqrt(40))
    assert got.lower == pytest.approx(d.mean() - 1.959964 * got.se, abs=1e-5)


def test_the_gate_promotes_a_helpful_llm_and_refuses_a_harmful_one():
    # four clusters of prompts: a is right in clusters 0 and 1, b in 1 and 2 (10 % noise), nobody in 3
    rng = np.random.default_rng(5)
    cluster = np.arange(200) % 4
    X = (np.eye(4)[cluster] * 5 + rng.normal(scale=0.3, size=(200, 4))).astype(np.float32)
    right = np.column_stack([cluster <= 1, (cluster == 1) | (cluster == 2)])
    Y = np.where(rng.random((200, 2)) < 0.9, right, ~right).astype(float)
    router = KNNRouter(k=5).fit(Y.astype(np.float32), X)
    router.llm_names_ = np.array(["a", "b"], dtype=object)
    anchor = Anchor(X, np.column_stack([Y, np.full(200, np.nan)]), ["a", "b", "new"])
    helpful = lambda row: float(cluster[row] == 3)  # right exactly where nobody else is
    got = onboard_llm(router, anchor, "new", helpful, budget=120, min_probes=40, probe_every=40)
    assert got.promote and got.placed is not None and got.probes == 120  # probed to the budget
    assert got.gate.lower > 0.1 and got.gate.support >= 20 and list(got.placed.llm_names_) == ["a", "b", "new"]
    calls = []
    coin = np.random.default_rng(11).random(200) < 0.5  # worse than a or b in clusters 0-2, never right in 3
    harmful = lambda row: calls.append(row) or float(coin[row] and cluster[row] != 3)
    bad = onboard_llm(router, anchor, "new", harmful, budget=120, min_probes=40, probe_every=40)
    assert not bad.promote and bad.placed is None and bad.candidate is not None and len(calls) == bad.probes
    assert bad.gate.delta <= 0 and (bad.gate.support < 10 or bad.gate.lower <= -0.03)
    with pytest.raises(DataError, match="already routed"):
        onboard_llm(router, anchor, "a", lambda row: 1.0)


def test_the_contested_design_probes_where_the_llms_disagree_and_gates_by_its_strata():
    # four clusters, 10 % noise: a is right in 0 and 1, b in 1 and 2, c in 1 and on a coin in 3; the new LLM
    # is right in 2 and 3. The design's probes are its order, fewer on the prompts where a, b, c agree, and
    # the gate's estimate is the stratified one of those probes
    from recroute.coldstart.design import contested_design

    rng = np.random.default_rng(5)
    cluster = np.arange(200) % 4
    X = (np.eye(4)[cluster] * 5 + rng.normal(scale=0.3, size=(200, 4))).astype(np.float32)
    coin = rng.random(200) < 0.5
    right = np.column_stack([cluster <= 1, (cluster == 1) | (cluster == 2), (cluster == 1) | ((cluster == 3) & coin)])
    Y = np.where(rng.random((200, 3)) < 0.9, right, ~right).astype(float)
    router = KNNRouter(k=5).fit(Y.astype(np.float32), X)
    router.llm_names_ = np.array(["a", "b", "c"], dtype=object)
    anchor = Anchor(X, np.column_stack([Y, np.full(200, np.nan)]), ["a", "b", "c", "new"])
    got = onboard_llm(router, anchor, "new", lambda row: float(cluster[row] >= 2), budget=80, design="contested", seed=2)
    plan = contested_design(Y, 80, seed=2)
    assert got.rows.tolist() == plan.order.tolist() and got.probes == 80
    agree = Y.std(axis=1) == 0
    assert np.mean(agree[got.rows]) < 0.5 * np.mean(agree)
    again = evidence(router, anchor.with_llms(["a", "b", "c"]), got.rows, got.results, "new", design=plan)
    assert (again.delta, again.se, again.support) == pytest.approx((got.gate.delta, got.gate.se, got.gate.support))
    assert got.gate.delta > 0 and got.promote == (got.gate.lower > -0.03 and got.gate.support >= 10)
    with pytest.raises(DataError, match="unknown probe design"):
        onboard_llm(router, anchor, "new", lambda row: 1.0, design="bogus")


def test_the_contested_design_probes_a_specialist_of_the_prompts_every_llm_fails_less():
    # the gate test's clusters (a right in 0 and 1, b in 1 and 2, nobody in 3), the new LLM right exactly in
    # 3: a and b agree there (both wrong), so the design probes it at its floor and the support rule refuses
    # what uniform probes promote (a known cost of the design: docs/loop.md)
    rng = np.random.default_rng(5)
    cluster = np.arange(200) % 4
    X = (np.eye(4)[cluster] * 5 + rng.normal(scale=0.3, size=(200, 4))).astype(np.float32)
    right = np.column_stack([cluster <= 1, (cluster == 1) | (cluster == 2)]).astype(float)
    router = KNNRouter(k=5).fit(right.astype(np.float32), X)
    router.llm_names_ = np.array(["a", "b"], dtype=object)
    anchor = Anchor(X, np.column_stack([right, np.full(200, np.nan)]), ["a", "b", "new"])
    answer = lambda row: float(cluster[row] == 3)
    uniform = onboard_llm(router, anchor, "new", answer, budget=80, seed=2)
    contested = onboard_llm(router, anchor, "new", answer, budget=80, design="contested", seed=2)
    assert uniform.promote and not contested.promote and contested.gate.lower > 0
    assert np.sum(cluster[contested.rows] == 3) < np.sum(cluster[uniform.rows] == 3)
    assert contested.gate.support < 10 <= uniform.gate.support


def test_looks_and_the_tie_split_share():
    assert looks(200, 40, 40) == [40, 80, 120, 160, 200]
    assert looks(90, 40, 40) == [40, 80, 90] and looks(30, 40, 40) == [30]
    scores = np.array([[1.0, 1.0, 0.0], [0.5, 0.2, 0.5], [0.0, 0.0, 1.0]])
    allowed = np.ones((3, 3), dtype=bool)
    assert tie_split_share(scores, allowed, 0) == pytest.approx([0.5, 0.5, 0.0])
    allowed[0, 1] = False
    assert tie_split_share(scores, allowed, 0) == pytest.approx([1.0, 0.5, 0.0])


def test_prefill_column_predicts_the_new_llm_where_it_was_never_a_candidate():
    from recroute.loop.onboard import prefill_column
    from recroute.routers.baselines import BestSingleRouter

    router = BestSingleRouter().fit(np.array([[0.0, 1.0], [0.4, 0.2]], dtype=np.float32))
    router.llm_names_ = np.array(["a", "b"], dtype=object)
    mean_only = ResultRegression(np.zeros((2, 2)), np.array([0.3, 0.5]))  # < 3 probes: their mean, 0.4
    out = prefill_column(router, mean_only, np.zeros((6, 3), np.float32), np.array([1, 4]), 6)
    assert out.shape == (6, 3) and np.isnan(out[:, :2]).all()
    assert out[[1, 4], 2] == pytest.approx([0.4, 0.4]) and np.isnan(out[[0, 2, 3, 5], 2]).all()
    F = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])
    reg = ResultRegression(F, 0.1 + 0.5 * F[:, 0] + 0.25 * F[:, 1])
    # best_single scores every prompt with the LLM means (0.2, 0.6): the prediction is the regression's there
    assert prefill_column(router, reg, np.zeros((3, 3), np.float32), np.array([2]), 3)[2, 2] == pytest.approx(
        reg.predict(np.array([[0.2, 0.6]]))[0])


def test_a_promoted_conservative_shadow_gets_the_llm_placed_into_both_of_its_routers():
    from recroute.routers.conservative import fitted_family
    from recroute.loop.shadow import Conservative

    X, Y, router, anchor = _anchor_and_router(k=3)
    other = KNNRouter(k=5).fit(Y.astype(np.float32), X)
    other.llm_names_ = np.array(["a", "b"], dtype=object)
    live = Conservative(other, router, 0.2)
    assert fitted_family(live) is other and fitted_family(Conservative(live, router, 0.1)) is other
    got = onboard_llm(live, anchor, "new", lambda row: float(Y[row, 1]), budget=40, min_probes=40, margin=-1.0,
                      min_support=0)
    assert isinstance(got.candidate, Conservative) and got.candidate.tau == 0.2
    known = anchor.with_llms(["a", "b"])
    for inner, plain in ((got.candidate.refit, other), (got.candidate.live, router)):  # each placed from its own prompts
        expected = place(plain, placement_prompts(plain, known), got.rows, got.results, "new")
        assert list(inner.llm_names_) == ["a", "b", "new"]
        assert inner.train_scores_[:, -1] == pytest.approx(expected.train_scores_[:, -1])
    S = got.candidate.score(X[:5])  # the refit's scores, tau added on the inner live router's choice
    bump = np.zeros((5, 3))
    bump[np.arange(5), got.candidate.live.score(X[:5]).argmax(axis=1)] = 0.2
    assert S == pytest.approx(got.candidate.refit.score(X[:5]) + bump)
