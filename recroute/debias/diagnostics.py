"""Popularity-bias diagnostics: does a router collapse onto the best-on-average LLM?

Pure functions over arrays plus :func:`diagnose` for a fitted router. ``Y`` is the (n, m) matrix of
true scores of the m candidates, ``scores`` the router's (n, m) predictions, ``choice`` the (n,)
routed column per prompt, ``shares`` the (m,) aggregate selection distribution (sums to 1).

- :func:`normalized_entropy` — entropy of the shares in bits divided by log2(m): 0 = every prompt to
  one LLM, 1 = an even spread (RouterEval's E_p is per prompt; this is the aggregate view).
- :func:`gini` — Gini coefficient of the shares, sum |x_i - x_j| / (2 m^2 mean): 0 even,
  (m - 1) / m when one LLM takes everything.
- :func:`coverage` — fraction of the m LLMs that receive at least one prompt.
- :func:`tail_mu_o` — mu_o on the "long tail": prompts the best single LLM (best on the training
  split) gets wrong (true score < 0.5), where only routing can help.
- :func:`reliability` / :func:`ece` — per-LLM reliability bins of predicted correctness and the
  expected calibration error (equal-width bins over [0, 1]).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recroute.errors import DataError
from recroute.eval import metrics

if TYPE_CHECKING:
    from recroute.routers.base import Router

WRONG_BELOW = 0.5  # a true score below this is a wrong answer (binary: 0)


# ---------------------------------------------------------------------- the selection distribution
def normalized_entropy(shares: np.ndarray) -> float:
    """Entropy (bits) of a (m,) share vector divided by log2(m); 0.0 when m == 1."""
    p = _shares(shares)
    if p.size < 2:
        return 0.0
    return float(metrics.entropy_bits(p[None, :], floor=0.0)[0] / np.log2(p.size))


def gini(shares: np.ndarray) -> float:
    """Gini coefficient of a (m,) share vector: mean absolute difference / (2 × mean).

    0 for an even split; (m - 1) / m when one LLM takes every prompt.
    """
    p = _shares(shares)
    m = p.size
    x = np.sort(p)
    # sum_{i,j} |x_i - x_j| = 2 sum_k (2k - m + 1) x_(k) for ascending x (k = 0..m-1)
    total = 2.0 * np.sum((2.0 * np.arange(m) - m + 1.0) * x)
    return float(total / (2.0 * m * m * x.mean())) if x.sum() > 0 else 0.0


def coverage(shares: np.ndarray) -> float:
    """Fraction of LLMs that receive any prompt (share > 0)."""
    p = _shares(shares)
    return float(np.count_nonzero(p > 0) / p.size)


def selection_summary(choice: np.ndarray, m: int) -> dict[str, Any]:
    """{"shares" (m,), "selection_entropy", "gini", "coverage"} of routed columns ``choice`` (n,)."""
    shares = metrics.selection_shares(choice, m)
    return {"shares": shares, "selection_entropy": normalized_entropy(shares), "gini": gini(shares),
            "coverage": coverage(shares)}


def _shares(shares: np.ndarray) -> np.ndarray:
    p = np.asarray(shares, dtype=np.float64).ravel()
    if p.size == 0 or not np.isfinite(p).all() or (p < 0).any():
        raise DataError(f"shares must be a non-empty vector of non-negative finite numbers; got {shares!r}")
    return p


# ---------------------------------------------------------------------- the long tail
def best_llm_index(Y_train: np.ndarray) -> int:
    """Position of the best single LLM on the training split: highest mean observed score (ties: first)."""
    Y = np.asarray(Y_train, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] == 0:
        raise DataError(f"Y_train must be 2-D (n_prompts, n_llms); got shape {Y.shape}")
    observed = ~np.isnan(Y)
    means = np.where(observed, Y, 0.0).sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
    return int(np.argmax(means))


def tail_mask(Y: np.ndarray, best_llm: int, wrong_below: float = WRONG_BELOW) -> np.ndarray:
    """bool (n,): prompts whose best-single LLM answers wrong (true score < ``wrong_below``)."""
    Y = np.asarray(Y, dtype=np.float64)
    if not 0 <= int(best_llm) < Y.shape[1]:
        raise DataError(f"best_llm {best_llm} out of range 0..{Y.shape[1] - 1}")
    return Y[:, int(best_llm)] < wrong_below


def tail_mu_o(Y: np.ndarray, choice: np.ndarray, best_llm: int, wrong_below: float = WRONG_BELOW) -> float:
    """mu_o over the tail prompts (see :func:`tail_mask`); NaN when the tail is empty.

    The best single LLM scores below ``wrong_below`` on every tail prompt by construction, so a router
    collapsed onto it gets (near) 0 here; the oracle gets the share of tail prompts some LLM solves.
    """
    tail = tail_mask(Y, best_llm, wrong_below)
    if not tail.any():
        return float("nan")
    return metrics.mu_o(np.asarray(Y)[tail], np.asarray(choice)[tail])


# ---------------------------------------------------------------------- calibration
def reliability(scores: np.ndarray, Y: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Reliability curve per LLM: one row per (llm, bin) with at least one prompt.

    ``scores`` (n, m) predicted P(correct) in [0, 1], ``Y`` (n, m) true scores (NaN = unobserved,
    skipped). Bins are equal-width over [0, 1] (the last one includes 1). Columns: ``llm`` (position),
    ``bin``, ``lower``, ``upper``, ``count``, ``mean_score`` (mean prediction), ``accuracy`` (mean truth).
    """
    llm, b, count, pred_sum, true_sum = _binned(scores, Y, n_bins)
    keep = count > 0
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame({
        "llm": llm[keep], "bin": b[keep], "lower": edges[b[keep]], "upper": edges[b[keep] + 1],
        "count": count[keep].astype(np.int64), "mean_score": pred_sum[keep] / count[keep],
        "accuracy": true_sum[keep] / count[keep],
    })


def ece(scores: np.ndarray, Y: np.ndarray, n_bins: int = 10) -> np.ndarray:
    """float64 (m,): expected calibration error per LLM, sum_b (n_b / n) |accuracy_b - mean_score_b|.

    NaN for an LLM with no observed cell. ``scores`` must lie in [0, 1] (see :func:`is_probability`).
    """
    llm, _, count, pred_sum, true_sum = _binned(scores, Y, n_bins)
    m = np.asarray(scores).shape[1]
    gap = np.abs(true_sum - pred_sum)  # = n_b |accuracy_b - mean_score_b|
    per_llm = np.bincount(llm, weights=gap, minlength=m)
    n = np.bincount(llm, weights=count, minlength=m)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, per_llm / n, np.nan)


def is_probability(scores: np.ndarray, tol: float = 1e-6) -> bool:
    """Whether every score lies in [0, 1] (up to ``tol``), so calibration metrics apply."""
    s = np.asarray(scores, dtype=np.float64)
    return bool(s.size and np.nanmin(s) >= -tol and np.nanmax(s) <= 1 + tol)


def _binned(scores: np.ndarray, Y: np.ndarray, n_bins: int):
    """Flat (llm, bin) grid of counts and sums: (llm, bin, count, pred_sum, true_sum), each (m * n_bins,)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(Y, dtype=np.float64)
    if s.ndim != 2 or s.shape != y.shape:
        raise DataError(f"scores and Y must be 2-D of one shape; got {s.shape} and {y.shape}")
    if int(n_bins) < 1:
        raise DataError(f"n_bins must be at least 1; got {n_bins}")
    if not is_probability(s):
        raise DataError(f"calibration needs scores in [0, 1]; got {np.nanmin(s):.3g}..{np.nanmax(s):.3g}"
                        " (calibrate the router first: recroute.debias.remedies.PerLLMCalibrator)")
    n_bins, m = int(n_bins), s.shape[1]
    observed = ~np.isnan(y) & ~np.isnan(s)
    bins = np.clip((np.clip(s, 0.0, 1.0) * n_bins).astype(np.int64), 0, n_bins - 1)
    cell = (np.arange(m)[None, :] * n_bins + bins)[observed]
    size = m * n_bins
    count = np.bincount(cell, minlength=size).astype(np.float64)
    pred_sum = np.bincount(cell, weights=s[observed], minlength=size)
    true_sum = np.bincount(cell, weights=y[observed], minlength=size)
    grid = np.arange(size)
    return grid // n_bins, grid % n_bins, count, pred_sum, true_sum


# ---------------------------------------------------------------------- everything at once
def diagnostics_from_scores(
    scores: np.ndarray,
    Y: np.ndarray,
    best_llm: int,
    probs: np.ndarray | None = None,
    *,
    choice: np.ndarray | None = None,
    floor: float = 1e-10,
    n_bins: int = 10,
    calibration_scores: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every diagnostic of one routing of n test prompts among m LLMs.

    ``scores`` (n, m), ``Y`` (n, m) true test scores, ``best_llm`` the best single LLM's position
    (on the training split), ``probs`` (n, m) the per-prompt selection distribution for E_p (default:
    softmax of the scores), ``choice`` (n,) the routed columns (default: argmax of the scores, ties
    first), ``calibration_scores`` (n, m) the predicted P(correct) whose ECE is reported (default: the
    scores; pass the probabilities behind a decision rule such as a logit adjustment). Returns mu_o,
    e_p, selection_entropy, gini, coverage, shares, tail_mu_o, tail_size, ece (mean over LLMs; NaN
    unless those scores are probabilities) and ece_per_llm.
    """
    S = np.asarray(scores, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if S.ndim != 2 or S.shape != Y.shape:
        raise DataError(f"scores {S.shape} and Y {Y.shape} must be 2-D arrays of one shape")
    n, m = S.shape
    choice = np.argmax(S, axis=1) if choice is None else np.asarray(choice, dtype=np.int64)
    probs = metrics.softmax(S) if probs is None else np.asarray(probs, dtype=np.float64)
    P = S if calibration_scores is None else np.asarray(calibration_scores, dtype=np.float64)
    per_llm = ece(P, Y, n_bins) if P.shape == S.shape and is_probability(P) else np.full(m, np.nan)
    return {
        "mu_o": metrics.mu_o(Y, choice),
        "e_p": metrics.e_p(probs, floor),
        **selection_summary(choice, m),
        "tail_mu_o": tail_mu_o(Y, choice, best_llm),
        "tail_size": int(tail_mask(Y, best_llm).sum()),
        "ece": float(np.nanmean(per_llm)) if np.isfinite(per_llm).any() else float("nan"),
        "ece_per_llm": per_llm,
    }


def diagnose(
    router: "Router", X_test: np.ndarray | None, Y_test: np.ndarray, best_llm: int | str, *, n_bins: int = 10
) -> dict[str, Any]:
    """Diagnostics of a fitted router on a test split: a dict of scalars plus ``per_llm`` (DataFrame).

    ``X_test`` (n, d) prompt features (None for feature-free routers), ``Y_test`` (n, m) true scores of
    the router's m LLMs, ``best_llm`` the best single LLM on the *training* split (position or name).
    Keys: mu_o, e_p (RouterEval's, with the router's entropy floor), selection_entropy (normalised),
    gini, coverage, tail_mu_o, tail_size, ece, per_llm (llm, share, ece), reliability (DataFrame or
    None when the scores are not probabilities).
    """
    Y = np.asarray(Y_test, dtype=np.float64)
    n = Y.shape[0]
    best = _resolve_llm(router, best_llm)
    scores = np.asarray(router.score(X_test, n=n), dtype=np.float64)
    if scores.shape != Y.shape:
        raise DataError(f"the router scores {scores.shape[1]} LLMs but Y_test has {Y.shape[1]} columns")
    probs = router.selection_probs(X_test, n=n)
    out = diagnostics_from_scores(scores, Y, best, probs, floor=float(router.entropy_floor), n_bins=n_bins)
    names = [str(x) for x in getattr(router, "llm_names_", range(Y.shape[1]))]
    out["per_llm"] = pd.DataFrame({"llm": names, "share": out.pop("shares"), "ece": out.pop("ece_per_llm")})
    out["best_llm"] = names[best]
    out["reliability"] = reliability(scores, Y, n_bins) if is_probability(scores) else None
    return out


def _resolve_llm(router: "Router", llm: int | str) -> int:
    if isinstance(llm, (int, np.integer)):
        return int(llm)
    names = [str(x) for x in getattr(router, "llm_names_", [])]
    if str(llm) not in names:
        raise DataError(f"unknown LLM {llm!r}; the router knows {names[:10]}")
    return names.index(str(llm))
