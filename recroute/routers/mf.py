"""Matrix-factorization routers on implicit (CPU): ALS with explicit wrongs, and BPR.

Correctness results are explicit feedback: an observed 0 is a real "wrong", a missing cell is
unknown. Both routers factorize the prompt × LLM matrix into prompt factors U (n, k) and LLM
factors V (m, k); a new prompt is known only by its embedding, so a ridge regression (or a kNN
fold-in) maps X to U (see :mod:`recroute.routers.features`), and its score for LLM j is u · v_j.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recroute.routers.base import Router
from recroute.routers.features import PromptMap


def _blas_single_thread():
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, "blas")


class _ImplicitRouter(Router):
    """Shared fit/score for the implicit-based routers (subclasses build the matrix and the model)."""

    def _interactions(self, Y: np.ndarray) -> sp.csr_matrix:
        raise NotImplementedError

    def _model(self):
        raise NotImplementedError

    def _factors(self, model) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(model.user_factors), np.asarray(model.item_factors)

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        matrix = self._interactions(Y)
        import implicit.cpu.als  # noqa: F401  load implicit's libraries before limiting their BLAS pool
        import implicit.cpu.bpr  # noqa: F401

        with _blas_single_thread():  # implicit checks the BLAS pool when the model is built
            model = self._model()
            model.fit(matrix, show_progress=False)
        U, V = self._factors(model)
        self.llm_factors_ = V.astype(np.float32)
        self.map_ = PromptMap(self.fold_in, self.map_alpha, self.fold_in_k).fit(X, U)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        return self.map_.transform(X) @ self.llm_factors_.T

    def prompt_factors(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, k): the latent factors new prompts are mapped to."""
        self._check_fitted()
        return self.map_.transform(self._check_query(X, None)[0])

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"llm_factors": self.llm_factors_, **self.map_.state()}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.llm_factors_ = arrays["llm_factors"]
        self.map_ = PromptMap(self.fold_in, self.map_alpha, self.fold_in_k).set_state(arrays)


class ALSRouter(_ImplicitRouter):
    """ALS (implicit.cpu) on the prompt × LLM matrix, with observed wrong answers as weighted negatives.

    A cell with target y >= 0.5 is a positive with confidence 1 + alpha·y; an observed cell with
    y < 0.5 is a negative with confidence 1 + beta·(1 − y) (implicit reads a negative value as
    "disliked", P = 0); unobserved cells keep implicit's weak default (P = 0, C = 1). New prompts
    are mapped to factors by ridge regression on their embeddings (``fold_in="ridge"``) or by
    averaging their ``fold_in_k`` nearest training prompts' factors (``fold_in="knn"``). BLAS runs on
    one thread inside the fit (implicit's own threads do the work).
    """

    name = "als"
    max_fit_cells = 9.0e7  # benchmarks/fit_scale.py: 20.4M cells in 63 s (RouterEval's 204M: ~630 s)
    fit_cost_parameter = "iterations"
    supports_new_llms = True
    score_scale = "raw"  # u · v approximates the 0/1 preference; not bounded to [0, 1]
    new_llm_noise = 0.2  # variance of a 0/1 result around u · v when placing a new LLM

    def __init__(
        self,
        factors: int = 32,
        regularization: float = 0.05,
        alpha: float = 4.0,
        beta: float = 4.0,
        iterations: int = 15,
        fold_in: str = "ridge",
        map_alpha: float = 1e-3,
        fold_in_k: int = 20,
        n_threads: int = 0,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.beta = beta
        self.iterations = iterations
        self.fold_in = fold_in
        self.map_alpha = map_alpha
        self.fold_in_k = fold_in_k
        self.n_threads = n_threads
        self.random_state = random_state

    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """Fold in each new LLM: its factor is the ridge (MAP) fit of its probe results on the probes'
        prompt factors, shrunk toward the prior from the existing LLMs' factors (and metadata)."""
        from recroute.routers.new_llms import place_llm_vectors

        P = None if X is None else self.map_.transform(X)
        new = place_llm_vectors(self, self.llm_factors_, P, Y, metadata, loss="squared", noise=self.new_llm_noise)
        self.llm_factors_ = np.vstack([self.llm_factors_, new]).astype(np.float32)

    def _interactions(self, Y: np.ndarray) -> sp.csr_matrix:
        observed = ~np.isnan(Y)
        y = np.where(observed, Y, 0.0)
        values = np.where(y >= 0.5, 1.0 + self.alpha * y, -(1.0 + self.beta * (1.0 - y)))
        return sp.csr_matrix(np.where(observed, values, 0.0).astype(np.float32))

    def _model(self):
        from implicit.cpu.als import AlternatingLeastSquares

        return AlternatingLeastSquares(
            factors=int(self.factors),
            regularization=float(self.regularization),
            alpha=1.0,
            iterations=int(self.iterations),
            num_threads=int(self.n_threads),
            random_state=int(self.random_state),
        )


class BPRRouter(_ImplicitRouter):
    """BPR (implicit.cpu): ranks each prompt's correct LLMs above the others.

    Positives are the cells with target >= 0.5; implicit samples negatives among the prompt's
    remaining LLMs (observed wrong answers and, where cells are missing, unknown ones: BPR cannot tell
    them apart). Prompts with no correct LLM give no pair and no signal, which is right for routing:
    any choice is as good. The LLM bias implicit learns is kept (the last factor column); new prompts
    are mapped as in ALS. Runs single-threaded by default so fits are deterministic (implicit's
    multi-threaded SGD is Hogwild).
    """

    name = "bpr"
    max_fit_cells = 1.0e7  # benchmarks/fit_scale.py: 2.04M cells (2,400 × 850) in 6.1 CPU-s at 10 iterations
    fit_cost_parameter = "iterations"

    def __init__(
        self,
        factors: int = 32,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        fold_in: str = "ridge",
        map_alpha: float = 1e-3,
        fold_in_k: int = 20,
        n_threads: int = 1,
        random_state: int = 0,
    ) -> None:
        self.factors = factors
        self.learning_rate = learning_rate
        self.regularization = regularization
        self.iterations = iterations
        self.fold_in = fold_in
        self.map_alpha = map_alpha
        self.fold_in_k = fold_in_k
        self.n_threads = n_threads
        self.random_state = random_state

    def _interactions(self, Y: np.ndarray) -> sp.csr_matrix:
        positive = np.nan_to_num(Y, nan=0.0) >= 0.5
        return sp.csr_matrix(positive.astype(np.float32))

    def _model(self):
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        return BayesianPersonalizedRanking(
            factors=int(self.factors),
            learning_rate=float(self.learning_rate),
            regularization=float(self.regularization),
            iterations=int(self.iterations),
            num_threads=int(self.n_threads),
            random_state=int(self.random_state),
        )

    def _factors(self, model) -> tuple[np.ndarray, np.ndarray]:
        U, V = np.asarray(model.user_factors), np.asarray(model.item_factors)
        # implicit appends a constant 1 to U and the item bias to V; map only the free factors
        return U[:, :-1], V

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        U = self.map_.transform(X)
        return U @ self.llm_factors_[:, :-1].T + self.llm_factors_[:, -1]
