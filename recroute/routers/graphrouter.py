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
  (the task-LLM edges) and its standardised numeric metadata; a ReLU layer maps them to [z, b];
- edge prediction: P(quality edge) = sigmoid(<q, z> + b), masked BCE on the observed cells.

Training messages never carry the edge being predicted: the training prompts are split in two
seeded halves and each half is supervised against LLM nodes built from the other half's edges;
at scoring time the LLM nodes use every training edge. Defaults: ``dim`` = 64, ``n_tasks`` = 8,
``message_dim`` = 32, ``max_llms_per_step`` = 256 (a pool larger than that trains each step
against a random subset of LLM nodes: the node maps are shared, so every LLM still shapes them),
Adam lr 1e-3, 30 epochs, batch 256 (ours; the paper trains two GeneralConv layers on the same
edge-prediction task). Its cost edges are not built here: cost enters through recroute's shared
cost step over these P(correct).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recroute.routers.torch_base import TorchRouter, torch_threads, train_batches

try:  # the network class lives at module level so routers pickle
    import torch
    from torch import nn

    class GraphRouterNet(nn.Module):
        """Prompt, task and LLM node maps; buffers hold the LLM nodes' aggregated messages."""

        def __init__(self, d: int, n_llms: int, n_tasks: int, n_meta: int, dim: int, message_dim: int):
            super().__init__()
            self.prompt_in = nn.Linear(d, dim)
            self.task_embedding = nn.Embedding(n_tasks, dim)
            self.prompt_out = nn.Linear(2 * dim, dim)
            self.llm_in = nn.Linear(2 * message_dim + 1 + n_tasks + n_meta, dim)
            self.llm_out = nn.Linear(dim, dim + 1)
            self.register_buffer("centroids", torch.zeros(n_tasks, d))
            self.register_buffer("center", torch.zeros(d))  # messages: (x - center) @ basis
            self.register_buffer("basis", torch.zeros(d, message_dim))
            self.register_buffer("pos_mean", torch.zeros(n_llms, message_dim))  # y-weighted mean message per LLM
            self.register_buffer("neg_mean", torch.zeros(n_llms, message_dim))  # (1 - y)-weighted
            self.register_buffer("stats", torch.zeros(n_llms, 1 + n_tasks + n_meta))

        def assign_tasks(self, x):
            return (nn.functional.normalize(x, dim=1) @ self.centroids.T).argmax(dim=1)

        def prompt_vectors(self, x):
            t = self.assign_tasks(x)
            return self.prompt_out(torch.cat([torch.relu(self.prompt_in(x)), self.task_embedding(t)], dim=1))

        def llm_vectors(self, pos_mean=None, neg_mean=None, stats=None):
            """(n_llms, dim + 1) [z, b] from the given messages (default: the buffers)."""
            pos_mean = self.pos_mean if pos_mean is None else pos_mean
            neg_mean = self.neg_mean if neg_mean is None else neg_mean
            stats = self.stats if stats is None else stats
            parts = [pos_mean, neg_mean, stats]
            return self.llm_out(torch.relu(self.llm_in(torch.cat(parts, dim=1))))

        def edge_logits(self, q, zb):
            return q @ zb[:, :-1].T + zb[:, -1]

        def forward(self, x):
            return self.edge_logits(self.prompt_vectors(x), self.llm_vectors())

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
        dim: int = 64,
        n_tasks: int = 8,
        message_dim: int = 32,
        max_llms_per_step: int = 256,
        use_metadata: bool = True,
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
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, data, X: np.ndarray | None = None) -> "GraphRouter":
        """As ``Router.fit``; a RoutingDataset's ``task`` column (two or more tasks) gives the task nodes."""
        tasks = getattr(data, "prompts", None)
        self._task_labels = None
        if tasks is not None and "task" in tasks and tasks["task"].nunique() >= 2:
            self._task_labels = tasks["task"].astype(str).fillna("").to_numpy()
        try:
            return super().fit(data, X)
        finally:
            self._task_labels = None

    def _make_net(self, d: int, m: int):
        return GraphRouterNet(d, m, int(self.n_tasks_), int(self.n_meta_), int(self.dim), int(self.message_dim_))

    def _net_config(self) -> dict[str, Any]:
        return {**super()._net_config(), "n_tasks": int(self.n_tasks_), "n_meta": int(self.n_meta_),
                "message_dim": int(self.message_dim_)}

    def _restore_config(self, config: dict[str, Any]) -> None:
        self.n_tasks_, self.n_meta_ = int(config["n_tasks"]), int(config["n_meta"])
        self.message_dim_ = int(config["message_dim"])

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

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        self._check_params()
        labels = self._task_nodes(X)
        self.n_tasks_ = int(labels.max()) + 1
        meta = self._meta_values()
        self.n_meta_ = 0 if meta is None else meta.shape[1]
        center, basis = message_basis(X, int(self.message_dim), self.random_state)
        self.message_dim_ = basis.shape[1]
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        with torch_threads(self.n_threads):
            self.net_ = self._build_net(X.shape[1], Y.shape[1])
            self.net_.centroids.copy_(torch.from_numpy(task_centroids(X, labels, self.n_tasks_)))
            self.net_.center.copy_(torch.from_numpy(center))
            self.net_.basis.copy_(torch.from_numpy(basis))
            tasks = self.net_.assign_tasks(Xt).numpy()
            messages = self._messages(X)
            self.y_prior_ = float(np.nanmean(Y)) if np.isfinite(Y).any() else 0.5
            half = np.random.default_rng(0 if self.random_state is None else int(self.random_state)).random(len(X)) < 0.5
            # each half is supervised against LLM nodes built from the other half's edges
            fold_nodes = [self._node_tensors(messages[other], Y[other], tasks[other], meta) for other in (half, ~half)]
            fold = torch.from_numpy(half)
            observed = ~np.isnan(Y)
            T = torch.from_numpy(np.where(observed, Y, 0.0).astype(np.float32))
            M = torch.from_numpy(observed.astype(np.float32))

            n_llms, per_step = Y.shape[1], int(self.max_llms_per_step)

            def batch_loss(rows):
                # a random subset of LLM nodes per step in very large pools (the node maps are shared)
                cols = torch.randperm(n_llms)[:per_step].sort().values if n_llms > per_step else torch.arange(n_llms)
                total, count = torch.zeros(()), torch.zeros(())
                for side, (pos, neg, stats) in enumerate(fold_nodes):
                    part = rows[fold[rows] == bool(side)]
                    if len(part):
                        zb = self.net_.llm_vectors(pos[cols], neg[cols], stats[cols])
                        logits = self.net_.edge_logits(self.net_.prompt_vectors(Xt[part]), zb)
                        cells_at = (part[:, None], cols[None, :])
                        target, mask = T[cells_at], M[cells_at]
                        cells = nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
                        total, count = total + (cells * mask).sum(), count + mask.sum()
                return total / count.clamp_min(1.0)

            self.training_ = train_batches(
                self.net_, len(X), batch_loss, lr=float(self.lr), weight_decay=float(self.weight_decay),
                epochs=int(self.epochs), batch_size=int(self.batch_size), random_state=self.random_state,
            )
            pos, neg, stats = self._node_tensors(messages, Y, tasks, meta)
            self.net_.pos_mean, self.net_.neg_mean, self.net_.stats = pos, neg, stats

    def _messages(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, message_dim): what a prompt node sends along its edges (its centred embedding in
        the training prompts' top principal directions)."""
        return ((np.asarray(X, dtype=np.float32) - self.net_.center.numpy()) @ self.net_.basis.numpy()).astype(np.float32)

    def _node_tensors(self, messages, Y, tasks, meta):
        pos, neg, stats = llm_messages(messages, Y, tasks, self.n_tasks_, np.zeros(self.message_dim_, np.float32),
                                       self.y_prior_)
        if meta is not None:
            stats = np.hstack([stats, meta]).astype(np.float32)
        return torch.from_numpy(pos), torch.from_numpy(neg), torch.from_numpy(stats)

    def _state(self):
        meta, arrays = super()._state()
        return {**meta, "y_prior": self.y_prior_}, arrays

    def _set_state(self, meta, arrays, path) -> None:
        super()._set_state(meta, arrays, path)
        self.y_prior_ = float(meta["y_prior"])

    # ------------------------------------------------------------------ new LLMs (inductive)
    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """New LLM nodes from their probe edges (and metadata); the network and the other nodes are unchanged."""
        import copy

        n_new = Y.shape[1]
        if X is None:
            X, Y = np.zeros((0, self.n_features_in_), dtype=np.float32), np.zeros((0, n_new), dtype=np.float32)
        with torch.no_grad(), torch_threads(self.n_threads):
            tasks = self.net_.assign_tasks(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
        meta = None
        if self.n_meta_:
            meta = np.zeros((n_new, self.n_meta_), dtype=np.float32) if metadata is None else metadata
        pos, neg, stats = self._node_tensors(self._messages(X), Y, tasks, meta)
        net = copy.deepcopy(self.net_)
        net.pos_mean = torch.cat([net.pos_mean, pos])
        net.neg_mean = torch.cat([net.neg_mean, neg])
        net.stats = torch.cat([net.stats, stats])
        self.net_ = net
