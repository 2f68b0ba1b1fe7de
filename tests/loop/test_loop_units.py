"""The loop's pieces with hand-computed values: journal replay, schedule, exploration budget, the gate's
DR difference and promotion rule, the refit's anchor, and one runner step promoting in process (onboarding:
test_onboard.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.loop.exploration import budget_policy, off_greedy_share
from recroute.loop.gate import GateResult, compare, promotion_decision
from recroute.loop.journal import Journal
from recroute.loop.refit import Anchor, fit_candidate, split_recent
from recroute.loop.schedule import Schedule


class FixedScores:
    """A feature-free 'router' with fixed scores (n_llms,), enough for target_probabilities."""

    needs_features = False
    stochastic = False
    requires_truth = False
    name = "fixed"

    def __init__(self, scores):
        self.scores = np.asarray(scores, dtype=np.float32)

    def score(self, X, n=None):
        return np.tile(self.scores, (n, 1))


def test_journal_replays_state_and_skips_only_a_torn_last_line(tmp_path):
    j = Journal(tmp_path / "loop.jsonl")
    j.append("start", live_bundle="/b0")
    j.append("refit", n_outcomes=1000)
    j.append("promoting", bundle="/b1", kind="refit")
    state = j.state()
    assert (state.live_bundle, state.refits, state.last_refit_outcomes) == ("/b0", 1, 1000)
    assert state.pending["bundle"] == "/b1"  # journalled before the reload: a restart finishes it
    j.append("promoted", bundle="/b1", kind="refit", response={"checksum": "c1"})
    j.append("promoting", bundle="/b2", kind="refit")
    j.append("refused", bundle="/b2", kind="refit", reason="422")
    j.append("onboard", llm="new", placed=False, probes=3)
    with open(j.path, "a") as fh:
        fh.write('{"event": "refit", "n_outc')  # a crash mid-write
    state = j.state()
    assert state.live_bundle == "/b1" and state.pending is None and len(state.promotions) == 1
    assert set(state.onboarded) == {"new"}
    with open(j.path, "a") as fh:
        fh.write('\n{"event": "start"}\n')
    with pytest.raises(DataError, match="line 8: not valid JSON"):
        j.events()
    with pytest.raises(DataError, match="unknown journal event"):
        j.append("bogus")


def test_schedule_counts_outcomes_or_seconds():
    by_count = Schedule(every_outcomes=100)
    assert not by_count.due(150, 100, now=0, last_time=None)
    assert by_count.due(200, 100, now=0, last_time=None)
    by_time = Schedule(every_outcomes=None, every_seconds=60)
    assert not by_time.due(101, 100, now=159, last_time=100)
    assert by_time.due(101, 100, now=160, last_time=100)
    assert not by_time.due(100, 100, now=1e9, last_time=100)  # no new outcome: nothing to learn
    with pytest.raises(DataError):
        Schedule(every_outcomes=None, every_seconds=None)


def test_budget_policy_stays_within_the_budget_and_the_share_is_measured():
    policy = budget_policy(0.02)
    P = policy.probabilities(np.array([[0.9, 0.1, 0.5, 0.2]]))
    assert P[0, 0] == pytest.approx(0.98 + 0.005) and 1 - P[0, 0] == pytest.approx(0.015)  # 0.02 * 3/4 < 0.02
    with pytest.raises(DataError):
        budget_policy(1.5)
    allowed = np.array([[True, True, True], [True, True, False], [False, True, True], [True, True, True]])
    b = Bandit(np.arange(4), allowed, np.array([0, 1, 1, 2]), np.ones(4), np.ones(4), np.array(["a", "b", "c"]))
    scores = np.array([[3, 2, 1], [1, 2, 3], [3, 1, 2], [1, 1, 0]], dtype=float)
    # greedy among allowed: a, b, c (a not allowed), a (tie -> lower index); chosen a, b, b, c
    assert off_greedy_share(b, scores) == pytest.approx(0.5)


def test_gate_difference_is_the_difference_of_the_dr_estimates():
    # 4 decisions over LLMs (a, b); logging chose a, a, b, b with propensities .8, .8, .2, .2
    b = Bandit(np.arange(4), np.ones((4, 2), bool), np.array([0, 0, 1, 1]), np.array([.8, .8, .2, .2]),
               np.array([1.0, 0.0, 1.0, 1.0]), np.array(["a", "b"]))
    q = np.full((4, 2), 0.5)
    live, candidate = FixedScores([1, 0]), FixedScores([0, 1])  # live always a, candidate always b
    got = compare(b, None, candidate, live, q)
    # DR(live) = mean(0.5 + 1/.8 (r - .5) on a-decisions, 0.5 on b-decisions) = (1.125 + -0.125 + .5 + .5)/4
    assert got.value_live == pytest.approx(0.5)
    # DR(cand) = (0.5 + 0.5 + 0.5 + 5 * 0.5 + 0.5 + 5 * 0.5) / 4 = 1.75
    assert got.value_candidate == pytest.approx(1.75)
    assert got.delta == pytest.approx(1.25)
    psi = np.array([0.5 - 1.125, 0.5 + 0.125, 3.0 - 0.5, 3.0 - 0.5])
    assert got.se == pytest.approx(np.sqrt(4 / 3 * np.sum((psi - psi.mean()) ** 2)) / 4)
    assert got.lower == pytest.approx(1.25 - 1.959964 * got.se, rel=1e-5)
    assert got.support == 2 and got.disagree == 1.0 and got.n == 4
    ok, reason = promotion_decision(got, margin=0.0, min_support=3)
    assert not ok and "support 2 < 3" in reason
    sure = GateResult(0.7, 0.6, 0.1, 0.02, 0.18, 0.04, 50, 0.3, 1000)
    assert promotion_decision(sure, 0.0, 20)[0] and not promotion_decision(sure, 0.05, 20)[0]


def test_split_recent_keeps_the_newest_decisions_out():
    train, hold = split_recent(10, 0.3)
    assert train.tolist() == list(range(7)) and hold.tolist() == [7, 8, 9]
    assert split_recent(10, 4)[1].tolist() == [6, 7, 8, 9]
    with pytest.raises(DataError):
        split_recent(10, 10)


def test_fit_candidate_stacks_the_anchor_over_the_dr_completed_log():
    rng = np.random.default_rng(0)
    names = np.array(["a", "b"], dtype=object)
    # prompts 0..19 logged (always a chosen, a right on the even ones); the anchor says b is always right
    n = 20
    b = Bandit(np.arange(n), np.ones((n, 2), bool), np.zeros(n, dtype=np.int64), np.full(n, 0.9),
               (np.arange(n) % 2 == 0).astype(float), names)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    anchor = Anchor(rng.normal(size=(5, 4)).astype(np.float32), np.array([[0.0, 1.0]] * 5), ["a", "b"])
    # DR cells (reward model best_single: q_a = 0.5, q_b = 0 as b was never revealed): a = clip(0.5 + (r - 0.5)
    # / 0.9) = r, b = 0; best_single's means: log alone a 0.5, b 0; over the 5 anchor rows too a = 10/25, b = 5/25
    alone = fit_candidate("best_single", b, X, None, reward_router="best_single")
    assert alone.score(None, n=1)[0] == pytest.approx([0.5, 0.0])
    router = fit_candidate("best_single", b, X, anchor, reward_router="best_single")
    assert list(router.llm_names_) == ["a", "b"]
    assert router.score(None, n=1)[0] == pytest.approx([0.4, 0.2])
    wider = anchor.with_llms(["b", "c", "a"])
    assert np.isnan(wider.Y[:, 1]).all() and (wider.Y[:, 0] == 1).all() and (wider.Y[:, 2] == 0).all()


def test_a_runner_step_refits_gates_and_promotes_in_process(tmp_path):
    """The whole step on a gateway-format log (texts encoded by the bundle's TF-IDF encoder)."""
    from recroute.encoders import get_encoder
    from recroute.feedback.logs import DecisionLogWriter
    from recroute.loop.runner import LoopRunner, LoopSettings
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    rng = np.random.default_rng(2)
    topics = ["math algebra proof", "python code bug", "history king battle"]
    texts = [f"{topics[i % 3]} question {i}" for i in range(600)]
    truth = np.array([[1.0 if j == i % 3 else 0.0 for j in range(3)] for i in range(600)])
    enc = get_encoder("tfidf", dim=8)
    X = enc.fit_encode(texts)
    live = KNNRouter(k=3).fit(np.tile([[1.0, 0.0, 0.0]], (30, 1)), X[:30])  # a bad start: always "a"
    live.llm_names_ = np.array(["a", "b", "c"], dtype=object)
    bundle = RoutingBundle.build(live, enc).save(tmp_path / "b0")
    log = DecisionLogWriter(tmp_path / "log.jsonl")
    for i in range(30, 600):  # epsilon-greedy (0.5) around the bad live router
        chosen = 0 if rng.random() < 0.5 else int(rng.integers(3))
        prop = 0.5 + 0.5 / 3 if chosen == 0 else 0.5 / 3
        log.append([{"decision_id": f"d{i}", "prompt_text": texts[i], "candidates": ["a", "b", "c"],
                     "chosen": "abc"[chosen], "propensity": prop}])
        log.append_outcome(f"d{i}", truth[i, chosen])
    promoted = []
    runner = LoopRunner(tmp_path / "log.jsonl", Journal(tmp_path / "loop.jsonl"),
                        lambda path: promoted.append(path) or {"status": "reloaded", "checksum": "x"},
                        tmp_path / "work", LoopSettings(schedule=Schedule(100), min_outcomes=100,
                                                        reward_router="knn", min_support=5, explore_budget=0.5))
    runner.start(bundle)
    events = runner.step()
    kinds = [e["event"] for e in events]
    assert kinds[:1] == ["estimate"] and {"explore", "refit", "decision", "promoting", "promoted"} <= set(kinds)
    estimate = events[0]
    assert estimate["lower"] > 0 and estimate["support"] >= 5  # the refit learned b and c from the exploration
    assert len(promoted) == 1 and Journal(tmp_path / "loop.jsonl").state().live_bundle == promoted[0]
    assert RoutingBundle.load(promoted[0]).llm_names == ["a", "b", "c"]
    assert runner.step() == []  # no new outcome: nothing to do
    assert json.loads((tmp_path / "loop.jsonl").read_text().splitlines()[0])["event"] == "start"


def test_spare_upstreams_are_kept_after_the_bundle_llms_only_when_asked():
    from recroute.serve.upstreams import parse_upstreams

    doc = {"upstreams": {"new": {"base_url": "http://127.0.0.1:1/v1"}, "a": {"base_url": "http://127.0.0.1:2/v1"}}}
    with pytest.raises(DataError, match=r"\['new'\] are not LLMs of the bundle"):
        parse_upstreams(doc, ["a", "b"], "u.toml", {})
    got, left_out = parse_upstreams(doc, ["a", "b"], "u.toml", {}, spare=True)
    assert list(got) == ["a", "new"] and left_out == ["b"] and got["new"].chat_url == "http://127.0.0.1:1/v1/chat/completions"


def test_a_restarted_runner_finishes_a_pending_promotion_and_retries_when_unanswered(tmp_path):
    from recroute.loop.promote import PromotionError
    from recroute.loop.runner import LoopRunner

    journal = Journal(tmp_path / "loop.jsonl")
    journal.append("start", live_bundle="/b0")
    journal.append("promoting", bundle="/b1", kind="refit")  # the loop died before the gateway answered
    calls = []

    def down(path):
        calls.append(path)
        raise PromotionError("no answer")

    with pytest.raises(PromotionError):
        LoopRunner(tmp_path / "none.jsonl", journal, down, tmp_path).step()
    assert journal.state().pending is not None  # still pending: retried at the next step
    done = LoopRunner(tmp_path / "none.jsonl", journal, lambda path: calls.append(path) or {"checksum": "c"}, tmp_path)
    events = done.step()
    assert calls == ["/b1", "/b1"] and [e["event"] for e in events] == ["promoted"] and events[0]["resumed"]
    assert journal.state().live_bundle == "/b1" and journal.state().pending is None


def test_top_k_exploration_spreads_epsilon_over_the_best_allowed_llms():
    from recroute.feedback.policies import parse_policy

    policy = budget_policy(0.3, top_k=2)
    assert policy.spec == "epsilon_greedy:epsilon=0.3,top_k=2" and parse_policy(policy.spec) == policy
    scores = np.array([[0.1, 0.9, 0.5, 0.5], [0.2, 0.2, 0.2, 0.2]])
    allowed = np.array([[True, True, False, True], [True, True, True, True]])
    P = policy.probabilities(scores, allowed)
    # row 0: greedy 1, top 2 = {1, 3} (2 not allowed): 0.7 + 0.15 on 1, 0.15 on 3
    # row 1: all tied: greedy 0, top 2 = {0, 1} (ties: the lower index)
    assert P == pytest.approx(np.array([[0, 0.85, 0, 0.15], [0.85, 0.15, 0, 0]]))
    with pytest.raises(ValueError, match="top_k must be a whole number"):
        parse_policy("epsilon_greedy:epsilon=0.1,top_k=0.5")


def _a_only_log(n: int = 20, b_allowed: bool = True) -> Bandit:
    """n decisions on prompts 0..n-1, always LLM a chosen (propensity 0.9), a right on the even prompts."""
    allowed = np.ones((n, 2), bool)
    allowed[:, 1] = b_allowed
    return Bandit(np.arange(n), allowed, np.zeros(n, dtype=np.int64), np.full(n, 0.9),
                  (np.arange(n) % 2 == 0).astype(float), np.array(["a", "b"], dtype=object))


def test_the_anchored_reward_model_learns_the_llms_the_log_never_revealed():
    from recroute.feedback.ope import fit_predict_log, reward_model
    from recroute.loop.refit import holdout_reward

    rng = np.random.default_rng(0)
    b = _a_only_log()
    X = rng.normal(size=(20, 4)).astype(np.float32)
    anchor = Anchor(rng.normal(size=(5, 4)).astype(np.float32), np.array([[0.0, 1.0]] * 5), ["a", "b"])
    # best_single over the anchor (a 0, b 1 on 5 prompts) stacked over the log (a: 10 of 20 right; b never
    # revealed): a = 10 / 25 = 0.4, b = 5 / 5 = 1
    prior = anchor.prior(["a", "b"])
    assert fit_predict_log("best_single", b, X, np.array([3, 7]), prior) == pytest.approx(np.array([[0.4, 1.0]] * 2))
    q1 = reward_model(b, X, "best_single", folds=1, prior=prior)
    assert q1 == pytest.approx(np.tile([0.4, 1.0], (20, 1)))
    q2 = reward_model(b, X, "best_single", folds=2, seed=3, prior=prior)
    fold = np.random.default_rng(3).permutation(20) % 2  # each fold from the other fold's 10 decisions + the anchor
    other_right = [((np.arange(20) % 2 == 0) & (fold != f)).sum() for f in (0, 1)]
    assert q2[:, 0] == pytest.approx([other_right[f] / 15 for f in fold]) and (q2[:, 1] == 1.0).all()
    # the gate's q for decisions 15..19 from decisions 0..14 (8 right) and the anchor: a = 8 / 20
    q = holdout_reward(b, X, np.arange(15), np.arange(15, 20), "best_single", anchor)
    assert q == pytest.approx(np.tile([0.4, 1.0], (5, 1)))
    # an anchor over other LLMs is aligned by name (b missing: NaN, so b is learnt from the log alone)
    Y_p, _ = Anchor(anchor.X, np.array([[0.0]] * 5), ["a"]).prior(["a", "b"])
    assert np.isnan(Y_p[:, 1]).all()


def test_a_prior_of_the_wrong_width_or_without_features_is_named():
    from recroute.errors import DataError
    from recroute.feedback.ope import fit_predict_log

    b, X = _a_only_log(), np.zeros((20, 4), np.float32)
    with pytest.raises(DataError, match=r"prior results of shape \(5, 3\)"):
        fit_predict_log("best_single", b, X, np.array([0]), (np.zeros((5, 3)), None))
    with pytest.raises(DataError, match="features for the prior"):
        fit_predict_log("knn", b, X, np.array([0]), (np.zeros((5, 2)), None))


def test_fit_candidate_with_the_anchored_reward_and_a_prefilled_column():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    anchor = Anchor(rng.normal(size=(5, 4)).astype(np.float32), np.array([[0.0, 1.0]] * 5), ["a", "b"])
    # b's completed cells are its q: 0 from the log alone (never revealed), 1 from the anchored reward model;
    # best_single's b over the anchor and the log: (5 + 0) / 25 = 0.2, (5 + 20) / 25 = 1
    plain = fit_candidate("best_single", _a_only_log(), X, anchor, reward_router="best_single")
    anchored = fit_candidate("best_single", _a_only_log(), X, anchor, reward_router="best_single", anchor_reward=True)
    assert plain.score(None, n=1)[0][1] == pytest.approx(0.2) and anchored.score(None, n=1)[0][1] == pytest.approx(1.0)
    # b was never a candidate (it joined later): its cells stay empty unless prefilled; prefill 0.7 at the 20
    # logged prompts: b = (5 + 20 * 0.7) / 25 = 0.76
    late = _a_only_log(b_allowed=False)
    assert fit_candidate("best_single", late, X, anchor, reward_router="best_single").score(None, n=1)[0][1] == pytest.approx(1.0)
    fill = np.full((20, 2), np.nan)
    fill[:, 1] = 0.7
    filled = fit_candidate("best_single", late, X, anchor, reward_router="best_single", prefill=fill)
    assert filled.score(None, n=1)[0][1] == pytest.approx(0.76)
    with pytest.raises(DataError, match="prefill"):
        fit_candidate("best_single", late, X, anchor, reward_router="best_single", prefill=fill[:, :1])


def test_the_anchored_shadow_gate_by_hand():
    from recroute.loop.refit import LogData
    from recroute.loop.shadow import gate_shadow

    rng = np.random.default_rng(0)
    b = _a_only_log()
    X = rng.normal(size=(20, 4)).astype(np.float32)
    anchor = Anchor(rng.normal(size=(5, 4)).astype(np.float32), np.array([[0.0, 1.0]] * 5), ["a", "b"])
    data = LogData(b, X, [], np.arange(20), logging=np.tile([0.9, 0.1], (20, 1)))
    shadow, live = FixedScores([0.0, 1.0]), FixedScores([1.0, 0.0])  # the shadow picks b, live a
    shadow.llm_names_ = live.llm_names_ = b.llm_names
    result, ok, _ = gate_shadow(shadow, live, data, 15, reward_router="best_single", anchor=anchor)
    # q from decisions 0..14 (8 of 15 right with a) and the anchor: a 8 / 20 = 0.4, b 1. Every decision chose
    # a (w_shadow 0, w_live 1 / 0.9): D = (1 - 0.4) - (r - 0.4) / 0.9; decisions 15..19 have r = 0,1,0,1,0
    r = np.array([0, 1, 0, 1, 0], dtype=float)
    assert result.delta == pytest.approx(np.mean(0.6 - (r - 0.4) / 0.9)) and result.n == 5
    assert result.value_live == pytest.approx(np.mean(0.4 + (r - 0.4) / 0.9))
    with pytest.raises(DataError, match="window"):
        gate_shadow(shadow, live, data, 19, reward_router="best_single", anchor=anchor)


def test_refit_and_gate_fits_the_gates_reward_model_on_the_anchor_when_asked():
    """LoopSettings.anchor_reward (``recroute loop run --anchor-reward``) reaches the gate's q: live's DR value
    on decisions 15..19 uses q(a) = 8 / 15 from the log alone, 8 / 20 = 0.4 with the anchor (as above)."""
    from recroute.loop.refit import LogData
    from recroute.loop.runner import LoopSettings, refit_and_gate

    rng = np.random.default_rng(0)
    b = _a_only_log()
    X = rng.normal(size=(20, 4)).astype(np.float32)
    anchor = Anchor(rng.normal(size=(5, 4)).astype(np.float32), np.array([[0.0, 1.0]] * 5), ["a", "b"])
    live = FixedScores([1.0, 0.0])
    live.llm_names_ = b.llm_names
    r = np.array([0, 1, 0, 1, 0], dtype=float)
    for anchored, q_a in ((False, 8 / 15), (True, 0.4)):
        settings = LoopSettings(families=("best_single",), holdout=5, reward_router="best_single",
                                anchor_reward=anchored)
        (verdict,) = refit_and_gate(live, LogData(b, X, [], np.arange(20)), settings, anchor)
        assert verdict.result.value_live == pytest.approx(np.mean(q_a + (r - q_a) / 0.9))


def test_a_shadow_decision_that_retires_the_shadow_ends_it_in_the_journal_state():
    """A loop stopped between a shadow's last decision and the next install must not gate the spent shadow
    again: the decision's ``retire`` ends it (a kept shadow stays; a conservative promotion's bundle is not
    the shadow's, so only ``retire`` can end it)."""
    from recroute.loop.journal import replay

    shadow = {"event": "shadow", "time": 1.0, "bundle": "s1", "checksum": "c1", "epsilon": 0.1, "tau": 0.2}
    keep = {"event": "decision", "time": 2.0, "kind": "shadow", "action": "keep", "bundle": "s1", "look": 1,
            "retire": False}
    passed = {"event": "decision", "time": 3.0, "kind": "shadow", "action": "promote", "bundle": "s1", "look": 2,
              "retire": True, "promote_bundle": "conservative-9"}
    assert replay([shadow, keep]).shadow == shadow
    state = replay([shadow, keep, passed, {"event": "promoted", "time": 4.0, "bundle": "conservative-9"}])
    assert state.shadow is None and state.live_bundle == "conservative-9"
    assert replay([shadow, keep, passed]).shadow is None  # stopped before the promotion and the next install


def test_a_saved_refit_keeps_lives_prices_and_prices_an_onboarded_llm_from_the_upstreams_file(tmp_path):
    """Live prices a and b (flat); c is onboarded and priced only in the upstreams file (per token)."""
    from types import SimpleNamespace

    from recroute.data.costs import Prices
    from recroute.loop.runner import LoopRunner
    from recroute.routers.baselines import BestSingleRouter
    from recroute.serve.bundle import RoutingBundle

    (tmp_path / "up.toml").write_text(
        '[upstreams."a"]\nbase_url = "http://127.0.0.1:9"\ninput_price_per_mtok = 99.0\noutput_price_per_mtok = 99.0\n'
        '[upstreams."c"]\nbase_url = "http://127.0.0.1:9"\ninput_price_per_mtok = 2.0\noutput_price_per_mtok = 8.0\n')
    journal = Journal(tmp_path / "loop.jsonl")
    runner = LoopRunner(tmp_path / "log.jsonl", journal, lambda path: {}, tmp_path / "work",
                        upstreams_path=tmp_path / "up.toml")
    router = BestSingleRouter().fit(np.array([[1.0, 0.0, 0.5]], np.float32))
    router.llm_names_ = np.array(["a", "b", "c"], dtype=object)
    live = SimpleNamespace(prices=Prices.flat(["a", "b"], [0.01, 0.02]), costs="prices", encoder=None)
    saved = RoutingBundle.load(runner.save_bundle(router, live, "refit-1"))
    p = saved.prices
    assert p.llms == ["a", "b", "c"] and saved.costs == "prices"
    assert p.per_prompt[:2] == pytest.approx([0.01, 0.02])  # live's own price wins over the file's 99
    assert np.isnan(p.per_prompt[2]) and (p.input_per_mtok[2], p.output_per_mtok[2]) == (2.0, 8.0)
    assert not journal.events()  # same cost source as live: nothing to say
    # a live bundle with predicted costs and a refit that predicts none: its costs come from the prices, journalled
    live = SimpleNamespace(prices=None, costs="predicted", encoder=None)
    saved = RoutingBundle.load(runner.save_bundle(router, live, "refit-2"))
    assert saved.costs == "prices" and saved.prices is None  # b has no price anywhere: the gateway takes the file's
    (event,) = journal.events()
    assert event["event"] == "costs" and (event["live_costs"], event["costs"], event["bundle"]) == ("predicted", "prices", "refit-2")


def test_loop_settings_name_an_unknown_onboarding_design():
    from recroute.loop.runner import LoopSettings

    LoopSettings(onboard_design="contested").check()
    with pytest.raises(DataError, match="onboard_design must be one of uniform, contested; got 'stratified'"):
        LoopSettings(onboard_design="stratified").check()


def test_a_shadows_looks_count_its_served_estimates_not_a_looks_plain_stage():
    from recroute.loop.journal import shadow_looks

    events = [{"event": "estimate", "shadow": "c1"}, {"event": "estimate", "shadow": "c1", "stage": "conservative"},
              {"event": "estimate", "shadow": "c1", "stage": "plain"}, {"event": "estimate", "shadow": "c2"},
              {"event": "decision", "shadow": "c1"}]
    assert shadow_looks(events, "c1") == 2 and shadow_looks(events, "c2") == 1 and shadow_looks(events, "c3") == 0
