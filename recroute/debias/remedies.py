"""Remedies for popularity bias, as composable functions over arrays (any router family).

``Y`` is a (n, m) training target (NaN = unobserved), ``scores`` a router's (n, m) predictions.

1. **IPW of the positive labels** (training time). The propensity of LLM j's positives is taken as
   theta_j = (p_j / p_min)^alpha, where p_j is its training positive rate and p_min the smallest
   positive rate of the pool (so theta >= 1 and the rarest LLM's positives count fully); the weight
   is w_j = 1 / theta_j in (0, 1]. Two exact ways to hand it to a router that has no sample_weight:

   - ``mode="scale"``: the target becomes y' = w_j · y (Rel-MF, Saito et al. 2020). For a pointwise
     loss linear in the target (BCE of LinearR/MLPR/two-tower, the neighbour / cluster means of
     kNN / C-cluster), training on y/theta_j is the inverse-propensity estimate of the loss on the
     debiased labels: E[(y/theta) l+ + (1 - y/theta) l-] = r l+ + (1 - r) l-.
   - ``mode="sample"``: each positive cell of LLM j is kept with probability w_j and otherwise marked
     unobserved (NaN). Every pointwise loss over observed cells then has expectation
     sum_pos w_j l+ + sum_neg l-: positives weighted by 1/theta_j, by rejection sampling. Targets stay
     0/1, so it suits routers that binarize their targets (ALS, BPR, LightFM, MLC).

2. **Logit adjustment** (post hoc; Menon et al. 2021): scores - tau · log(prior_j). The prior is the
   training *positive rate* per LLM by default (the label marginal, as in Menon's class prior), or
   the router's own training *selection share* (Laplace-smoothed), normalised to sum to 1.
3. **Per-LLM calibration** (:class:`PerLLMCalibrator`): isotonic or Platt maps, fitted per LLM on
   held-out training prompts, so scores mean P(correct) for every LLM alike.
4. **Capacity-constrained batch assignment** (:func:`capacity_assign`): route a batch so that no LLM
   takes more than ``floor(cap · n)`` prompts, maximising the total score (an exact transportation
   LP); :func:`capped_distribution` is its entropic counterpart (Sinkhorn) for E_p.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recroute.data.splits import holdout_split  # noqa: F401  (its home is data; callers import it here too)
from recroute.errors import DataError

IPW_MODES = ("auto", "scale", "sample")
PRIORS = ("positive_rate", "selection_share")
CALIBRATIONS = ("isotonic", "platt")
# routers whose training targets are linear in the loss (scale mode); every other router samples
SCALE_ROUTERS = frozenset({"knn", "cluster", "linear", "mlp", "two_tower", "text_mf"})
_TIE_EPS = 1e-6  # weight of the strictly increasing tie-breaker added to calibrated scores


# ---------------------------------------------------------------------- IPW
def positive_rate(Y: np.ndarray) -> np.ndarray:
    """float64 (m,): share of observed training cells with target >= 0.5 per LLM (0 if none observed)."""
    Y = _matrix(Y, "Y")
    observed = ~np.isnan(Y)
    positive = np.where(observed, Y, 0.0) >= 0.5
    return positive.sum(axis=0) / np.maximum(observed.sum(axis=0), 1)


def ipw_weights(Y: np.ndarray, strength: float) -> np.ndarray:
    """float64 (m,): w_j = (p_min / p_j)^strength in (0, 1] (1 for LLMs without positives).

    ``strength`` (alpha) >= 0: 0 leaves the targets alone, 1 is full inverse-propensity weighting.
    """
    alpha = _non_negative(strength, "ipw strength")
    p = positive_rate(Y)
    has = p > 0
    if not has.any():
        return np.ones_like(p)
    return np.where(has, (p[has].min() / np.where(has, p, 1.0)) ** alpha, 1.0)


def ipw_targets(Y: np.ndarray, strength: float, mode: str = "scale", random_state: int | None = 0) -> np.ndarray:
    """float32 (n, m) training targets carrying the IPW weights (see the module docstring).

    ``mode``: "scale" (y' = w_j y) or "sample" (positives of LLM j kept with probability w_j, else NaN).
    """
    Y = _matrix(Y, "Y")
    if mode not in ("scale", "sample"):
        raise DataError(f"ipw mode must be 'scale' or 'sample'; got {mode!r}")
    w = ipw_weights(Y, strength)
    if mode == "scale":
        return (Y * w[None, :]).astype(np.float32)
    rng = np.random.default_rng(random_state)
    drop = (np.nan_to_num(Y, nan=0.0) >= 0.5) & (rng.random(Y.shape) >= w[None, :])
    return np.where(drop, np.nan, Y).astype(np.float32)


def ipw_mode(router_name: str, mode: str = "auto") -> str:
    """"scale" for routers whose loss is linear in the target, else "sample" (``mode`` overrides auto)."""
    if mode not in IPW_MODES:
        raise DataError(f"ipw_mode must be one of {IPW_MODES}; got {mode!r}")
    if mode != "auto":
        return mode
    return "scale" if router_name in SCALE_ROUTERS else "sample"


# ---------------------------------------------------------------------- logit adjustment
def selection_prior(scores: np.ndarray) -> np.ndarray:
    """float64 (m,): Laplace-smoothed share of prompts whose argmax is each LLM, (count + 1) / (n + m)."""
    S = _matrix(scores, "scores")
    counts = np.bincount(np.argmax(S, axis=1), minlength=S.shape[1])
    return (counts + 1.0) / (S.shape[0] + S.shape[1])


def training_prior(Y: np.ndarray, kind: str = "positive_rate", scores: np.ndarray | None = None) -> np.ndarray:
    """float64 (m,) prior shares (sum 1) for :func:`logit_adjust`.

    ``kind="positive_rate"``: the training positive rates (each floored at 1 / (n + 1)), normalised;
    ``"selection_share"``: :func:`selection_prior` of the router's ``scores`` on the training prompts.
    """
    if kind == "positive_rate":
        Y = _matrix(Y, "Y")
        p = np.maximum(positive_rate(Y), 1.0 / (Y.shape[0] + 1.0))
    elif kind == "selection_share":
        if scores is None:
            raise DataError("prior='selection_share' needs the router's scores on the training prompts")
        p = selection_prior(scores)
    else:
        raise DataError(f"prior must be one of {PRIORS}; got {kind!r}")
    return p / p.sum()


def adjustment_terms(Y: np.ndarray, train_scores: np.ndarray, prior: str = "positive_rate",
                     tau_units: str = "std") -> tuple[np.ndarray, float]:
    """(prior (m,), unit) for a logit adjustment learned from the training split.

    ``train_scores`` (n, m): the router's (calibrated) scores on its training prompts; ``unit`` is their
    standard deviation (``tau_units="std"``, so tau is in units of the router's score spread) or 1 ("raw").
    """
    if tau_units not in ("std", "raw"):
        raise DataError(f"tau_units must be 'std' or 'raw'; got {tau_units!r}")
    prior_shares = training_prior(Y, prior, train_scores)
    spread = float(np.std(np.asarray(train_scores, dtype=np.float64))) if tau_units == "std" else 1.0
    return prior_shares, (spread if spread > 0 else 1.0)


def logit_adjust(scores: np.ndarray, prior: np.ndarray, tau: float) -> np.ndarray:
    """float64 (n, m): scores - tau · log(prior). tau = 0 returns the scores unchanged.

    ``prior`` (m,) positive shares; rarer LLMs get a larger boost.
    """
    S = _matrix(scores, "scores")
    prior = np.asarray(prior, dtype=np.float64).ravel()
    tau = _non_negative(tau, "tau")
    if prior.shape != (S.shape[1],) or not (prior > 0).all():
        raise DataError(f"prior must hold {S.shape[1]} positive shares; got {prior!r}")
    if tau == 0:
        return S.copy()
    return S - tau * np.log(prior)[None, :]


# ---------------------------------------------------------------------- calibration
class PerLLMCalibrator:
    """Per-LLM monotone map from raw scores to P(correct): isotonic or Platt.

    ``fit(scores (n, m), Y (n, m))`` on held-out prompts (NaN cells of Y skipped; targets in [0, 1]);
    ``transform(scores (n, m)) -> float64 (n, m)`` in [0, 1], strictly increasing in the raw score per
    LLM (a tie-breaker of weight 1e-6 keeps isotonic's flat steps and a zero Platt slope ordered).
    Platt slopes are constrained to be >= 0, so a map never reverses a router's ranking.
    """

    def __init__(self, method: str = "isotonic") -> None:
        if method not in CALIBRATIONS:
            raise DataError(f"calibration must be one of {CALIBRATIONS}; got {method!r}")
        self.method = method

    def fit(self, scores: np.ndarray, Y: np.ndarray) -> "PerLLMCalibrator":
        S, T = _matrix(scores, "scores"), _matrix(Y, "Y")
        if S.shape != T.shape:
            raise DataError(f"scores {S.shape} and Y {T.shape} must have one shape")
        observed = ~np.isnan(T) & np.isfinite(S)
        filled = np.where(observed, S, 0.0)
        count = np.maximum(observed.sum(axis=0), 1)
        self.center_ = filled.sum(axis=0) / count
        spread = np.sqrt((np.where(observed, S - self.center_, 0.0) ** 2).sum(axis=0) / count)
        self.scale_ = np.where(spread > 0, spread, 1.0)
        Z = (S - self.center_) / self.scale_
        self.base_rate_ = np.where(observed, T, 0.0).sum(axis=0) / count
        if self.method == "platt":
            self.coef_ = _platt(Z, np.clip(np.nan_to_num(T), 0.0, 1.0), observed, self.base_rate_)
        else:
            self.knots_x_, self.knots_y_, self.n_knots_ = _isotonic(Z, T, observed, self.base_rate_)
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        S = _matrix(scores, "scores")
        if S.shape[1] != self.center_.shape[0]:
            raise DataError(f"the calibrator was fitted on {self.center_.shape[0]} LLMs; got {S.shape[1]} columns")
        Z = (S - self.center_) / self.scale_
        if self.method == "platt":
            out = _sigmoid(Z * self.coef_[0] + self.coef_[1])
        else:
            out = np.empty_like(Z)
            for j in range(Z.shape[1]):  # one vectorised interpolation per LLM
                k = int(self.n_knots_[j])
                out[:, j] = np.interp(Z[:, j], self.knots_x_[j, :k], self.knots_y_[j, :k])
        return (1.0 - _TIE_EPS) * out + _TIE_EPS * _sigmoid(Z)

    def state(self) -> dict[str, np.ndarray]:
        """Arrays that restore the fitted calibrator (:meth:`from_state`)."""
        arrays = {"center": self.center_, "scale": self.scale_, "base_rate": self.base_rate_}
        if self.method == "platt":
            arrays["coef"] = self.coef_
        else:
            arrays.update(knots_x=self.knots_x_, knots_y=self.knots_y_, n_knots=self.n_knots_)
        return {f"calibrator.{k}": np.asarray(v) for k, v in arrays.items()}

    @classmethod
    def from_state(cls, method: str, arrays: dict[str, np.ndarray]) -> "PerLLMCalibrator":
        out = cls(method)
        get = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("calibrator.")}
        out.center_, out.scale_, out.base_rate_ = get["center"], get["scale"], get["base_rate"]
        if method == "platt":
            out.coef_ = get["coef"]
        else:
            out.knots_x_, out.knots_y_, out.n_knots_ = get["knots_x"], get["knots_y"], get["n_knots"]
        return out


def _isotonic(Z: np.ndarray, T: np.ndarray, observed: np.ndarray, base_rate: np.ndarray):
    """Knots (m, L) x and y of sklearn's isotonic fit per LLM, padded, with their counts (m,)."""
    from sklearn.isotonic import IsotonicRegression

    fits = []
    for j in range(Z.shape[1]):
        rows = observed[:, j]
        if rows.sum() < 2:
            fits.append((np.array([0.0]), np.array([base_rate[j]])))
            continue
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(Z[rows, j], np.clip(T[rows, j], 0.0, 1.0))
        fits.append((np.asarray(iso.X_thresholds_, dtype=np.float64), np.asarray(iso.y_thresholds_, dtype=np.float64)))
    width = max(len(x) for x, _ in fits)
    knots_x = np.zeros((len(fits), width))
    knots_y = np.zeros((len(fits), width))
    for j, (x, y) in enumerate(fits):
        knots_x[j, : len(x)], knots_y[j, : len(y)] = x, y
    return knots_x, knots_y, np.array([len(x) for x, _ in fits], dtype=np.int64)


def _platt(Z: np.ndarray, T: np.ndarray, observed: np.ndarray, base_rate: np.ndarray,
           ridge: float = 1.0, iterations: int = 50) -> np.ndarray:
    """(2, m) Platt coefficients (slope >= 0, intercept) per LLM by Newton's method on the log loss.

    Soft targets in [0, 1] are allowed; a small ridge on the slope keeps separable data finite.
    """
    M = observed.astype(np.float64)
    Zm = np.where(observed, Z, 0.0)
    rate = np.clip(base_rate, 1e-4, 1 - 1e-4)
    a = np.zeros(Z.shape[1])
    b = np.log(rate / (1 - rate))
    for _ in range(iterations):
        p = _sigmoid(Zm * a + b)
        r = (p - T) * M
        w = p * (1 - p) * M
        g_a, g_b = (r * Zm).sum(axis=0) + ridge * a, r.sum(axis=0)
        h_aa, h_ab, h_bb = (w * Zm * Zm).sum(axis=0) + ridge, (w * Zm).sum(axis=0), w.sum(axis=0) + 1e-9
        det = h_aa * h_bb - h_ab * h_ab
        step_a = np.clip((h_bb * g_a - h_ab * g_b) / det, -5, 5)
        step_b = np.clip((h_aa * g_b - h_ab * g_a) / det, -5, 5)
        a, b = a - step_a, b - step_b
        if max(np.abs(step_a).max(), np.abs(step_b).max()) < 1e-10:
            break
    flat = a < 0  # never reverse a router's ranking: a flat map at the base rate instead
    return np.stack([np.where(flat, 0.0, a), np.where(flat, np.log(rate / (1 - rate)), b)])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


# ---------------------------------------------------------------------- capacity
def capacity_limit(n: int, m: int, cap: float) -> int:
    """Most prompts one LLM may take, floor(cap · n); DataError if m LLMs cannot hold n prompts."""
    cap = float(cap)
    if not 0 < cap <= 1:
        raise DataError(f"cap must be a share in (0, 1]; got {cap!r}")
    limit = int(math.floor(cap * n + 1e-9))
    if limit * m < n:
        need = math.ceil(n / m) / n
        raise DataError(f"cap {cap:.4g} lets {m} LLMs take only {limit * m} of {n} prompts; use cap >= {need:.4g}")
    return limit


def cap_for_strength(strength: float, m: int) -> float:
    """The study's capacity scale: strength 0 -> cap 1 (no limit), 1 -> 1/m (an even split)."""
    s = float(strength)
    if not 0 <= s <= 1:
        raise DataError(f"capacity strength must be in [0, 1]; got {strength!r}")
    return 1.0 - s * (1.0 - 1.0 / m)


def batch_cap(n: int, m: int, cap: float) -> float:
    """``cap`` raised to the smallest feasible share for a batch of n prompts, ceil(n / m) / n."""
    return max(float(cap), math.ceil(n / m) / n)


def capacity_assign(scores: np.ndarray, cap: float) -> np.ndarray:
    """int64 (n,): the routing of n prompts maximising the total score with at most floor(cap · n)
    prompts per LLM (the cap is never exceeded).

    When the plain argmax already respects the cap it is returned unchanged (ties: the first LLM).
    Otherwise an exact transportation LP (HiGHS simplex; the constraint matrix is totally unimodular,
    so its vertex optimum is integral) is solved and rounded, with a repair step that guarantees the
    cap against numerical noise.
    """
    S = _matrix(scores, "scores")
    if not np.isfinite(S).all():
        raise DataError("scores must be finite for capacity assignment")
    n, m = S.shape
    limit = capacity_limit(n, m, cap)
    choice = np.argmax(S, axis=1)
    if np.bincount(choice, minlength=m).max() <= limit:
        return choice.astype(np.int64)
    x = _transport_lp(S, limit)
    choice = np.argmax(x, axis=1)
    return _repair(choice, S, limit).astype(np.int64)


def _transport_lp(S: np.ndarray, limit: int) -> np.ndarray:
    """(n, m) optimal plan of max sum S·x, rows sum to 1, columns <= limit, 0 <= x <= 1."""
    return assignment_lp(S, limit=limit)


def assignment_lp(S: np.ndarray, limit: int | None = None, costs: np.ndarray | None = None,
                  budget: float | None = None, allowed: np.ndarray | None = None) -> np.ndarray:
    """(n, m) optimal fractional plan of max sum S·x with every row summing to 1 and 0 <= x <= 1,
    subject to optional column capacities (sum_i x_ij <= ``limit``) and an optional total budget
    (sum_ij costs_ij x_ij <= ``budget``, ``costs`` (n, m)). Solved exactly by HiGHS (dual simplex),
    so the plan is a vertex: integral under capacities alone, with at most one split row under a
    budget alone. ``allowed`` (n, m) bool: cells fixed at 0 where False. Shared by capacity
    assignment and budgeted cost-aware routing (recroute.cost).
    """
    import scipy.sparse as sp
    from scipy.optimize import linprog

    n, m = S.shape
    cells = np.arange(n * m)
    rows = sp.csr_matrix((np.ones(n * m), (cells // m, cells)), shape=(n, n * m))
    blocks, bounds = [], []
    if limit is not None:
        blocks.append(sp.csr_matrix((np.ones(n * m), (cells % m, cells)), shape=(m, n * m)))
        bounds.append(np.full(m, float(limit)))
    if budget is not None:
        blocks.append(sp.csr_matrix(np.asarray(costs, dtype=np.float64).reshape(1, n * m)))
        bounds.append(np.array([float(budget)]))
    box = (0.0, 1.0)
    if allowed is not None:
        box = np.stack([np.zeros(n * m), np.asarray(allowed, dtype=np.float64).ravel()], axis=1)
        S = np.where(allowed, S, np.nan)
        S = np.where(allowed, S, np.nanmin(S))  # values of fixed cells do not matter
    c = -(S - S.max(axis=1, keepdims=True)).ravel()  # row shifts leave the optimum unchanged
    res = linprog(c, A_ub=sp.vstack(blocks).tocsr() if blocks else None,
                  b_ub=np.concatenate(bounds) if bounds else None, A_eq=rows, b_eq=np.ones(n),
                  bounds=box, method="highs-ds")
    if res.status != 0:
        raise DataError(f"assignment LP failed: {res.message}")
    return res.x.reshape(n, m)


def _repair(choice: np.ndarray, S: np.ndarray, limit: int) -> np.ndarray:
    """Move the cheapest prompts off over-full LLMs to their best LLM with room (loops over LLMs only)."""
    m = S.shape[1]
    choice = choice.copy()
    counts = np.bincount(choice, minlength=m)
    for j in np.flatnonzero(counts > limit):
        rows = np.flatnonzero(choice == j)
        excess = int(counts[j] - limit)
        room = counts < limit
        alt = np.where(room[None, :], S[rows], -np.inf)
        best = np.argmax(alt, axis=1)
        loss = S[rows, j] - alt[np.arange(len(rows)), best]
        for r, k in zip(*(a[np.argsort(loss, kind="stable")[:excess]] for a in (rows, best))):
            if counts[k] >= limit:  # filled meanwhile: the next LLM with room
                free = np.flatnonzero(counts < limit)
                k = free[np.argmax(S[r, free])]
            choice[r], counts[j], counts[k] = k, counts[j] - 1, counts[k] + 1
    return choice


def capped_distribution(probs: np.ndarray, cap: float, iterations: int = 500, tol: float = 1e-9) -> np.ndarray:
    """float64 (n, m): the KL projection of a selection distribution onto "each LLM gets at most cap · n
    of the total mass" (rows still sum to 1), by Sinkhorn-style dual coordinate ascent.

    P = diag(u) probs diag(v) with v_j = min(1, cap n / (probs^T u)_j) and u renormalising the rows: the
    entropic counterpart of :func:`capacity_assign`, used for E_p under a capacity.
    """
    P0 = _matrix(probs, "probs")
    n, m = P0.shape
    cap = float(cap)
    if not 0 < cap <= 1 or cap * m < 1 - 1e-12:
        raise DataError(f"cap must be in [1/m, 1] = [{1 / m:.4g}, 1]; got {cap!r}")
    budget = cap * n
    v = np.ones(m)
    for _ in range(int(iterations)):
        u = 1.0 / np.maximum(P0 @ v, 1e-300)  # rows renormalised
        Q = P0 * u[:, None] * v[None, :]
        if (Q.sum(axis=0) <= budget * (1 + tol)).all():
            break
        v = np.minimum(1.0, budget / np.maximum(u @ P0, 1e-300))  # each column's exact dual update
    return Q


# ---------------------------------------------------------------------- helpers
def _matrix(values: Any, what: str) -> np.ndarray:
    A = np.asarray(values, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] == 0:
        raise DataError(f"{what} must be a non-empty 2-D (n_prompts, n_llms) array; got shape {A.shape}")
    return A


def _non_negative(value: float, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be a number >= 0; got {value!r}") from None
    if not x >= 0 or not math.isfinite(x):
        raise DataError(f"{what} must be a finite number >= 0; got {value!r}")
    return x
