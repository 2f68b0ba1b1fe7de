"""GraphRouter: routing as edge prediction on a heterogeneous task / prompt / LLM graph.

Feng, Shen, You, "GraphRouter: A Graph-based Router for LLM Selections", ICLR 2025, arXiv
2410.03834. Task, prompt and LLM nodes; prompt-LLM edges carry the observed quality (score);
a GNN passes messages along them and an edge predictor scores the (prompt, LLM) edges a new prompt
would have. LLM nodes are built from what is known about the LLM (its metadata, and the messages of
the prompts it was evaluated on), never from a per-LLM id parameter, so the graph is inductive: an LLM
added after training becomes a node from its probe results (and metadata) without retraining.

This implementation, in plain torch (no torch-geometric):

- task nodes: the dataset's ``task`` column when it has two or more tasks, else ``n_tasks`` k-means
  clusters of the training prompts (RouterEval's protocol passes a bare score matrix). A prompt
  joins the task whose centroid (unit mean embedding) is nearest by cosine, for training and new
  prompts alike (score() sees only embeddings), and carries a learned task embedding;
- prompt node: h(x) = W x; its representation q = W2 [relu(h(x)), task embedding];
- LLM node: the messages of its quality edges, split by edge value: the y-weighted and
  (1 - y)-weighted means of the prompts' messages (a prompt's message is its centred embedding in
  the training prompts' top ``message_dim`` principal directions: fixed, so the means are computed
  once, and small, so 8,500 LLM nodes cost little per step), its mean score, its mean score per task
  (the task-LLM edges), its standardised numeric metadata, its description text where the LLM
  table has a ``description`` column (encoded with the encoder of the prompt embeddings, the
  dataset's ``embedding_name`` or ``text_encoder``, and sent as a message like a prompt's: centred, in
  the same principal directions) and, with cost edges, its mean standardised log cost; a ReLU layer
  maps them to a hidden node vector h, and h to [z, b] (quality) and [z_c, b_c] (cost);
- edge prediction: P(quality edge) = sigmoid(<q, z> + b), masked BCE on the observed cells; where
  the training data have costs (a RoutingDataset with prices or per-cell costs, or ``fit(...,
  costs=C)``), cost edges too: standardised log1p(cost / median cost) = <q, z_c> + b_c, masked
  squared error weighted by ``cost_loss_weight``. :meth:`GraphRouter.predict_costs` gives the
  predicted cost per (prompt, LLM) in the data's units, for the shared cost step
  (``recroute.cost.decide``: ``alpha_utility(router.score(X), router.predict_costs(X), alpha)`` or
  ``utility``), the one place routing trades quality for cost.

Training messages never carry the edge being predicted: the training prompts are split in two
seeded halves and each half is supervised against LLM nodes built from the other half's edges;
at scoring time the LLM nodes use every training edge. Defaults: ``dim`` = 128 (64 lost 0.012 mean V_B on llmrouter_nim), ``n_tasks`` = 8,
``message_dim`` = 32, ``max_llms_per_step`` = 256 (a pool larger than that trains each step
against a random subset of LLM nodes: the node maps are shared, so every LLM still shapes them),
Adam lr 1e-3, 30 epochs, batch 256 (ours; the paper trains two GeneralConv layers on the same
edge-prediction task), ``cost_loss_weight`` = 1. ``llm_text``: "auto" uses descriptions where the
LLM table has them and the prompt encoder is known (a name or folder ``get_encoder`` takes, of the
prompt embeddings' width), "off" never, "on" requires them (a DataError names what is missing).
Without metadata, costs or text the router is the quality graph alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.errors import DataError, NotSupportedError
from recroute.routers.torch_base import TorchRouter, torch_threads, train_batches

LLM_TEXT_COLUMN = "description"
LLM_TEXT_MODES = ("auto", "on", "off")

try:  # the network class lives at module level so routers pickle
    import torch
    from torch import nn

    class GraphRouterNet(nn.Module):
        """Prompt, task and LLM node maps; buffers hold the LLM nodes' aggregated messages."""

        def __init__(self, d: int, n_llms: int, n_tasks: int, n_meta: int, dim: int, message_dim: int,
                     n_text: int = 0, n_cost: int = 0):
            super().__init__()
            self.prompt_in = nn.Linear(d, dim)
            self.task_embedding = nn.Embedding(n_tasks, dim)
            self.prompt_out = nn.Linear(2 * dim, dim)
            self.llm_in = nn.Linear(2 * message_dim + 1 + n_tasks + n_meta + n_text + n_cost, dim)
            self.llm_out = nn.Linear(dim, dim + 1)
            self.cost_out = nn.Linear(dim, dim + 1) if n_cost else None  # the cost edges' [z_c, b_c]
            self.register_buffer("centroids", torch.zeros(n_tasks, d))
            self.register_buffer("center", torch.zeros(d))  # messages: (x - center) @ basis
            self.register_buffer("basis", torch.zeros(d, message_dim))
            self.register_buffer("pos_mean", torch.zeros(n_llms, message_dim))  # y-weighted mean message per LLM
            self.register_buffer("neg_mean", torch.zeros(n_llms, message_dim))  # (1 - y)-weighted
            self.register_buffer("stats", torch.zeros(n_llms, 1 + n_tasks + n_meta + n_text + n_cost))

        def assign_tasks(self, x):
            return (nn.functional.normalize(x, dim=1) @ self.centroids.T).argmax(dim=1)

        def prompt_vectors(self, x):
            t = self.assign_tasks(x)
            return self.prompt_out(torch.cat([torch.relu(self.prompt_in(x)), self.task_embedding(t)], dim=1))

        def llm_hidden(self, pos_mean=None, neg_mean=None, stats=None):
            """(n_llms, dim) hidden LLM node vectors h from the given messages (default: the buffers)."""
            pos_mean = self.pos_mean if pos_mean is None else pos_mean
            neg_mean = self.neg_mean if neg_mean is None else neg_mean
            stats = self.stats if stats is None else stats
            return torch.relu(self.llm_in(torch.cat([pos_mean, neg_mean, stats], dim=1)))

        def llm_vectors(self, pos_mean=None, neg_mean=None, stats=None):
            """(n_llms, dim + 1) [z, b] of the quality edges."""
            return self.llm_out(self.llm_hidden(pos_mean, neg_mean, stats))

        def edge_logits(self, q, zb):
            return q @ zb[:, :-1].T + zb[:, -1]

        def forward(self, x):
            return self.edge_logits(self.prompt_vectors(x), self.llm_vectors())

        def cost_edges(self, x):
            """(n, n_llms) predicted standardised log costs of the prompts' edges to every LLM node."""
            return self.edge_logits(self.prompt_vectors(x), self.cost_out(self.llm_hidden()))

except ImportError:  # pragma: no cover - torch is a dependency
    GraphRouterNet = None


def llm_messages(X: np.ndarray, Y: np.ndarray, tasks: np.ndarray, n_tasks: int, x_prior: np.ndarray,
                 y_prior: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An LLM node's messages from its quality edges to prompts X (n, d) with scores Y (n, n_llms), NaN = none.

    Returns float32 (pos_mean (n_llms, d), neg_mean (n_llms, d), stats (n_llms, 1 + n_tasks)):
    the y- and (1 - y)-weighted mean embeddings (``x_prior`` where the weights sum to 0), the mean
    score (``y_prior`` without an observed cell) and the mean score per task (the LLM's mean score
    where it has no observed cell in the task). ``tasks`` int (n,) in 0..n_tasks-1.
    """
    X = np.asarray(X, dtype=np.float32)
    observed = ~np.isnan(Y)
    good = np.where(observed, Y, 0.0).astype(np.float32)
    bad = observed.astype(np.float32) - good

    def weighted_mean(W: np.ndarray) -> np.ndarray:
        total = W.sum(axis=0)
        means = (W.T @ X) / np.maximum(total, 1e-12)[:, None]
        return np.where(total[:, None] > 0, means, x_prior[None, :]).astype(np.float32)

    count = observed.sum(axis=0)
    mean = np.where(count > 0, good.sum(axis=0) / np.maximum(count, 1), y_prior)
    onehot = np.zeros((len(X), int(n_tasks)), dtype=np.float32)
    onehot[np.arange(len(X)), np.asarray(tasks, dtype=np.int64)] = 1.0
    task_count = observed.T.astype(np.float32) @ onehot
    per_task = np.where(task_count > 0, (good.T @ onehot) / np.maximum(task_count, 1), mean[:, None])
    stats = np.hstack([mean[:, None], per_task]).astype(np.float32)
    return weighted_mean(good), weighted_mean(bad), stats


def message_basis(X: np.ndarray, message_dim: int, random_state: int | None,
                  max_rows: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """(center float32 (d,), basis float32 (d, r)): the mean and top r = min(message_dim, d, n)
    principal directions of the training embeddings (from at most ``max_rows`` seeded rows)."""
    X = np.asarray(X, dtype=np.float32)
    rows = np.arange(len(X))
    if len(X) > max_rows:
        rows = np.sort(np.random.default_rng(0 if random_state is None else int(random_state)).choice(len(X), max_rows, replace=False))
    from threadpoolctl import threadpool_limits

    center = X.mean(axis=0)
    Xc = (X[rows] - center).astype(np.float64)
    with threadpool_limits(1):  # a small eigenproblem: threads only spin on a shared machine
        values, vectors = np.linalg.eigh(Xc.T @ Xc)
    r = max(1, min(int(message_dim), len(rows), X.shape[1]))
    top = np.argsort(-values, kind="stable")[:r]
    return center.astype(np.float32), np.ascontiguousarray(vectors[:, top], dtype=np.float32)


def task_centroids(X: np.ndarray, labels: np.ndarray, n_tasks: int) -> np.ndarray:
    """float32 (n_tasks, d) unit mean embedding of each task's prompts (zeros for an empty task)."""
    from recroute.encoders.base import l2_normalise

    onehot = np.zeros((len(X), int(n_tasks)), dtype=np.float32)
    onehot[np.arange(len(X)), labels] = 1.0
    return l2_normalise(onehot.T @ l2_normalise(X))


class GraphRouter(TorchRouter):
    """GraphRouter on prompt embeddings; see the module docstring. ``score`` is P(correct)."""

    name = "graphrouter"
    supports_new_llms = True

    def __init__(
        self,
        dim: int = 128,
        n_tasks: int = 8,
        message_dim: int = 32,
        max_llms_per_step: int = 256,
        use_metadata: bool = True,
        llm_text: str = "auto",
        text_encoder: str | None = None,
        cost_edges: bool = True,
        cost_loss_weight: float = 1.0,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 30,
        batch_size: int = 256,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.dim = dim
        self.n_tasks = n_tasks
        self.message_dim = message_dim
        self.max_llms_per_step = max_llms_per_step
        self.use_metadata = use_metadata
        self.llm_text = llm_text
        self.text_encoder = text_encoder
        self.cost_edges = cost_edges
        self.cost_loss_weight = cost_loss_weight
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, data, X: np.ndarray | None = None, costs: np.ndarray | None = None) -> "GraphRouter":
        """As ``Router.fit``; a RoutingDataset's ``task`` column (two or more tasks) gives the task nodes,
        its LLM table's ``description`` column the LLM text, and its costs (``data.costs()``, prices or
        per-cell costs) the cost edges. ``costs`` float (n_prompts, n_llms) >= 0, NaN = unknown, replaces
        the dataset's (and gives a bare score matrix cost edges)."""
        self._check_params()
        tasks = getattr(data, "prompts", None)
        self._task_labels = None
        if tasks is not None and "task" in tasks and tasks["task"].nunique() >= 2:
            self._task_labels = tasks["task"].astype(str).fillna("").to_numpy()
        self._train_costs = training_costs(data, costs) if self.cost_edges else None
        self._text_source = data
        self._text_X = X
        try:
            return super().fit(data, X)
        finally:
            self._task_labels = self._train_costs = self._text_source = self._text_X = None

    def _make_net(self, d: int, m: int):
        return GraphRouterNet(d, m, int(self.n_tasks_), int(self.n_meta_), int(self.dim), int(self.message_dim_),
                              int(self.n_text_), int(self.n_cost_))

    def _net_config(self) -> dict[str, Any]:
        return {**super()._net_config(), "n_tasks": int(self.n_tasks_), "n_meta": int(self.n_meta_),
                "message_dim": int(self.message_dim_), "n_text": int(self.n_text_), "n_cost": int(self.n_cost_)}

    def _restore_config(self, config: dict[str, Any]) -> None:
        self.n_tasks_, self.n_meta_ = int(config["n_tasks"]), int(config["n_meta"])
        self.message_dim_ = int(config["message_dim"])
        self.n_text_, self.n_cost_ = int(config.get("n_text", 0)), int(config.get("n_cost", 0))

    def _meta_values(self) -> np.ndarray | None:
        meta = getattr(self, "llm_metadata_", None)
        return meta.values if self.use_metadata and meta is not None else None

    def _task_nodes(self, X: np.ndarray) -> np.ndarray:
        """int64 (n,) a task label per training prompt (the dataset's tasks, else k-means clusters)."""
        from recroute.routers.routerdc import cluster_labels

        if self._task_labels is not None:
            return np.unique(self._task_labels, return_inverse=True)[1].astype(np.int64)
        return cluster_labels(X, int(self.n_tasks), self.random_state)

    def _check_params(self) -> None:
        self._check_train_params()
        values = {k: getattr(self, k) for k in ("dim", "n_tasks", "message_dim", "max_llms_per_step")}
        if min(int(v) for v in values.values()) < 1:
            raise ValueError(f"{self.name}: dim, n_tasks, message_dim and max_llms_per_step must be at least 1; got {values}")
        if self.llm_text not in LLM_TEXT_MODES:
            raise ValueError(f"{self.name}: llm_text must be one of {LLM_TEXT_MODES}; got {self.llm_text!r}")
        if not float(self.cost_loss_weight) >= 0:
            raise ValueError(f"{self.name}: cost_loss_weight must be >= 0; got {self.cost_loss_weight!r}")

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        labels = self._task_nodes(X)
        self.n_tasks_ = int(labels.max()) + 1
        meta = self._meta_values()
        self.n_meta_ = 0 if meta is None else meta.shape[1]
        center, basis = message_basis(X, int(self.message_dim), self.random_state)
        self.message_dim_ = basis.shape[1]
        self.text_encoder_, texts = self._llm_texts(Y.shape[1], X.shape[1])
        self.n_text_ = 0 if texts is None else self.message_dim_
        C = self._train_costs
        self.n_cost_ = int(C is not None)
        if C is not None:
            self.cost_scale_ = cost_scale(C)
            U = np.log1p(C / self.cost_scale_)
            self.cost_mean_, self.cost_std_ = float(np.nanmean(U)), float(max(np.nanstd(U), 1e-6))
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        with torch_threads(self.n_threads):
            self.net_ = self._build_net(X.shape[1], Y.shape[1])
            self.net_.centroids.copy_(torch.from_numpy(task_centroids(X, labels, self.n_tasks_)))
            self.net_.center.copy_(torch.from_numpy(center))
            self.net_.basis.copy_(torch.from_numpy(basis))
            self.text_messages_ = None if texts is None else self._text_messages(texts)
            tasks = self.net_.assign_tasks(Xt).numpy()
            messages = self._messages(X)
            self.y_prior_ = float(np.nanmean(Y)) if np.isfinite(Y).any() else 0.5
            S = None if C is None else ((np.log1p(C / self.cost_scale_) - self.cost_mean_) / self.cost_std_).astype(np.float32)
            half = np.random.default_rng(0 if self.random_state is None else int(self.random_state)).random(len(X)) < 0.5
            # each half is supervised against LLM nodes built from the other half's edges
            fold_nodes = [self._node_tensors(messages[other], Y[other], tasks[other], meta, self.text_messages_,
                                             None if S is None else S[other]) for other in (half, ~half)]
            fold = torch.from_numpy(half)
            T, M = masked_targets(Y)
            CT, CM = (None, None) if S is None else masked_targets(S)
            weight = float(self.cost_loss_weight)

            n_llms, per_step = Y.shape[1], int(self.max_llms_per_step)

            def batch_loss(rows):
                # a random subset of LLM nodes per step in very large pools (the node maps are shared)
                cols = torch.randperm(n_llms)[:per_step].sort().values if n_llms > per_step else torch.arange(n_llms)
                total, count = torch.zeros(()), torch.zeros(())
                cost_total, cost_count = torch.zeros(()), torch.zeros(())
                for side, (pos, neg, stats) in enumerate(fold_nodes):
                    part = rows[fold[rows] == bool(side)]
                    if len(part):
                        h = self.net_.llm_hidden(pos[cols], neg[cols], stats[cols])
                        q = self.net_.prompt_vectors(Xt[part])
                        cells_at = (part[:, None], cols[None, :])
                        logits = self.net_.edge_logits(q, self.net_.llm_out(h))
                        cells = nn.functional.binary_cross_entropy_with_logits(logits, T[cells_at], reduction="none")
                        total, count = total + (cells * M[cells_at]).sum(), count + M[cells_at].sum()
                        if CT is not None:
                            err = (self.net_.edge_logits(q, self.net_.cost_out(h)) - CT[cells_at]) ** 2
                            cost_total, cost_count = cost_total + (err * CM[cells_at]).sum(), cost_count + CM[cells_at].sum()
                loss = total / count.clamp_min(1.0)
                if CT is not None:
                    loss = loss + weight * cost_total / cost_count.clamp_min(1.0)
                return loss

            self.training_ = train_batches(
                self.net_, len(X), batch_loss, lr=float(self.lr), weight_decay=float(self.weight_decay),
                epochs=int(self.epochs), batch_size=int(self.batch_size), random_state=self.random_state,
            )
            pos, neg, stats = self._node_tensors(messages, Y, tasks, meta, self.text_messages_, S)
            self.net_.pos_mean, self.net_.neg_mean, self.net_.stats = pos, neg, stats

    # ------------------------------------------------------------------ LLM text
    def _llm_texts(self, n_llms: int, d: int) -> tuple[str | None, list[str] | None]:
        """(the text encoder's name or folder, the LLMs' descriptions) or (None, None) when the LLM text
        is not used; "on" raises a DataError naming what is missing, "auto" goes without."""
        if self.llm_text == "off":
            return None, None
        need = self.llm_text == "on"
        table = getattr(self._text_source, "llms", None)
        if table is None or LLM_TEXT_COLUMN not in table or len(table) != n_llms or not table[LLM_TEXT_COLUMN].notna().any():
            if need:
                raise DataError(f"{self.name}: llm_text='on' needs an LLM table with a {LLM_TEXT_COLUMN!r} column "
                                "(llms.parquet), one row per LLM")
            return None, None
        name = self.text_encoder
        if name is None and (self._text_X is None or self._text_X is getattr(self._text_source, "embeddings", None)):
            name = getattr(self._text_source, "embedding_name", None)
        try:
            if name is None:
                raise ValueError("the prompt embeddings name no encoder (give text_encoder=NAME|FOLDER)")
            encoder = description_encoder(name)
            if encoder.dim != d:
                raise ValueError(f"encoder {name!r} gives dim {encoder.dim}; the prompt embeddings have dim {d}")
        except (ValueError, ImportError, OSError) as exc:
            if need:
                raise DataError(f"{self.name}: llm_text='on' needs the encoder of the prompt embeddings: {exc}") from None
            return None, None
        texts = [str(t) if isinstance(t, str) else "" for t in table[LLM_TEXT_COLUMN].tolist()]
        self._encoder = encoder
        return str(name), texts

    def _text_messages(self, texts: list[str]) -> np.ndarray:
        """float32 (n, message_dim): the LLM descriptions encoded and sent as messages (an empty
        description sends the mean prompt's message, 0)."""
        from recroute.encoders.cache import encode_cached

        encoder = getattr(self, "_encoder", None) or description_encoder(self.text_encoder_)
        present = np.array([bool(t.strip()) for t in texts])
        out = np.zeros((len(texts), self.message_dim_), dtype=np.float32)
        if present.any():
            E = encode_cached(encoder, [t for t, p in zip(texts, present) if p])
            out[present] = self._messages(E)
        return out

    # ------------------------------------------------------------------ costs
    @property
    def predicts_costs(self) -> bool:
        """Whether the router was fitted with cost edges (:meth:`predict_costs` works)."""
        return bool(getattr(self, "n_cost_", 0))

    def predict_costs(self, X: np.ndarray) -> np.ndarray:
        """float64 (n, n_llms) >= 0: the predicted cost of each prompt on each LLM (the training costs' units)."""
        self._check_fitted()
        if not self.predicts_costs:
            raise NotSupportedError(f"{self.name} was fitted without costs (no prices or per-cell costs in the "
                                    "training data, or cost_edges=False): it predicts no cost edges")
        X, _ = self._check_query(X, None)
        self.net_.eval()
        with torch.no_grad(), torch_threads(self.n_threads):
            S = self.net_.cost_edges(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
        U = S.astype(np.float64) * self.cost_std_ + self.cost_mean_
        return np.maximum(self.cost_scale_ * np.expm1(np.maximum(U, 0.0)), 0.0)

    # ------------------------------------------------------------------ nodes
    def _messages(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, message_dim): what a prompt node sends along its edges (its centred embedding in
        the training prompts' top principal directions)."""
        return ((np.asarray(X, dtype=np.float32) - self.net_.center.numpy()) @ self.net_.basis.numpy()).astype(np.float32)

    def _node_tensors(self, messages, Y, tasks, meta, text=None, S=None):
        """LLM node inputs (pos_mean, neg_mean, stats) tensors: quality messages, then the extra stats
        columns in order metadata, text messages, mean standardised log cost (those the router uses)."""
        pos, neg, stats = llm_messages(messages, Y, tasks, self.n_tasks_, np.zeros(self.message_dim_, np.float32),
                                       self.y_prior_)
        n_llms = Y.shape[1]
        extra = [stats]
        if self.n_meta_:
            extra.append(np.zeros((n_llms, self.n_meta_), np.float32) if meta is None else meta)
        if self.n_text_:
            extra.append(np.zeros((n_llms, self.n_text_), np.float32) if text is None else text)
        if self.n_cost_:
            extra.append(mean_cost_stat(S, n_llms))
        stats = np.hstack(extra).astype(np.float32)
        return torch.from_numpy(pos), torch.from_numpy(neg), torch.from_numpy(stats)

    def _state(self):
        meta, arrays = super()._state()
        state = {**meta, "y_prior": self.y_prior_, "text_encoder": self.text_encoder_}
        if self.predicts_costs:
            state["cost"] = {"scale": self.cost_scale_, "mean": self.cost_mean_, "std": self.cost_std_}
        return state, arrays

    def _set_state(self, meta, arrays, path) -> None:
        super()._set_state(meta, arrays, path)
        self.y_prior_ = float(meta["y_prior"])
        self.text_encoder_ = meta.get("text_encoder")
        if self.n_cost_:
            cost = meta["cost"]
            self.cost_scale_, self.cost_mean_, self.cost_std_ = (float(cost[k]) for k in ("scale", "mean", "std"))

    # ------------------------------------------------------------------ new LLMs (inductive)
    def partial_fit_llms(self, X_probe, Y_probe, names, metadata=None) -> "GraphRouter":
        """As ``Router.partial_fit_llms``; a router fitted with LLM text also reads the new LLMs'
        ``description`` column from ``metadata`` (encoded with its text encoder; a missing one sends
        the prior message). New LLMs' cost nodes take the training LLMs' mean cost (and their prices
        through the numeric metadata, where the router was fitted with prices)."""
        self._new_texts = None
        if getattr(self, "n_text_", 0) and metadata is not None and LLM_TEXT_COLUMN in getattr(metadata, "columns", ()):
            by_name = metadata.drop_duplicates("llm").set_index(metadata["llm"].drop_duplicates().astype(str))
            names_list = [names] if isinstance(names, str) else [str(n) for n in names]
            self._new_texts = [str(by_name[LLM_TEXT_COLUMN].get(n)) if isinstance(by_name[LLM_TEXT_COLUMN].get(n), str)
                               else "" for n in names_list]
        if getattr(self, "llm_metadata_", None) is None:
            metadata = None  # only the text was usable
        try:
            new = super().partial_fit_llms(X_probe, Y_probe, names, metadata)
        finally:
            self._new_texts = None
        new._new_texts = None
        return new

    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """New LLM nodes from their probe edges (metadata, text); the network and the other nodes are unchanged."""
        import copy

        n_new = Y.shape[1]
        if X is None:
            X, Y = np.zeros((0, self.n_features_in_), dtype=np.float32), np.zeros((0, n_new), dtype=np.float32)
        with torch.no_grad(), torch_threads(self.n_threads):
            tasks = self.net_.assign_tasks(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
        text = None
        if self.n_text_ and getattr(self, "_new_texts", None) is not None:
            text = self._text_messages(self._new_texts)
        pos, neg, stats = self._node_tensors(self._messages(X), Y, tasks, metadata, text)
        net = copy.deepcopy(self.net_)
        net.pos_mean = torch.cat([net.pos_mean, pos])
        net.neg_mean = torch.cat([net.neg_mean, neg])
        net.stats = torch.cat([net.stats, stats])
        self.net_ = net


def masked_targets(T: np.ndarray):
    """(values, mask) float32 tensors of a (n, m) target with NaN = unobserved (values 0 there)."""
    observed = ~np.isnan(T)
    return (torch.from_numpy(np.where(observed, T, 0.0).astype(np.float32)),
            torch.from_numpy(observed.astype(np.float32)))


def mean_cost_stat(S: np.ndarray | None, n_llms: int) -> np.ndarray:
    """float32 (n_llms, 1): each LLM's mean standardised log cost over its known cost edges (0, the
    training mean, without any, or for a new LLM)."""
    if S is None:
        return np.zeros((n_llms, 1), dtype=np.float32)
    known = ~np.isnan(S)
    count = known.sum(axis=0)
    mean = np.where(count > 0, np.where(known, S, 0.0).sum(axis=0) / np.maximum(count, 1), 0.0)
    return mean[:, None].astype(np.float32)


def cost_scale(C: np.ndarray) -> float:
    """The median positive known cost (1.0 when there is none): costs are modelled as log1p(cost / scale)."""
    positive = C[np.isfinite(C) & (C > 0)]
    return float(np.median(positive)) if positive.size else 1.0


def training_costs(data, costs=None) -> np.ndarray | None:
    """float64 (n_prompts, n_llms) costs for the cost edges, NaN = unknown, or None without costs:
    ``costs`` when given (checked), else a RoutingDataset's ``costs()`` where it has prices or per-cell
    costs (an LLM it cannot price leaves its cells unknown)."""
    if costs is not None:
        C = np.asarray(costs, dtype=np.float64)
        shape = getattr(data, "shape", None) or np.shape(data)
        if C.shape != tuple(shape):
            raise DataError(f"costs must have the score matrix's shape {tuple(shape)}; got {C.shape}")
        if np.isinf(C).any() or (np.nan_to_num(C) < 0).any():
            raise DataError("costs must be finite numbers >= 0 (NaN = unknown)")
        return C if np.isfinite(C).any() else None
    if not getattr(data, "has_costs", False):
        return None
    try:
        return np.asarray(data.costs(), dtype=np.float64)
    except DataError:  # some LLM has neither a price nor every cell's cost: keep the priced ones
        prices = data.prices()
        if prices is None or not prices.priced.any():
            return None
        priced = np.flatnonzero(prices.priced)
        part = data.subset(llms=priced).costs()
        C = np.full(data.shape, np.nan)
        C[:, priced] = part
        return C


def description_encoder(name: str):
    """The encoder (by name or folder) that encodes LLM descriptions; a ValueError when it cannot be made."""
    from recroute.encoders.base import get_encoder

    encoder = get_encoder(name)
    if getattr(encoder, "is_fitted", True) is False:
        raise ValueError(f"encoder {name!r} must be fitted on the prompts first (give its saved folder)")
    return encoder
