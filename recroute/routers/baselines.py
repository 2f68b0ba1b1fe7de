"""RouterEval's reference routers: random, best single LLM, oracle and r_o(p).

Random and best-single are ordinary (feature-free) routers. The oracle and r_o(p) route from the
*true* test scores (``requires_truth``): use ``route_truth(Y_true)``, ``selection_probs_truth(Y_true)``
and ``expected_mu(Y_true)``; their ``score(X)`` raises, since no score exists without the truth.
RouterEval's r_o_router.py estimates r_o(p)'s mu_o by Monte Carlo (1000 unseeded runs);
``expected_mu`` gives its exact expectation instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.errors import DataError, require_finite_rows
from recroute.routers.base import Router, nan_mean_rows


class RandomRouter(Router):
    """Uniformly random decisions (r_o(0)); selection_probs uniform, so E_p = log2(m).

    ``score`` draws uniform [0, 1) scores from a generator seeded by ``random_state`` at fit time
    that advances with every call: successive calls give fresh draws (a single-prompt caller is
    not always sent to the same LLM), two fits with one seed give the same sequence, and the
    generator state travels through save/load and pickle.
    """

    name = "random"
    needs_features = False
    stochastic = True

    def __init__(self, random_state: int | None = 0) -> None:
        self.random_state = random_state

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        self.rng_ = np.random.default_rng(self.random_state)

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        return self.rng_.random((n, self.n_llms_), dtype=np.float32)

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n, n_llms), uniform."""
        self._check_fitted()
        _, n = self._check_query(X, n)
        return np.full((n, self.n_llms_), 1.0 / self.n_llms_)

    def expected_mu(self, Y_true: np.ndarray) -> float:
        """Exact expected mu_o of uniform random routing: mean over prompts of the row mean."""
        from recroute.eval.metrics import r_o_expected_mu

        return r_o_expected_mu(_check_truth(self, Y_true), 0.0)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"rng_state": self.rng_.bit_generator.state}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.rng_ = np.random.default_rng()
        self.rng_.bit_generator.state = meta["rng_state"]


class BestSingleRouter(Router):
    """Always the LLM with the best training mean (observed cells only; NaN = unobserved).

    score: every prompt gets the per-LLM training means (so candidate restriction picks the best
    allowed LLM); selection_probs: one-hot on the best LLM (E_p = 0).
    """

    name = "best_single"
    needs_features = False

    def __init__(self) -> None:
        pass

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        self.llm_means_ = nan_mean_rows(Y).astype(np.float32)
        self.best_llm_ = int(np.argmax(self.llm_means_))

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        return np.broadcast_to(self.llm_means_, (n, self.n_llms_)).copy()

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n, n_llms), one-hot on the training-best LLM."""
        self._check_fitted()
        _, n = self._check_query(X, n)
        probs = np.zeros((n, self.n_llms_))
        probs[:, self.best_llm_] = 1.0
        return probs

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"llm_means": self.llm_means_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.llm_means_ = np.asarray(arrays["llm_means"], dtype=np.float32)
        if self.llm_means_.shape != (self.n_llms_,):
            raise ValueError(f"llm_means has shape {self.llm_means_.shape}, expected ({self.n_llms_},)")
        self.best_llm_ = int(np.argmax(self.llm_means_))


class _TruthRouter(Router):
    """Routes from the true scores: with probability ``_p`` the best LLM, else a uniform one."""

    needs_features = False
    requires_truth = True
    stochastic = True

    def _mix(self) -> float:
        raise NotImplementedError

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        pass  # nothing to learn: the decisions come from the true scores

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        raise ValueError(
            f"{type(self).__name__} routes from the true scores, so it has no score(X): "
            "use route_truth(Y_true), selection_probs_truth(Y_true) or expected_mu(Y_true)"
        )

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        return self._score(X, 0)

    def route_truth(self, Y_true: np.ndarray, candidates=None) -> np.ndarray:
        """int64 (n,) chosen LLM per prompt from the true scores (n, n_llms); argmax ties go first.

        ``candidates`` (positions or names) restricts both the best pick and the random pick.
        """
        Y = _check_truth(self, Y_true)
        allowed = self._candidate_mask(candidates)
        best = np.argmax(np.where(allowed[None, :], Y, -np.inf), axis=1)
        p = self._mix()
        if p >= 1.0:
            return best.astype(np.int64)
        rng = np.random.default_rng(self.random_state)  # fresh per call: reproducible evaluation
        pool = np.flatnonzero(allowed)
        pick_best = rng.random(len(Y)) < p
        random_pick = pool[rng.integers(0, len(pool), len(Y))]
        return np.where(pick_best, best, random_pick).astype(np.int64)

    def selection_probs_truth(self, Y_true: np.ndarray) -> np.ndarray:
        """float64 (n, n_llms): p · oracle distribution + (1 - p) · uniform (RouterEval's E_p input)."""
        from recroute.eval.metrics import r_o_distribution

        return r_o_distribution(_check_truth(self, Y_true), self._mix())

    def expected_mu(self, Y_true: np.ndarray) -> float:
        """Exact expectation of mu_o: mean over prompts of p · best + (1 - p) · mean score."""
        from recroute.eval.metrics import r_o_expected_mu

        return r_o_expected_mu(_check_truth(self, Y_true), self._mix())


class OracleRouter(_TruthRouter):
    """The oracle: each prompt's best LLM by its true score (first on ties); r_o(1)."""

    name = "oracle"
    stochastic = False
    random_state = None

    def __init__(self) -> None:
        pass

    def _mix(self) -> float:
        return 1.0


class ROPRouter(_TruthRouter):
    """r_o(p): the oracle's pick with probability p, else a uniformly random LLM (seeded per call)."""

    name = "r_o"

    def __init__(self, p: float = 0.5, random_state: int | None = 0) -> None:
        self.p = p
        self.random_state = random_state

    def _mix(self) -> float:
        p = float(self.p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"r_o: p must lie in [0, 1]; got {self.p!r}")
        return p


def _check_truth(router: Router, Y_true: np.ndarray) -> np.ndarray:
    """float64 (n, n_llms) finite true scores matching the fitted router's LLMs."""
    router._check_fitted()
    Y = np.asarray(Y_true, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[1] != router.n_llms_:
        raise DataError(
            f"true scores must have shape (n_prompts, {router.n_llms_}) for the fitted LLMs; got {Y.shape}"
        )
    require_finite_rows(Y, "true scores", " (every cell must be observed)")
    return Y
