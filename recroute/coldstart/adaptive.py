"""Adaptive probing (computerized adaptive testing) for new LLMs, and the posterior estimates it uses.

A new LLM is a point of a **support**: either one of the existing LLMs (``llm_support``: its results,
clipped away from 0 and 1, are the likelihood of the new LLM's answers; an empirical-Bayes mixture
over the existing LLMs) or an ability on the grid of a 2PL IRT fit (``irt_support``). Its posterior
over the support points after some probes gives the predicted result of every prompt and of the whole
set (the mean over prompts of the probe result where probed, the posterior expectation elsewhere).

Adaptive probing picks, for every new LLM at once, the next prompt among the candidates that
minimises the **expected posterior variance of the set's mean result** after seeing its answer
(a one-step look-ahead over the two outcomes, right with the posterior predictive probability). The
answers come from a callable, so the LLM can be probed live: ``answer(rows)`` gets an int array
(n_new,) with one prompt position per new LLM and returns their results (n_new,) in [0, 1].
Continuous results update the posterior as fractional Bernoulli outcomes.

Shapes: S support points, n prompts; every step is a few (n_new, S) x (S, n) matrix products.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recroute.coldstart.irt import IRTFit, fill_probed, normalise_log
from recroute.errors import DataError

Answer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Support:
    """P float64 (n_prompts, S): P(right) per prompt at each support point, inside (0, 1) (the
    likelihood); values float64 (n_prompts, S): the result predicted for an unprobed prompt there;
    prior float64 (S,) summing to 1."""

    P: np.ndarray
    values: np.ndarray
    prior: np.ndarray

    @property
    def n_prompts(self) -> int:
        return self.P.shape[0]


def llm_support(Y: np.ndarray, eps: float = 0.2, irt: IRTFit | None = None, irt_share: float = 0.0) -> Support:
    """The existing LLMs as support points, uniform prior: Y float (n_prompts, n_llms) in [0, 1], NaN
    = unobserved (filled with the prompt's mean). Likelihood: results clipped to [eps, 1 - eps], mixed
    with the 2PL curve at the LLM's fitted ability by ``irt_share`` when ``irt`` is given; values: the
    (filled) results themselves."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] < 1:
        raise DataError(f"llm_support needs Y of shape (n_prompts, n_llms); got {Y.shape}")
    if not 0 < eps < 0.5:
        raise DataError(f"eps must be in (0, 0.5); got {eps}")
    if not 0 <= irt_share <= 1 or (irt_share > 0 and irt is None):
        raise DataError("irt_share must be in [0, 1], and an IRT fit is needed when it is above 0")
    observed = ~np.isnan(Y)
    count = observed.sum(axis=1, keepdims=True)
    means = np.where(count > 0, np.where(observed, Y, 0).sum(axis=1, keepdims=True) / np.maximum(count, 1), 0.5)
    filled = np.where(observed, Y, means)
    P = np.clip(filled, eps, 1 - eps)
    if irt_share > 0:
        if len(irt.theta) != Y.shape[1] or len(irt.a) != Y.shape[0]:
            raise DataError("the IRT fit must be of the same prompts and LLMs as Y")
        P = (1 - irt_share) * P + irt_share * irt.curves(irt.theta)
    return Support(P, filled, np.full(Y.shape[1], 1.0 / Y.shape[1]))


def irt_support(fit: IRTFit) -> Support:
    """The 2PL ability grid as support points: likelihood and values are the item curves."""
    P = np.clip(fit.curves(), 1e-6, 1 - 1e-6)
    return Support(P, P, fit.prior)


def posterior(support: Support, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
    """float64 (n_new, S) posterior of each new LLM from rows int (n_new, k) and results (n_new, k), NaN skipped."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
    results = np.atleast_2d(np.asarray(results, dtype=np.float64))
    if rows.shape != results.shape:
        raise DataError(f"probe rows {rows.shape} and results {results.shape} must have the same shape (n_new, k)")
    logw = np.tile(np.log(support.prior), (len(rows), 1))
    logP, log1P = np.log(support.P), np.log(1 - support.P)
    for t in range(rows.shape[1]):
        logw += _loglik(logP, log1P, rows[:, t], results[:, t])
    return normalise_log(logw)


def predict(support: Support, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
    """float64 (n_prompts, n_new): predicted result per prompt (the new LLM's own result where probed)."""
    rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
    results = np.atleast_2d(np.asarray(results, dtype=np.float64))
    w = posterior(support, rows, results)
    return fill_probed(support.values @ w.T, rows, results)


def expected_variance(support: Support, w: np.ndarray, probed: np.ndarray, blocks: tuple | None = None) -> np.ndarray:
    """float64 (n_new, n_prompts): for each new LLM and prompt i, the expected posterior variance of the
    mean result over the prompts still unprobed after probing i, given posterior w (n_new, S) and the
    boolean mask probed (n_new, n_prompts). One-step look-ahead over right (prob. E_w[P_i]) / wrong.
    blocks: :func:`variance_blocks` of the support, precomputed (float32, reused across steps)."""
    n = support.n_prompts
    blocks = variance_blocks(support) if blocks is None else blocks
    A = (~probed).astype(np.float64) @ support.values / n  # (n_new, S): mean over unprobed prompts / n
    A -= (w * A).sum(axis=1, keepdims=True)  # centred: the variance is shift-free, the sums stay small
    wA, wA2 = w * A, w * A * A
    # with B = A - V_i / n: right-outcome sums  sum_s w P_i B^j, all-outcome sums  sum_s w B^j (j = 0, 1, 2)
    every, first3, first1 = blocks
    W = w.astype(np.float32) @ every  # (n_new, 5 n)
    w_P, w_PV, w_V, w_PVV, w_VV = (W[:, j * n:(j + 1) * n].astype(np.float64) for j in range(5))
    WA = wA.astype(np.float32) @ first3
    wA_P, wA_PV, wA_V = (WA[:, j * n:(j + 1) * n].astype(np.float64) for j in range(3))
    wA2_P = (wA2.astype(np.float32) @ first1).astype(np.float64)
    u = (~probed) / n  # a prompt already probed leaves the target as it is
    Z1 = w_P
    r1 = wA_P - u * w_PV
    r2 = wA2_P - 2 * u * wA_PV + u**2 * w_PVV
    a1 = wA.sum(axis=1, keepdims=True) - u * w_V
    a2 = wA2.sum(axis=1, keepdims=True) - 2 * u * wA_V + u**2 * w_VV
    Z0, s1, s2 = 1 - Z1, a1 - r1, a2 - r2
    tiny = 1e-12
    var1 = r2 / np.maximum(Z1, tiny) - (r1 / np.maximum(Z1, tiny)) ** 2
    var0 = s2 / np.maximum(Z0, tiny) - (s1 / np.maximum(Z0, tiny)) ** 2
    return np.maximum(Z1 * var1 + Z0 * var0, 0.0)


def variance_blocks(support: Support) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The products expected_variance needs, float32, transposed: [P, P V, V, P V^2, V^2] (S, 5 n),
    its first three (S, 3 n) and P (S, n)."""
    Pt, Vt = support.P.T, support.values.T
    every = np.concatenate([Pt, Pt * Vt, Vt, Pt * Vt * Vt, Vt * Vt], axis=1).astype(np.float32)
    return every, np.ascontiguousarray(every[:, : 3 * Pt.shape[1]]), np.ascontiguousarray(every[:, : Pt.shape[1]])


def adaptive_probes(
    support: Support,
    answer: Answer,
    k: int,
    *,
    n_new: int = 1,
    candidates: np.ndarray | None = None,
    batch: int = 1,
    on_step: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Probe n_new LLMs adaptively, k prompts each, ``batch`` chosen per round by the smallest
    expected posterior variance (module docstring). Returns (rows int64 (n_new, k), results float64
    (n_new, k)) in the order probed; any prefix of the columns is the run with fewer probes when
    batch = 1 (and at multiples of batch otherwise)."""
    n = support.n_prompts
    pool = np.arange(n) if candidates is None else np.unique(np.asarray(candidates, dtype=np.int64))
    if pool.size and (pool[0] < 0 or pool[-1] >= n):
        raise DataError(f"candidate prompt positions must lie in 0..{n - 1}")
    k, batch = int(k), int(batch)
    if not 0 <= k <= pool.size:
        raise DataError(f"k={k} probes asked but only {pool.size} candidate prompts")
    if batch < 1:
        raise DataError(f"batch must be at least 1; got {batch}")
    allowed = np.zeros((n_new, n), dtype=bool)
    allowed[:, pool] = True
    probed = np.zeros((n_new, n), dtype=bool)
    rows, results = np.zeros((n_new, k), dtype=np.int64), np.zeros((n_new, k))
    logw = np.tile(np.log(support.prior), (n_new, 1))
    logP, log1P = np.log(support.P), np.log(1 - support.P)
    everyone = np.arange(n_new)
    blocks = variance_blocks(support)
    t = 0
    while t < k:
        score = expected_variance(support, normalise_log(logw), probed, blocks)
        score[~allowed] = np.inf
        picks = np.argsort(score, axis=1, kind="stable")[:, : min(batch, k - t)]
        for pick in picks.T:
            y = np.asarray(answer(pick.copy()), dtype=np.float64).reshape(-1)
            if y.shape != (n_new,) or np.any((y < 0) | (y > 1)):
                raise DataError(f"answer() must return {n_new} results in [0, 1] (NaN: not run); got {y!r}")
            rows[:, t], results[:, t] = pick, y
            allowed[everyone, pick], probed[everyone, pick] = False, True
            logw += _loglik(logP, log1P, pick, y)
            t += 1
            if on_step is not None:
                on_step(t)
    return rows, results


def probe_live(support: Support, answer: Callable[[int], float], k: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """One LLM probed live: ``answer(prompt_idx) -> result``; returns (rows (k,), results (k,))."""
    rows, results = adaptive_probes(support, lambda r: np.array([answer(int(r[0]))]), k, n_new=1, **kwargs)
    return rows[0], results[0]


def _loglik(logP: np.ndarray, log1P: np.ndarray, rows: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n_new, S) log-likelihood of results y (n_new,) at prompts rows (n_new,); NaN adds nothing."""
    y = y[:, None]
    step = y * logP[rows] + (1 - y) * log1P[rows]
    return np.where(np.isnan(y), 0.0, np.nan_to_num(step))


def strategy_support(strategy: str, Y: np.ndarray, irt: IRTFit | None = None) -> Support:
    """The support an adaptive strategy selects under, from the existing LLMs' results Y (n_prompts,
    n_llms): ``adaptive`` the LLM mixture (eps 0.2, 2PL share 0.3, as the ``llm_mixture`` estimator),
    ``adaptive_irt`` the 2PL ability grid. ``irt``: a 2PL fit of Y to reuse."""
    from recroute.coldstart.irt import fit_irt

    if strategy not in ("adaptive", "adaptive_irt"):
        raise DataError(f"{strategy!r} is not an adaptive strategy (adaptive, adaptive_irt)")
    irt = fit_irt(Y) if irt is None else irt
    return llm_support(Y, 0.2, irt, 0.3) if strategy == "adaptive" else irt_support(irt)
