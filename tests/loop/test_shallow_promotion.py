"""The fixed-sequence promotion (recroute.loop.shadow.shallow_promotion): the conservative shadow first,
then its plain refit at the same level on the same decisions, by hand on a 20-decision log."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.feedback.bandit import Bandit
from recroute.loop.refit import Anchor, LogData
from recroute.routers.conservative import ConservativeRouter

Z50 = 0.6744898  # z at alpha = 0.5 (two-sided)
NAMES = np.array(["a", "b"], dtype=object)


class RowScores:
    """A router whose scores (n, 2) are a fixed table indexed by the prompt id in X[:, 0]."""

    needs_features = True
    stochastic = False
    requires_truth = False
    name = "rows"
    n_features_in_ = 1

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)
        self.llm_names_ = NAMES

    def score(self, X, n=None):
        return self.table[np.asarray(X)[:, 0].astype(int)]


def _setup(p_b_late: float):
    """Decisions 0..19 on prompts 0..19, always a chosen; a right on the even prompts 0..14, then r = 0, 0, 1, 1, 1.
    Logging (0.9, 0.1) except at 17..19, where b had probability ``p_b_late``. Live picks a everywhere; the refit
    prefers b by 1 on prompts 15, 16 (beyond tau 0.2) and by 0.1 elsewhere: the conservative policy picks b
    only at 15, 16, the plain refit everywhere. q (best_single on 0..14 and an anchor where b is always right):
    a 8/20 = 0.4, b 1."""
    n = 20
    r = np.concatenate([(np.arange(15) % 2 == 0).astype(float), [0, 0, 1, 1, 1]])
    P0 = np.tile([0.9, 0.1], (n, 1))
    P0[17:] = [1 - p_b_late, p_b_late]
    b = Bandit(np.arange(n), np.ones((n, 2), bool), np.zeros(n, dtype=np.int64), P0[:, 0].copy(), r, NAMES)
    X = np.arange(n, dtype=np.float32)[:, None]
    data = LogData(b, X, [], np.arange(n), logging=P0)
    anchor = Anchor(np.full((5, 1), 0, dtype=np.float32), np.array([[0.0, 1.0]] * 5), ["a", "b"])
    live = RowScores(np.tile([1.0, 0.0], (n, 1)))
    table = np.tile([0.0, 0.1], (n, 1))
    table[15:17] = [0.0, 1.0]
    refit = RowScores(table)
    return data, anchor, live, refit, ConservativeRouter(refit, live, 0.2)


def _run(data, anchor, live, refit, conservative, alpha):
    from recroute.loop.shadow import shallow_promotion

    return shallow_promotion(conservative, refit, live, data, 15, alpha, reward_router="best_single", anchor=anchor)


# D_i = Δq + (w_c - w_l)(r - q_a) where the policy takes b (Δq = 0.6, w_c = 0, w_l = 1 / P0(a)), else 0
D_EARLY = 0.6 + 0.4 / 0.9  # decisions 15, 16: r = 0, P0(a) = 0.9


def test_only_the_conservative_policy_passes_when_b_was_never_explorable_where_it_agreed_with_live():
    stages, chosen = _run(*_setup(0.0), alpha=0.5)
    cons, plain = stages
    assert cons.stage == "conservative" and plain.stage == "plain"
    assert cons.result.delta == pytest.approx(2 * D_EARLY / 5) == pytest.approx(0.41778, rel=1e-4)
    assert cons.result.unsupported == 0 and cons.ok
    assert cons.result.lower == pytest.approx(cons.result.delta - Z50 * cons.result.se, rel=1e-5)
    # the plain refit also takes b at 17..19, where P0(b) = 0: D = 0.6 - (1 - 0.4) = 0 there, and the worst case
    # (b's outcome 0 instead of q_b = 1) shifts the lower bound by 3 / 5
    assert plain.result.delta == pytest.approx(2 * D_EARLY / 5) and plain.result.unsupported == 3
    assert plain.result.lower == pytest.approx(plain.result.delta - Z50 * plain.result.se - 0.6, rel=1e-5)
    assert not plain.ok and chosen is cons and chosen.router.tau == 0.2  # the conservative policy promoted


def test_the_plain_refit_is_promoted_when_both_pass():
    stages, chosen = _run(*_setup(0.1), alpha=0.5)
    cons, plain = stages
    assert cons.ok and plain.ok and chosen is plain and chosen.router is stages[1].router
    assert not isinstance(chosen.router, ConservativeRouter)  # live stays one level deep
    # 17..19 (r = 1, P0(a) = 0.9): D = 0.6 - 0.6 / 0.9 = -1/15; mean (2 D_EARLY - 3/15) / 5
    D = np.array([D_EARLY, D_EARLY, -1 / 15, -1 / 15, -1 / 15])
    assert plain.result.delta == pytest.approx(D.mean()) == pytest.approx(0.37778, rel=1e-4)
    assert plain.result.se_empirical == pytest.approx(np.sqrt(5 / 4 * np.sum((D - D.mean()) ** 2)) / 5, rel=1e-5)
    # design: (±1)^2 q_a (1 - q_a) / P0(a) = 0.24 / 0.9 per decision (q_b = 1: no variance), Δq constant
    assert plain.result.se_design == pytest.approx(np.sqrt(5 * 0.24 / 0.9) / 5, rel=1e-5)
    assert plain.result.lower == pytest.approx(D.mean() - Z50 * max(plain.result.se_empirical, plain.result.se_design),
                                               rel=1e-5) and plain.result.lower > 0
    # both on the same decisions and reward model: the conservative one's estimate unchanged by the second stage
    assert cons.result.delta == pytest.approx(2 * D_EARLY / 5)


def test_the_plain_refit_is_never_gated_when_the_conservative_policy_fails(monkeypatch):
    import recroute.loop.shadow as shadow

    calls = []
    real = shadow.compare
    monkeypatch.setattr(shadow, "compare", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    data, anchor, live, refit, conservative = _setup(0.1)
    stages, chosen = _run(data, anchor, live, refit, conservative, alpha=0.05)
    # at alpha 0.05 (z 1.96) the conservative lower bound 0.4178 - 1.96 se is below 0: the sequence stops there
    assert [s.stage for s in stages] == ["conservative"] and not stages[0].ok and chosen is None
    assert calls == [conservative]  # the plain refit was never compared with live


def test_tau_zero_gates_the_refit_alone_and_depth_counts_the_nested_levels():
    from recroute.loop.shadow import policy_depth, shallow_promotion

    data, anchor, live, refit, conservative = _setup(0.1)
    stages, chosen = shallow_promotion(refit, None, live, data, 15, 0.5, reward_router="best_single", anchor=anchor)
    assert [s.stage for s in stages] == ["shadow"] and chosen is stages[0]
    assert policy_depth(refit) == 1 and policy_depth(conservative) == 2
    assert policy_depth(ConservativeRouter(refit, conservative, 0.2)) == 3
