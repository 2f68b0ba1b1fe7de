"""Item response theory for new LLMs: a 2PL model of the existing LLMs' results, a new LLM's ability
from its probe results (EAP on a grid), its whole-set mean result from the item curves, and
tinyBenchmarks' gp-IRT-style combination of that prediction with the probe mean.

2PL: P(LLM l is right on prompt i) = sigmoid(a_i * theta_l + b_i), a_i the discrimination, b_i the
easiness (difficulty = -b_i / a_i). :func:`fit_irt` fits it by MAP (priors theta ~ N(0, 1),
a ~ N(1, prior_a_sd^2), b ~ N(0, prior_b_sd^2)) with alternating vectorised Newton steps (one 1-D
step per LLM, one 2x2 step per prompt, each change clipped to 0.5); unobserved cells (NaN) are skipped, continuous results in
[0, 1] enter the Bernoulli likelihood as fractional outcomes.

A new LLM's ability posterior lives on a fixed grid of theta values (:attr:`IRTFit.grid`) with the
prior either the standard normal or the kernel-smoothed distribution of the existing LLMs' fitted
abilities ("empirical", the default); EAP = posterior mean, MAP = its mode on the grid. Its predicted mean result is the mean,
over all prompts, of its probe result where probed and the posterior expectation of the item curve
elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recroute.errors import DataError

GRID = np.linspace(-4.0, 4.0, 81)
_MAX_STEP = 0.5  # largest change of a parameter per Newton step


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -35.0, 35.0)))


@dataclass(frozen=True)
class IRTFit:
    """a, b: float64 (n_prompts,) item parameters; theta: float64 (n_llms,) the existing LLMs' abilities;
    grid: float64 (G,) theta values of the new LLMs' posteriors; prior: float64 (G,) summing to 1."""

    a: np.ndarray
    b: np.ndarray
    theta: np.ndarray
    grid: np.ndarray
    prior: np.ndarray

    def curves(self, theta: np.ndarray | None = None) -> np.ndarray:
        """float64 (n_prompts, len(theta)): P(right) of every prompt at each theta (default: the grid)."""
        t = self.grid if theta is None else np.asarray(theta, dtype=np.float64)
        return sigmoid(self.a[:, None] * t[None, :] + self.b[:, None])


def fit_irt(
    Y: np.ndarray,
    *,
    n_iter: int = 40,
    prior_a_sd: float = 1.0,
    prior_b_sd: float = 3.0,
    prior: str = "empirical",
    grid: np.ndarray = GRID,
) -> IRTFit:
    """2PL MAP fit on Y float (n_prompts, n_llms) in [0, 1], NaN = unobserved (module docstring)."""
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] < 1 or Y.shape[1] < 2:
        raise DataError(f"fit_irt needs Y of shape (n_prompts, n_llms >= 2); got {Y.shape}")
    observed = ~np.isnan(Y)
    if np.any((Y[observed] < 0) | (Y[observed] > 1)):
        raise DataError("fit_irt needs results in [0, 1] (NaN for unobserved cells)")
    if prior not in ("empirical", "normal"):
        raise DataError(f"prior must be 'empirical' or 'normal'; got {prior!r}")
    if prior_a_sd <= 0 or prior_b_sd <= 0:
        raise DataError("prior_a_sd and prior_b_sd must be positive")
    M = observed.astype(np.float64)
    Yz = np.where(observed, Y, 0.0)
    count = M.sum(axis=1)
    p = np.clip((Yz.sum(axis=1) + 0.5) / (count + 1.0), 0.02, 0.98)
    b = np.log(p / (1 - p))
    a = np.ones(Y.shape[0])
    llm_mean = (Yz.sum(axis=0) + 0.5) / (M.sum(axis=0) + 1.0)
    theta = (llm_mean - llm_mean.mean()) / max(float(llm_mean.std()), 1e-6)
    va, vb = prior_a_sd**2, prior_b_sd**2
    for _ in range(int(n_iter)):
        P = sigmoid(a[:, None] * theta[None, :] + b[:, None])
        R, W = M * (Yz - P), M * P * (1 - P)
        step = ((a[:, None] * R).sum(axis=0) - theta) / ((a[:, None] ** 2 * W).sum(axis=0) + 1.0)
        theta = theta + np.clip(step, -_MAX_STEP, _MAX_STEP)  # damped: full Newton steps can overshoot
        P = sigmoid(a[:, None] * theta[None, :] + b[:, None])
        R, W = M * (Yz - P), M * P * (1 - P)
        ga, gb = R @ theta - (a - 1.0) / va, R.sum(axis=1) - b / vb
        haa, hbb, hab = W @ theta**2 + 1.0 / va, W.sum(axis=1) + 1.0 / vb, W @ theta
        det = haa * hbb - hab**2
        a = a + np.clip((hbb * ga - hab * gb) / det, -_MAX_STEP, _MAX_STEP)
        b = b + np.clip((haa * gb - hab * ga) / det, -_MAX_STEP, _MAX_STEP)
    grid = np.asarray(grid, dtype=np.float64)
    if prior == "normal":
        weights = np.exp(-0.5 * grid**2)
    else:  # Gaussian kernel density of the fitted abilities, bandwidth by Silverman's rule
        bandwidth = max(1.06 * float(theta.std()) * len(theta) ** -0.2, 0.5 * float(grid[1] - grid[0]))
        weights = np.exp(-0.5 * ((grid[:, None] - theta[None, :]) / bandwidth) ** 2).sum(axis=1)
    return IRTFit(a, b, theta, grid, weights / weights.sum())


def ability_posterior(fit: IRTFit, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
    """float64 (n_new, G): each new LLM's posterior over ``fit.grid`` from its probes.

    rows int (n_new, k) prompt positions, results float (n_new, k) in [0, 1], NaN = not run (skipped).
    """
    rows, results = _probe_arrays(rows, results)
    logw = np.tile(np.log(fit.prior), (len(rows), 1))
    if rows.shape[1]:
        P = fit.curves()  # (n_prompts, G)
        logP, log1P = np.log(np.clip(P, 1e-12, 1.0)), np.log(np.clip(1.0 - P, 1e-12, 1.0))
        for t in range(rows.shape[1]):  # k steps, each vectorised over the new LLMs
            y = results[:, t : t + 1]
            step = y * logP[rows[:, t]] + (1 - y) * log1P[rows[:, t]]
            logw += np.where(np.isnan(y), 0.0, step)
    return normalise_log(logw)


def eap_ability(fit: IRTFit, rows: np.ndarray, results: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(EAP theta, posterior sd), each float64 (n_new,), from the probes (see :func:`ability_posterior`)."""
    w = ability_posterior(fit, rows, results)
    mean = w @ fit.grid
    return mean, np.sqrt(np.maximum(w @ fit.grid**2 - mean**2, 0.0))


def map_ability(fit: IRTFit, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
    """float64 (n_new,): the MAP ability on ``fit.grid`` (the posterior's mode; first on ties)."""
    return fit.grid[np.argmax(ability_posterior(fit, rows, results), axis=1)]


def predict_results(fit: IRTFit, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
    """float64 (n_prompts, n_new): each new LLM's expected result per prompt (posterior mean of the item
    curve; its own result where probed)."""
    rows, results = _probe_arrays(rows, results)
    w = ability_posterior(fit, rows, results)
    pred = fit.curves() @ w.T
    return fill_probed(pred, rows, results)


def fill_probed(pred: np.ndarray, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
    """pred (n_prompts, n_new) with each new LLM's observed probe results written in place (a copy)."""
    pred = np.array(pred, dtype=np.float64)
    cols = np.broadcast_to(np.arange(rows.shape[0])[:, None], rows.shape)
    seen = ~np.isnan(results)
    pred[rows[seen], cols[seen]] = results[seen]
    return pred


def gp_irt_weight(irt_sq_bias: float, result_var: float, k: np.ndarray) -> np.ndarray:
    """Weight of the IRT prediction against the probe mean of k probes (tinyBenchmarks' gp-IRT form):
    lambda = (v / k) / (v / k + b^2), v the variance of one probe result, b^2 the IRT prediction's
    squared error; k = 0 gives 1 (no probe mean)."""
    k = np.asarray(k, dtype=np.float64)
    if irt_sq_bias <= 0:
        return np.ones_like(k)
    noise = result_var / np.maximum(k, 1.0)
    return np.where(k > 0, noise / (noise + irt_sq_bias), 1.0)


def normalise_log(logw: np.ndarray) -> np.ndarray:
    """Row-wise softmax of log weights (n, S)."""
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def _probe_arrays(rows, results) -> tuple[np.ndarray, np.ndarray]:
    rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
    results = np.atleast_2d(np.asarray(results, dtype=np.float64))
    if rows.shape != results.shape:
        raise DataError(f"probe rows {rows.shape} and results {results.shape} must have the same shape (n_new, k)")
    seen = ~np.isnan(results)
    if np.any((results[seen] < 0) | (results[seen] > 1)):
        raise DataError("probe results must lie in [0, 1] (NaN for a probe not run)")
    return rows, results
