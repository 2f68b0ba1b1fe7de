"""IRT-Router: multidimensional item response theory over prompts and LLMs (torch).

After Song et al., "IRT-Router: Effective and Interpretable Multi-LLM Routing via Item Response
Theory" (ACL 2025, arXiv 2506.01048). Each LLM j has an ability vector theta_j (n_dims); each prompt
gets a discrimination vector a(x) and a difficulty from its embedding x, both predicted by a
network, so an unseen prompt needs only its embedding:

- ``variant="mirt"`` (the paper's MIRT-Router): P(correct) = sigmoid(a(x) · theta_j - b(x)),
  a(x) = softplus(W_a x + c_a) >= 0 (a higher ability never lowers the probability), b(x) = w_b·x + c_b.
- ``variant="nirt"`` (the paper's NIRT-Router, NeuralCD-style): difficulty b(x) is a vector and
  P(correct) = sigmoid(f(a(x) ⊙ (theta_j - b(x)))), f a one-hidden-layer sigmoid network with
  non-negative weights (softplus), so P stays monotone in every ability dimension.

Trained with the shared masked-BCE loop (:mod:`recroute.routers.torch_base`): unobserved (NaN)
cells are left out of the loss, continuous scores in [0, 1] are fractional targets.

New LLMs (``partial_fit_llms``): the prompt side is frozen and each new theta is the MAP estimate
from its probe results under a Gaussian prior learned from the existing abilities (mean from the
LLM metadata where the router has it, Ledoit-Wolf covariance). For MIRT this is the logistic MAP
of :func:`recroute.routers.new_llms.place_llm_vectors` (probe vectors a(x), offset -b(x)): the
multidimensional form of :func:`recroute.coldstart.irt.map_ability`, which lives in a higher layer
and is one-dimensional. For NIRT the same posterior is maximised with L-BFGS; its saturating
interaction network places a new LLM well only where the training LLMs' abilities cover it (MIRT's
linear a·theta extrapolates).

Defaults and deviations: the paper embeds prompts and LLM descriptions with a pretrained encoder and
learns theta from the LLM's description embedding; here theta is a free vector per LLM (descriptions
are rare in per-sample result sets) and prompts come as any embedding. The paper's warm-up for
cold-start prompts (mixing in nearest training prompts) is left out: a(x), b(x) are already
functions of the embedding. n_dims=25 ability dimensions; the training settings are the
two-tower router's (Adam lr 1e-3, batch 64, up to 60 epochs, early stopping with patience 5 on a held-out
10 % of the training prompts; the best epoch's weights kept) and hidden 32 for NIRT's interaction
network: our choices, not the paper's. (Batch 256 and 20 fixed epochs under-trained:
on llmrouter_nim's ~5k training prompts MIRT stayed at the best single LLM, V_B 1.000.)
Cost per epoch: O(n_prompts · n_llms · n_dims) (NIRT: × hidden); ``cell_budget`` caps
epochs · n_prompts · n_llms at 1e9 cell visits, so a RouterEval-scale pool (24,000 × 8,500) trains
4 epochs and fits in minutes (benchmarks/fit_scale.py).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from recroute.routers.torch_base import TorchRouter, epochs_within_budget, torch_threads

VARIANTS = ("mirt", "nirt")
NIRT_MAP_STEPS = 100

try:  # network classes at module level so routers pickle; torch itself stays optional
    import torch
    from torch import nn
    from torch.nn import functional as F

    class MIRTNet(nn.Module):
        """logits (n, n_llms) = a(x) · theta_j - b(x)."""

        def __init__(self, d: int, n_llms: int, n_dims: int):
            super().__init__()
            self.discrimination = nn.Linear(d, n_dims)
            self.difficulty = nn.Linear(d, 1)
            self.theta = nn.Parameter(0.1 * torch.randn(n_llms, n_dims))

        def prompt_parts(self, x):
            """(a (n, n_dims) >= 0, b (n,))."""
            return F.softplus(self.discrimination(x)), self.difficulty(x)[:, 0]

        def logits_for(self, x, theta):
            a, b = self.prompt_parts(x)
            return a @ theta.T - b[:, None]

        def forward(self, x):
            return self.logits_for(x, self.theta)

    class NIRTNet(nn.Module):
        """logits (n, n_llms) = f(a(x) ⊙ (theta_j - b(x))), f monotone (non-negative weights)."""

        def __init__(self, d: int, n_llms: int, n_dims: int, hidden: int):
            super().__init__()
            self.discrimination = nn.Linear(d, n_dims)
            self.difficulty = nn.Linear(d, n_dims)
            self.theta = nn.Parameter(0.1 * torch.randn(n_llms, n_dims))
            self.w1 = nn.Parameter(0.1 * torch.randn(n_dims, hidden))
            self.b1 = nn.Parameter(torch.zeros(hidden))
            self.w2 = nn.Parameter(0.1 * torch.randn(hidden))
            self.b2 = nn.Parameter(torch.zeros(()))

        def logits_for(self, x, theta):
            a, b = F.softplus(self.discrimination(x)), self.difficulty(x)
            h = a[:, None, :] * (theta[None, :, :] - b[:, None, :])  # (n, m, n_dims)
            z = torch.sigmoid(h @ F.softplus(self.w1) + self.b1)     # (n, m, hidden)
            return (z - 0.5) @ F.softplus(self.w2) + self.b2  # centred: logits start near 0

        def forward(self, x):
            return self.logits_for(x, self.theta)

except ImportError:  # pragma: no cover - torch is a dependency
    MIRTNet = NIRTNet = None


class IRTRouter(TorchRouter):
    """Multidimensional IRT router (MIRT, or NIRT with ``variant="nirt"``); see the module docstring.

    score(X) float32 (n, n_llms) = P(correct); supports new LLMs from probe results (MAP ability).
    """

    name = "irt"
    supports_new_llms = True

    def __init__(
        self,
        n_dims: int = 25,
        variant: str = "mirt",
        hidden_size: int = 32,
        lr: float = 1e-3,
        epochs: int = 60,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        val_fraction: float = 0.1,
        patience: int | None = 5,
        random_state: int | None = 0,
        n_threads: int | None = 1,
        cell_budget: float | None = 1e9,
    ) -> None:
        self.n_dims = n_dims
        self.variant = variant
        self.hidden_size = hidden_size
        self.lr = lr
        self.epochs = epochs
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.patience = patience
        self.random_state = random_state
        self.n_threads = n_threads
        self.cell_budget = cell_budget

    def _check_train_params(self) -> None:
        super()._check_train_params()
        if self.variant not in VARIANTS:
            raise ValueError(f"irt: variant must be one of {VARIANTS}; got {self.variant!r}")
        if int(self.n_dims) < 1 or int(self.hidden_size) < 1:
            raise ValueError(f"irt: n_dims and hidden_size must be at least 1; got {self.n_dims!r}, {self.hidden_size!r}")

    def _epochs(self, n_prompts: int, n_llms: int) -> int:
        return epochs_within_budget(self.epochs, n_prompts, n_llms, self.cell_budget)

    def _make_net(self, d: int, m: int):
        if self.variant == "nirt":
            return NIRTNet(d, m, int(self.n_dims), int(self.hidden_size))
        return MIRTNet(d, m, int(self.n_dims))

    # ------------------------------------------------------------------ interpretable parts
    def abilities(self) -> np.ndarray:
        """float32 (n_llms, n_dims): each LLM's ability vector theta."""
        self._check_fitted()
        return self.net_.theta.detach().numpy().astype(np.float32)

    def item_parameters(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(discrimination float32 (n, n_dims), difficulty float32 (n,) MIRT | (n, n_dims) NIRT)."""
        self._check_fitted()
        X, _ = self._check_query(X, None)
        with torch.no_grad(), torch_threads(self.n_threads):
            x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
            a = F.softplus(self.net_.discrimination(x))
            b = self.net_.difficulty(x)
        b = b[:, 0] if self.variant == "mirt" else b
        return a.numpy().astype(np.float32), b.numpy().astype(np.float32)

    # ------------------------------------------------------------------ new LLMs
    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """New abilities by MAP from the probes (module docstring); the prompt networks stay frozen."""
        from recroute.routers.new_llms import VectorPrior, place_llm_vectors

        theta = self.abilities().astype(np.float64)
        if self.variant == "mirt" or X is None:
            P = offset = None
            if X is not None:
                a, b = self.item_parameters(X)
                P, offset = a.astype(np.float64), -b.astype(np.float64)
            new = place_llm_vectors(self, theta, P, Y, metadata, offset=offset, loss="logistic")
        else:
            known = getattr(self, "llm_metadata_", None)
            prior = VectorPrior(theta, None if known is None else known.values)
            new = self._map_nirt(X, Y, prior.means(Y.shape[1], metadata), prior.precision_)
        net = copy.deepcopy(self.net_)
        with torch.no_grad():
            net.theta = nn.Parameter(torch.cat([net.theta, torch.from_numpy(new.astype(np.float32))]))
        self.net_ = net

    def _map_nirt(self, X: np.ndarray, Y: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
        """float64 (n_new, n_dims): argmax of the NIRT log posterior of each new LLM's theta (L-BFGS)."""
        x = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        observed = torch.from_numpy(~np.isnan(Y))
        target = torch.from_numpy(np.nan_to_num(Y).astype(np.float32))
        mu = torch.from_numpy(means.astype(np.float32))
        lam = torch.from_numpy(precision.astype(np.float32))
        theta = mu.clone().requires_grad_(True)
        optimiser = torch.optim.LBFGS([theta], max_iter=NIRT_MAP_STEPS, line_search_fn="strong_wolfe")
        for p in self.net_.parameters():
            p.requires_grad_(False)

        def closure():
            optimiser.zero_grad()
            cells = F.binary_cross_entropy_with_logits(self.net_.logits_for(x, theta), target, reduction="none")
            diff = theta - mu
            loss = (cells * observed).sum() + 0.5 * torch.einsum("ij,jk,ik->", diff, lam, diff)
            loss.backward()
            return loss

        try:
            with torch_threads(self.n_threads):
                optimiser.step(closure)
        finally:
            for p in self.net_.parameters():
                p.requires_grad_(True)
        return theta.detach().numpy().astype(np.float64)

    def _net_config(self) -> dict[str, Any]:
        return {**super()._net_config(), "variant": str(self.variant)}
