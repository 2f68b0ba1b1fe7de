"""RouterEval's candidate groups: all_strong, all_weak and strong_to_weak pools of m LLMs.

A faithful port of ``select_candidates`` in RouterEval's get_router_dataset.py, on a dense
(n_prompts, n_llms) score matrix of the *whole* benchmark (unobserved cells filled with 0).
"""

from __future__ import annotations

import numpy as np

from recroute.errors import DataError

GROUPS = ("all_strong", "all_weak", "strong_to_weak")
EASY = (3, 5)
HARD = (10, 100, 1000)
SETTINGS = {"easy": EASY, "hard": HARD}
STRONG_TO_WEAK_DRAWS = 1000


def oracle_of(Y: np.ndarray) -> float:
    """Mean over prompts of the best score among the columns of Y (n_prompts, m)."""
    return float(np.mean(np.max(Y, axis=1)))


def usable_range(means: np.ndarray) -> tuple[np.ndarray, int, int]:
    """(ascending order of LLMs by mean, first index with mean > 0.1, first index with mean > 0.9).

    RouterEval sorts with numpy's default argsort, whose order of LLMs with equal means differs by CPU
    (AVX2 / AVX-512 kernels); here equal means keep the lower LLM position (a stable sort), the same
    order wherever the means differ and the same on every machine where they tie.
    """
    order = np.argsort(means, kind="stable")
    sorted_means = means[order]
    above = np.flatnonzero(sorted_means > 0.1)
    if above.size == 0:
        raise DataError("no LLM has a mean score above 0.1: RouterEval's candidate groups are undefined")
    top = np.flatnonzero(sorted_means > 0.9)
    return order, int(above[0]), int(top[0]) if top.size else len(means)


def can_select(means: np.ndarray, m: int) -> bool:
    """Whether a pool of m LLMs exists between the 0.1 and 0.9 thresholds."""
    try:
        _, first, last = usable_range(means)
    except DataError:
        return False
    return last - first >= m


def select_candidates(
    Y: np.ndarray, m: int, group: str, rng: np.random.RandomState | None = None
) -> np.ndarray:
    """llm_idx (m,) of one candidate group, in ascending order of mean score.

    all_weak / all_strong: the m-wide sliding window with the best oracle score inside the lowest /
    highest ``max(n_llms // 5, m)`` usable LLMs (ties keep the earliest window). strong_to_weak: the
    usable LLMs cut into m contiguous rank groups (the weakest groups take the remainder), one LLM drawn
    from each, the best oracle of 1000 draws (ties keep the first draw). ``rng`` is a legacy
    RandomState so the draws follow RouterEval's global-seed stream.
    """
    if group not in GROUPS:
        raise DataError(f"unknown candidate group {group!r}; expected one of {GROUPS}")
    means = Y.mean(axis=0)
    order, first, last = usable_range(means)
    if last - first < m:
        raise DataError(
            f"only {last - first} LLMs have a mean score in (0.1, 0.9]; a pool of m={m} needs at least {m}"
        )
    if group in ("all_weak", "all_strong"):
        width = max(len(means) // 5, m)
        region = order[first:first + width] if group == "all_weak" else order[max(last - width, 0):last]
        best, best_score = None, -np.inf
        for start in range(len(region) - m + 1):
            window = region[start:start + m]
            score = oracle_of(Y[:, window])
            if score > best_score:
                best, best_score = window, score
        return np.asarray(best, dtype=np.int64)
    rng = np.random.RandomState(42) if rng is None else rng
    valid = order[first:last]
    size, remainder = divmod(len(valid), m)
    groups, start = [], 0
    for i in range(m):
        end = start + size + (1 if i < remainder else 0)
        groups.append(valid[start:end])
        start = end
    best, best_score = None, -np.inf
    for _ in range(STRONG_TO_WEAK_DRAWS):
        sampled = np.array([rng.choice(g) for g in groups])
        score = oracle_of(Y[:, sampled])
        if score > best_score:
            best, best_score = sampled, score
    return best.astype(np.int64)
