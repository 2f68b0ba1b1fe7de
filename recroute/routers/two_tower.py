"""Two-tower router (torch) and its EmbedLLM-style special case, text MF.

A prompt tower maps the prompt embedding x (d) to a vector p (dim) and a difficulty scalar; an LLM
tower gives each LLM a vector l_j = id embedding (+ a linear map of its numeric metadata) and a bias.
P(correct) = sigmoid(<p, l_j> + b_j + difficulty(x)). New prompts go through the prompt tower, so
unseen prompts need only their embedding. Trained on observed cells only (masked BCE), with early
stopping on a held-out share of the training prompts; deterministic under ``random_state``.

The difficulty term shifts all of a prompt's scores equally, so routing is the top-k of
<[p, 1], [l_j, b_j]>: the LLM vectors are exported into a FAISS inner-product index and routing
among a very large pool (thousands of LLMs) is a top-k search.

EmbedLLM's text MF (LLM embedding ⊙ projected prompt embedding, then a linear classifier) is the
special case with a linear prompt tower: the classifier's weights fold into the LLM embeddings.
``TextMFRouter`` is that configuration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.routers.features import numeric_llm_features
from recroute.routers.torch_base import TorchRouter, torch_threads

FAISS_MIN_LLMS = 256  # from this pool size on, route() searches the FAISS index

try:  # the network class lives at module level so routers pickle; torch itself stays optional
    import torch
    from torch import nn

    class TwoTowerNet(nn.Module):
        """logits (n, n_llms) = <p(x), l_j> + b_j + difficulty(x)."""

        def __init__(self, d: int, n_llms: int, n_meta: int, dim: int, hidden: tuple[int, ...], dropout: float):
            super().__init__()
            layers, width = [], d
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
                width = h
            self.prompt_tower = nn.Sequential(*layers)
            self.prompt_out = nn.Linear(width, dim + 1)  # vector + difficulty
            self.llm_embedding = nn.Embedding(n_llms, dim)
            nn.init.normal_(self.llm_embedding.weight, std=0.1)
            self.llm_meta = nn.Linear(n_meta, dim, bias=False) if n_meta else None
            self.llm_bias = nn.Parameter(torch.zeros(n_llms))
            self.register_buffer("meta", torch.zeros(n_llms, max(n_meta, 1)))

        def llm_vectors(self):
            vectors = self.llm_embedding.weight
            if self.llm_meta is not None:
                vectors = vectors + self.llm_meta(self.meta)
            return vectors

        def prompt_parts(self, x):
            out = self.prompt_out(self.prompt_tower(x))
            return out[:, :-1], out[:, -1]

        def forward(self, x):
            p, difficulty = self.prompt_parts(x)
            return p @ self.llm_vectors().T + self.llm_bias + difficulty[:, None]

except ImportError:  # pragma: no cover - torch is a dependency; this keeps imports cheap to reason about
    TwoTowerNet = None


class TwoTowerRouter(TorchRouter):
    """Prompt tower (MLP over embeddings) × LLM tower (id + metadata); see the module docstring."""

    name = "two_tower"
    max_fit_cells = 7.0e8  # benchmarks/fit_scale.py: 204M cells in 78 s
    fit_cost_parameter = "epochs"
    supports_new_llms = True

    def __init__(
        self,
        dim: int = 64,
        hidden: tuple[int, ...] | list[int] = (256,),
        dropout: float = 0.1,
        use_metadata: bool = True,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 60,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        patience: int | None = 5,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.use_metadata = use_metadata
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.patience = patience
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, data, X: np.ndarray | None = None, cell_weights: np.ndarray | None = None) -> "TwoTowerRouter":
        table = getattr(data, "llms", None) if self.use_metadata else None
        self._meta = numeric_llm_features(table, getattr(data, "n_llms", -1))
        self.n_meta_ = 0 if self._meta is None else self._meta.shape[1]
        self._index = None
        try:
            return super().fit(data, X, cell_weights=cell_weights)
        finally:
            self._meta = None

    def _make_net(self, d: int, m: int):
        hidden = tuple(int(h) for h in self.hidden)
        return TwoTowerNet(d, m, int(self.n_meta_), int(self.dim), hidden, float(self.dropout))

    def _init_net(self, net) -> None:
        if self._meta is not None:
            net.meta.copy_(torch.from_numpy(self._meta))

    def _net_config(self) -> dict[str, Any]:
        return {**super()._net_config(), "n_meta": int(self.n_meta_)}

    def _restore_config(self, config: dict[str, Any]) -> None:
        self.n_meta_ = int(config.get("n_meta", 0))
        self._index = None

    # ------------------------------------------------------------------ new LLMs
    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """Frozen prompt tower; each new LLM's [l, b] is the logistic MAP fit on the probes' prompt
        vectors (difficulty as offset) under a prior from the existing LLM vectors and metadata. The
        LLM tower grows by one id row per new LLM (l minus its metadata term) and its bias."""
        import copy

        from recroute.routers.new_llms import place_llm_vectors

        P = difficulty = None
        if X is not None:
            P, difficulty = self.prompt_vectors(X)
        new = place_llm_vectors(self, self.llm_vectors(), P, Y, metadata, offset=difficulty, loss="logistic")
        net = copy.deepcopy(self.net_)
        with torch.no_grad():
            meta_rows = torch.zeros(len(new), net.meta.shape[1])
            if metadata is not None and self.n_meta_:
                meta_rows = torch.from_numpy(np.ascontiguousarray(metadata, dtype=np.float32))
            net.meta = torch.cat([net.meta, meta_rows])
            ids = torch.from_numpy(new[:, :-1].astype(np.float32))
            if net.llm_meta is not None:
                ids = ids - net.llm_meta(meta_rows)
            weight = torch.cat([net.llm_embedding.weight, ids])
            net.llm_embedding = nn.Embedding.from_pretrained(weight, freeze=False)
            net.llm_bias = nn.Parameter(torch.cat([net.llm_bias, torch.from_numpy(new[:, -1].astype(np.float32))]))
        self.net_ = net
        self._index = None

    # ------------------------------------------------------------------ FAISS export
    def llm_vectors(self) -> np.ndarray:
        """float32 (n_llms, dim + 1): [l_j, b_j], the LLM side of the routing inner product."""
        self._check_fitted()
        with torch.no_grad():
            vectors = self.net_.llm_vectors().numpy()
            return np.hstack([vectors, self.net_.llm_bias.numpy()[:, None]]).astype(np.float32)

    def prompt_vectors(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(float32 (n, dim + 1) [p, 1], float32 (n,) difficulty) of new prompts."""
        self._check_fitted()
        X, _ = self._check_query(X, None)
        self.net_.eval()
        with torch.no_grad(), torch_threads(self.n_threads):
            p, difficulty = self.net_.prompt_parts(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))
        ones = np.ones((len(X), 1), dtype=np.float32)
        return np.hstack([p.numpy(), ones]).astype(np.float32), difficulty.numpy().astype(np.float32)

    def llm_index(self):
        """A FAISS IndexFlatIP over the LLM vectors (built once, cached)."""
        import faiss

        if getattr(self, "_index", None) is None:
            vectors = self.llm_vectors()
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(vectors)
            self._index = index
        return self._index

    def route(self, X, k: int = 1, candidates=None, n: int | None = None):
        """Top-k LLMs; with no candidate restriction and a large pool, a FAISS top-k search."""
        self._check_fitted()
        if candidates is not None or self.n_llms_ < FAISS_MIN_LLMS:
            return super().route(X, k=k, candidates=candidates, n=n)
        if not 1 <= int(k) <= self.n_llms_:
            raise ValueError(f"k must be between 1 and the number of candidates ({self.n_llms_}); got {k}")
        P, difficulty = self.prompt_vectors(X)
        sims, rows = self.llm_index().search(P, int(k))
        scores = 1.0 / (1.0 + np.exp(-(sims.astype(np.float64) + difficulty[:, None])))
        return rows.astype(np.int64), scores.astype(np.float32)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_index"] = None  # FAISS indexes do not pickle; rebuilt on demand
        return state


class TextMFRouter(TwoTowerRouter):
    """EmbedLLM-style text MF: a linear projection of the prompt embedding ⊙ an LLM embedding.

    The two-tower router with a linear prompt tower (``hidden=()``) and no metadata; see the module
    docstring.
    """

    name = "text_mf"
    max_fit_cells = 7.5e8  # benchmarks/fit_scale.py: 204M cells in 71 s

    def __init__(
        self,
        dim: int = 64,
        hidden: tuple[int, ...] | list[int] = (),
        dropout: float = 0.0,
        use_metadata: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 60,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        patience: int | None = 5,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        super().__init__(dim, hidden, dropout, use_metadata, lr, weight_decay, epochs, batch_size,
                         val_fraction, patience, random_state, n_threads)
