"""Exploration within a budget: the live policy leaves the greedy choice on at most ``budget`` of the
traffic (in expectation), so the log keeps supporting the evaluation of new candidates.

ε-greedy with ε = budget puts ε (k - 1) / k < budget off the greedy choice (k: the LLMs it explores,
every allowed one or the ``top_k`` best), so the budget holds when an LLM joins the pool. Exploring
only the top k gives each explored choice the propensity ε / k instead of ε / m: with 31 LLMs and k = 3
ten times more logged support for a candidate that switches to a close alternative. ``off_greedy_share`` measures it on a log: the share of decisions
whose chosen LLM is not the live router's top allowed one.
"""

from __future__ import annotations

import numpy as np

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.feedback.policies import EpsilonGreedy, greedy_matrix


def budget_policy(budget: float, top_k: int | None = None) -> EpsilonGreedy:
    """The ε-greedy policy (recroute.feedback.policies) whose off-greedy share stays below ``budget``,
    exploring every allowed LLM or the ``top_k`` best."""
    budget = float(budget)
    if not 0.0 <= budget <= 1.0:
        raise DataError(f"the exploration budget must be a share of traffic in [0, 1]; got {budget}")
    return EpsilonGreedy(budget, top_k)


def off_greedy_share(bandit: Bandit, scores: np.ndarray) -> float:
    """Share of the logged decisions whose chosen LLM is not the greedy one of ``scores`` (n, m) among
    the decision's candidates (ties: the lower index, as routing); NaN for an empty log."""
    if len(bandit) == 0:
        return float("nan")
    S = np.asarray(scores, dtype=np.float64)
    if S.shape != bandit.allowed.shape:
        raise DataError(f"scores have shape {S.shape}; expected {bandit.allowed.shape}")
    greedy = greedy_matrix(S, bandit.allowed).argmax(axis=1)
    return float(np.mean(greedy != bandit.chosen))
