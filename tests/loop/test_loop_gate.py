"""The gate's design interval (hand-computed on a tiny log), a planted harmful candidate it refuses
where the empirical interval alone would promote it, and shadow exploration's budget and levels."""

from __future__ import annotations

import numpy as np
import pytest
from test_loop_units import FixedScores

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.loop.gate import compare, promotion_decision
from recroute.loop.shadow import look_alpha, shadow_epsilon, shadow_probabilities

Z = 1.959964


# FixedScores (test_loop_units, same folder): a feature-free router with fixed scores
LIVE, CANDIDATE = FixedScores([1, 0]), FixedScores([0, 1])  # live always a, candidate always b


def test_design_interval_on_a_tiny_log_by_hand():
    # 4 decisions over (a, b), logged with P0 = (0.9, 0.1); chose a, a, a, b with outcomes 1, 0, 1, 1; q = 0.5
    b = Bandit(np.arange(4), np.ones((4, 2), bool), np.array([0, 0, 0, 1]), np.array([.9, .9, .9, .1]),
               np.array([1.0, 0.0, 1.0, 1.0]), np.array(["a", "b"]))
    q = np.full((4, 2), 0.5)
    got = compare(b, None, CANDIDATE, LIVE, q, logging=np.tile([0.9, 0.1], (4, 1)))
    # D_i = (w_c - w_l)(r - 0.5): -1/.9 * (+.5, -.5, +.5) on the a-decisions, 10 * .5 on the b-decision
    D = np.array([-0.5 / 0.9, 0.5 / 0.9, -0.5 / 0.9, 5.0])
    assert got.delta == pytest.approx(D.mean()) == pytest.approx(1.1111111)
    # design: per decision (1)^2 .25 / .9 + (-1)^2 .25 / .1 = 2.7778, no spread of Δq: sqrt(4 * 2.7778) / 4
    assert got.se_design == pytest.approx(np.sqrt(4 * (0.25 / 0.9 + 0.25 / 0.1)) / 4) == pytest.approx(0.8333333)
    assert got.se_empirical == pytest.approx(np.sqrt(4 / 3 * np.sum((D - D.mean()) ** 2)) / 4)  # 1.3225
    assert got.se == pytest.approx(got.se_empirical)  # the larger of the two
    assert got.lower == pytest.approx(D.mean() - Z * got.se_empirical, rel=1e-5)
    assert got.expected_support == pytest.approx(0.4) and got.support == 1 and got.unsupported == 0
    # the same log without the b-decision: the empirical se shrinks, the design se does not
    b2 = Bandit(np.arange(4), np.ones((4, 2), bool), np.zeros(4, dtype=np.int64), np.full(4, .9),
                np.array([1.0, 0.0, 1.0, 0.0]), np.array(["a", "b"]))
    thin = compare(b2, None, CANDIDATE, LIVE, q, logging=np.tile([0.9, 0.1], (4, 1)))
    assert thin.se_empirical == pytest.approx(np.sqrt(4 / 3 * 4 * (0.5 / 0.9) ** 2) / 4)  # 0.3208
    assert thin.se == pytest.approx(0.8333333) and thin.delta == pytest.approx(0.0)


def test_a_choice_the_logging_policy_could_never_take_gets_the_worst_case():
    # 3 LLMs; the logging policy never explores c (P0 = .9, .1, 0); the candidate always takes c; q = 0.7
    b = Bandit(np.arange(2), np.ones((2, 3), bool), np.array([0, 0]), np.array([.9, .9]), np.array([1.0, 1.0]),
               np.array(["a", "b", "c"]))
    q = np.full((2, 3), 0.7)
    got = compare(b, None, FixedScores([0, 0, 1]), FixedScores([1, 0, 0]), q, logging=np.tile([.9, .1, 0.], (2, 1)))
    # D_i = 0 - (1/.9)(1 - .7) = -1/3 each; design se: only live's term, sqrt(2 * .21 / .9) / 2
    assert got.delta == pytest.approx(-1 / 3) and got.unsupported == 2
    se = np.sqrt(2 * 0.21 / 0.9) / 2
    assert got.se == pytest.approx(se)
    # the candidate's outcome on c is anywhere in [0, 1]: lower -= q_c = .7, upper += 1 - q_c = .3
    assert got.lower == pytest.approx(-1 / 3 - Z * se - 0.7, rel=1e-5)
    assert got.upper == pytest.approx(-1 / 3 + Z * se + 0.3, rel=1e-5)


def test_a_planted_harmful_candidate_with_thin_support_is_refused():
    """The reward model shares the candidate's bias (q says b: .8, truth b: 0). With a 0.5 % budget on b
    the 400 decisions hold no b-decision (a sample of probability .995^400 = 0.13): the empirical
    interval rests on q alone and would promote; the design interval refuses."""
    n = 400
    b = Bandit(np.arange(n), np.ones((n, 2), bool), np.zeros(n, dtype=np.int64), np.full(n, 0.995),
               np.tile([1.0, 0.0], n // 2), np.array(["a", "b"]))
    q = np.tile([0.4, 0.8], (n, 1))
    P0 = np.tile([0.995, 0.005], (n, 1))
    got = compare(b, None, CANDIDATE, LIVE, q, logging=P0)
    assert got.support == 0 and got.expected_support == pytest.approx(2.0)
    assert got.delta > 0.29 and got.delta - Z * got.se_empirical > 0.2  # the empirical interval: "proved"
    assert got.se_design == pytest.approx(np.sqrt(0.24 / 0.995 + 0.16 / 0.005) / 20, rel=1e-6)  # 0.284
    ok, reason = promotion_decision(got)
    assert not ok and "lower bound" in reason and got.lower < 0
    old = compare(b, None, CANDIDATE, LIVE, q)  # without the design, only the support count refuses it
    assert not promotion_decision(old)[0] and promotion_decision(old, min_support=0)[0]


def test_a_harmful_candidate_is_refused_on_a_drawn_log_and_a_better_one_promoted():
    rng = np.random.default_rng(0)
    n, eps = 3000, 0.05
    P0 = np.tile([1 - eps, eps], (n, 1))
    chosen = (rng.random(n) < eps).astype(np.int64)
    truth = np.column_stack([rng.random(n) < 0.6, rng.random(n) < 0.3]).astype(float)  # b is worse
    b = Bandit(np.arange(n), np.ones((n, 2), bool), chosen, P0[np.arange(n), chosen], truth[np.arange(n), chosen],
               np.array(["a", "b"]))
    biased = np.tile([0.55, 0.75], (n, 1))  # the reward model prefers the harmful candidate
    got = compare(b, None, CANDIDATE, LIVE, biased, logging=P0)
    assert not promotion_decision(got)[0] and got.upper < 0.1
    flipped = Bandit(b.rows, b.allowed, b.chosen, b.propensity, truth[:, ::-1][np.arange(n), chosen], b.llm_names)
    assert promotion_decision(compare(flipped, None, CANDIDATE, LIVE, biased[:, ::-1], logging=P0))[0]


def test_logging_probabilities_are_checked():
    b = Bandit(np.arange(2), np.ones((2, 2), bool), np.array([0, 1]), np.array([.9, .1]), np.array([1.0, 0.0]),
               np.array(["a", "b"]))
    q = np.full((2, 2), 0.5)
    with pytest.raises(DataError, match="not its logged propensity"):
        compare(b, None, CANDIDATE, LIVE, q, logging=np.tile([0.8, 0.2], (2, 1)))
    with pytest.raises(DataError, match="sum to 1"):
        compare(b, None, CANDIDATE, LIVE, q, logging=np.tile([0.9, 0.2], (2, 1)))
    with pytest.raises(DataError, match="shape"):
        compare(b, None, CANDIDATE, LIVE, q, logging=np.ones((3, 2)) / 2)


def test_shadow_exploration_spends_the_budget_where_the_shadow_differs():
    live = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1], [0.3, 0.3, 0.9], [0.6, 0.5, 0.1]])
    shadow = np.array([[0.1, 0.9, 0.5], [0.2, 0.8, 0.1], [0.9, 0.3, 0.3], [0.6, 0.6, 0.1]])
    allowed = np.array([[True, True, True], [True, True, True], [True, True, False], [True, True, True]])
    # greedy live: a, b, a (c not allowed, the tie goes to a), a; shadow: b, b, a, a (tie: a)
    P = shadow_probabilities(live, shadow, allowed, 0.1)
    assert np.allclose(P, [[0.9, 0.1, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0]])
    # they differ on 1 of 4 prompts: ε = 0.02 / 0.25 = 0.08, so the off-greedy share is 0.02
    assert shadow_epsilon(live, shadow, allowed, 0.02) == pytest.approx(0.08)
    assert shadow_epsilon(live, shadow, allowed, 0.5) == 0.5  # capped
    assert shadow_epsilon(live, live, allowed, 0.02) == 0.5  # never differ
    with pytest.raises(DataError):
        shadow_probabilities(live, shadow, allowed, 1.5)


def test_look_levels_sum_to_alpha():
    assert [look_alpha(0.05, j) for j in (1, 2, 3)] == pytest.approx([0.025, 0.05 / 6, 0.05 / 12])
    assert sum(look_alpha(0.05, j, 3) for j in (1, 2, 3)) == pytest.approx(0.05)
    assert look_alpha(0.05, 1, 1) == 0.05
    with pytest.raises(DataError):
        look_alpha(0.05, 4, 3)


def test_logging_probabilities_are_recomputed_from_the_bundle_and_policy_that_decided():
    from recroute.loop.refit import LogData, logging_probabilities

    first, second = FixedScores([1, 0, 0]), FixedScores([0, 0, 1])
    for r in (first, second):
        r.llm_names_ = np.array(["a", "b", "c"], dtype=object)
    # decision 0 by bundle "c1" (greedy a) under ε = 0.3 over all 3; decision 1 by "c2" (greedy c), greedy policy
    b = Bandit(np.arange(2), np.ones((2, 3), bool), np.array([1, 2]), np.array([0.1, 1.0]), np.array([1.0, 0.0]),
               np.array(["a", "b", "c"]))
    data = LogData(b, None, [], np.array(["d0", "d1"]), np.array(["c1", "c2"], dtype=object))
    policies = np.array(["epsilon_greedy:epsilon=0.3", "greedy"], dtype=object)
    P0 = logging_probabilities(data, policies, {"c1": first, "c2": second})
    assert np.allclose(P0, [[0.8, 0.1, 0.1], [0, 0, 1]])
    assert logging_probabilities(data, policies, {"c1": first}) is None  # a bundle the loop never served
    wrong = LogData(Bandit(b.rows, b.allowed, b.chosen, np.array([0.2, 1.0]), b.reward, b.llm_names), None, [],
                    data.decision_ids, data.bundle_checksums)
    assert logging_probabilities(wrong, policies, {"c1": first, "c2": second}) is None  # not the logged propensity


def test_conservative_shadow_leaves_live_only_by_more_than_tau():
    from recroute.loop.shadow import Conservative

    refit, live = FixedScores([0.5, 0.65, 0.1]), FixedScores([0.9, 0.0, 0.0])  # refit prefers b by 0.15 over live's a
    for r in (refit, live):
        r.llm_names_ = np.array(["a", "b", "c"], dtype=object)
    assert np.allclose(Conservative(refit, live, 0.2).score(None, n=1), [[0.7, 0.65, 0.1]])  # stays on a
    assert Conservative(refit, live, 0.1).score(None, n=2).argmax(axis=1).tolist() == [1, 1]  # 0.6 < 0.65: b
    with pytest.raises(DataError):
        Conservative(refit, live, -0.1)


def test_the_stream_simulator_explores_its_shadow_within_the_budget_and_records_each_gate():
    from recroute.data.synthetic import make_synthetic
    from recroute.loop.runner import LoopSettings
    from recroute.loop.schedule import Schedule
    from recroute.loop.simulate import StreamConfig, simulate_stream

    data = make_synthetic(1300, 4, 3, embedding_dim=8, random_state=1)
    settings = LoopSettings(schedule=Schedule(300), min_outcomes=300)
    config = StreamConfig(start_share=0.05, explore="shadow", shadow_tau=0.1, explore_budget=0.05, window=300,
                          bucket=300, settings=settings)
    out = simulate_stream(data, data.embeddings, config, seed=0)
    assert out["n_decisions"] == 1235 and out["off_greedy_share"] <= 0.05 + 0.03  # ε·d = the budget, in expectation
    assert [g["at"] for g in out["gated"]] == [600, 900, 1200] and [g["look"] for g in out["gated"]][:1] == [1]
    for g in out["gated"]:  # each look by the design interval; expected support ≈ budget × window (ε set on recent prompts)
        assert g["se"] >= g["se_empirical"] and 0 < g["expected_support"] <= 2 * 0.05 * g["n"]
        assert g["unsupported"] == 0  # the shadow's differing choices are always explorable
    for p in out["promotions"]:
        assert p["kind"] == "refit" and p["lower"] > 0 and "true_delta" in p


def test_the_log_tail_parses_only_new_complete_lines_and_joins_late_outcomes(tmp_path):
    from recroute.feedback.logs import DecisionLogWriter, read_decision_log
    from recroute.loop.refit import LogTail

    path = tmp_path / "log.jsonl"
    writer = DecisionLogWriter(path)
    writer.append([{"decision_id": "d0", "prompt_text": "p0", "candidates": ["a", "b"], "chosen": "a", "propensity": 0.9}])
    tail = LogTail(path)
    first = tail.read()
    assert list(first["decision_id"]) == ["d0"] and first["outcome"].isna().all()
    offset = tail.offset
    writer.append_outcome("d0", 1.0)
    writer.append([{"decision_id": "d1", "prompt_text": "p1", "candidates": ["a", "b"], "chosen": "b", "propensity": 0.1}])
    with open(path, "a") as fh:
        fh.write('{"event": "outcome", "decision_id": "d1", "outc')  # a line still being written
    second = tail.read()
    assert tail.offset > offset and list(second["outcome"].fillna(-1)) == [1.0, -1.0]
    with open(path, "a") as fh:
        fh.write('ome": 0.0, "timestamp": 1.0}\n')
    third = tail.read()
    assert list(third["outcome"]) == [1.0, 0.0]
    assert third[["decision_id", "outcome"]].equals(read_decision_log(path)[["decision_id", "outcome"]])
    path.write_text(path.read_text().splitlines(keepends=True)[0])  # replaced by a shorter file: read again
    assert list(tail.read()["decision_id"]) == ["d0"]


def test_an_onboarded_llm_gets_a_shadow_at_once_gated_at_the_next_refit():
    from recroute.data.synthetic import make_synthetic
    from recroute.loop.runner import LoopSettings
    from recroute.loop.schedule import Schedule
    from recroute.loop.simulate import StreamConfig, simulate_stream

    data = make_synthetic(1300, 4, 3, embedding_dim=8, random_state=1)
    new = str(data.llm_names[1])
    settings = LoopSettings(schedule=Schedule(300), min_outcomes=300, probe_budget=40, min_probes=40,
                            onboard_margin=-1.0, onboard_min_support=0)
    config = StreamConfig(start_share=0.05, explore="shadow", shadow_tau=0.1, explore_budget=0.05, window=300,
                          bucket=300, new_llm=new, anchor_reward=True, onboard_shadow=True, settings=settings)
    out = simulate_stream(data, data.embeddings, config, seed=0)
    at = out["new_llm"]["at"]
    assert at == int(0.5 * (1300 - 65))  # new_llm_at of the stream after the 5 % start (65 prompts)
    assert out["new_llm"]["placed"] and out["new_llm"]["probes"] == 40
    first = [g for g in out["gated"] if g["at"] > at][0]
    # the shadow with the new LLM was fitted at its arrival: gated at the next refit (900) on the 283 decisions since
    assert first["at"] == 900 and first["look"] == 1 and first["n"] == 900 - at
    assert out["off_greedy_share"] <= 0.05 + 0.03


def test_the_stream_simulator_retunes_a_kept_shadows_epsilon_as_the_runner_does():
    """After a look that keeps the shadow, its ε is set again from the share of its served decisions where it
    differed from live (``shadow.retune_epsilon``, the runner's ``retuned_epsilon``); ``retune=False`` keeps it."""
    from recroute.data.synthetic import make_synthetic
    from recroute.loop.runner import LoopSettings
    from recroute.loop.schedule import Schedule
    from recroute.loop.shadow import epsilon_for, retune_epsilon
    from recroute.loop.simulate import StreamConfig, simulate_stream

    data = make_synthetic(1300, 4, 3, embedding_dim=8, random_state=1)
    settings = LoopSettings(schedule=Schedule(300), min_outcomes=300)
    kw = dict(start_share=0.05, explore="shadow", shadow_tau=0.1, explore_budget=0.05, window=300, bucket=300,
              settings=settings)
    retuned, kept = (simulate_stream(data, data.embeddings, StreamConfig(retune=r, **kw), seed=0)["gated"]
                     for r in (True, False))
    pairs = [(a, b) for a, b in zip(retuned, retuned[1:]) if b["since"] == a["since"] and b["look"] == a["look"] + 1]
    assert pairs, "no shadow was kept for a second look: the test needs one"
    for a, b in pairs:  # the next look's ε: from the served disagreement of the window up to the previous look
        want = retune_epsilon(a["differ_served"], a["epsilon"], 0.05, settings.shadow_cap) or a["epsilon"]
        assert b["epsilon"] == pytest.approx(want)
        assert retune_epsilon(0.25, 0.2, 0.05) is None and retune_epsilon(0.25, 0.1, 0.05) == epsilon_for(0.25, 0.05)
    changed = [b for a, b in pairs if b["epsilon"] != pytest.approx(a["epsilon"])]
    assert changed, "no retune moved ε by more than 2 %: the test does not tell retune from none"
    for since in {g["since"] for g in kept}:  # without retune every shadow keeps its first ε over its looks
        assert len({round(g["epsilon"], 12) for g in kept if g["since"] == since}) == 1
