"""MLC (RouterEval's RoBERTa-MLC): routing as multi-label classification of "good" LLMs.

Labels are multi-hot (binary scores are their own labels; continuous ones are 1 where the score
is at least 0.95 x the prompt's best observed score, RouterEval's process_label). A head is
trained with BCE-with-logits on the labels (unobserved cells masked out).

**Deviation:** RouterEval fine-tunes roberta-base end to end on the prompt texts. We train only a
classification head (dense - tanh - linear, the shape of RoBERTa's classification head) on frozen
prompt embeddings, which is what fits CPU budgets and works with any encoder.

score = sigmoid(logits). The selection distribution for E_p is ReLU(logits) L1-normalised (uniform
where every logit is <= 0), with E_p terms below 1e-4 dropped.
"""

from __future__ import annotations

import numpy as np

from recroute.data.labels import multi_hot_labels
from recroute.routers.torch_base import TorchRouter


class MLCRouter(TorchRouter):
    """Multi-label classifier head on frozen embeddings; see the module docstring."""

    name = "mlc"
    max_fit_cells = 3.3e8  # benchmarks/fit_scale.py: 204M cells in 167 s
    fit_cost_parameter = "epochs"
    entropy_floor = 1e-4

    def __init__(
        self,
        hidden_size: int = 256,
        lr: float = 1e-3,
        epochs: int = 20,
        batch_size: int = 64,
        threshold: float = 0.95,
        weight_decay: float = 0.0,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.hidden_size = hidden_size
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.threshold = threshold
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.n_threads = n_threads

    def _make_net(self, d: int, m: int):
        import torch

        h = int(self.hidden_size)
        return torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.Tanh(), torch.nn.Linear(h, m))

    def _targets(self, Y: np.ndarray) -> np.ndarray:
        return multi_hot_labels(Y, float(self.threshold))

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n, n_llms): ReLU(logits) / sum, uniform where every logit is <= 0."""
        self._check_fitted()
        X, _ = self._check_query(X, n)
        pos = np.maximum(self._logits(X).astype(np.float64), 0.0)
        total = pos.sum(axis=1, keepdims=True)
        uniform = np.full_like(pos, 1.0 / pos.shape[1])
        return np.where(total > 0, pos / np.where(total > 0, total, 1.0), uniform)
