"""Features for factor routers: new prompts into latent space, and LLM metadata as numbers.

Every test prompt is a new user known only by its embedding, so factor routers learn the training
prompts' factors U (n, k) and then a ridge regression W from embeddings X (n, d) to U:
``U ≈ (X - x̄) W + ū``, solved in closed form. ``fold_in="knn"`` instead averages the factors of the
nearest training prompts (cosine), which needs no linear relation between X and U.
"""

from __future__ import annotations

import numpy as np

_MODES = ("ridge", "knn")


class PromptMap:
    """Embeddings (n, d) -> latent prompt factors (n, k)."""

    def __init__(self, mode: str = "ridge", alpha: float = 1.0, k: int = 20) -> None:
        if mode not in _MODES:
            raise ValueError(f"fold_in must be one of {_MODES}; got {mode!r}")
        if alpha < 0 or k < 1:
            raise ValueError(f"need alpha >= 0 and k >= 1; got alpha={alpha}, k={k}")
        self.mode, self.alpha, self.k = mode, float(alpha), int(k)

    def fit(self, X: np.ndarray, U: np.ndarray) -> "PromptMap":
        X = np.asarray(X, dtype=np.float64)
        U = np.asarray(U, dtype=np.float64)
        if self.mode == "ridge":
            self.x_mean_, self.u_mean_ = X.mean(axis=0), U.mean(axis=0)
            Xc = X - self.x_mean_
            gram = Xc.T @ Xc + self.alpha * len(X) * np.eye(X.shape[1])
            self.weights_ = np.linalg.solve(gram, Xc.T @ (U - self.u_mean_))
        else:
            self.train_ = _normalise(X).astype(np.float32)
            self.factors_ = U.astype(np.float32)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, k) latent factors of new prompts."""
        X = np.asarray(X, dtype=np.float64)
        if self.mode == "ridge":
            return ((X - self.x_mean_) @ self.weights_ + self.u_mean_).astype(np.float32)
        import faiss

        index = faiss.IndexFlatIP(self.train_.shape[1])
        index.add(self.train_)
        k = min(self.k, len(self.train_))
        _, rows = index.search(_normalise(X).astype(np.float32), k)
        return self.factors_[rows].mean(axis=1)

    def state(self) -> dict[str, np.ndarray]:
        if self.mode == "ridge":
            return {"map_x_mean": self.x_mean_, "map_u_mean": self.u_mean_, "map_weights": self.weights_}
        return {"map_train": self.train_, "map_factors": self.factors_}

    def set_state(self, arrays: dict[str, np.ndarray]) -> "PromptMap":
        if self.mode == "ridge":
            self.x_mean_, self.u_mean_ = arrays["map_x_mean"], arrays["map_u_mean"]
            self.weights_ = arrays["map_weights"]
        else:
            self.train_, self.factors_ = arrays["map_train"], arrays["map_factors"]
        return self


def _normalise(X: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    return X / np.where(norms > 0, norms, 1.0)


def numeric_llm_features(table, n_llms: int) -> np.ndarray | None:
    """float32 (n_llms, f): the numeric metadata columns of an LLM table (size, prices), standardised.

    Missing values become the column mean (0 after standardising); None when there is no such column.
    """
    from recroute.routers.new_llms import LLMMetadata

    meta = LLMMetadata.from_table(table, n_llms)
    return None if meta is None else meta.values
