"""A fresh shadow's first ε (shadow.first_disagreement), the simulator's decisions against the gateway's
rule, and runner.shadow_logging against its per-decision arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
from test_loop_units import FixedScores

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.loop.shadow import epsilon_for, first_disagreement, first_epsilon

NAMES = np.array(["a", "b", "c"], dtype=object)


def _named(scores):
    router = FixedScores(scores)
    router.llm_names_ = NAMES
    return router


def _log(allowed) -> Bandit:
    A = np.asarray(allowed, dtype=bool)
    n = len(A)
    return Bandit(np.arange(n), A, A.argmax(axis=1), np.ones(n), np.zeros(n), NAMES)  # chosen: the first candidate


def test_the_first_epsilon_is_set_from_the_larger_disagreement_among_each_decisions_candidates():
    full = [True, True, True]
    # decisions 0..5 train the probe; the most recent 4 (6..9) are where d is estimated, each among its own candidates
    bandit = _log([full] * 7 + [[True, False, True], [False, True, True], [True, True, False]])
    live = _named([0.9, 0.5, 0.1])    # among the candidates of 6..9: a, a, b, a
    shadow = _named([0.2, 0.6, 0.5])  # b, c, b, b: differs on 6, 7, 9 -> d_trained 3 / 4
    fitted_on = []

    def served(part):  # the probe: prefers b, then a -> b, a, b, b: differs on 6 and 9 -> d_heldout 2 / 4
        fitted_on.append(part.rows.tolist())
        return _named([0.5, 0.9, 0.1])

    d = first_disagreement(live, shadow, bandit, None, 4, served)
    assert d == {"n_recent": 4, "d_trained": 0.75, "d_heldout": 0.5}
    assert fitted_on == [[0, 1, 2, 3, 4, 5]]  # the probe never saw the decisions it is scored on
    # the larger estimate plus one standard error: 0.75 + sqrt(0.75 * 0.25 / 4) = 0.96651
    assert first_epsilon(d, 0.02) == pytest.approx(0.02 / (0.75 + np.sqrt(0.75 * 0.25 / 4)))
    assert first_epsilon(d, 0.02, z=0.0) == pytest.approx(0.02 / 0.75)
    assert first_epsilon({"n_recent": 4, "d_trained": 0.75}, 0.02, z=3.0) == pytest.approx(0.02)  # d + 3 se capped at 1
    assert epsilon_for(0.0, 0.02) == 0.5 and epsilon_for(0.01, 0.02, cap=0.5) == 0.5  # capped
    assert first_disagreement(live, shadow, bandit, None, 4, served, ("trained",)) == {"n_recent": 4, "d_trained": 0.75}
    with pytest.raises(DataError, match="disagreement share"):
        epsilon_for(1.5, 0.02)
    with pytest.raises(DataError, match="holdout"):
        first_disagreement(live, shadow, bandit, None, 10, served)


def test_the_simulator_sets_each_fresh_shadows_epsilon_from_its_estimates_and_records_the_first_looks_share():
    from recroute.data.synthetic import make_synthetic
    from recroute.loop.runner import LoopSettings
    from recroute.loop.schedule import Schedule
    from recroute.loop.simulate import StreamConfig, simulate_stream

    data = make_synthetic(1300, 4, 3, embedding_dim=8, random_state=1)
    settings = LoopSettings(schedule=Schedule(300), min_outcomes=300)
    config = StreamConfig(start_share=0.05, explore="shadow", shadow_tau=0.1, explore_budget=0.05, window=300,
                          bucket=300, settings=settings)
    out = simulate_stream(data, data.embeddings, config, seed=0)
    firsts = [g for g in out["gated"] if g["look"] == 1]
    assert firsts
    for g in firsts:
        assert g["n_recent"] == round(0.3 * g["since"])  # the holdout share of the decisions logged at its install
        assert g["epsilon"] == pytest.approx(first_epsilon({"n_recent": g["n_recent"], "d_trained": g["d_trained"],
                                                            "d_heldout": g["d_heldout"]}, 0.05))
        # the expected off-greedy share of the window is ε times the share where the served shadow differed
        assert g["off_greedy_expected"] == pytest.approx(g["epsilon"] * g["differ_served"])
        assert 0 <= g["off_greedy_served"] <= 1


def test_shadow_logging_rebuilds_the_per_decision_arithmetic_on_a_small_log():
    """The vectorized runner.shadow_logging equals the per-decision loop it replaced (kept as
    benchmarks/loop_logging.per_decision_logging) on a log of stochastic, greedy and shadow decisions."""
    import sys
    from pathlib import Path

    from recroute.data.synthetic import make_synthetic
    from recroute.loop.runner import shadow_logging

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from loop_logging import make_log, per_decision_logging

    data = make_synthetic(400, 5, 3, embedding_dim=8, random_state=3)
    truth = data.dense(np.nan).astype(np.float64)
    truth[::7, 1] = np.nan  # some decisions lack a candidate
    log, logdata, routers = make_log(truth, data.embeddings, [str(n) for n in data.llm_names], 120, 0.4, 0.2)
    assert set(log["policy"].dropna()) == {"epsilon_greedy:epsilon=0.02,top_k=3", "greedy"}
    assert log["shadow_checksum"].notna().sum() == 120 - 48 - 24
    new, old = shadow_logging(log, logdata, 5, routers), per_decision_logging(log, logdata, 5, routers)
    assert np.isnan(new[:5]).all() and np.array_equal(new, old, equal_nan=True)
    assert np.allclose(new[5:].sum(axis=1), 1.0)
    # every rebuilt probability of a logged choice is its logged propensity
    assert np.allclose(new[np.arange(5, 120), logdata.bandit.chosen[5:]], logdata.bandit.propensity[5:])
    with pytest.raises(DataError, match="does not know"):
        shadow_logging(log, logdata, 5, {})
    log.loc[100, "live_choice"] = "nobody"
    with pytest.raises(DataError, match="decision 100.*'nobody'"):
        shadow_logging(log, logdata, 5, routers)


def test_the_simulators_decisions_are_the_gateways_among_each_requests_candidates():
    """decision_probabilities (the fast mode) against the gateway's rule on the same requests: a promoted
    conservative live router (its levels combined among the candidates, as Decider.decide) and a
    conservative shadow over it (shadow_serving.Shadow.decide) give the same live choice, shadow choice
    and propensity of every LLM; the old fast mode (live's choice among all LLMs) would not."""
    from recroute.encoders import get_encoder
    from recroute.feedback.policies import greedy_matrix
    from recroute.loop.shadow import Conservative
    from recroute.loop.simulate import decision_probabilities
    from recroute.routers.conservative import combine
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.shadow_serving import Shadow
    from recroute.serve.upstreams import parse_upstreams

    rng = np.random.default_rng(5)
    names = ["a", "b", "c", "d"]
    texts = [f"{['math proof', 'python bug', 'king battle', 'cell biology'][i % 4]} item {i}" for i in range(240)]
    enc = get_encoder("tfidf", dim=8)
    X = enc.fit_encode(texts)
    Y = rng.random((240, 4)).astype(np.float32)

    def knn(rows):
        router = KNNRouter(k=3).fit(Y[rows], X[rows])
        router.llm_names_ = np.array(names, dtype=object)
        return router

    start, refit1, refit2 = knn(np.arange(0, 40)), knn(np.arange(40, 120)), knn(np.arange(120, 200))
    tau, eps = 0.05, 0.3
    live = Conservative(refit1, start, tau)
    shadow = Conservative(refit2, live, tau)
    q = np.arange(200, 240)
    allowed = rng.random((len(q), 4)) < 0.6
    allowed[np.arange(len(q)), rng.integers(0, 4, len(q))] = True
    scores, P, differ = decision_probabilities(live, shadow, X[q], allowed, eps, None)

    doc = {"upstreams": {n: {"base_url": f"http://127.0.0.1:9/{n}/v1"} for n in names}}
    upstreams, _ = parse_upstreams(doc, names, "u.toml", {})
    live_bundle = RoutingBundle.build(live, enc)
    served = Shadow(RoutingBundle.build(refit2, enc), live_bundle, upstreams, eps, tau)
    parts, taus = live.parts(X[q], len(q))
    shadow_raw = np.asarray(served.scores(X[q], len(q)), dtype=np.float64)  # as Decider._both
    g_live = greedy_matrix(scores, allowed).argmax(axis=1)
    for i in range(len(q)):
        utility = combine([p[i:i + 1] for p in parts], taus, allowed[i:i + 1])[0]  # Decider.decide's live scores
        chosen, prop, live_j, shadow_j, _, _ = served.decide(utility, allowed[i], shadow_raw[i], allowed[i], rng)
        assert live_j == g_live[i] and (shadow_j != live_j) == differ[i]
        assert prop == pytest.approx(P[i, chosen])
        if differ[i]:
            assert P[i, shadow_j] == pytest.approx(eps) and P[i, live_j] == pytest.approx(1 - eps)
    old_live = greedy_matrix(live.score(X[q], n=len(q)), allowed).argmax(axis=1)  # live's choice among all LLMs
    old_shadow = greedy_matrix(shadow.score(X[q], n=len(q)), allowed).argmax(axis=1)
    new_shadow = np.where(differ, greedy_matrix(shadow.score_among(X[q], allowed, n=len(q)), allowed).argmax(axis=1), g_live)
    assert (old_live != g_live).any() or (old_shadow != new_shadow).any()
