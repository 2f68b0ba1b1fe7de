"""RouteLLM's similarity-weighted (SW) ranking: a Bradley–Terry (Elo) fit per prompt, with every training
battle weighted by how similar its prompt is to the one being routed.

After Ong et al., "RouteLLM: Learning to Route LLMs with Preference Data" (arXiv 2406.18665, §4.1).
RouteLLM's battles are arena votes; here they come from the per-prompt results: on every training
prompt, each pair of LLMs with observed scores plays one battle, the higher score wins and equal
scores are a tie (half a win each, as RouteLLM's ``compute_elo_mle_with_tie``). For a new prompt q
with embedding similarity s_i = cos(q, x_i) to training prompt i, the battles of prompt i weigh
``gamma ** (1 + s_i / max_i s_i)`` (RouteLLM's ``10 * 10 ** (s / max s)``, gamma = 10), normalised
to mean 1, and the Bradley–Terry strengths pi_j of the pool maximise the weighted likelihood.
score(X) float32 (n, n_llms) = xi_j = log pi_j (Elo = 1000 + 400 xi / ln 10, :meth:`elo`);
RouteLLM then compares two LLMs' ratings, here the pool's argmax is routed.

The fit needs no battle list: with y_i the prompt's results, LLM j's weighted wins are
W_j = sum_i w_i (rank_ij - 1) (its average rank among the prompt's observed LLMs, ties halved) and the
pair counts are N_jk = sum_i w_i o_ij o_ik (o = observed). N is exact when every cell is observed or
the training matrix is small (n_prompts · n_llms² <= ``EXACT_PAIR_CELLS``), otherwise it is
approximated by c_j c_k / sum_i w_i (c_j = sum_i w_i o_ij: missingness independent of the LLM pair).
The strengths come from Hunter's MM iterations (Ann. Statist. 2004) with ``prior`` virtual ties
against an opponent of strength 1 (deviation: RouteLLM's unregularised logistic regression has no
finite optimum when an LLM never loses; the prior also fixes the scale: xi = 0 is that opponent).

Cost: fit stores the unit-normalised training embeddings and the (n_prompts, n_llms) win and
observation matrices (memory like kNN's index); routing n prompts is O(n · n_prompts · (d + n_llms) +
n · n_llms² · iterations): about 7 routed prompts/s at 300 LLMs and 0.8 at 1,000 on the loaded 2-core
machine, so pools above ``MAX_LLMS`` = 300 are refused at fit (``max_fit_llms``: the shared size check's
FitTooLargeError, naming that limit, before any work).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.routers.base import Router

MAX_LLMS = 300  # n_llms² pair terms per routed prompt and MM iteration: ~7 prompts/s at 300 LLMs on a loaded 2-core machine
EXACT_PAIR_CELLS = 20_000_000  # n_prompts · n_llms² up to which the pair counts are exact
QUERY_CELLS = 8_000_000  # queries per chunk · max(n_llms², n_train prompts): memory of one chunk


def average_win_counts(Y: np.ndarray) -> np.ndarray:
    """float32 (n, m): per prompt, the number of observed LLMs each LLM beats, ties counted as half
    (its average rank among the observed LLMs minus 1); 0 where unobserved."""
    from scipy.stats import rankdata

    observed = ~np.isnan(Y)
    ranks = rankdata(np.where(observed, Y, np.inf), method="average", axis=1)
    return np.where(observed, ranks - 1.0, 0.0).astype(np.float32)


def bradley_terry_mm(wins: np.ndarray, pairs, prior: float, n_iter: int, tol: float = 1e-7) -> np.ndarray:
    """float64 (q, m) log-strengths xi maximising sum_j wins_j log pi_j - sum_{j<k} N_jk log(pi_j + pi_k)
    plus ``prior`` virtual ties of each LLM against a strength-1 opponent (Hunter's MM updates).

    wins (q, m); pairs: (q, m, m) pair counts N (diagonal ignored) or a (c (q, m), total (q,)) tuple for
    N_jk = c_j c_k / total. ``prior`` = 0 needs every LLM to win and lose something (else no optimum).
    """
    wins = np.asarray(wins, dtype=np.float64) + 0.5 * prior
    pi = np.ones_like(wins)
    for _ in range(int(n_iter)):
        denom = _pair_sums(pi, pairs) + prior / (pi + 1.0)
        new = np.where(denom > 0, wins / np.where(denom > 0, denom, 1.0), pi)
        if prior == 0:  # no anchor: fix the geometric mean at 1
            new = new / np.exp(np.log(np.maximum(new, 1e-300)).mean(axis=1, keepdims=True))
        change = np.max(np.abs(np.log(np.maximum(new, 1e-300)) - np.log(np.maximum(pi, 1e-300))))
        pi = new
        if change < tol:
            break
    return np.log(np.maximum(pi, 1e-300))


def _pair_sums(pi: np.ndarray, pairs) -> np.ndarray:
    """float64 (q, m): sum_{k != j} N_jk / (pi_j + pi_k)."""
    inv = 1.0 / (pi[:, :, None] + pi[:, None, :])  # (q, m, m)
    if isinstance(pairs, tuple):
        c, total = pairs
        inv *= c[:, None, :]
        diag = c / (2.0 * pi)
        return c / total[:, None] * (inv.sum(axis=2) - diag)
    inv *= pairs
    return inv.sum(axis=2) - np.einsum("qjj->qj", inv)


class SWRankingRouter(Router):
    """Similarity-weighted Bradley–Terry ranking; see the module docstring. score = log-strength (raw)."""

    name = "sw_ranking"
    score_scale = "raw"
    max_fit_llms = MAX_LLMS  # the shared size check refuses a larger pool (FitTooLargeError) before any work
    fit_llms_reason = "it fits a Bradley-Terry model over every LLM pair for each routed prompt: n_llms² work"

    def __init__(self, gamma: float = 10.0, prior: float = 1.0, n_iter: int = 200) -> None:
        self.gamma = gamma
        self.prior = prior
        self.n_iter = n_iter

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        if not float(self.gamma) >= 1.0:
            raise ValueError(f"sw_ranking: gamma must be >= 1 (1 = no similarity weighting); got {self.gamma!r}")
        if not float(self.prior) >= 0 or int(self.n_iter) < 1:
            raise ValueError(f"sw_ranking: need prior >= 0 and n_iter >= 1; got {self.prior!r}, {self.n_iter!r}")
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        self.train_ = (X / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self.wins_ = average_win_counts(Y)
        self.observed_ = ~np.isnan(Y)

    def _weights(self, X: np.ndarray) -> np.ndarray:
        """float64 (n, n_train) battle weights gamma ** (1 + s / max s), normalised to mean 1 per prompt."""
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        S = (X / np.where(norms > 0, norms, 1.0)).astype(np.float32) @ self.train_.T
        S = S.astype(np.float64)
        top = S.max(axis=1, keepdims=True)
        S = np.where(top > 0, S / np.where(top > 0, top, 1.0), S)
        W = np.power(float(self.gamma), 1.0 + S)
        return W / W.mean(axis=1, keepdims=True)

    def _pair_products(self) -> np.ndarray | None:
        """float64 (n_train, m²) o_ij o_ik when the pair counts are computed exactly, else None."""
        n, m = self.observed_.shape
        if self.observed_.all() or n * m * m > EXACT_PAIR_CELLS:
            return None
        O = self.observed_.astype(np.float64)
        return (O[:, :, None] * O[:, None, :]).reshape(n, m * m)

    def _pairs(self, W: np.ndarray, products: np.ndarray | None):
        """Pair counts for the prompts of W: exact (q, m, m) or the (c, total) independence form."""
        m = self.n_llms_
        if products is not None:
            return (W @ products).reshape(len(W), m, m)
        return W @ self.observed_.astype(np.float64), W.sum(axis=1)

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        m = self.n_llms_
        chunk = max(1, min(QUERY_CELLS // (m * m), QUERY_CELLS // len(self.train_)))  # bounds W and the MM arrays
        products = self._pair_products()
        out = np.empty((n, m))
        for start in range(0, n, chunk):
            W = self._weights(X[start : start + chunk])
            pairs = self._pairs(W, products)
            out[start : start + chunk] = bradley_terry_mm(W @ self.wins_, pairs, float(self.prior), int(self.n_iter))
        return out

    def elo(self, X: np.ndarray) -> np.ndarray:
        """float64 (n, n_llms): the scores as Elo ratings, 1000 + 400 xi / ln 10."""
        return 1000.0 + 400.0 / np.log(10.0) * self.score(X).astype(np.float64)

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {"train": self.train_, "wins": self.wins_, "observed": self.observed_}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.train_ = np.asarray(arrays["train"], dtype=np.float32)
        self.wins_ = np.asarray(arrays["wins"], dtype=np.float32)
        self.observed_ = np.asarray(arrays["observed"], dtype=bool)
        n = len(self.train_)
        if self.train_.shape != (n, self.n_features_in_) or self.wins_.shape != (n, self.n_llms_) or self.observed_.shape != self.wins_.shape:
            raise ValueError(
                f"train {self.train_.shape} / wins {self.wins_.shape} / observed {self.observed_.shape} do not fit "
                f"{self.n_features_in_} features and {self.n_llms_} LLMs"
            )
