"""C-cluster (RouterEval's C-RoBERTa-cluster): k-means on prompt embeddings, one LLM per cluster.

Each cluster's LLM is the argmax of the mean training score over its member prompts; a prompt goes
to the LLM of its nearest centre. The selection distribution for E_p is the inverse-distance
cluster membership (1 / (distance + 1e-10), normalised) summed per LLM, with E_p terms below 1e-4
dropped, as RouterEval's cluster.py does.

``n_init="auto"`` (sklearn's default, one k-means++ run) reproduces the official numbers on the
RouterEval fixture exactly; ``n_init=10`` does not, so the official script ran with the default.
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

        n_clusters = int(self.n_clusters)
        if not 1 <= n_clusters <= len(X):
            raise DataError(f"cluster: n_clusters={n_clusters} needs 1..{len(X)} (the number of training prompts)")
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
