"""The shared cost-aware decision step, for any router's (n, m) scores.

One decision, in order: router scores -> utility ``scores - cost_weight · costs`` (when a cost weight is
asked) -> the candidate and ``max_cost`` masks -> the choice (greedy top-k here; a stochastic policy may
take :func:`cost_aware_scores`' output instead). On top of it:

- :func:`calibrate_cost_weight`: RouteLLM-style calibration of the cost weight lambda on held-out
  prompts, to meet a target mean cost per prompt or a maximum share of traffic to named LLMs;
- :func:`budget_assign`: route a batch maximising the summed score under a total budget (the exact
  assignment LP shared with the capacity remedy, :func:`recroute.debias.remedies.assignment_lp`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recroute.errors import DataError

BISECTION_STEPS = 100


# ---------------------------------------------------------------------- checks
def _scores(scores) -> np.ndarray:
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] == 0:
        raise DataError(f"scores must be a 2-D (n_prompts, n_llms) array; got shape {S.shape}")
    if not np.isfinite(S).all():
        raise DataError("scores must be finite for cost-aware routing")
    return S


def as_cost_matrix(costs, n: int, m: int) -> np.ndarray:
    """float64 (n, m) costs from (n, m) or per-LLM (m,) costs; finite and >= 0 or a DataError."""
    C = np.asarray(costs, dtype=np.float64)
    if C.ndim == 1 and C.shape == (m,):
        C = np.broadcast_to(C[None, :], (n, m))
    if C.shape != (n, m):
        raise DataError(f"costs must have shape (n_prompts, n_llms) = ({n}, {m}) or (n_llms,) = ({m},); got {C.shape}")
    if not (np.isfinite(C).all() and (C >= 0).all()):
        raise DataError("costs must be finite numbers >= 0")
    return C


def _weight(cost_weight, n: int) -> np.ndarray:
    """float64 (n, 1) non-negative cost weights from a number or an (n,) array."""
    w = np.asarray(cost_weight, dtype=np.float64)
    if w.ndim == 0:
        w = np.full(n, float(w))
    if w.shape != (n,):
        raise DataError(f"cost_weight must be a number or one per prompt ({n}); got shape {w.shape}")
    if not (np.isfinite(w).all() and (w >= 0).all()):
        raise DataError(f"cost_weight must be finite and >= 0; got {w[~(np.isfinite(w) & (w >= 0))][:3].tolist()}")
    return w[:, None]


# ---------------------------------------------------------------------- the decision step
def utility(scores, costs, cost_weight) -> np.ndarray:
    """float64 (n, m): scores - cost_weight · costs.

    ``scores`` (n, m); ``costs`` (n, m) or (m,); ``cost_weight`` a number or (n,) (one lambda per prompt).
    """
    S = _scores(scores)
    C = as_cost_matrix(costs, *S.shape)
    return S - _weight(cost_weight, S.shape[0]) * C


def alpha_utility(scores, costs, alpha: float) -> np.ndarray:
    """float64 (n, m): Avengers-Pro's performance–efficiency score alpha·s̃ + (1 - alpha)·(1 - c̃) for any
    router (arXiv 2508.12631), s̃ and c̃ the scores and costs min-max normalised over each prompt's m LLMs
    (pass only the candidates' columns); it is :func:`utility` of (alpha·s̃, c̃) with cost weight 1 - alpha,
    plus the constant 1 - alpha. ``alpha`` in [0, 1]: 1 = performance only, 0 = cheapest only."""
    if not 0.0 <= float(alpha) <= 1.0:
        raise DataError(f"alpha must be in [0, 1]; got {alpha!r}")
    S = _scores(scores)
    alpha = float(alpha)
    return utility(alpha * _minmax_rows(S), _minmax_rows(as_cost_matrix(costs, *S.shape)), 1.0 - alpha) + (1.0 - alpha)


def _minmax_rows(A: np.ndarray) -> np.ndarray:
    """(A - row min) / (row max - row min); 0 in a row whose values are all equal."""
    low, span = A.min(axis=1, keepdims=True), np.ptp(A, axis=1, keepdims=True)
    return np.where(span > 0, (A - low) / np.where(span > 0, span, 1.0), 0.0)


def max_cost_mask(costs, max_cost, allowed=None, names: Sequence[str] | None = None) -> np.ndarray:
    """bool (n, m): True where the LLM is allowed and its expected cost is at most ``max_cost``.

    ``max_cost`` a number or (n,); ``allowed`` (m,) or (n, m) bool candidates. A prompt left with no
    LLM raises a DataError naming the cheapest allowed LLM and its cost.
    """
    C = np.asarray(costs, dtype=np.float64)
    if C.ndim != 2:
        raise DataError(f"costs must be 2-D (n_prompts, n_llms); got shape {C.shape}")
    n, m = C.shape
    limit = np.asarray(max_cost, dtype=np.float64)
    limit = np.full(n, float(limit)) if limit.ndim == 0 else limit
    if limit.shape != (n,) or not (limit >= 0).all():
        raise DataError(f"max_cost must be a number >= 0 or one per prompt; got {max_cost!r}")
    base = np.ones((n, m), dtype=bool) if allowed is None else np.broadcast_to(np.asarray(allowed, dtype=bool), (n, m))
    mask = base & (C <= limit[:, None])
    empty = ~mask.any(axis=1)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        j = int(np.argmin(np.where(base[i], C[i], np.inf)))
        label = names[j] if names is not None else f"LLM {j}"
        raise DataError(
            f"max_cost {limit[i]:.6g} excludes every candidate LLM for prompt {i}: the cheapest, {label}, "
            f"costs {C[i, j]:.6g}"
        )
    return mask


def cost_aware_scores(scores, costs=None, cost_weight=None, max_cost=None, allowed=None,
                      names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(values float64 (n, m), allowed bool (n, m)): the router's scores turned into utilities when
    ``cost_weight`` is given, and the candidates narrowed by ``max_cost`` when it is given.

    ``costs`` (n, m) or (m,) is needed for either; ``allowed`` (m,) or (n, m) the candidate mask.
    """
    S = _scores(scores)
    n, m = S.shape
    base = np.ones((n, m), dtype=bool) if allowed is None else np.broadcast_to(np.asarray(allowed, dtype=bool), (n, m))
    if cost_weight is None and max_cost is None:
        return S, base.copy()
    if costs is None:
        raise DataError("cost_weight / max_cost need expected costs: this router or bundle has no prices")
    C = as_cost_matrix(costs, n, m)
    values = S if cost_weight is None else S - _weight(cost_weight, n) * C
    mask = base.copy() if max_cost is None else max_cost_mask(C, max_cost, base, names)
    return values, mask


def greedy_top_k(values, allowed, k: int = 1) -> np.ndarray:
    """int64 (n, k): the k best allowed columns per row, best first; ties to the lower index."""
    V = np.where(allowed, np.asarray(values, dtype=np.float64), -np.inf)
    k = int(k)
    if not 1 <= k <= int(np.asarray(allowed).sum(axis=1).min(initial=V.shape[1])):
        raise DataError(f"k={k} is more than the candidate LLMs left for some prompt")
    return np.argsort(-V, axis=1, kind="stable")[:, :k].astype(np.int64)


def route_with_costs(scores, costs=None, cost_weight=None, max_cost=None, allowed=None, k: int = 1,
                     names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(llm_idx int64 (n, k), router scores float32 (n, k)): greedy cost-aware top-k (see module doc)."""
    S = _scores(scores)
    values, mask = cost_aware_scores(S, costs, cost_weight, max_cost, allowed, names)
    idx = greedy_top_k(values, mask, k)
    return idx, np.take_along_axis(S, idx, axis=1).astype(np.float32)


def choose(scores, costs, cost_weight) -> np.ndarray:
    """int64 (n,): argmax of the utility per prompt (ties to the lower index)."""
    return np.argmax(utility(scores, costs, cost_weight), axis=1).astype(np.int64)


# ---------------------------------------------------------------------- calibration
@dataclass(frozen=True)
class Calibration:
    """The calibrated cost weight and what it realises on the calibration prompts."""

    cost_weight: float
    mean_cost: float
    share: float | None
    target: float
    kind: str  # "mean_cost" or "share"


def max_useful_weight(scores, costs) -> float:
    """A lambda above which utility routing sends every prompt to its cheapest LLM (ties aside):
    (score range + 1) / the smallest positive cost gap within a prompt."""
    S, C = _scores(scores), np.asarray(costs, dtype=np.float64)
    gaps = np.diff(np.sort(C, axis=1), axis=1)
    positive = gaps[gaps > 0]
    if positive.size == 0:
        return 0.0
    return float((S.max() - S.min() + 1.0) / positive.min())


def _bisect(value_at, scores, costs, target: float) -> float:
    """Smallest lambda (relative precision 1e-9) with value_at(lambda) <= target, for a value_at that
    never rises with lambda; inf when even the largest useful lambda misses the target."""
    if value_at(0.0) <= target:
        return 0.0
    hi = max_useful_weight(scores, costs)
    if hi == 0.0 or value_at(hi) > target:
        return math.inf
    lo = hi * 1e-12
    if value_at(lo) <= target:
        return lo
    for _ in range(BISECTION_STEPS):  # geometric: lambda spans many orders of magnitude
        mid = math.sqrt(lo * hi)
        if value_at(mid) <= target:
            hi = mid
        else:
            lo = mid
        if hi <= lo * (1 + 1e-9):
            break
    return hi


def calibrate_cost_weight(scores, costs, *, target_cost: float | None = None, max_share: float | None = None,
                          llms: Sequence[int] | None = None, allowed=None) -> Calibration:
    """The smallest cost weight lambda that meets a target on calibration prompts (RouteLLM's recipe:
    calibrate the decision threshold on held-out prompts, then reuse it).

    Exactly one target: ``target_cost`` (mean cost per prompt at most this) or ``max_share`` with
    ``llms`` (positions; share of prompts routed to them at most ``max_share``). Utility routing's
    mean cost never rises with lambda, so the search is a bisection; the share target assumes the
    named LLMs are the expensive ones and is checked after the search. ``scores``, ``costs`` (n, m);
    ``allowed`` (m,) or (n, m). Unreachable targets raise a DataError naming the reachable bound.
    """
    S = _scores(scores)
    n, m = S.shape
    C = as_cost_matrix(costs, n, m)
    if (target_cost is None) == (max_share is None):
        raise DataError("give exactly one of target_cost and max_share")
    base = np.ones((n, m), dtype=bool) if allowed is None else np.broadcast_to(np.asarray(allowed, dtype=bool), (n, m))
    rows = np.arange(n)

    def picks(lam: float) -> np.ndarray:
        return np.argmax(np.where(base, S - lam * C, -np.inf), axis=1)

    def mean_cost(lam: float) -> float:
        return float(C[rows, picks(lam)].mean())

    named = None
    if max_share is not None:
        if llms is None or len(llms) == 0:
            raise DataError("max_share needs the LLMs it limits (llms=[...])")
        if not 0 <= float(max_share) <= 1:
            raise DataError(f"max_share must be in [0, 1]; got {max_share!r}")
        named = np.zeros(m, dtype=bool)
        named[np.asarray(llms, dtype=np.int64)] = True

    def share(lam: float) -> float:
        return float(named[picks(lam)].mean())

    if target_cost is not None:
        target = float(target_cost)
        if not target >= 0:
            raise DataError(f"target_cost must be >= 0; got {target_cost!r}")
        lam = _bisect(mean_cost, S, C, target * (1 + 1e-12))
        if math.isinf(lam):
            cheapest = float(np.where(base, C, np.inf).min(axis=1).mean())
            raise DataError(f"target mean cost {target:.6g} is below the cheapest routing ({cheapest:.6g} per prompt)")
        kind = "mean_cost"
    else:
        target = float(max_share)
        lam = _bisect(share, S, C, target + 1e-12)
        if math.isinf(lam) or share(lam) > target + 1e-12:
            raise DataError(f"no cost weight brings the share of the named LLMs to {target:.4g} "
                            f"(at the largest weight it is {share(max_useful_weight(S, C)):.4g})")
        kind = "share"
    return Calibration(float(lam), mean_cost(lam), None if named is None else share(lam), target, kind)


# ---------------------------------------------------------------------- budgeted batches
def budget_assign(scores, costs, budget: float, allowed=None) -> np.ndarray:
    """int64 (n,): route a batch maximising the summed score with total cost at most ``budget``.

    The plain argmax is returned when it fits the budget. Otherwise the assignment LP (every prompt
    exactly one LLM, one budget row; HiGHS, exact) is solved; its vertex optimum splits at most one
    prompt between two LLMs, and that prompt takes the cheaper of them, so the result never exceeds
    the budget and falls short of the LP optimum by at most one prompt's score gap. A budget below
    the cheapest routing raises a DataError naming that minimum.
    """
    from recroute.debias.remedies import assignment_lp

    S = _scores(scores)
    n, m = S.shape
    C = as_cost_matrix(costs, n, m)
    base = np.ones((n, m), dtype=bool) if allowed is None else np.broadcast_to(np.asarray(allowed, dtype=bool), (n, m))
    if not base.any(axis=1).all():
        raise DataError("some prompt has no allowed LLM")
    budget = float(budget)
    cheapest = np.where(base, C, np.inf).min(axis=1)
    if not budget >= cheapest.sum() * (1 - 1e-12):
        raise DataError(f"budget {budget:.6g} is below the cheapest routing of this batch ({cheapest.sum():.6g})")
    choice = np.argmax(np.where(base, S, -np.inf), axis=1)
    rows = np.arange(n)
    if C[rows, choice].sum() <= budget:
        return choice.astype(np.int64)
    x = assignment_lp(S, costs=C, budget=budget, allowed=None if allowed is None else base)
    support = (x > 1e-9) & base
    split = x.max(axis=1) < 1 - 1e-9
    choice = np.argmax(x, axis=1)
    if split.any():  # the split prompt(s) take their cheapest supported LLM
        choice[split] = np.argmin(np.where(support[split], C[split], np.inf), axis=1)
    return _fit_budget(choice, S, C, base, budget).astype(np.int64)


def _fit_budget(choice: np.ndarray, S: np.ndarray, C: np.ndarray, base: np.ndarray, budget: float) -> np.ndarray:
    """Against numerical noise: move prompts to their cheapest LLM, least score lost per cost saved first."""
    rows = np.arange(len(choice))
    over = C[rows, choice].sum() - budget
    if over <= 0:
        return choice
    cheap = np.argmin(np.where(base, C, np.inf), axis=1)
    saving = C[rows, choice] - C[rows, cheap]
    loss = S[rows, choice] - S[rows, cheap]
    order = np.argsort(np.where(saving > 0, loss / np.maximum(saving, 1e-300), np.inf), kind="stable")
    moved = order[: int(np.searchsorted(np.cumsum(saving[order]), over) + 1)]
    choice = choice.copy()
    choice[moved] = cheap[moved]
    return choice
