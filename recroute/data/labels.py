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
    """Selection labels: binary scores are their own labels; continuous ones follow :func:`process_label`."""
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim == 2 and np.all((Y == 0) | (Y == 1)):
        return Y.copy()
    return process_label(Y, threshold)
