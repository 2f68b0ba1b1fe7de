"""The promotion gate: candidate minus live, estimated by doubly-robust off-policy evaluation
(``recroute.feedback.ope``) on the most recent decisions, which neither router trained on.

Both targets are greedy over their scores. DR is linear in the target's terms, so the difference's
per-decision values are those of one :class:`~recroute.feedback.ope.Terms` with w = w_c - w_l and
q_pi = q_pi_c - q_pi_l (the same r and q at the logged choice); its standard error is cluster-robust
by prompt. A candidate is promoted only when the interval's lower bound is above ``margin`` **and**
the log holds at least ``min_support`` decisions where the logging policy took the candidate's own
choice where it differs from live's: without such decisions the DR difference rests on the reward
model alone, and its interval (computed from terms that never saw a large weight) is too narrow.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.feedback.ope import Terms, decision_terms, estimate, target_probabilities


@dataclass(frozen=True)
class GateResult:
    """value_candidate / value_live: DR estimates; delta, lower, upper, se: of their difference;
    support: decisions where the log took the candidate's choice and live's differed; disagree: the
    share of decisions where the two choose differently; n: decisions."""

    value_candidate: float
    value_live: float
    delta: float
    lower: float
    upper: float
    se: float
    support: int
    disagree: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def compare(bandit: Bandit, X: np.ndarray | None, candidate, live, q_hat: np.ndarray, alpha: float = 0.05,
            seed: int = 0) -> GateResult:
    """DR of candidate, live and candidate - live on the logged decisions (features X (n, d) row-aligned
    with the decisions, q_hat (n, m) a reward model independent of them)."""
    if len(bandit) < 2:
        raise DataError(f"the gate needs at least 2 recent decisions with an outcome; got {len(bandit)}")
    P_c = target_probabilities(candidate, X, bandit.allowed)
    P_l = target_probabilities(live, X, bandit.allowed)
    t_c, t_l = decision_terms(bandit, P_c, q_hat), decision_terms(bandit, P_l, q_hat)
    diff = Terms(t_c.r, t_c.w - t_l.w, t_c.q_chosen, t_c.q_pi - t_l.q_pi)
    ests = [estimate(t, "dr", alpha=alpha, seed=seed, clusters=bandit.rows) for t in (t_c, t_l, diff)]
    pick_c, pick_l = P_c.argmax(axis=1), P_l.argmax(axis=1)
    support = int(np.sum((pick_c != pick_l) & (bandit.chosen == pick_c)))
    d = ests[2]
    return GateResult(float(ests[0]["value"]), float(ests[1]["value"]), float(d["value"]), float(d["lower"]),
                      float(d["upper"]), float(d["se"]), support, float(np.mean(pick_c != pick_l)), len(bandit))


def promotion_decision(result: GateResult, margin: float = 0.0, min_support: int = 3) -> tuple[bool, str]:
    """(promote?, the reason in words) by the rule of the module docstring."""
    if result.support < min_support:
        return False, (f"support {result.support} < {min_support}: too few logged decisions took the candidate's "
                       "choice where it differs from live's")
    if not result.lower > margin:
        return False, f"lower bound {result.lower:+.4f} of candidate - live is not above the margin {margin:+.4f}"
    return True, f"lower bound {result.lower:+.4f} > margin {margin:+.4f} with support {result.support}"
