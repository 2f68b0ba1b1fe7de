"""Drift: do live prompts still look like the prompts the router was trained on?

The signal is the nearest-neighbour distance of a prompt to the training prompts, in the router's
embedding space (cosine distance, exact FAISS search). :func:`fit_reference` holds out a calibration
share of the training prompts; their distances to the rest are the null distribution (what a new prompt
from the training distribution looks like). :func:`drift_windows` cuts the live stream into windows of
``window`` prompts and tests each against the null with a one-sided Mann-Whitney U test (live distances
larger); a window fires when its p-value is below ``alpha / n_windows`` (Bonferroni), so a log without
drift raises any alarm with probability at most ``alpha``. :func:`domain_auc` is the second view: the
cross-validated ROC AUC of a logistic regression telling live prompts from training prompts (0.5 = no
difference).

Live prompts are assumed in random order within the training distribution; a log that walks through
one topic at a time is a real shift of the live mix, and the test reports it as such.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recroute.errors import DataError

DEFAULT_WINDOW = 100
DEFAULT_ALPHA = 0.01
MAX_REFERENCE = 50_000  # training prompts kept in the reference index (a uniform sample beyond)


@dataclass(frozen=True)
class DriftReference:
    """Training prompts split into an index part (n_index, d) and the null distances (n_null,) of the rest."""

    index_vectors: np.ndarray
    null: np.ndarray

    def distances(self, Q: np.ndarray) -> np.ndarray:
        """float64 (n,): cosine distance of each row of Q (n, d) to its nearest reference prompt."""
        return nearest_distance(self.index_vectors, Q)


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def _check_vectors(X, what: str, d: int | None = None) -> np.ndarray:
    from recroute.routers.base import check_features

    X = check_features(X, n_features=d)
    if len(X) == 0:
        raise DataError(f"{what}: no prompts")
    return X


def nearest_distance(index_vectors: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """float64 (n,): 1 - cosine similarity of each query to its nearest row of ``index_vectors``."""
    from recroute.routers.knn import exact_neighbours

    Q = _check_vectors(Q, "live prompts", index_vectors.shape[1])
    rows = np.asarray(exact_neighbours(index_vectors, Q, 1, metric="cosine"))[:, 0]
    sims = np.einsum("ij,ij->i", _unit(Q).astype(np.float64), _unit(index_vectors[rows]).astype(np.float64))
    return np.clip(1.0 - sims, 0.0, 2.0)


def fit_reference(X_train: np.ndarray, calibration: float = 0.2, random_state: int = 0) -> DriftReference:
    """A :class:`DriftReference` from the training prompts' features (n, d): a ``calibration`` share (at
    least 20 prompts) held out as the null, the rest indexed (at most MAX_REFERENCE, sampled uniformly)."""
    X = _check_vectors(X_train, "training prompts")
    if not 0 < float(calibration) < 1:
        raise DataError(f"calibration must be in (0, 1); got {calibration!r}")
    n = len(X)
    n_null = max(20, int(round(calibration * n)))
    if n - n_null < 1:
        raise DataError(f"drift needs at least {n_null + 1} training prompts; got {n}")
    order = np.random.default_rng(random_state).permutation(n)
    null_rows, index_rows = order[:n_null], np.sort(order[n_null:][:MAX_REFERENCE])
    index = np.ascontiguousarray(X[index_rows])
    return DriftReference(index, nearest_distance(index, X[null_rows]))


def window_test(null: np.ndarray, live: np.ndarray) -> float:
    """One-sided Mann-Whitney p-value that ``live`` distances are larger than the ``null`` ones."""
    from scipy.stats import mannwhitneyu

    if len(live) == 0:
        return float("nan")
    return float(mannwhitneyu(live, null, alternative="greater").pvalue)


def window_bounds(n: int, window: int) -> list[tuple[int, int]]:
    """(start, end) of consecutive windows of ``window`` positions over n; a last window shorter than half
    ``window`` joins the one before it."""
    starts = list(range(0, n, window))
    if len(starts) > 1 and n - starts[-1] < window / 2:
        starts.pop()
    return list(zip(starts, starts[1:] + [n]))


def drift_windows(reference: DriftReference, distances: np.ndarray, window: int = DEFAULT_WINDOW,
                  alpha: float = DEFAULT_ALPHA) -> pd.DataFrame:
    """One row per consecutive window of live prompts: start, end (positions, end exclusive), median
    distance, the null's median, p_value, threshold (alpha / n_windows) and fired. A last window shorter
    than half ``window`` joins the one before it."""
    d = np.asarray(distances, dtype=np.float64)
    if int(window) < 2:
        raise DataError(f"window must be at least 2 prompts; got {window!r}")
    if not 0 < float(alpha) < 1:
        raise DataError(f"alpha must be in (0, 1); got {alpha!r}")
    bounds = window_bounds(len(d), int(window))
    threshold = float(alpha) / max(len(bounds), 1)
    rows = []
    null_median = float(np.median(reference.null))
    for start, end in bounds:
        p = window_test(reference.null, d[start:end])
        rows.append({"start": start, "end": end, "median_distance": float(np.median(d[start:end])),
                     "null_median": null_median, "p_value": p, "threshold": threshold, "fired": bool(p < threshold)})
    return pd.DataFrame(rows, columns=["start", "end", "median_distance", "null_median", "p_value", "threshold", "fired"])


def first_alarm(windows: pd.DataFrame) -> int | None:
    """End position (prompts seen) of the first window that fired, or None."""
    fired = windows[windows["fired"]]
    return None if fired.empty else int(fired["end"].iloc[0])


def domain_auc(X_train: np.ndarray, X_live: np.ndarray, max_rows: int = 2000, random_state: int = 0) -> float:
    """5-fold cross-validated ROC AUC of a logistic regression telling live rows from training rows
    (each side sampled to at most ``max_rows``, balanced); NaN with fewer than 10 live rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    if len(X_live) < 10:
        return float("nan")
    rng = np.random.default_rng(random_state)
    size = min(len(X_live), len(X_train), int(max_rows))
    A = np.asarray(X_train)[rng.choice(len(X_train), size, replace=False)]
    B = np.asarray(X_live)[rng.choice(len(X_live), size, replace=False)]
    features = np.vstack([A, B]).astype(np.float64)
    labels = np.r_[np.zeros(size), np.ones(size)]
    folds = min(5, size)
    clf = LogisticRegression(C=1.0, max_iter=500)
    return float(np.mean(cross_val_score(clf, features, labels, cv=folds, scoring="roc_auc")))
