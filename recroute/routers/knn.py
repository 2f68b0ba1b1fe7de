"""PRknn (RouterEval's kNN router) over a FAISS index.

The predicted score of each LLM is the mean training score of the prompt's k nearest training
prompts; the route is the argmax (first on ties) and the selection distribution for E_p is the
softmax of the predicted scores, as in RouterEval's knn.py (sklearn ``NearestNeighbors``, cosine,
brute force).

Neighbour sets match sklearn's: FAISS returns k + 1 neighbours; where the k-th and (k+1)-th are
within ``_TIE_TOL`` of each other (duplicate or near-duplicate training prompts), which of the tied
prompts is "nearest" is decided the way sklearn does it, from the prompt's full distance row and
``np.argpartition``. Such rows are rare (about 2 % on RouterEval-style data), so the cost is small,
and without this the official numbers are off by a prompt or two per group.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recroute.routers.base import Router

_METRICS = ("cosine", "l2")
_INDEXES = ("flat",)
_INDEX_FILE = "index.faiss"
_TIE_TOL = 1e-5          # distance gap at the k-th neighbour treated as a tie
_MAX_CELLS = 1 << 24     # cells per chunk when gathering neighbours or full distance rows


class KNNRouter(Router):
    """kNN router: score (n, n_llms) = nan-mean of the k nearest training prompts' scores.

    ``metric``: "cosine" (exact inner product on L2-normalised float32 vectors, sklearn's cosine
    distance) or "l2". ``index``: the FAISS index kind; only "flat" (exact search) is implemented.
    Training cells that are NaN (unobserved) are skipped in the mean; an LLM with no observed
    neighbour scores 0.
    """

    name = "knn"

    def __init__(self, k: int = 5, metric: str = "cosine", index: str = "flat") -> None:
        self.k = k
        self.metric = metric
        self.index = index

    # ------------------------------------------------------------------ fit / score
    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        self._check_params()
        self.index_ = self._build_index(self._prepare(X))
        self.train_scores_ = np.asarray(Y, dtype=np.float32)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        return _nan_mean_neighbours(self.train_scores_, self._neighbours(X))

    def kneighbors(self, X: np.ndarray) -> np.ndarray:
        """int64 (n, min(k, n_train)): the training rows nearest to each query (unordered, as a set)."""
        self._check_fitted()
        X, _ = self._check_query(X, None)
        return self._neighbours(X)

    def _neighbours(self, X: np.ndarray) -> np.ndarray:
        Q = self._prepare(X)
        n_train = self.index_.ntotal
        k = min(int(self.k), n_train)
        sims, rows = self.index_.search(Q, min(k + 1, n_train))
        neighbours = rows[:, :k].astype(np.int64)
        if k < n_train:
            dist = -sims if self.metric == "cosine" else sims  # FAISS gives IP / squared L2
            tied = np.flatnonzero(dist[:, k] - dist[:, k - 1] <= _TIE_TOL)
            if tied.size:
                neighbours[tied] = self._exact_neighbours(Q[tied], k)
        return neighbours

    def _exact_neighbours(self, Q: np.ndarray, k: int) -> np.ndarray:
        """sklearn's brute-force choice: argpartition of the full float32 distance rows."""
        train = self._train_vectors()
        out = np.empty((len(Q), k), dtype=np.int64)
        step = max(1, _MAX_CELLS // max(1, len(train)))
        for start in range(0, len(Q), step):
            q = Q[start : start + step]
            if self.metric == "cosine":
                dist = np.clip(1.0 - q @ train.T, 0.0, 2.0)
            else:
                sq = np.einsum("ij,ij->i", q, q)[:, None] - 2.0 * (q @ train.T) + np.einsum("ij,ij->i", train, train)
                dist = np.maximum(sq, 0.0)
            out[start : start + step] = np.argpartition(dist, k - 1, axis=1)[:, :k]
        return out

    def _train_vectors(self) -> np.ndarray:
        """float32 (n_train, d) view of the vectors stored in the flat index (no copy)."""
        import faiss

        n, d = self.index_.ntotal, self.index_.d
        return faiss.rev_swig_ptr(self.index_.get_xb(), n * d).reshape(n, d)

    def _check_params(self) -> None:
        if self.metric not in _METRICS:
            raise ValueError(f"knn: metric must be one of {_METRICS}; got {self.metric!r}")
        if self.index not in _INDEXES:
            raise ValueError(f"knn: index {self.index!r} is not implemented yet; available: {_INDEXES}")
        if int(self.k) < 1:
            raise ValueError(f"knn: k must be at least 1; got {self.k!r}")

    def _prepare(self, X: np.ndarray) -> np.ndarray:
        """C-contiguous float32; for cosine, rows divided by their norm as sklearn's ``normalize``
        does (einsum norms; zero rows stay zero)."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        if self.metric == "cosine":
            norms = np.sqrt(np.einsum("ij,ij->i", X, X))
            X = np.ascontiguousarray(X / np.where(norms > 0, norms, 1.0)[:, None], dtype=np.float32)
        return X

    def _build_index(self, X: np.ndarray):
        import faiss

        index = faiss.IndexFlatIP(X.shape[1]) if self.metric == "cosine" else faiss.IndexFlatL2(X.shape[1])
        index.add(X)
        return index

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"n_train": int(self.index_.ntotal)}, {"train_scores": self.train_scores_}

    def _save_extra(self, path: Path) -> None:
        import faiss

        faiss.write_index(self.index_, str(path / _INDEX_FILE))

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        import faiss

        from recroute.errors import SavedArtifactError

        self._check_params()
        self.train_scores_ = np.asarray(arrays["train_scores"], dtype=np.float32)
        index_path = Path(path) / _INDEX_FILE
        if not index_path.exists():
            raise SavedArtifactError(f"{path}: missing {_INDEX_FILE}")
        self.index_ = faiss.read_index(str(index_path))
        if self.index_.ntotal != self.train_scores_.shape[0] or self.index_.d != self.n_features_in_:
            raise SavedArtifactError(
                f"{path}: the index holds {self.index_.ntotal} vectors of size {self.index_.d}, but the router "
                f"has {self.train_scores_.shape[0]} training prompts of size {self.n_features_in_}"
            )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if "index_" in state:  # SWIG objects do not pickle: carry the serialised index bytes
            import faiss

            state["index_"] = faiss.serialize_index(state["index_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "index_" in state:
            import faiss

            state["index_"] = faiss.deserialize_index(np.asarray(state["index_"], dtype=np.uint8))
        self.__dict__.update(state)


def _nan_mean_neighbours(Y: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """float32 (n, m): mean over each row's neighbours of Y's observed cells (0 if none observed).

    Gathers in row chunks of at most ``_MAX_CELLS`` (n_chunk x k x m) values to bound memory.
    """
    n, k = neighbours.shape
    out = np.empty((n, Y.shape[1]), dtype=np.float32)
    step = max(1, _MAX_CELLS // max(1, k * Y.shape[1]))
    for start in range(0, n, step):
        part = Y[neighbours[start : start + step]]  # (chunk, k, m)
        observed = ~np.isnan(part)
        total = np.where(observed, part, 0.0).sum(axis=1, dtype=np.float64)
        count = observed.sum(axis=1)
        out[start : start + step] = total / np.maximum(count, 1)
    return out
