"""Hybrid LLM's quality-gap classifier, generalised from two LLMs to a pool of any size.

After Ding et al., "Hybrid LLM: Cost-Efficient and Quality-Aware Query Routing" (ICLR 2024,
arXiv 2404.14618). The paper routes between a small and a large LLM with a classifier of
P(q(small, x) >= q(large, x) - t): the probability that the small LLM's quality falls short of the
large one's by at most a relaxation t, chosen by its data transformation (r_trans) to make the labels
as informative as possible, t* = argmax_t mean over prompt pairs |label(x, t) - label(x', t)|, i.e. the
most balanced labels (2 p (1 - p) for a positive share p).

Generalisation to n LLMs (one output per LLM): LLM j's label on prompt i is
1[y_ij >= max_{k != j} y_ik - t_j], "no other LLM beats j by more than t_j on this prompt", with a
relaxation t_j per LLM chosen by the same r_trans rule on a grid over [0, 1] (smallest t on ties).
With two LLMs and t = 0 this is the paper's router for the small one. The labels are NaN where j was
not evaluated or no other LLM was; binary scores give t_j = 0 (j correct, or every LLM wrong).
score(X) = P(label = 1) per LLM from one MLP on the prompt embedding (masked BCE, the shared torch
loop); routing takes the argmax, and the paper's "cheapest LLM that is good enough" is the shared cost
step over these scores (``route_with_costs`` / ``alpha_utility`` in recroute.cost.decide).

Defaults and deviations: the paper fine-tunes DeBERTa-v3-large on the prompt text; here an MLP
(hidden 128, ReLU) on frozen prompt embeddings, Adam lr 1e-3, 10 epochs, batch 64 (our choices:
fits on 2 cores). ``cell_budget`` caps epochs · n_prompts · n_llms at 5e8 cell visits, so RouterEval's
24,000 × 8,500 pool trains 2 epochs instead of 10 (its 8,500 targets per prompt are signal enough;
4 epochs took 366 s on the loaded 2-core machine, benchmarks/results/fit_scale_zoo_a.json). The relaxation can be fixed with
``relaxation=<float>``; ``"auto"`` runs r_trans.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.routers.linear import MLPRouter
from recroute.routers.torch_base import epochs_within_budget

RELAXATION_GRID = np.linspace(0.0, 1.0, 21)


def best_other(Y: np.ndarray) -> np.ndarray:
    """float32 (n, m): for each cell, the best observed score of the other LLMs on its prompt (NaN if none)."""
    filled = np.where(np.isnan(Y), -np.inf, np.asarray(Y, dtype=np.float32))
    top = np.argmax(filled, axis=1)  # the first best LLM per prompt
    first = filled.max(axis=1)
    second = np.partition(filled, -2, axis=1)[:, -2] if Y.shape[1] > 1 else np.full(len(Y), -np.inf, np.float32)
    other = np.where(np.arange(Y.shape[1])[None, :] == top[:, None], second[:, None], first[:, None])
    return np.where(np.isinf(other), np.nan, other).astype(np.float32)


def quality_gap_labels(Y: np.ndarray, relaxation, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(labels float32 (n, m) with NaN where undefined, t float64 (m,)): 1[y_ij >= best other - t_j].

    ``relaxation``: a number (every LLM) or "auto" (r_trans: per LLM, the grid value whose labels are
    most balanced; the smallest on ties). Computed in blocks of ``chunk`` prompts (float32).
    """
    Y = np.asarray(Y, dtype=np.float32)
    gap = np.empty(Y.shape, dtype=np.float32)  # NaN where undefined
    for start in range(0, len(Y), chunk):
        gap[start : start + chunk] = Y[start : start + chunk] - best_other(Y[start : start + chunk])
    defined = ~np.isnan(gap)
    if relaxation == "auto":
        count = np.maximum(defined.sum(axis=0), 1)
        p = np.stack([(gap >= -t - 1e-6).sum(axis=0) / count for t in RELAXATION_GRID])  # (grid, m)
        balance = p * (1.0 - p)
        t = RELAXATION_GRID[np.argmax(balance >= balance.max(axis=0, keepdims=True) - 1e-12, axis=0)]
    else:
        try:
            t = np.full(Y.shape[1], float(relaxation))
        except (TypeError, ValueError):
            raise ValueError(f"hybrid: relaxation must be 'auto' or a number >= 0; got {relaxation!r}") from None
        if not (np.isfinite(t).all() and (t >= 0).all()):
            raise ValueError(f"hybrid: relaxation must be 'auto' or a number >= 0; got {relaxation!r}")
    labels = np.where(defined, gap >= (-t[None, :] - 1e-6), np.nan).astype(np.float32)
    return labels, t


class HybridRouter(MLPRouter):
    """Quality-gap classifier for a pool of n LLMs; see the module docstring. score = P(within t_j of the best)."""

    name = "hybrid"

    def __init__(
        self,
        relaxation: float | str = "auto",
        hidden_size: int = 128,
        lr: float = 1e-3,
        epochs: int = 10,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        random_state: int | None = 0,
        n_threads: int | None = 1,
        cell_budget: float | None = 5e8,
    ) -> None:
        super().__init__(hidden_size, lr, epochs, batch_size, weight_decay, random_state, n_threads)
        self.relaxation = relaxation
        self.cell_budget = cell_budget

    def _epochs(self, n_prompts: int, n_llms: int) -> int:
        return epochs_within_budget(self.epochs, n_prompts, n_llms, self.cell_budget)

    def _targets(self, Y: np.ndarray) -> np.ndarray:
        labels, self.relaxation_ = quality_gap_labels(Y, self.relaxation)
        return labels

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta, arrays = super()._state()
        return meta, {**arrays, "relaxation": np.asarray(self.relaxation_, dtype=np.float64)}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        super()._set_state(meta, arrays, path)
        self.relaxation_ = np.asarray(arrays["relaxation"], dtype=np.float64)
