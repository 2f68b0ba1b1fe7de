"""LinearR and MLPR (RouterEval's linear and FNN routers) in torch on CPU.

Each predicts P(correct) of every LLM from the prompt embedding: BCE-with-logits against the
training scores (unobserved NaN cells are masked out of the loss), Adam, cosine learning-rate
decay per step to 0, seeded initialisation and shuffles. score = sigmoid(logits); the selection
distribution for E_p is the softmax of the scores, as for kNN.

RouterEval's train.py was not published with the rest; its command lines give LinearR lr 0.01,
10 epochs and MLPR lr 1e-4, 100 epochs, hidden 256, both with batch size 1. Documented deviations:

- ``batch_size=64`` instead of 1: batch size 1 takes many minutes per fit on 2 CPU cores.
  MLPR's 100 epochs over 10k prompts (384-d) are ~3e11 multiply-adds, so a fit takes ~10 s on one
  free core whatever the batch size; LinearR takes well under a second.
- ``n_threads=1``: see :mod:`recroute.routers.torch_base` (the shared base and training loop).
- The architecture (one linear layer; linear-ReLU-linear), loss, optimiser and schedule are our
  choices where the official code is unknown.
"""

from __future__ import annotations

from recroute.routers.torch_base import TorchRouter


class LinearRouter(TorchRouter):
    """LinearR: one linear layer (d -> n_llms), P(correct) = sigmoid(logits).

    Defaults from RouterEval's command line (lr 0.01, 10 epochs) except ``batch_size=64``
    (official: 1; see the module docstring).
    """

    name = "linear"
    max_fit_cells = 5.0e8  # benchmarks/fit_scale.py: 204M cells (24,000 × 8,500) in 109 s
    fit_cost_parameter = "epochs"

    def __init__(
        self,
        lr: float = 0.01,
        epochs: int = 10,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.n_threads = n_threads

    def _make_net(self, d: int, m: int):
        import torch

        return torch.nn.Linear(d, m)


class MLPRouter(TorchRouter):
    """MLPR: linear (d -> hidden) - ReLU - linear (hidden -> n_llms), P(correct) = sigmoid(logits).

    Defaults from RouterEval's command line (lr 1e-4, 100 epochs, hidden 256) except
    ``batch_size=64`` (official: 1; see the module docstring).
    """

    name = "mlp"
    max_fit_cells = 6.0e7  # benchmarks/fit_scale.py: 20.4M cells (2,400 × 8,500) in 90 s
    fit_cost_parameter = "epochs"

    def __init__(
        self,
        hidden_size: int = 256,
        lr: float = 1e-4,
        epochs: int = 100,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.hidden_size = hidden_size
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.random_state = random_state
        self.n_threads = n_threads

    def _make_net(self, d: int, m: int):
        import torch

        h = int(self.hidden_size)
        return torch.nn.Sequential(torch.nn.Linear(d, h), torch.nn.ReLU(), torch.nn.Linear(h, m))
