"""Quality–cost evaluation: curves, the zero router, the cheapest-correct oracle and their metrics.

Pure functions over arrays. ``Y`` (n, m) true test scores, ``C`` (n, m) costs, ``S`` (n, m) router scores;
a point is (mean cost per prompt, mean quality). Definitions and sources: docs/cost.md.

- :func:`utility_curve`: a router's points over a sweep of the cost weight lambda (argmax S - lambda C).
- :func:`hull`: RouterBench's non-decreasing convex hull of a point set: the best mean quality any
  random mixture of the points reaches at mean cost at most c (flat after the best point; 0 below the
  cheapest point, which nothing reaches).
- :func:`zero_router`: the hull of the single LLMs' points (RouterBench's zero router).
- :func:`aiq`: RouterBench's AIQ, the hull's mean height over [c_min, c_max].
- :func:`cost_to_reach`, :func:`quality_at_cost`: read off a hull.
- :func:`pgr_curve`, :func:`apgr`, :func:`cpt`: RouteLLM's metrics for a two-LLM pool.
"""

from __future__ import annotations

import numpy as np

from recroute.cost.decide import max_useful_weight
from recroute.errors import DataError


def _pair(Y, C) -> tuple[np.ndarray, np.ndarray]:
    Y = np.asarray(Y, dtype=np.float64)
    C = np.asarray(C, dtype=np.float64)
    if C.ndim == 1:
        C = np.broadcast_to(C[None, :], Y.shape)
    if Y.ndim != 2 or Y.shape != C.shape or Y.size == 0:
        raise DataError(f"Y and costs must be non-empty (n, m) arrays of one shape; got {Y.shape} and {C.shape}")
    if not (np.isfinite(Y).all() and np.isfinite(C).all()):
        raise DataError("Y and costs must be finite (fill unobserved test cells first)")
    return Y, C


def point(Y, C, choice) -> tuple[float, float]:
    """(mean cost, mean quality) of routing prompt i to LLM choice[i]."""
    Y, C = _pair(Y, C)
    rows = np.arange(len(Y))
    choice = np.asarray(choice, dtype=np.int64)
    return float(C[rows, choice].mean()), float(Y[rows, choice].mean())


def single_llm_points(Y, C) -> np.ndarray:
    """float64 (m, 2): each LLM's (mean cost, mean quality) when it takes every prompt."""
    Y, C = _pair(Y, C)
    return np.stack([C.mean(axis=0), Y.mean(axis=0)], axis=1)


def oracle_point(Y, C) -> tuple[float, float]:
    """The cheapest-correct oracle: each prompt goes to the cheapest LLM with its best score (the
    cheapest LLM when every score is 0). Returns (mean cost, mean quality)."""
    Y, C = _pair(Y, C)
    best = Y.max(axis=1, keepdims=True)
    choice = np.argmin(np.where(Y >= best, C, np.inf), axis=1)
    return point(Y, C, choice)


def default_weights(S, C, n: int = 200) -> np.ndarray:
    """float64: lambda = 0, then ``n`` geometric steps up to the weight that picks the cheapest LLM everywhere."""
    top = max_useful_weight(S, C)
    if top == 0:
        return np.zeros(1)
    return np.concatenate([[0.0], np.geomspace(top * 1e-6, top, n)])


def utility_curve(S, Y, C, weights=None) -> np.ndarray:
    """float64 (len(weights), 3) rows (lambda, mean cost, mean quality) of utility routing argmax S - lambda C."""
    Y, C = _pair(Y, C)
    S = np.asarray(S, dtype=np.float64)
    if S.shape != Y.shape:
        raise DataError(f"scores {S.shape} and Y {Y.shape} must have one shape")
    weights = default_weights(S, C) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    rows = np.arange(len(Y))
    out = np.empty((len(weights), 3))
    for t, lam in enumerate(weights):  # one vectorised argmax per lambda
        choice = np.argmax(S - lam * C, axis=1)
        out[t] = lam, C[rows, choice].mean(), Y[rows, choice].mean()
    return out


# ---------------------------------------------------------------------- hulls
def hull(points) -> np.ndarray:
    """float64 (h, 2) vertices (cost, quality) of the non-decreasing convex hull, by cost.

    From the cheapest point (the best quality among equally cheap ones) along the upper concave hull
    to the best-quality point (the cheapest among equally good ones); the hull is flat after it.
    """
    P = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if P.shape[0] == 0 or not np.isfinite(P).all():
        raise DataError("hull needs at least one finite (cost, quality) point")
    P = P[np.lexsort((-P[:, 1], P[:, 0]))]  # by cost, then best quality first
    top = np.flatnonzero(P[:, 1] == P[:, 1].max())[0]
    P = P[: top + 1]
    vertices: list[np.ndarray] = []
    for p in P:  # monotone chain, upper hull (keep strictly concave turns)
        if vertices and p[0] == vertices[-1][0]:
            continue  # an equally cheap point of lower quality
        while len(vertices) >= 2:
            a, b = vertices[-2], vertices[-1]
            if (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]) >= -1e-12:
                vertices.pop()  # b lies on or under the segment a-p
            else:
                break
        vertices.append(p)
    return np.array(vertices)


def hull_value(vertices, c) -> np.ndarray:
    """The hull's quality at cost(s) c: interpolated between vertices, flat after the last, 0 before the first."""
    V = np.asarray(vertices, dtype=np.float64)
    c = np.asarray(c, dtype=np.float64)
    out = np.interp(c, V[:, 0], V[:, 1])
    return np.where(c < V[0, 0], 0.0, out)


def zero_router(Y, C) -> np.ndarray:
    """(h, 2) hull vertices of the single LLMs' points: RouterBench's zero router."""
    return hull(single_llm_points(Y, C))


def aiq(vertices, c_min: float, c_max: float) -> float:
    """RouterBench's AIQ: (1 / (c_max - c_min)) · integral of the hull over [c_min, c_max] (exact)."""
    V = np.asarray(vertices, dtype=np.float64)
    c_min, c_max = float(c_min), float(c_max)
    if not c_max > c_min:
        raise DataError(f"AIQ needs c_max > c_min; got [{c_min}, {c_max}]")
    knots = np.unique(np.concatenate([[c_min, c_max], V[:, 0][(V[:, 0] > c_min) & (V[:, 0] < c_max)]]))
    values = hull_value(V, knots)
    area = np.sum(np.diff(knots) * (values[1:] + values[:-1]) / 2.0)
    if V[0, 0] > c_min and V[0, 0] < c_max:  # the step from 0 up to the first vertex is not a slope
        start = V[0, 0]
        left = knots <= start
        area -= (start - knots[left][-2]) * values[left][-1] / 2.0 if left.sum() >= 2 else 0.0
    return float(area / (c_max - c_min))


def cost_to_reach(vertices, quality: float) -> float:
    """Smallest mean cost at which the hull reaches ``quality`` (NaN if it never does)."""
    V = np.asarray(vertices, dtype=np.float64)
    q = float(quality)
    if q > V[:, 1].max() + 1e-12:
        return float("nan")
    if q <= V[0, 1]:
        return float(V[0, 0])
    j = int(np.flatnonzero(V[:, 1] >= q - 1e-12)[0])
    (c0, q0), (c1, q1) = V[j - 1], V[j]
    return float(c0 + (c1 - c0) * (q - q0) / (q1 - q0))


def quality_at_cost(vertices, cost: float) -> float:
    """The hull's quality at mean cost ``cost``."""
    return float(hull_value(vertices, cost))


def realised_cost_to_reach(points, quality: float) -> float:
    """Smallest mean cost among the (cost, quality) points themselves with quality >= ``quality`` (NaN if none)."""
    P = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    ok = P[:, 1] >= float(quality) - 1e-12
    return float(P[ok, 0].min()) if ok.any() else float("nan")


# ---------------------------------------------------------------------- RouteLLM (two LLMs)
def pgr_curve(S, Y, strong: int = 1, weak: int = 0) -> np.ndarray:
    """float64 (n + 1, 2) rows (share of calls to the strong LLM, PGR) for k = 0..n calls.

    The k prompts with the largest predicted advantage S[:, strong] - S[:, weak] go to the strong LLM
    (ties: lower prompt index first), as a threshold on the strong win rate does in RouteLLM.
    PGR = (quality - quality(weak)) / (quality(strong) - quality(weak)); the strong LLM must do better.
    """
    S = np.asarray(S, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if S.shape != Y.shape or S.ndim != 2 or S.shape[1] < 2:
        raise DataError(f"scores and Y must be (n, m >= 2) arrays of one shape; got {S.shape}, {Y.shape}")
    n = len(Y)
    q_weak, q_strong = Y[:, weak].mean(), Y[:, strong].mean()
    if not q_strong > q_weak:
        raise DataError(f"PGR needs the strong LLM to beat the weak one; got {q_strong:.4g} vs {q_weak:.4g}")
    order = np.argsort(-(S[:, strong] - S[:, weak]), kind="stable")
    gain = np.concatenate([[0.0], np.cumsum((Y[:, strong] - Y[:, weak])[order])])
    quality = q_weak + gain / n
    return np.stack([np.arange(n + 1) / n, (quality - q_weak) / (q_strong - q_weak)], axis=1)


def apgr(curve) -> float:
    """RouteLLM's APGR: the area under PGR against the share of strong calls over [0, 1] (trapezoids
    between consecutive call counts, i.e. the exact area of the piecewise-linear curve)."""
    P = np.asarray(curve, dtype=np.float64)
    return float(np.sum(np.diff(P[:, 0]) * (P[1:, 1] + P[:-1, 1]) / 2.0))


def cpt(curve, pgr: float) -> float:
    """RouteLLM's CPT(x): the smallest share of calls to the strong LLM whose PGR reaches ``pgr`` (NaN if none)."""
    P = np.asarray(curve, dtype=np.float64)
    ok = P[:, 1] >= float(pgr) - 1e-12
    return float(P[ok, 0].min()) if ok.any() else float("nan")
