"""Router-free estimators of a new LLM's results from its probes, fitted on the existing LLMs' results.

| estimator | predicts a new LLM's results from its probes by |
|---|---|
| ``llm_mixture`` | the posterior mixture of the existing LLMs (empirical Bayes: each weighted by the likelihood of the probe results under its own results clipped to [eps, 1 - eps], mixed with its 2PL curves by ``irt_share``); an unprobed prompt gets the mixture's mean result |
| ``irt`` | a 2PL IRT fit (:mod:`.irt`); the new LLM's ability posterior (EAP) on a grid; an unprobed prompt gets the posterior mean of its item curve |
| ``ridge`` | a ridge regression of the probe results on the existing LLMs' results at the probed prompts (:class:`ResultRegression`), applied to every prompt's results: the new LLM's per-prompt structure (where it is right that the others are not), not only its level; the penalty by generalised cross-validation |
| ``gp_irt`` | ``irt``'s estimate of the set's mean result combined with the strategy's (weighted) probe mean, tinyBenchmarks' gp-IRT style: weight lambda = (v/k) / (v/k + b^2) on the IRT estimate, v the mean over existing LLMs of the variance of their results over prompts, b^2 the mean squared error of the 2PL fit's mean result on the existing LLMs |

All take specs like routers (``"llm_mixture:eps=0.1"``). Shapes: Y (n_prompts, n_llms), NaN unobserved;
probes as rows int (n_new, k) and results float (n_new, k).
"""

from __future__ import annotations

import numpy as np

from recroute.coldstart import adaptive
from recroute.coldstart.irt import IRTFit, fill_probed, fit_irt, gp_irt_weight, predict_results
from recroute.errors import DataError
from recroute.routers.registry import parse_router_spec

ESTIMATORS = ("llm_mixture", "irt", "gp_irt", "ridge")
_PARAMS = {"llm_mixture": {"eps": 0.2, "irt_share": 0.3}, "irt": {"prior": "empirical"}, "gp_irt": {"prior": "empirical"},
           "ridge": {}}
RIDGE_ALPHAS = np.logspace(-2, 3, 12)  # the penalties generalised cross-validation chooses among


def parse_estimator(spec: str) -> tuple[str, dict]:
    """``"llm_mixture:eps=0.1"`` -> ("llm_mixture", {"eps": 0.1, "irt_share": 0.3}); unknown names or
    parameters raise a DataError naming what is allowed."""
    name, params = parse_router_spec(spec)
    if name not in ESTIMATORS:
        raise DataError(f"unknown estimator {name!r}; available: {', '.join(ESTIMATORS)}")
    unknown = set(params) - set(_PARAMS[name])
    if unknown:
        raise DataError(f"estimator {name!r}: unknown parameters {sorted(unknown)}; allowed: {sorted(_PARAMS[name])}")
    return name, {**_PARAMS[name], **params}


class ProbeEstimator:
    """An estimator spec fitted on the existing LLMs' results Y (n_prompts, n_llms)."""

    def __init__(self, spec: str, Y: np.ndarray, irt: IRTFit | None = None) -> None:
        """irt: a 2PL fit of Y with the empirical prior to reuse (fitted here when None or another prior)."""
        self.spec = spec
        self.name, self.params = parse_estimator(spec)
        Y = np.asarray(Y, dtype=np.float64)
        needs_irt = self.name in ("irt", "gp_irt") or float(self.params.get("irt_share", 0)) > 0
        prior = self.params.get("prior", "empirical")
        if needs_irt and (irt is None or prior != "empirical"):
            irt = fit_irt(Y, prior=prior)
        self.irt = irt if needs_irt else None
        if self.name == "ridge":
            self.filled = adaptive.llm_support(Y).values
        if self.name == "llm_mixture":
            self.support = adaptive.llm_support(Y, float(self.params["eps"]), self.irt, float(self.params["irt_share"]))
        if self.name == "gp_irt":
            fitted = self.irt.curves(self.irt.theta)  # (n_prompts, n_llms): the fit's results of the existing LLMs
            observed = ~np.isnan(Y)
            count = observed.sum(axis=0)
            mean_true = np.where(observed, Y, 0).sum(axis=0) / np.maximum(count, 1)
            mean_fit = np.where(observed, fitted, 0).sum(axis=0) / np.maximum(count, 1)
            self.sq_bias = float(np.mean((mean_fit - mean_true) ** 2))
            self.result_var = float(np.mean(np.where(observed, (Y - mean_true) ** 2, 0).sum(axis=0) / np.maximum(count, 1)))

    def predict(self, rows: np.ndarray, results: np.ndarray) -> np.ndarray:
        """float64 (n_prompts, n_new): predicted result per prompt, the probe result where probed."""
        if self.name == "llm_mixture":
            return adaptive.predict(self.support, rows, results)
        if self.name == "ridge":
            rows, results = np.atleast_2d(rows), np.atleast_2d(np.asarray(results, dtype=np.float64))
            out = np.empty((len(self.filled), len(rows)))
            for j, (r, y) in enumerate(zip(rows, results)):
                seen = ~np.isnan(y)
                out[:, j] = ResultRegression(self.filled[r[seen]], y[seen]).predict(self.filled)
            return fill_probed(out, rows, results)
        return predict_results(self.irt, rows, results)

    def combine(self, estimate: np.ndarray, probe_mean: np.ndarray, k: int) -> np.ndarray:
        """The set-mean estimate (n_new,): gp_irt's weighted combination with the probe mean; others as is."""
        if self.name != "gp_irt" or k == 0:
            return estimate
        lam = float(gp_irt_weight(self.sq_bias, self.result_var, np.array([k]))[0])
        return lam * estimate + (1 - lam) * np.where(np.isnan(probe_mean), estimate, probe_mean)


class ResultRegression:
    """A new LLM's result on a prompt predicted from the existing LLMs' results there: ridge regression
    (intercept unpenalised, penalty by generalised cross-validation over ``RIDGE_ALPHAS``) of its probe
    results y (k,) on the existing LLMs' results F (k, n_llms) at the probed prompts. Linear on purpose:
    applied to predicted results (a router's scores, expected values) it predicts the expected result.
    Fewer than 3 probes, or probes all alike, predict their mean everywhere."""

    def __init__(self, F: np.ndarray, y: np.ndarray) -> None:
        F, y = np.asarray(F, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if F.ndim != 2 or len(F) != len(y) or np.isnan(F).any() or np.isnan(y).any():
            raise DataError(f"ResultRegression needs finite F (k, n_llms) and y (k,); got {F.shape} and {y.shape}")
        self.mean_ = float(y.mean()) if len(y) else 0.5
        self.fit_ = None
        if len(y) >= 3 and np.ptp(y) > 0:
            from sklearn.linear_model import RidgeCV

            self.fit_ = RidgeCV(alphas=RIDGE_ALPHAS).fit(F, y)

    def predict(self, F: np.ndarray) -> np.ndarray:
        """float64 (n,) predicted results in [0, 1] for results F (n, n_llms) in the training LLMs' order."""
        F = np.asarray(F, dtype=np.float64)
        if self.fit_ is None:
            return np.full(len(F), self.mean_)
        return np.clip(self.fit_.predict(F), 0.0, 1.0)
