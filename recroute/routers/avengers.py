"""Avengers-Pro: k-means over prompt embeddings, each cluster's per-LLM performance, top-p clusters.

After Zhang et al., "Beyond GPT-5: Making LLMs Cheaper and Better via Performance-Efficiency
Optimized Routing" (arXiv 2508.12631). Training prompts are clustered by k-means on their embeddings
(k = 60, the paper's default); each cluster c keeps every LLM's mean score over its prompts, p[c, j],
min-max normalised over the LLMs, p̃[c, j] = (p[c, j] - min_j p[c, j]) / (max_j - min_j). A prompt's
score for LLM j is the mean of p̃[c, j] over its ``top_p`` nearest clusters (4, the paper's default;
the paper sums, which ranks the same), and it goes to the argmax.

The paper's performance–efficiency score alpha·p̃ + (1 - alpha)·(1 - q̃), q̃ the min-max normalised
cost, is not a copy here: route with the shared cost step,
:func:`recroute.cost.decide.alpha_utility` (``alpha_utility(router.score(X), costs, alpha)``), which
applies the same trade-off to any router's scores with the per-prompt expected costs of the pool.

Missing cells (NaN) are left out of the cluster means; an LLM with no observed prompt in a cluster
takes its overall mean there. Scores are normalised performances, not probabilities
(``score_scale = "raw"``); the selection distribution for E_p is their softmax. k-means runs on
``n_threads`` threads (threadpoolctl) and is O(n_prompts · k · d) per iteration; the cluster means
are one sparse (k, n_prompts) × (n_prompts, n_llms) product, so RouterEval's 24,000 × 8,500 pool fits
in seconds. A training set smaller than k gets as many clusters as prompts.
"""

from __future__ import annotations

import numpy as np

from recroute.routers.base import Router, nan_mean_rows
from recroute.routers.cluster import ClusterRouter


class AvengersRouter(ClusterRouter):
    """Avengers-Pro's cluster router; see the module docstring. score(X) float32 (n, n_llms) in [0, 1]."""

    name = "avengers"
    score_scale = "raw"
    entropy_floor = Router.entropy_floor

    def __init__(
        self,
        n_clusters: int = 60,
        top_p: int = 4,
        normalise: bool = True,
        random_state: int | None = 0,
        n_init: int | str = "auto",
        n_threads: int | None = 1,
    ) -> None:
        self.n_clusters = n_clusters
        self.top_p = top_p
        self.normalise = normalise
        self.random_state = random_state
        self.n_init = n_init
        self.n_threads = n_threads

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        import warnings

        import scipy.sparse as sp
        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        if int(self.n_clusters) < 1 or int(self.top_p) < 1:
            raise ValueError(f"avengers: n_clusters and top_p must be at least 1; got {self.n_clusters!r}, {self.top_p!r}")
        k = min(int(self.n_clusters), len(X))
        with threadpool_limits(None if self.n_threads is None else int(self.n_threads)), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate rows: fewer distinct clusters
            kmeans = KMeans(n_clusters=k, random_state=self.random_state, n_init=self.n_init).fit(X)
        self.centers_ = np.asarray(kmeans.cluster_centers_, dtype=np.float32)
        members = sp.csr_matrix((np.ones(len(X)), (kmeans.labels_, np.arange(len(X)))), shape=(k, len(X)))
        observed = ~np.isnan(Y)
        sums = np.asarray(members.astype(np.float32) @ np.where(observed, Y, np.float32(0.0)), dtype=np.float64)
        counts = np.asarray(members.astype(np.float32) @ observed.astype(np.float32), dtype=np.float64)
        overall = nan_mean_rows(Y)[None, :]
        self.cluster_scores_ = np.where(counts > 0, sums / np.maximum(counts, 1.0), overall).astype(np.float32)
        self.cluster_llm_ = np.argmax(self.cluster_scores_, axis=1).astype(np.int64)

    def cluster_profiles(self) -> np.ndarray:
        """float64 (k, n_llms): p̃, each cluster's performances min-max normalised (0 where all are equal)."""
        P = self.cluster_scores_.astype(np.float64)
        if not self.normalise:
            return P
        low, high = P.min(axis=1, keepdims=True), P.max(axis=1, keepdims=True)
        span = high - low
        return np.where(span > 0, (P - low) / np.where(span > 0, span, 1.0), 0.0)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        p = min(int(self.top_p), len(self.centers_))
        nearest = np.argsort(self.distances(X), axis=1, kind="stable")[:, :p]  # (n, p), ties to the lower cluster
        return self.cluster_profiles()[nearest].mean(axis=1)

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n, n_llms): softmax of the scores."""
        return Router.selection_probs(self, X, n)
