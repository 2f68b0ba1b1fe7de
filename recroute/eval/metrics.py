"""RouterEval's metrics (mu_o, V_R, V_B, E_p) and the recommender metrics beside them.

Pure functions over arrays. ``Y`` is always the (n_prompts, m) matrix of true test scores of the
candidates, ``choice`` the (n_prompts,) chosen column per prompt, ``probs`` a (n_prompts, m)
selection distribution whose rows sum to 1.
"""

from __future__ import annotations

import numpy as np

# RouterEval's reference accuracies for V_R (acc_ref_dict in test_router.py), with common aliases.
REFERENCE_SCORES = {
    "arc": 0.852,
    "hellaswag": 0.953,
    "mmlu": 0.864,
    "harness_truthfulqa_mc_0": 0.669,
    "truthfulqa": 0.669,
    "winogrande": 0.875,
    "gsm8k": 0.92,
    "ifeval": 0.7689,
    "bbh": 0.8303,
    "gpqa": 0.397,
    "math": 0.4,
    "musr": 0.699,
    "mmlu_pro": 0.637,
}


def reference_score(benchmark: str | None) -> float | None:
    """RouterEval's Perf(ref) for a benchmark name (case-insensitive), or None if it has none."""
    if benchmark is None:
        return None
    return REFERENCE_SCORES.get(str(benchmark).lower().replace("-", "_"))


def mu_o(Y: np.ndarray, choice: np.ndarray) -> float:
    """Mean over prompts of the true score of the chosen LLM."""
    Y = np.asarray(Y, dtype=np.float64)
    choice = np.asarray(choice, dtype=np.int64)
    return float(np.mean(Y[np.arange(len(Y)), choice]))


def best_single_score(Y: np.ndarray) -> float:
    """max_j mean(Y[:, j]): the best single LLM measured on these (test) prompts."""
    return float(np.max(np.mean(np.asarray(Y, dtype=np.float64), axis=0)))


def v_b(mu: float, Y: np.ndarray) -> float:
    """V_B = mu_o / best single LLM's mean test score."""
    return float(mu / best_single_score(Y))


def v_r(mu: float, reference: float | None) -> float:
    """V_R = mu_o / Perf(ref); NaN where the benchmark has no reference score."""
    return float(mu / reference) if reference else float("nan")


def entropy_bits(probs: np.ndarray, floor: float = 1e-10) -> np.ndarray:
    """Per-row Shannon entropy in bits (log2, not normalised); terms with p <= floor count 0."""
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > floor, p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


def e_p(probs: np.ndarray, floor: float = 1e-10) -> float:
    """E_p: mean over prompts of the entropy (bits) of the router's selection distribution.

    RouterEval drops terms with p <= 1e-10 for kNN/r_o and p <= 1e-4 for C-cluster and MLC.
    """
    return float(entropy_bits(probs, floor).mean())


def softmax(scores: np.ndarray) -> np.ndarray:
    """Row-wise softmax (max-shifted), float64: kNN/LinearR/MLPR's selection distribution."""
    s = np.asarray(scores, dtype=np.float64)
    z = np.exp(s - s.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def oracle_distribution(Y: np.ndarray) -> np.ndarray:
    """The oracle's selection distribution: proportional to the prompt's scores, uniform if all 0."""
    Y = np.asarray(Y, dtype=np.float64)
    total = Y.sum(axis=1, keepdims=True)
    uniform = np.full_like(Y, 1.0 / Y.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, Y / np.where(total > 0, total, 1.0), uniform)


def r_o_distribution(Y: np.ndarray, p: float) -> np.ndarray:
    """r_o(p)'s selection distribution: p · oracle + (1 - p) · uniform."""
    return p * oracle_distribution(Y) + (1.0 - p) / Y.shape[1]


def r_o_expected_mu(Y: np.ndarray, p: float) -> float:
    """Exact expectation of r_o(p)'s mu_o: per prompt, p · best score + (1 - p) · mean score."""
    Y = np.asarray(Y, dtype=np.float64)
    return float(np.mean(p * Y.max(axis=1) + (1.0 - p) * Y.mean(axis=1)))


def r_o_monte_carlo_mu(Y: np.ndarray, p: float, runs: int = 1000, seed: int | None = 0) -> float:
    """RouterEval's Monte-Carlo r_o(p): each prompt takes its best score with probability p, else a
    uniformly random LLM's score; mean over ``runs`` repetitions (vectorised over runs)."""
    Y = np.asarray(Y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n, m = Y.shape
    best = Y.max(axis=1)
    total = 0.0
    for _ in range(runs):
        pick_best = rng.random(n) < p
        random_pick = Y[np.arange(n), rng.integers(0, m, n)]
        total += np.where(pick_best, best, random_pick).mean()
    return float(total / runs)


def selection_shares(choice: np.ndarray, m: int) -> np.ndarray:
    """float64 (m,): share of prompts routed to each LLM."""
    return np.bincount(np.asarray(choice, dtype=np.int64), minlength=m) / max(len(choice), 1)


def cell_auc(Y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of predicted scores against binarised correctness over all cells (NaN if one class).

    Continuous truths are binarised at 0.5. Ties count one half (Mann-Whitney).
    """
    y = (np.asarray(Y, dtype=np.float64).ravel() >= 0.5)
    s = np.asarray(scores, dtype=np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
