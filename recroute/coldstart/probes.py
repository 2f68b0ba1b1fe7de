"""Which prompts to evaluate a new LLM on: probe selection strategies.

Every strategy returns a :class:`ProbeSet` of ``k`` prompt positions chosen among ``candidates`` (by
default all prompts) and a weight per probe (the share of the prompts it stands for; uniform unless
the strategy clusters), deterministically under ``seed``:

| strategy | chooses |
|---|---|
| ``random`` | k prompts uniformly at random |
| ``stratified`` | k prompts split over the tasks in proportion to their size (largest remainders), random within a task |
| ``anchor_embedding`` | the prompt nearest each centre of a k-means (k clusters) of the prompt embeddings; weight = cluster share |
| ``anchor_correctness`` | the same on the prompts' result vectors over the existing LLMs (tinyBenchmarks' anchor points) |
| ``informative`` | difficulty-stratified discrimination: the prompts cut into k bins of equal size by difficulty (mean result of the existing LLMs), and in each bin the prompt whose results separate strong from weak LLMs best (point-biserial correlation with the LLMs' overall mean) |
| ``adaptive`` | one prompt at a time, chosen from the new LLM's answers so far (``answer(prompt_idx) -> result``): the one that minimises the expected posterior variance of its mean result under the mixture of the existing LLMs (:mod:`.adaptive`) |
| ``adaptive_irt`` | the same under a 2PL IRT model of the existing LLMs (the ability grid as support) |

The informative strategy is the classical test-design rule of item response theory: discriminating
items spread over the whole difficulty range, so that a new LLM's position is pinned down whatever
its level. Result vectors treat an unobserved cell as the prompt's mean result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from recroute.errors import DataError

STRATEGIES = ("random", "stratified", "anchor_embedding", "anchor_correctness", "informative", "adaptive", "adaptive_irt")
ADAPTIVE = ("adaptive", "adaptive_irt")


@dataclass(frozen=True)
class ProbeSet:
    """rows: int64 (k,) prompt positions (sorted); weights: float64 (k,) summing to 1 (each probe's
    share); results: float64 (k,) the answers already seen (adaptive strategies), else None."""

    rows: np.ndarray
    weights: np.ndarray
    results: np.ndarray | None = None

    def weighted_mean(self, results: np.ndarray) -> float:
        """The probes' estimate of the mean result: sum of weight x result over observed probes."""
        results = np.asarray(results, dtype=np.float64)
        observed = ~np.isnan(results)
        if not observed.any():
            return float("nan")
        w = self.weights[observed]
        return float(np.sum(w * results[observed]) / np.sum(w))


def select_probes(
    strategy: str,
    k: int,
    *,
    Y: np.ndarray | None = None,
    X: np.ndarray | None = None,
    tasks=None,
    candidates: np.ndarray | None = None,
    seed: int = 0,
    answer: Callable[[int], float] | None = None,
) -> ProbeSet:
    """k probe prompts by ``strategy`` (see the module docstring).

    Y (n_prompts, n_llms): the existing LLMs' results, NaN = unobserved (anchor_correctness,
    informative, adaptive); answer: the new LLM's result on a prompt position (adaptive); X (n_prompts, d): prompt embeddings (anchor_embedding); tasks (n_prompts,): task
    labels (stratified); candidates: the prompt positions allowed (default: all).
    """
    if strategy not in STRATEGIES:
        raise DataError(f"unknown probe strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    n = _n_prompts(Y, X, tasks)
    pool = np.arange(n, dtype=np.int64) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    if pool.size and (pool[0] < 0 or pool[-1] >= n):
        raise DataError(f"candidate prompt positions must lie in 0..{n - 1}")
    k = int(k)
    if not 0 <= k <= pool.size:
        raise DataError(f"k={k} probes asked but only {pool.size} candidate prompts")
    if k == 0:
        return ProbeSet(np.zeros(0, dtype=np.int64), np.zeros(0))
    rng = np.random.default_rng(seed)
    if strategy == "random":
        return _uniform(np.sort(rng.choice(pool, size=k, replace=False)))
    if strategy == "stratified":
        if tasks is None:
            raise DataError("the stratified strategy needs task labels (a 'task' column)")
        return _uniform(_stratified(pool, np.asarray(pd.Series(tasks).astype(str))[pool], k, rng))
    if strategy == "anchor_embedding":
        if X is None:
            raise DataError("the anchor_embedding strategy needs prompt embeddings X")
        return _anchors(pool, np.asarray(X, dtype=np.float64)[pool], k, seed)
    if Y is None:
        raise DataError(f"the {strategy} strategy needs the existing LLMs' results Y (n_prompts, n_llms)")
    if strategy in ADAPTIVE:
        from recroute.coldstart.adaptive import probe_live, strategy_support

        if answer is None:
            raise DataError(f"the {strategy} strategy needs answer(prompt_idx) -> result for the new LLM")
        rows, results = probe_live(strategy_support(strategy, np.asarray(Y, dtype=np.float64)), answer, k, candidates=pool)
        order = np.argsort(rows)
        return ProbeSet(rows[order], np.full(k, 1.0 / k), results[order])
    R = _filled(np.asarray(Y, dtype=np.float64))
    if strategy == "anchor_correctness":
        return _anchors(pool, R[pool], k, seed)
    return _uniform(_informative(pool, R, k))


def _n_prompts(Y, X, tasks) -> int:
    sizes = {len(a) for a in (Y, X, tasks) if a is not None}
    if not sizes:
        raise DataError("give Y, X or tasks so the number of prompts is known")
    if len(sizes) > 1:
        raise DataError(f"Y, X and tasks disagree on the number of prompts: {sorted(sizes)}")
    return sizes.pop()


def _uniform(rows: np.ndarray) -> ProbeSet:
    rows = np.asarray(rows, dtype=np.int64)
    return ProbeSet(rows, np.full(len(rows), 1.0 / len(rows)))


def _filled(Y: np.ndarray) -> np.ndarray:
    """Unobserved cells at the prompt's mean result (0.5 for a prompt nobody was run on)."""
    observed = ~np.isnan(Y)
    count = observed.sum(axis=1, keepdims=True)
    means = np.where(count > 0, np.where(observed, Y, 0.0).sum(axis=1, keepdims=True) / np.maximum(count, 1), 0.5)
    return np.where(observed, Y, means)


def _stratified(pool: np.ndarray, labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Largest-remainder allocation of k over the tasks (ties by task name), random within each."""
    names, counts = np.unique(labels, return_counts=True)
    quota = k * counts / counts.sum()
    alloc = np.floor(quota).astype(int)
    order = np.lexsort((names, -(quota - alloc)))
    alloc[order[: k - alloc.sum()]] += 1
    picked = [rng.choice(pool[labels == name], size=a, replace=False) for name, a in zip(names, alloc) if a]
    return np.sort(np.concatenate(picked))


def _anchors(pool: np.ndarray, Z: np.ndarray, k: int, seed: int) -> ProbeSet:
    """k-means (k clusters) on Z (n_pool, f); per cluster the member nearest its centre, weight = share."""
    from sklearn.cluster import KMeans

    kmeans = KMeans(n_clusters=k, random_state=seed, n_init=1).fit(Z)
    labels = kmeans.labels_
    dist = ((Z - kmeans.cluster_centers_[labels]) ** 2).sum(axis=1)
    rows, weights = [], []
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size:  # k-means may leave a cluster empty on duplicate points
            rows.append(pool[members[np.argmin(dist[members])]])
            weights.append(members.size)
    rows, weights = np.asarray(rows, dtype=np.int64), np.asarray(weights, dtype=np.float64)
    if len(rows) < k:  # fill up to k with the prompts farthest from their centre, weight 0 shares
        rest = np.setdiff1d(pool[np.argsort(-dist, kind="stable")], rows, assume_unique=False)[: k - len(rows)]
        rows, weights = np.concatenate([rows, rest]), np.concatenate([weights, np.zeros(len(rest))])
    order = np.argsort(rows)
    return ProbeSet(rows[order], weights[order] / weights.sum())


def _informative(pool: np.ndarray, R: np.ndarray, k: int) -> np.ndarray:
    """Difficulty-stratified discrimination (see the module docstring)."""
    ability = R.mean(axis=0)  # each existing LLM's overall mean result
    sub = R[pool]
    difficulty = sub.mean(axis=1)
    a = ability - ability.mean()
    centred = sub - difficulty[:, None]
    denom = np.sqrt((centred**2).sum(axis=1) * (a**2).sum())
    discrimination = np.where(denom > 0, centred @ a / np.where(denom > 0, denom, 1.0), -1.0)
    by_difficulty = np.argsort(difficulty, kind="stable")
    chosen = [part[np.argmax(discrimination[part])] for part in np.array_split(by_difficulty, k)]
    return np.sort(pool[np.asarray(chosen, dtype=np.int64)])
