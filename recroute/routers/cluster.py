"""C-cluster (RouterEval's C-RoBERTa-cluster): k-means on prompt embeddings, one LLM per cluster;
and the soft-cluster router (``soft_cluster``: soft memberships averaged over several partitions).

Each cluster's LLM is the argmax of the mean training score over its member prompts; a prompt goes
to the LLM of its nearest centre. The selection distribution for E_p is the inverse-distance
cluster membership (1 / (distance + 1e-10), normalised) summed per LLM, with E_p terms below 1e-4
dropped, as RouterEval's cluster.py does.

``n_init="auto"`` (sklearn's default, one k-means++ run) reproduces the official numbers on the
RouterEval fixture exactly; ``n_init=10`` does not, so the official script ran with the default.
k-means runs on one thread: sklearn adds up each centre from per-thread partial sums, so its last
digits (and E_p's) depended on the number of cores.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.errors import DataError
from recroute.routers.base import Router, nan_mean_rows


class ClusterRouter(Router):
    """k-means router. ``score(X)`` is the mean training score per LLM in the prompt's nearest
    cluster (float32 (n, n_llms)), so its argmax is the routed LLM and candidate restriction picks
    the best allowed LLM of that cluster; ``selection_probs`` is the RouterEval membership mix.
    """

    name = "cluster"
    entropy_floor = 1e-4

    def __init__(self, n_clusters: int = 3, random_state: int | None = 0, n_init: int | str = "auto") -> None:
        self.n_clusters = n_clusters
        self.random_state = random_state
        self.n_init = n_init

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        n_clusters = int(self.n_clusters)
        if not 1 <= n_clusters <= len(X):
            raise DataError(f"cluster: n_clusters={n_clusters} needs 1..{len(X)} (the number of training prompts)")
        with threadpool_limits(1):  # k-means sums its centres per thread: one thread, one order, any machine
            kmeans = KMeans(n_clusters=n_clusters, random_state=self.random_state, n_init=self.n_init).fit(X)
        labels = kmeans.labels_
        self.centers_ = np.asarray(kmeans.cluster_centers_, dtype=np.float32)
        self.cluster_scores_ = np.stack([nan_mean_rows(Y, labels == c) for c in range(n_clusters)]).astype(np.float32)
        self.cluster_llm_ = np.argmax(self.cluster_scores_, axis=1).astype(np.int64)

    def distances(self, X: np.ndarray) -> np.ndarray:
        """float64 (n, n_clusters) Euclidean distances from each prompt to each centre."""
        X = np.asarray(X, dtype=np.float64)
        C = self.centers_.astype(np.float64)
        sq = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ C.T) + np.einsum("ij,ij->i", C, C)[None, :]
        return np.sqrt(np.maximum(sq, 0.0))

    def predict_cluster(self, X: np.ndarray) -> np.ndarray:
        """int64 (n,) nearest centre per prompt."""
        self._check_fitted()
        X, _ = self._check_query(X, None)
        return np.argmin(self.distances(X), axis=1)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        return self.cluster_scores_[np.argmin(self.distances(X), axis=1)]

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n, n_llms): inverse-distance membership of each cluster, summed onto its LLM."""
        self._check_fitted()
        X, _ = self._check_query(X, n)
        weights = 1.0 / (self.distances(X) + 1e-10)
        weights /= weights.sum(axis=1, keepdims=True)
        assign = np.zeros((len(self.centers_), self.n_llms_))
        assign[np.arange(len(self.centers_)), self.cluster_llm_] = 1.0
        return weights @ assign

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"centers": self.centers_, "cluster_scores": self.cluster_scores_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.centers_ = np.asarray(arrays["centers"], dtype=np.float32)
        self.cluster_scores_ = np.asarray(arrays["cluster_scores"], dtype=np.float32)
        k = len(self.centers_)
        if self.centers_.shape != (k, self.n_features_in_) or self.cluster_scores_.shape != (k, self.n_llms_):
            raise ValueError(
                f"centers {self.centers_.shape} / cluster_scores {self.cluster_scores_.shape} do not fit "
                f"{self.n_features_in_} features and {self.n_llms_} LLMs"
            )
        self.cluster_llm_ = np.argmax(self.cluster_scores_, axis=1).astype(np.int64)


class SoftClusterRouter(Router):
    """Soft k-means smoother over several random partitions (a recommender-side addition, not RouterEval's).

    Each of ``n_partitions`` k-means runs (cosine: rows L2-normalised, centres re-normalised; seeds
    drawn from ``random_state``) partitions the training prompts into ``n_clusters`` clusters. A
    prompt x belongs to cluster c with weight w_c(x) = softmax_c(cos(x, centre_c) / temperature),
    and each cluster keeps a smoothed per-LLM mean of the training targets,
    ``M[c, j] = (Σ_i w_c(x_i) y_ij + prior · ȳ_j) / (Σ_i w_c(x_i) [y_ij observed] + prior)``
    (ȳ_j: LLM j's training mean; NaN cells are unobserved and skipped). The score is the mean over
    partitions of Σ_c w_c(x) M[c, j]: an estimate of P(correct) in [0, 1] (of the mean target for
    continuous scores). Averaging partitions reduces the variance of any one clustering; the
    temperature (in cosine units) sets how local the smoothing is. A new prompt needs only its
    embedding; a new LLM needs a refit (no ``partial_fit_llms``).

    k-means runs with ``n_threads`` OpenMP/BLAS threads (threadpoolctl): on the shared 2-core
    machine two threads made one fit 20x slower than one.
    """

    name = "soft_cluster"
    max_fit_cells = 5.0e8  # benchmarks/fit_scale.py: 2.04M cells (2,400 × 850) in 1.1 CPU-s
    fit_cost_parameter = "n_partitions"

    def __init__(
        self,
        n_clusters: int = 64,
        n_partitions: int = 5,
        temperature: float = 0.03,
        prior: float = 3.0,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_partitions = n_partitions
        self.temperature = temperature
        self.prior = prior
        self.random_state = random_state
        self.n_threads = n_threads

    def _check_params(self) -> None:
        if int(self.n_clusters) < 1 or int(self.n_partitions) < 1:
            raise ValueError(
                f"soft_cluster: n_clusters and n_partitions must be at least 1; got {self.n_clusters!r}, {self.n_partitions!r}"
            )
        if not float(self.temperature) > 0:
            raise ValueError(f"soft_cluster: temperature must be positive; got {self.temperature!r}")
        if not float(self.prior) >= 0:
            raise ValueError(f"soft_cluster: prior must be >= 0; got {self.prior!r}")

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        import warnings

        from sklearn.cluster import KMeans
        from sklearn.exceptions import ConvergenceWarning
        from threadpoolctl import threadpool_limits

        self._check_params()
        Xn = _unit_rows(X)
        k = min(int(self.n_clusters), len(Xn))  # a small training set gets fewer clusters
        seeds = np.random.SeedSequence(0 if self.random_state is None else int(self.random_state))
        seeds = seeds.generate_state(int(self.n_partitions))
        observed = ~np.isnan(Y)
        Y0 = np.where(observed, Y, 0.0).astype(np.float64)
        means = nan_mean_rows(Y).astype(np.float64)
        prior = float(self.prior)
        centres, profiles = [], []
        for seed in seeds:
            with threadpool_limits(None if self.n_threads is None else int(self.n_threads)), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # duplicate rows: fewer distinct clusters
                kmeans = KMeans(n_clusters=k, random_state=int(seed), n_init=1).fit(Xn)
            C = _unit_rows(kmeans.cluster_centers_)
            W = self._memberships(Xn, C)  # (n, k)
            num = W.T @ Y0 + prior * means
            den = W.T @ observed.astype(np.float64) + prior
            centres.append(C)
            profiles.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), means))
        self.centres_ = np.stack(centres).astype(np.float32)    # (n_partitions, k, d)
        self.profiles_ = np.stack(profiles).astype(np.float32)  # (n_partitions, k, n_llms)

    def _memberships(self, Xn: np.ndarray, C: np.ndarray) -> np.ndarray:
        """float64 (n, k): softmax over clusters of cosine similarity / temperature (rows unit-norm)."""
        S = (np.asarray(Xn, dtype=np.float64) @ np.asarray(C, dtype=np.float64).T) / float(self.temperature)
        S -= S.max(axis=1, keepdims=True)
        np.exp(S, out=S)
        return S / S.sum(axis=1, keepdims=True)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        Xn = _unit_rows(X)
        out = np.zeros((n, self.n_llms_))
        for C, M in zip(self.centres_, self.profiles_):
            out += self._memberships(Xn, C) @ M.astype(np.float64)
        return out / len(self.centres_)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"centres": self.centres_, "profiles": self.profiles_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.centres_ = np.asarray(arrays["centres"], dtype=np.float32)
        self.profiles_ = np.asarray(arrays["profiles"], dtype=np.float32)
        if (
            self.centres_.ndim != 3 or self.centres_.shape[2] != self.n_features_in_
            or self.profiles_.shape != (*self.centres_.shape[:2], self.n_llms_)
        ):
            raise ValueError(
                f"centres {self.centres_.shape} / profiles {self.profiles_.shape} do not fit "
                f"{self.n_features_in_} features and {self.n_llms_} LLMs"
            )


def _unit_rows(X: np.ndarray) -> np.ndarray:
    """float64 rows scaled to unit L2 norm (zero rows stay zero)."""
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)
