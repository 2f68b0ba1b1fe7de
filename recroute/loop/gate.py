"""The promotion gate: candidate minus live, estimated by doubly-robust off-policy evaluation
(``recroute.feedback.ope``) on the most recent decisions, which neither router trained on.

Both targets are greedy over their scores. DR is linear in the target's terms, so the difference's
per-decision values are those of one :class:`~recroute.feedback.ope.Terms` with w = w_c - w_l and
q_pi = q_pi_c - q_pi_l (the same r and q at the logged choice):

    D_i = Δq_i + (w_c,i - w_l,i) (r_i - q(x_i, a_i)),    Δq_i = q(x_i, c_i) - q(x_i, l_i).

**The interval is honest when support is thin.** The empirical (cluster-robust) standard error of D
is computed from the weights that *occurred*. With a small exploration budget the decisions that took
the candidate's differing choice c (weight 1/π0(c), e.g. 150) are rare, a slice may hold none, and
then the empirical se sees only the reward model's opinion Δq: narrow, and wrong exactly when the
candidate and the reward model share a bias. When the logging policy's probabilities π0 (n, m) at the
decisions are known (``logging``), the gate also computes the **design standard error**, the variance
D has under the logging policy whatever the sample happened to draw (law of total variance, outcomes
in [0, 1]):

    Var(D_i | x_i) <= Σ_a (π_c(a) - π_l(a))² m2(x_i, a) / π0(a),   m2 = q (1 - q)
    se_design² = ( Σ_i Var(D_i | x_i) + Σ_i (Δq_i - mean Δq)² ) / n²

(m2 = q(1-q) is the variance of an outcome in [0, 1] whose mean is q: the largest one has it, a
Bernoulli). The interval uses se = max(empirical, design), so it is wide until the log *could* have
shown the candidate's choices often enough, whichever way this sample fell: with equal π0(c) = p on
the n_d decisions where the two differ, a true gain δ_d there is provable only once the expected
support n_d·p exceeds about z² m2 / δ_d²; no support count is tuned. Where the candidate's differing
choice had π0 = 0 (never explorable, e.g. outside the policy's top k), its outcome is not identified
at all: the bounds take the worst case there (outcome 0 for the candidate's choice and 1 for live's,
for the lower bound; Manski's bounds), so such decisions can only widen the interval.

``promotion_decision``: promote when the lower bound of candidate - live is above ``margin``. Without
``logging`` (the design unknown) the older rule stays: a support count ``min_support``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.feedback.ope import Terms, decision_terms, estimate, target_probabilities


@dataclass(frozen=True)
class GateResult:
    """value_candidate / value_live: DR estimates; delta, lower, upper, se: of their difference (se the
    larger of se_empirical and se_design); support: decisions where the log took the candidate's choice
    and live's differed; disagree: the share of decisions where the two choose differently; n:
    decisions; expected_support: Σ π0(candidate's choice) over the decisions where they differ (NaN
    without the logging probabilities); unsupported: decisions where a differing choice had π0 = 0."""

    value_candidate: float
    value_live: float
    delta: float
    lower: float
    upper: float
    se: float
    support: int
    disagree: float
    n: int
    se_empirical: float = float("nan")
    se_design: float = float("nan")
    expected_support: float = float("nan")
    unsupported: int = 0

    @property
    def design_known(self) -> bool:
        return bool(np.isfinite(self.se_design))

    def to_dict(self) -> dict:
        return asdict(self)


def compare(bandit: Bandit, X: np.ndarray | None, candidate, live, q_hat: np.ndarray, alpha: float = 0.05,
            seed: int = 0, *, logging: np.ndarray | None = None) -> GateResult:
    """DR of candidate, live and candidate - live on the logged decisions (features X (n, d) row-aligned
    with the decisions, q_hat (n, m) a reward model independent of them, ``logging`` (n, m) the logging
    policy's probabilities at each decision, each row summing to 1, or None)."""
    from scipy.stats import norm

    if len(bandit) < 2:
        raise DataError(f"the gate needs at least 2 recent decisions with an outcome; got {len(bandit)}")
    P_c = target_probabilities(candidate, X, bandit.allowed)
    P_l = target_probabilities(live, X, bandit.allowed)
    t_c, t_l = decision_terms(bandit, P_c, q_hat), decision_terms(bandit, P_l, q_hat)
    diff = Terms(t_c.r, t_c.w - t_l.w, t_c.q_chosen, t_c.q_pi - t_l.q_pi)
    ests = [estimate(t, "dr", alpha=alpha, seed=seed, clusters=bandit.rows) for t in (t_c, t_l, diff)]
    pick_c, pick_l = P_c.argmax(axis=1), P_l.argmax(axis=1)
    differ = pick_c != pick_l
    support = int(np.sum(differ & (bandit.chosen == pick_c)))
    d = ests[2]
    value, se_emp = float(d["value"]), float(d["se"])
    se, lower, upper = se_emp, float(d["lower"]), float(d["upper"])
    se_des, expected, unsupported = float("nan"), float("nan"), 0
    if logging is not None:
        P0 = check_logging(logging, bandit)
        q = np.clip(np.asarray(q_hat, dtype=np.float64), 0.0, 1.0)
        se_des, low_shift, up_shift, unsup = design_terms(P_c, P_l, P0, q, diff.q_pi)
        expected = float(P0[np.arange(len(bandit)), pick_c][differ].sum())
        unsupported = int(unsup.sum())
        se = max(se_emp, se_des)
        z = float(norm.ppf(1 - alpha / 2))
        lower, upper = value - z * se - low_shift, value + z * se + up_shift
    return GateResult(float(ests[0]["value"]), float(ests[1]["value"]), value, lower, upper, se, support,
                      float(np.mean(differ)), len(bandit), se_emp, se_des, expected, unsupported)


def check_logging(logging: np.ndarray, bandit: Bandit) -> np.ndarray:
    """float64 (n, m) logging probabilities, checked: rows sum to 1, 0 off the candidates, and the
    logged propensity is the probability of the logged choice."""
    P0 = np.asarray(logging, dtype=np.float64)
    n = len(bandit)
    if P0.shape != (n, bandit.n_llms):
        raise DataError(f"logging probabilities have shape {P0.shape}; expected ({n}, {bandit.n_llms})")
    if not np.isfinite(P0).all() or (P0 < 0).any() or not np.allclose(P0.sum(axis=1), 1.0, atol=1e-6):
        raise DataError("logging probabilities must be finite, >= 0, and each row must sum to 1")
    if (P0[~bandit.allowed] > 0).any():
        raise DataError("logging probabilities put mass on an LLM that was not a candidate of the decision")
    if not np.allclose(P0[np.arange(n), bandit.chosen], bandit.propensity, rtol=1e-4, atol=1e-9):
        bad = int(np.flatnonzero(~np.isclose(P0[np.arange(n), bandit.chosen], bandit.propensity, rtol=1e-4,
                                             atol=1e-9))[0])
        raise DataError(f"decision {bad}: the logging probability of the chosen LLM "
                        f"{P0[bad, bandit.chosen[bad]]:.6g} is not its logged propensity {bandit.propensity[bad]:.6g}")
    return P0


def design_terms(P_c: np.ndarray, P_l: np.ndarray, P0: np.ndarray, q: np.ndarray,
                 delta_q: np.ndarray) -> tuple[float, float, float, np.ndarray]:
    """(se_design, lower shift, upper shift, unsupported (n,) bool) of the DR difference under the
    logging design P0 (module docstring); P_c, P_l, P0, q (n, m), delta_q (n,)."""
    n = len(P0)
    d = P_c - P_l
    seen = P0 > 0
    within = np.where(seen, d ** 2 * q * (1.0 - q) / np.where(seen, P0, 1.0), 0.0).sum(axis=1)
    between = (delta_q - delta_q.mean()) ** 2
    se = float(np.sqrt(within.sum() + between.sum()) / n)
    blind = ~seen & (d != 0)  # a choice that the logging policy could never take: outcome in [0, 1]
    gain, loss = np.where(blind, np.maximum(d, 0.0), 0.0), np.where(blind, np.maximum(-d, 0.0), 0.0)
    low = float((gain * q + loss * (1.0 - q)).sum() / n)
    up = float((gain * (1.0 - q) + loss * q).sum() / n)
    return se, low, up, blind.any(axis=1)


def promotion_decision(result: GateResult, margin: float = 0.0, min_support: int = 3) -> tuple[bool, str]:
    """(promote?, the reason in words) by the rule of the module docstring: the lower bound above
    ``margin``; a support count of at least ``min_support`` only where the logging design is unknown."""
    if not result.design_known and result.support < min_support:
        return False, (f"support {result.support} < {min_support}: too few logged decisions took the candidate's "
                       "choice where it differs from live's (the logging probabilities are unknown)")
    if not result.lower > margin:
        return False, (f"lower bound {result.lower:+.4f} of candidate - live is not above the margin {margin:+.4f}"
                       + (f" (expected support {result.expected_support:.1f})" if result.design_known else ""))
    if result.design_known:
        return True, (f"lower bound {result.lower:+.4f} > margin {margin:+.4f} (design se {result.se_design:.4f}, "
                      f"expected support {result.expected_support:.1f})")
    return True, f"lower bound {result.lower:+.4f} > margin {margin:+.4f} with support {result.support}"
