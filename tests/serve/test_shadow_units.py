"""The shadow mixture with hand-computed propensities: the conservative rule, the logged design rebuilt
from the logged choices, the gateway's decision with a shadow (candidates, tau, a spare LLM), and the
checks a shadow must pass."""

from __future__ import annotations

import asyncio

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from test_gateway_shadow import shadow_bundle  # noqa: E402

from recroute.errors import DataError  # noqa: E402
from recroute.feedback.bandit import Bandit  # noqa: E402
from recroute.loop.refit import LogData  # noqa: E402
from recroute.loop.runner import retuned_epsilon, shadow_logging  # noqa: E402
from recroute.loop.shadow import conservative_scores, logged_shadow_probabilities, shadow_probabilities  # noqa: E402
from recroute.serve.bundle import RoutingBundle  # noqa: E402
from recroute.serve.gateway import Decider, RouteOptions  # noqa: E402
from recroute.serve.shadow_serving import Shadow, check_shadow_settings  # noqa: E402
from recroute.serve.upstreams import Upstream  # noqa: E402

LLMS3 = ["math-llm", "code-llm", "history-llm"]
MATH = "prove the theorem about the prime number with algebra"
HISTORY = "which king won the battle that ended the medieval dynasty"


def test_conservative_rule_and_mixture_by_hand():
    live, refit = np.array([[0.9, 0.5, 0.1]]), np.array([[0.2, 0.8, 0.1]])
    # tau 0.5: the refit's 0.8 beats 0.2 + 0.5 on live's choice (column 0): the shadow takes column 1
    C = conservative_scores(live, refit, None, 0.5)
    assert C == pytest.approx(np.array([[0.7, 0.8, 0.1]]))
    assert shadow_probabilities(live, C, None, 0.2) == pytest.approx(np.array([[0.8, 0.2, 0.0]]))
    # tau 0.7: 0.8 is not above 0.9: the shadow agrees with live, which is served with probability 1
    C = conservative_scores(live, refit, None, 0.7)
    assert shadow_probabilities(live, C, None, 0.2) == pytest.approx(np.array([[1.0, 0.0, 0.0]]))
    # live's choice among the candidates: column 0 not allowed, so live's is column 1 and tau goes there
    allowed = np.array([[False, True, True]])
    assert conservative_scores(live, np.array([[0.2, 0.3, 0.6]]), allowed, 0.2) == pytest.approx(np.array([[0.2, 0.5, 0.6]]))
    assert shadow_probabilities(live, np.array([[0.2, 0.3, 0.6]]), allowed, 0.4) == pytest.approx(np.array([[0.0, 0.6, 0.4]]))
    with pytest.raises(DataError, match="tau must be >= 0"):
        conservative_scores(live, refit, None, -0.1)


def test_logged_design_is_rebuilt_from_the_logged_choices():
    allowed = np.array([[True, True, True], [True, False, True], [True, True, True]])
    P = logged_shadow_probabilities(np.array([0, 2, 1]), np.array([1, 2, 0]), allowed, np.array([0.25, 0.25, 0.1]))
    assert P == pytest.approx(np.array([[0.75, 0.25, 0.0], [0.0, 0.0, 1.0], [0.1, 0.9, 0.0]]))
    with pytest.raises(DataError, match="not among its decision's candidates"):
        logged_shadow_probabilities(np.array([0]), np.array([1]), allowed[1:2], np.array([0.1]))


def test_shadow_logging_rebuilds_each_decision_and_the_gate_check_accepts_it():
    from recroute.loop.gate import check_logging

    names = np.asarray(LLMS3, dtype=object)
    allowed = np.ones((4, 3), dtype=bool)
    chosen = np.array([0, 1, 0, 2])
    propensity = np.array([1.0, 0.3, 0.7, 1.0])
    bandit = Bandit(np.arange(4), allowed, chosen, propensity, np.array([1.0, 0.0, 1.0, 1.0]), names)
    log = pd.DataFrame({"policy": ["greedy"] * 4, "bundle_checksum": ["b"] * 4,
                        "shadow_checksum": [None, "s", "s", None], "shadow_epsilon": [np.nan, 0.3, 0.3, np.nan],
                        "live_choice": [None, "math-llm", "math-llm", None],
                        "shadow_choice": [None, "code-llm", "code-llm", None]})
    data = LogData(bandit, None, [], np.arange(4).astype(object))
    P0 = shadow_logging(log, data, 1, {})
    assert np.isnan(P0[0]).all()  # before the shadow's window: not used
    assert P0[1:] == pytest.approx(np.array([[0.7, 0.3, 0.0], [0.7, 0.3, 0.0], [0.0, 0.0, 1.0]]))
    check_logging(P0[1:], bandit.take(np.arange(1, 4)))  # every logged propensity is its rebuilt probability
    wrong = Bandit(np.arange(4), allowed, chosen, np.array([1.0, 0.25, 0.7, 1.0]), bandit.reward, names)
    with pytest.raises(DataError, match="decision 0: the logging probability of the chosen LLM 0.3"):
        check_logging(P0[1:], wrong.take(np.arange(1, 4)))
    with pytest.raises(DataError, match="stochastic policy"):  # an ε-greedy decision of an unknown bundle
        shadow_logging(log.assign(policy="epsilon_greedy:epsilon=0.1"), data, 3, {})


def test_epsilon_is_retuned_from_the_served_disagreement():
    window = pd.DataFrame({"live_choice": ["a", "a", "b", "b", "c"], "shadow_choice": ["b", "a", "c", "b", "a"]})
    # d = 3/5 where they differed: ε = 0.02 / 0.6 = 1/30; set at 0.05 (d estimated 0.4), it is lowered
    assert retuned_epsilon(window, 0.05, 0.02) == pytest.approx(1 / 30)
    assert retuned_epsilon(window, 0.034, 0.02) is None  # within 2 % of 1/30: left as it is
    assert retuned_epsilon(window, 0.035, 0.02) == pytest.approx(1 / 30)  # 5 % off: set again
    assert retuned_epsilon(window, 0.05, 0.9) == 0.5  # the cap
    assert retuned_epsilon(window.iloc[[1, 3]], 0.2, 0.02) == 0.5  # never differed: the cap
    assert retuned_epsilon(window.iloc[[]], 0.2, 0.02) is None


def upstreams(names) -> dict:
    return {n: Upstream(n, "http://127.0.0.1:9/v1", n) for n in names}


def decide(decider: Decider, text: str, options: RouteOptions = RouteOptions(), times: int | None = None):
    """One decision (or a list of ``times``) of a started-then-closed decider."""
    async def run():
        await decider.start()
        try:
            return [await decider.decide(text, options) for _ in range(times or 1)]
        finally:
            await decider.close()

    got = asyncio.run(run())
    return got if times else got[0]


@pytest.fixture(scope="module")
def bundles(tfidf_bundle_dir, topics, tmp_path_factory):
    folder = tmp_path_factory.mktemp("unit-shadows")
    return {
        "live": RoutingBundle.load(tfidf_bundle_dir),
        "rotate": RoutingBundle.load(shadow_bundle(tfidf_bundle_dir, topics, folder / "rotate", LLMS3, {
            "math": "code-llm", "code": "history-llm", "history": "math-llm"})),
        "spare": RoutingBundle.load(shadow_bundle(tfidf_bundle_dir, topics, folder / "spare", [*LLMS3, "spare-llm"], {
            "math": "math-llm", "code": "code-llm", "history": "spare-llm"})),
    }


@pytest.mark.parametrize("decide_on", ["loop", "thread"])
def test_the_decision_with_a_shadow_by_hand(bundles, decide_on):
    live, rotate = bundles["live"], bundles["rotate"]
    ups = upstreams(LLMS3)
    S = rotate.router.score(live.encode([MATH]))[0]  # the shadow prefers code-llm on a math prompt
    gap = float(S[1] - S[0])
    assert gap > 0
    for eps, chosen, p in ((1.0, "code-llm", 1.0), (0.0, "math-llm", 1.0)):
        d = decide(Decider(live, ups, decide_on=decide_on, shadow=Shadow(rotate, live, ups, eps, 0.0)), MATH)
        assert (d.chosen, d.propensity, d.policy) == (chosen, p, "greedy")
        assert d.shadow == {"live_choice": "math-llm", "shadow_choice": "code-llm", "shadow_checksum": rotate.checksum,
                            "shadow_epsilon": eps, "shadow_tau": 0.0}
        assert d.order[0] == chosen and sorted(d.order) == sorted(LLMS3)
    # ε = 0.25 over 40 draws of one prompt: each propensity is the mixture's, and both choices occur
    decider = Decider(live, ups, decide_on=decide_on, shadow=Shadow(rotate, live, ups, 0.25, 0.0), seed=1)
    draws = decide(decider, MATH, times=40)
    assert {d.chosen for d in draws} == {"code-llm", "math-llm"}
    assert all(d.propensity == pytest.approx(0.25 if d.chosen == "code-llm" else 0.75) for d in draws)
    # tau just above the shadow's lead: it keeps live's choice; just below: it leaves it
    for tau, agrees in ((gap + 1e-6, True), (max(gap - 1e-6, 0.0), False)):
        d = decide(Decider(live, ups, decide_on=decide_on, shadow=Shadow(rotate, live, ups, 1.0, tau)), MATH)
        assert (d.shadow["shadow_choice"] == "math-llm") == agrees and d.propensity == 1.0
    # the request's candidates restrict the shadow too: without code-llm it ties at 0 and takes math-llm
    d = decide(Decider(live, ups, shadow=Shadow(rotate, live, ups, 1.0, 0.0)), MATH,
               RouteOptions(candidates=("math-llm", "history-llm")))
    assert (d.chosen, d.propensity, d.shadow["shadow_choice"]) == ("math-llm", 1.0, "math-llm")
    assert d.candidates == ["math-llm", "history-llm"]


def test_a_shadow_routes_to_a_spare_llm_and_bad_shadows_are_refused(bundles, tfidf_bundle_dir, topics, tmp_path):
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter

    live, spare = bundles["live"], bundles["spare"]
    ups = upstreams([*LLMS3, "spare-llm"])
    shadow = Shadow(spare, live, ups, 1.0, 0.0)
    assert shadow.union == [*live.llm_names, "spare-llm"]
    d = decide(Decider(live, ups, shadow=shadow), HISTORY)
    assert (d.chosen, d.propensity, d.shadow["live_choice"]) == ("spare-llm", 1.0, "history-llm")
    assert d.candidates == [*LLMS3, "spare-llm"]  # the generalist has no upstream
    with pytest.raises(DataError, match=r"LLM\(s\) \['spare-llm'\] that have no upstream"):
        Shadow(spare, live, upstreams(LLMS3), 0.1, 0.0)
    encoder = get_encoder("tfidf", dim=16)  # another fit: another encoder
    X = encoder.fit_encode([str(t) + " extra words" for t in topics.texts])
    other = RoutingBundle.build(KNNRouter(k=3).fit(topics, X), encoder).save(tmp_path / "other")
    with pytest.raises(DataError, match="encoder is not the live bundle's"):
        Shadow(RoutingBundle.load(other), live, upstreams(LLMS3 + ["generalist"]), 0.1, 0.0)
    for eps, tau, message in ((1.2, 0.0, "must be in [0, 1]"), (0.1, -0.5, "must be >= 0"),
                              (float("nan"), 0.0, "finite number"), (True, 0.0, "finite number")):
        with pytest.raises(DataError, match=message.replace("[", r"\[").replace("]", r"\]")):
            check_shadow_settings(eps, tau)
