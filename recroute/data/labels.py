"""Multi-hot selection labels (RouterEval's process_label rule)."""

from __future__ import annotations

import numpy as np


def process_label(Y: np.ndarray, threshold: float = 0.95) -> np.ndarray:
    """float32 (n_prompts, n_llms): 1 where a score is at least ``threshold`` × the prompt's best.

    Exactly RouterEval's ``process_label``: a prompt whose best score is 0 labels every LLM 1 (0 >= 0).
    """
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_prompts, n_llms); got shape {Y.shape}")
    return (Y >= threshold * Y.max(axis=1, keepdims=True)).astype(np.float32)


def multi_hot_labels(Y: np.ndarray, threshold: float = 0.95) -> np.ndarray:
    """float32 (n_prompts, n_llms) selection labels, NaN kept where a cell was not observed.

    Binary scores are their own labels; continuous ones are 1 where a score is at least
    ``threshold`` × the prompt's best observed score (:func:`process_label`'s rule).
    """
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2:
        raise ValueError(f"scores must be 2-D (n_prompts, n_llms); got shape {Y.shape}")
    observed = ~np.isnan(Y)
    values = Y[observed]
    if np.all((values == 0) | (values == 1)):
        return Y.copy()
    filled = np.where(observed, Y, -np.inf)
    best = filled.max(axis=1, keepdims=True)
    return np.where(observed, (filled >= threshold * best).astype(np.float32), np.nan).astype(np.float32)
