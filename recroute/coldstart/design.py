"""A probe design for onboarding a new LLM: stratified on where the existing LLMs disagree.

The gain of adding an LLM to a router is decided on the prompts where the router's choice would change,
and those are where the existing LLMs' results differ: where every LLM is right (or every one wrong) the
new LLM can neither win nor lose much, and a regression on the other LLMs' results predicts it well. A
uniform sample of probes spends most of its budget there. This design spends it where the incumbents
disagree, and stays a probability sample, so the gain on the probes is still an unbiased estimate:

- **Strata.** The anchor's prompts are ranked by the spread of the existing LLMs' results (the standard
  deviation over LLMs, ``F`` (n, m) with unobserved cells filled) and cut into ``strata`` strata of equal size
  (ties in the spread broken at random, under ``seed``); fewer where the anchor or the budget cannot give
  every stratum 2 probes (a stratum's variance needs them).
- **Allocation** (Neyman: n_h proportional to N_h * sigma_h). sigma_h, the unknown standard deviation of the
  gain in stratum h, is proxied by the stratum's mean spread; every stratum gets at least ``floor`` of its
  proportional share (so no probe stands for more than 1 / floor times its uniform weight), at least 2
  probes, and at most all of its prompts.
- **Order.** Within a stratum a random order; the strata interleaved so that any prefix of the order is
  allocated in the same proportions (the sequential looks see a stratified sample too).
- **Estimate** (:func:`stratified_mean`): sum_h W_h * mean_h, W_h = N_h / N; its variance as a two-phase
  sample of the prompt distribution (the anchor a random sample, the probes a stratified subsample of it):
  sum_h W_h^2 s_h^2 / n_h + sum_h W_h (mean_h - mean)^2 / N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recroute.errors import DataError


@dataclass(frozen=True)
class ProbeDesign:
    """order int64 (budget,) anchor positions in probe order; stratum int64 (n,) each anchor prompt's
    stratum; weight float64 (H,) W_h = N_h / N."""

    order: np.ndarray
    stratum: np.ndarray
    weight: np.ndarray

    def probe_strata(self, k: int) -> np.ndarray:
        """int64 (k,): the stratum of each of the first k probes."""
        return self.stratum[self.order[:k]]


def uniform_design(n: int, budget: int, seed: int) -> ProbeDesign:
    """A uniform random order of the n prompts (one stratum): the first ``budget`` of
    ``default_rng(seed).permutation(n)``."""
    order = np.random.default_rng(seed).permutation(int(n))[: int(budget)]
    return ProbeDesign(order.astype(np.int64), np.zeros(int(n), dtype=np.int64), np.ones(1))


def contested_design(F: np.ndarray, budget: int, seed: int, strata: int = 4, floor: float = 0.25) -> ProbeDesign:
    """The stratified design of the module docstring on the existing LLMs' results F (n, m), finite."""
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2 or not np.isfinite(F).all():
        raise DataError(f"contested_design needs finite results F (n_prompts, n_llms); got shape {F.shape}")
    if not 0 < floor <= 1:
        raise DataError(f"floor must be in (0, 1]; got {floor}")
    n, budget = len(F), min(int(budget), len(F))
    if budget < 1:
        raise DataError("the probe budget must be at least 1 and the anchor must hold prompts")
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    spread = F.std(axis=1)
    H = max(1, min(int(strata), n // 2, budget // 2))  # every stratum can hold, and get, 2 probes
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((tiebreak, spread))] = np.arange(n)
    stratum = (rank * H) // n  # H strata of equal size, by increasing spread
    size = np.bincount(stratum, minlength=H).astype(np.float64)
    sigma = np.array([spread[stratum == h].mean() for h in range(H)])
    alloc = _allocate(budget, size, sigma, floor)
    order = _interleave([rng.permutation(np.flatnonzero(stratum == h))[: alloc[h]] for h in range(H)], rng)
    return ProbeDesign(order, stratum, size / n)


def _allocate(budget: int, size: np.ndarray, sigma: np.ndarray, floor: float) -> np.ndarray:
    """int64 (H,): Neyman shares of ``budget`` (c * size * sigma, c set so they sum to the budget), each kept
    between ``floor`` times its proportional share (and 2 probes) and the stratum's size; rounded by largest
    remainders."""
    prop = budget * size / size.sum()
    lo, hi = np.minimum(np.maximum(floor * prop, 2.0), size), size.astype(np.float64)  # 2: a variance per stratum
    score = size * sigma
    if score.sum() <= 0:
        score = size.astype(np.float64)  # no spread anywhere: proportional
    a, b = 0.0, float(budget) / float(score[score > 0].min()) + 1.0  # at b every stratum with spread is at its size
    for _ in range(100):  # the sum of the clipped shares grows with c: bisection
        c = 0.5 * (a + b)
        a, b = (c, b) if np.clip(c * score, lo, hi).sum() < budget else (a, c)
    want = np.clip(b * score, lo, hi)
    want *= budget / want.sum() if want.sum() > budget else 1.0
    base = np.minimum(np.floor(want + 1e-9).astype(np.int64), size.astype(np.int64))
    rest = int(budget - base.sum())
    room = np.flatnonzero(base < size)
    extra = room[np.argsort(-(want - base)[room], kind="stable")][:rest]
    base[extra] += 1
    return base


def _interleave(parts: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The parts merged so that the j-th element of part h sits at (j + u_h) / n_h (u_h uniform): every
    prefix holds each part in about its overall proportion."""
    keys, rows = [], []
    for p in parts:
        if len(p):
            keys.append((np.arange(len(p)) + rng.random()) / len(p))
            rows.append(p)
    if not rows:
        return np.zeros(0, dtype=np.int64)
    keys, rows = np.concatenate(keys), np.concatenate(rows)
    return rows[np.argsort(keys, kind="stable")].astype(np.int64)


def stratified_mean(d: np.ndarray, strata: np.ndarray, weight: np.ndarray, n_anchor: int) -> tuple[float, float]:
    """(estimate, standard error) of the mean of d over the prompt distribution from probes d (k,) in
    ``strata`` (k,) of a design with weights W (H,) over an anchor of ``n_anchor`` prompts (module docstring).
    A stratum with weight but fewer than 2 probes gives an infinite standard error (no estimate there)."""
    d, strata, weight = np.asarray(d, dtype=np.float64), np.asarray(strata, dtype=np.int64), np.asarray(weight, dtype=np.float64)
    H = len(weight)
    counts = np.bincount(strata, minlength=H)
    live = weight > 0
    if np.any(counts[live] < 1):
        return float("nan"), float("inf")
    means = np.array([d[strata == h].mean() if counts[h] else 0.0 for h in range(H)])
    est = float(weight @ means)
    if np.any(counts[live] < 2):
        return est, float("inf")
    var_h = np.array([d[strata == h].var(ddof=1) if counts[h] > 1 else 0.0 for h in range(H)])
    var = float(np.sum(weight[live] ** 2 * var_h[live] / counts[live]) + np.sum(weight * (means - est) ** 2) / max(int(n_anchor), 1))
    return est, float(np.sqrt(var))
