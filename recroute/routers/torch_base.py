"""The shared base of the torch routers (LinearR, MLPR, MLC, two-tower, text MF) and their one training loop.

``net(X_batch) -> logits (batch, n_llms)``; the loss is BCE-with-logits on the observed cells of the
targets T (n, n_llms), NaN cells masked out, optionally weighted per cell (``fit(..., cell_weights=W)``:
the weighted mean over observed cells, e.g. inverse-propensity weights when learning from a decision log). Adam, cosine learning-rate decay per step to 0,
initialisation and shuffles seeded from ``random_state`` without touching torch's global RNG,
optional early stopping on a held-out share of the training prompts (best weights kept). Torch runs
with ``n_threads`` intra-op threads inside fit and score only (restored after): on a shared 2-core
machine, spinning OpenMP threads made fits up to 50× slower. Weights are saved as plain arrays.
"""

from __future__ import annotations

import copy
import math
from contextlib import contextmanager
from typing import Any

import numpy as np

from recroute.routers.base import Router


@contextmanager
def torch_threads(n_threads: int | None):
    """Run torch ops with ``n_threads`` intra-op threads, restoring the global setting after."""
    import torch

    old = torch.get_num_threads()
    change = n_threads is not None and int(n_threads) != old
    if change:
        torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        if change:
            torch.set_num_threads(old)


class TorchRouter(Router):
    """Subclasses give ``_make_net(d, m)``; optionally ``_targets`` and ``_init_net``."""

    lr: float
    epochs: int
    batch_size: int
    weight_decay: float
    random_state: int | None
    n_threads: int | None
    val_fraction: float = 0.0
    patience: int | None = None

    # ------------------------------------------------------------------ to override
    def _make_net(self, d: int, m: int):
        raise NotImplementedError

    def _net_config(self) -> dict[str, Any]:
        """Everything besides the parameters that rebuilds the network."""
        return {"d": int(self.n_features_in_), "m": int(self.n_llms_)}

    def _targets(self, Y: np.ndarray) -> np.ndarray:
        """float32 (n, m) training targets in [0, 1], NaN where unobserved."""
        return Y

    def _init_net(self, net) -> None:
        """Hook after the network is built and before training (e.g. fill buffers)."""

    def _epochs(self, n_prompts: int, n_llms: int) -> int:
        """Epochs to train for a (n_prompts, n_llms) target matrix; default ``self.epochs``."""
        return int(self.epochs)

    # ------------------------------------------------------------------ fit / score
    def fit(self, data, X: np.ndarray | None = None, cell_weights: np.ndarray | None = None) -> "TorchRouter":
        """As ``Router.fit``; ``cell_weights`` (n_prompts, n_llms) >= 0 weigh each observed cell's loss."""
        self._cell_weights = cell_weights
        try:
            return super().fit(data, X)
        finally:
            self._cell_weights = None

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        self._check_train_params()
        T = self._targets(np.asarray(Y, dtype=np.float32))
        weights = check_cell_weights(getattr(self, "_cell_weights", None), T.shape)
        with torch_threads(self.n_threads):
            self.net_ = self._build_net(X.shape[1], T.shape[1])
            self._init_net(self.net_)
            self.training_ = train_masked_bce(
                self.net_, X, T, lr=float(self.lr), weight_decay=float(self.weight_decay),
                epochs=self._epochs(*T.shape), batch_size=int(self.batch_size), random_state=self.random_state,
                val_fraction=float(self.val_fraction), patience=self.patience, weights=weights,
            )

    def _build_net(self, d: int, m: int):
        """The network, initialised from ``random_state`` without touching torch's global RNG."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0 if self.random_state is None else int(self.random_state))
            return self._make_net(d, m)

    def _logits(self, X: np.ndarray) -> np.ndarray:
        import torch

        self.net_.eval()
        with torch.no_grad(), torch_threads(self.n_threads):
            return self.net_(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self._logits(X).astype(np.float64)))

    def _check_train_params(self) -> None:
        if not float(self.lr) > 0:
            raise ValueError(f"{self.name}: lr must be positive; got {self.lr!r}")
        if int(self.epochs) < 1 or int(self.batch_size) < 1:
            raise ValueError(
                f"{self.name}: epochs and batch_size must be at least 1; got {self.epochs!r}, {self.batch_size!r}"
            )
        if not 0 <= float(self.val_fraction) < 1:
            raise ValueError(f"{self.name}: val_fraction must be in [0, 1); got {self.val_fraction!r}")

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"net.{k}": v.detach().cpu().numpy() for k, v in self.net_.state_dict().items()}
        return {"net": self._net_config(), "training": getattr(self, "training_", {})}, arrays

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        import torch

        config = meta["net"]
        self._restore_config(config)
        self.net_ = self._build_net(int(config["d"]), int(config["m"]))
        weights = {k[4:]: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k.startswith("net.")}
        self.net_.load_state_dict(weights, strict=True)
        self.net_.eval()
        self.training_ = meta.get("training", {})

    def _restore_config(self, config: dict[str, Any]) -> None:
        """Read back what ``_net_config`` added beyond d and m."""


def check_cell_weights(weights, shape: tuple[int, int]) -> np.ndarray | None:
    """float32 (n, m) finite non-negative per-cell loss weights, or None."""
    if weights is None:
        return None
    from recroute.errors import DataError

    W = np.asarray(weights, dtype=np.float32)
    if W.shape != tuple(shape):
        raise DataError(f"cell_weights has shape {W.shape}; expected the score matrix's {tuple(shape)}")
    if not np.isfinite(W).all() or (W < 0).any():
        raise DataError("cell_weights must be finite and >= 0")
    return W


def train_masked_bce(
    net,
    X: np.ndarray,
    T: np.ndarray,
    *,
    lr: float,
    weight_decay: float,
    epochs: int,
    batch_size: int,
    random_state: int | None,
    val_fraction: float = 0.0,
    patience: int | None = None,
    weights: np.ndarray | None = None,
) -> dict[str, float]:
    """Train ``net`` in place; returns {"epochs_run", "best_epoch", "val_loss"} (NaN without validation).

    ``weights`` (n, n_llms) >= 0: per-cell loss weights (the loss is their weighted mean over observed cells).

    Dropout draws come from a seeded generator inside ``fork_rng``: the global torch RNG is left as it was.
    """
    import torch

    seed = 0 if random_state is None else int(random_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _train(net, X, T, lr, weight_decay, epochs, batch_size, seed, val_fraction, patience, weights)


def _train(net, X, T, lr, weight_decay, epochs, batch_size, seed, val_fraction, patience, weights=None) -> dict[str, float]:
    import torch
    import torch.nn.functional as F

    observed = ~np.isnan(T)
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
    Tt = torch.from_numpy(np.where(observed, T, 0.0).astype(np.float32))
    mask = observed.astype(np.float32) if weights is None else np.where(observed, weights, 0.0).astype(np.float32)
    Mt = None if weights is None and observed.all() else torch.from_numpy(mask)
    train_rows, val_rows = _holdout(len(Xt), val_fraction if patience is not None else 0.0, seed)
    train_idx = torch.from_numpy(train_rows)
    bs = int(batch_size)
    total = max(int(epochs) * ((len(train_rows) + bs - 1) // bs), 1)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
    gen = torch.Generator().manual_seed(seed)
    best_loss, best_state, best_epoch, waited, step, epoch = math.inf, None, 0, 0, 0, 0
    for epoch in range(1, int(epochs) + 1):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        for start in range(0, len(order), bs):
            rows = order[start : start + bs]
            logits = net(Xt[rows])
            if Mt is None:
                loss = F.binary_cross_entropy_with_logits(logits, Tt[rows])
            else:
                mask = Mt[rows]
                cells = F.binary_cross_entropy_with_logits(logits, Tt[rows], reduction="none")
                loss = (cells * mask).sum() / mask.sum().clamp_min(1e-12)  # 0 when no cell is observed
            step = _adam_step(opt, loss, lr, step, total)
        if len(val_rows):
            val_loss = _masked_loss(net, Xt, Tt, Mt, val_rows)
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, waited = val_loss, epoch, 0
                best_state = copy.deepcopy(net.state_dict())
            else:
                waited += 1
                if waited >= int(patience):
                    break
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    return {"epochs_run": epoch, "best_epoch": best_epoch or epoch, "val_loss": best_loss if best_state is not None else math.nan}


def _masked_loss(net, Xt, Tt, Mt, rows: np.ndarray, batch: int = 4096) -> float:
    """Mean BCE-with-logits over the observed cells of ``rows`` (no gradient)."""
    import torch
    import torch.nn.functional as F

    net.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(rows), batch):
            idx = torch.from_numpy(rows[start : start + batch])
            cells = F.binary_cross_entropy_with_logits(net(Xt[idx]), Tt[idx], reduction="none")
            mask = torch.ones_like(cells) if Mt is None else Mt[idx]
            total += float((cells * mask).sum())
            count += float(mask.sum())
    return total / count if count > 0 else 0.0


def _holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): a seeded random ``fraction`` of the prompts held out."""
    if not fraction or n < 10:
        return np.arange(n, dtype=np.int64), np.zeros(0, dtype=np.int64)
    perm = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(fraction * n)))
    return np.sort(perm[n_val:]).astype(np.int64), np.sort(perm[:n_val]).astype(np.int64)


def epochs_within_budget(epochs: int, n_prompts: int, n_llms: int, cell_budget: float | None) -> int:
    """``epochs``, capped so that epochs · n_prompts · n_llms (cell visits) stays within ``cell_budget``
    (at least one epoch; None = no cap): a pool of thousands of LLMs gives each prompt thousands of
    targets per epoch, so fewer epochs see as many cells as many epochs over a small pool."""
    if cell_budget is None:
        return int(epochs)
    return max(1, min(int(epochs), int(float(cell_budget) // max(n_prompts * n_llms, 1))))


def _adam_step(opt, loss, lr: float, step: int, total: int) -> int:
    """One optimiser step on ``loss``, then the cosine learning-rate decay to 0 over ``total`` steps."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    step += 1
    for group in opt.param_groups:
        group["lr"] = 0.5 * lr * (1.0 + math.cos(math.pi * step / total))
    return step


def train_batches(
    net, n_rows: int, batch_loss, *, lr: float, weight_decay: float, epochs: int, batch_size: int,
    random_state: int | None, max_steps: int | None = None,
) -> dict[str, float]:
    """Train ``net`` in place on any loss: ``batch_loss(rows: LongTensor) -> scalar tensor`` per mini-batch.

    The same Adam, cosine decay and seeded shuffles as :func:`train_masked_bce` (no early stopping),
    for the routers whose loss is not a per-cell BCE (RouterDC's contrastive losses, GraphRouter's
    graph batches). ``max_steps``: stop after that many optimiser steps (the learning rate then decays
    to 0 over them). Returns {"epochs_run", "steps", "final_loss"} (the last epoch's mean batch loss).
    """
    import torch

    seed = 0 if random_state is None else int(random_state)
    bs = int(batch_size)
    total = max(int(epochs) * ((int(n_rows) + bs - 1) // bs), 1)
    if max_steps is not None:
        total = max(1, min(total, int(max_steps)))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay, fused=True)
        gen = torch.Generator().manual_seed(seed)
        step, epoch, mean_loss = 0, 0, math.nan
        while step < total:
            net.train()
            epoch += 1
            order = torch.randperm(int(n_rows), generator=gen)
            losses = []
            for start in range(0, len(order), bs):
                if step >= total:
                    break
                loss = batch_loss(order[start : start + bs])
                losses.append(float(loss.detach()))
                step = _adam_step(opt, loss, lr, step, total)
            mean_loss = float(np.mean(losses)) if losses else math.nan
    net.eval()
    return {"epochs_run": epoch, "steps": step, "final_loss": mean_loss}
