"""LightFM hybrid factorization router: prompts and LLMs are scored from their features.

Prompt features are the prompt embeddings (PCA-reduced to ``prompt_dim`` to keep LightFM's per-feature
updates cheap) with no prompt identity, so an unseen prompt is scored exactly like a training one:
its representation is the sum of its feature embeddings. LLM features are an identity column per LLM
plus any numeric metadata of the dataset's LLM table (size, prices; standardised), so an LLM seen
only through metadata still gets a representation. Observed correct cells are +1 and observed wrong
cells −1 interactions under LightFM's logistic loss (explicit feedback); missing cells are absent.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recroute.routers.base import Router
from recroute.routers.features import numeric_llm_features


class LightFMRouter(Router):
    """score(X) = b_u + b_j + <u(X), v_j>: LightFM's user and item representations from features."""

    name = "lightfm"
    max_fit_cells = 5.0e6  # benchmarks/fit_scale.py: 2.04M cells (2,400 × 850) unfinished after 95 CPU-s (bound)
    fit_cost_parameter = "epochs"
    supports_new_llms = True
    score_scale = "logit"  # LightFM's logistic loss: P(correct) = sigmoid(score)

    def __init__(
        self,
        no_components: int = 32,
        prompt_dim: int = 64,
        epochs: int = 20,
        learning_rate: float = 0.05,
        item_alpha: float = 1e-6,
        user_alpha: float = 1e-6,
        use_metadata: bool = True,
        n_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.no_components = no_components
        self.prompt_dim = prompt_dim
        self.epochs = epochs
        self.learning_rate = learning_rate
        self.item_alpha = item_alpha
        self.user_alpha = user_alpha
        self.use_metadata = use_metadata
        self.n_threads = n_threads
        self.random_state = random_state

    def fit(self, data, X: np.ndarray | None = None) -> "LightFMRouter":
        self._llm_table = getattr(data, "llms", None) if self.use_metadata else None
        return super().fit(data, X)

    # ------------------------------------------------------------------ features
    def _prompt_features(self, X: np.ndarray) -> sp.csr_matrix:
        Z = (np.asarray(X, dtype=np.float64) - self.x_mean_) @ self.projection_
        return sp.csr_matrix(Z.astype(np.float32))

    def _fit_projection(self, X: np.ndarray) -> None:
        self.x_mean_ = X.mean(axis=0).astype(np.float64)
        k = int(min(self.prompt_dim, X.shape[1], max(len(X) - 1, 1)))
        _, s, vt = np.linalg.svd(X - self.x_mean_, full_matrices=False)
        scale = s[:k] / np.sqrt(max(len(X) - 1, 1))
        # whitened components: each feature has unit variance on the training prompts
        self.projection_ = (vt[:k].T / np.where(scale > 0, scale, 1.0)).astype(np.float64)

    def _llm_features(self, n_llms: int) -> sp.csr_matrix:
        blocks = [np.eye(n_llms, dtype=np.float32)]
        metadata = numeric_llm_features(getattr(self, "_llm_table", None), n_llms)
        if metadata is not None:
            blocks.append(metadata)
        return sp.csr_matrix(np.hstack(blocks))

    # ------------------------------------------------------------------ fit / score
    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        from lightfm import LightFM

        self._fit_projection(X)
        observed = ~np.isnan(Y)
        rows, cols = np.nonzero(observed)
        signs = np.where(Y[rows, cols] >= 0.5, 1.0, -1.0).astype(np.float32)
        interactions = sp.coo_matrix((signs, (rows, cols)), shape=Y.shape)
        item_features = self._llm_features(Y.shape[1])
        model = LightFM(
            no_components=int(self.no_components),
            loss="logistic",
            learning_rate=float(self.learning_rate),
            item_alpha=float(self.item_alpha),
            user_alpha=float(self.user_alpha),
            random_state=int(self.random_state),
        )
        model.fit(
            interactions,
            user_features=self._prompt_features(X),
            item_features=item_features,
            epochs=int(self.epochs),
            num_threads=int(self.n_threads),
        )
        self.user_embeddings_ = model.user_embeddings.astype(np.float32)
        self.user_biases_ = model.user_biases.astype(np.float32)
        item_bias, item_repr = model.get_item_representations(item_features)
        self.llm_bias_ = item_bias.astype(np.float32)
        self.llm_vectors_ = item_repr.astype(np.float32)
        n_llms = Y.shape[1]  # the metadata features' own embeddings and biases (rows after the identities)
        self.meta_vectors_ = np.hstack([model.item_embeddings[n_llms:], model.item_biases[n_llms:, None]]).astype(np.float32)
        self._llm_table = None

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        F = self._prompt_features(X)
        bias = F @ self.user_biases_
        vectors = F @ self.user_embeddings_
        return vectors @ self.llm_vectors_.T + bias[:, None] + self.llm_bias_[None, :]

    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """Each new LLM's representation and bias: the logistic MAP fit on the probes' prompt
        representations (their biases as offsets), under a Gaussian prior centred on LightFM's own
        feature representation of the LLM: the mean identity part plus its metadata features' embeddings
        (the existing LLMs' vectors regressed on their metadata when it was fitted without metadata
        features). With no probe, that feature representation is the placement."""
        from recroute.routers.new_llms import VectorPrior, map_llm_vectors, place_llm_vectors

        V = np.hstack([self.llm_vectors_, self.llm_bias_[:, None]]).astype(np.float64)
        P = offset = None
        if X is not None:
            F = self._prompt_features(X)
            P = np.hstack([F @ self.user_embeddings_, np.ones((X.shape[0], 1), dtype=np.float32)])
            offset = F @ self.user_biases_
        known = getattr(self, "llm_metadata_", None)
        E = getattr(self, "meta_vectors_", np.zeros((0, V.shape[1])))
        if known is not None and len(E) == known.values.shape[1]:
            identity = V - known.values @ E  # each LLM's identity part
            prior = VectorPrior(identity)
            means = prior.means(Y.shape[1]) + (0.0 if metadata is None else metadata @ E)
            new = map_llm_vectors(P, Y, means, prior.precision_, offset=offset, loss="logistic")
        else:
            new = place_llm_vectors(self, V, P, Y, metadata, offset=offset, loss="logistic")
        self.llm_vectors_ = np.vstack([self.llm_vectors_, new[:, :-1]]).astype(np.float32)
        self.llm_bias_ = np.concatenate([self.llm_bias_, new[:, -1]]).astype(np.float32)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {
            "x_mean": self.x_mean_,
            "projection": self.projection_,
            "user_embeddings": self.user_embeddings_,
            "user_biases": self.user_biases_,
            "llm_bias": self.llm_bias_,
            "llm_vectors": self.llm_vectors_,
            "meta_vectors": self.meta_vectors_,
        }

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.x_mean_, self.projection_ = arrays["x_mean"], arrays["projection"]
        self.user_embeddings_, self.user_biases_ = arrays["user_embeddings"], arrays["user_biases"]
        self.llm_bias_, self.llm_vectors_ = arrays["llm_bias"], arrays["llm_vectors"]
        self.meta_vectors_ = arrays.get("meta_vectors", np.zeros((0, self.llm_vectors_.shape[1] + 1), dtype=np.float32))
