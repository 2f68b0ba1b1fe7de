"""``LogisticRouter``: one L2-regularised logistic regression per LLM (scikit-learn, lbfgs), solved to
convergence, so its scores are P(correct) estimates that compare across LLMs (what utility routing
with a cost weight needs).

Per LLM j, on its observed training cells only: minimise sum_i [w1_ij · log σ(x_i·β_j + b_j)
+ w0_ij · log(1 − σ(...))] + ||β_j||² / (2 C), with soft targets handled exactly by sample weights
(a score y in [0, 1] is a positive of weight y and a negative of weight 1 − y). An LLM whose observed
targets are all one class gets a constant score at its (clipped) rate. ``score`` = σ(X β_j + b_j).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.routers.base import Router


class LogisticRouter(Router):
    """Per-LLM L2 logistic regression (``C``: inverse regularisation strength, sklearn's convention)."""

    name = "logistic"
    max_fit_cells = 1.5e7  # benchmarks/fit_scale.py: 2.04M cells (2,400 × 850) in 40 CPU-s (one lbfgs fit per LLM)

    def __init__(self, C: float = 1.0, max_iter: int = 500) -> None:
        self.C = C
        self.max_iter = max_iter

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        import sklearn.linear_model  # noqa: F401  (load its BLAS before limiting the thread pools)
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # many small BLAS calls: threads only oversubscribe the cores
            self._fit_each(Y, X)

    def _fit_each(self, Y: np.ndarray, X: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression

        if not float(self.C) > 0:
            raise ValueError(f"logistic: C must be > 0; got {self.C!r}")
        n, m = Y.shape
        d = X.shape[1]
        coef, intercept = np.zeros((m, d), dtype=np.float64), np.zeros(m, dtype=np.float64)
        for j in range(m):  # one convex fit per LLM (vectorised inside sklearn)
            rows = np.flatnonzero(~np.isnan(Y[:, j]))
            y = np.clip(Y[rows, j].astype(np.float64), 0.0, 1.0)
            rate = float(y.mean()) if rows.size else 0.5
            if rows.size == 0 or y.min() == y.max() or not (0 < rate < 1):
                intercept[j] = np.log(np.clip(rate, 1e-4, 1 - 1e-4) / (1 - np.clip(rate, 1e-4, 1 - 1e-4)))
                continue
            soft = (y > 0) & (y < 1)
            Xj = np.concatenate([X[rows], X[rows[soft]]])
            target = np.concatenate([y > 0, np.zeros(int(soft.sum()), dtype=bool)])
            weight = np.concatenate([np.where(soft, y, 1.0), 1.0 - y[soft]])
            fit = LogisticRegression(C=float(self.C), max_iter=int(self.max_iter))
            fit.fit(Xj, target.astype(np.int64), sample_weight=weight)
            coef[j], intercept[j] = fit.coef_[0], fit.intercept_[0]
        self.coef_, self.intercept_ = coef, intercept

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        z = np.asarray(X, dtype=np.float64) @ self.coef_.T + self.intercept_[None, :]
        return 0.5 * (1.0 + np.tanh(0.5 * z))

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"coef": self.coef_, "intercept": self.intercept_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        self.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
