"""RouterDC: a prompt encoder and learned LLM embeddings trained with two contrastive losses.

Chen, Jiang, Lin, Kwok, Zhang, "RouterDC: Query-Based Router by Dual Contrastive Learning for
Assembling Large Language Models", NeurIPS 2024, arXiv 2409.19886. A prompt x is encoded to
E(x) (unit length); each LLM j has a learned embedding k_j; the router scores cos(E(x), k_j) / t and
routes to the argmax (its selection distribution is the softmax of those scores). Training:

- sample-LLM loss: for each prompt, its ``top_k`` best LLMs are positives and its ``last_k`` worst
  are negatives; each positive t contributes -log(e^{s_t} / (e^{s_t} + sum_neg e^{s_neg})). A
  negative counts only where it scored strictly below the positive (the paper's masks for binary
  scores: a wrong positive is skipped and a correct negative ignored). Ties among equal scores
  are broken at random (seeded), so no LLM wins ties by its position.
- sample-sample loss: the training prompts are clustered (k-means over their input embeddings);
  within a mini-batch, each prompt's in-cluster partner (another prompt, never itself) is the
  positive and ``n_negatives`` prompts of other clusters are negatives, on the cosine of their
  encodings: -log softmax(cos(E(x), E(x+)), cos(E(x), E(x-_1..H)))[0]; weighted by ``cluster_weight``.

Paper defaults kept: top_k = 3, last_k = 3, H = 3 (``n_negatives``), cluster-loss weight 1,
batch 64, at most 1000 steps (``max_steps``, the paper's training_steps, which also bounds the fit
at RouterEval's 24,000 prompts), LLM embeddings initialised N(0, 0.78^2). What differs: t = 0.3
(``temperature``), chosen on RouterEval's validation part, never its test part
(benchmarks/results/finetune_select.md: mean V_B over m = 3, 5, 10 on the validation prompts,
averaged over MMLU-Pro, llmrouter_nim and Open LLM Leaderboard v1 ARC and GSM8K, 0.9530 at t = 0.3,
0.9304 at 0.1, 0.9316 at 0.05 and 0.9328 at the paper's t = 1; test, once: 0.9785 / 1.0530 /
0.8780 / 0.9450), and the paper fine-tunes mDeBERTa-v3-base
end to end (lr 5e-5); here the router works on fixed prompt embeddings X through a small trainable
head (``hidden`` then ``dim``; lr 1e-3, at most ``epochs`` passes), and the encoder fine-tuning
itself is :func:`recroute.encoders.finetune.finetune_static`, which trains the static encoder's
token vectors with these same two losses and saves the tuned encoder for every router family (or,
as an option, :func:`recroute.encoders.minilm_finetune.finetune_minilm`: MiniLM's top layers). ``n_clusters`` = 5 (the paper clusters the training queries with k-means;
5 is our default).
"""

from __future__ import annotations

import numpy as np

from recroute.errors import DataError
from recroute.routers.base import Router
from recroute.routers.torch_base import TorchRouter, torch_threads, train_batches

TIE_JITTER = 1e-6  # scores closer than this count as tied (broken at random)
SORT_ROWS = 4096  # prompts ranked per chunk (bounds the memory of the ranking at 8,500 LLMs)


# ---------------------------------------------------------------------- the two losses
def ranked_pairs(Y: np.ndarray, top_k: int, last_k: int, random_state: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each prompt's positives and negatives for the sample-LLM loss.

    Y float (n, n_llms), NaN = unobserved. Returns (pos int64 (n, top_k), neg int64 (n, last_k),
    valid bool (n, top_k, last_k)): pos are the best observed LLMs, neg the worst, and
    ``valid[i, a, b]`` is True where both cells are observed and Y[i, pos[i, a]] > Y[i, neg[i, b]].
    ``top_k`` and ``last_k`` are capped at n_llms.
    """
    Y = np.asarray(Y, dtype=np.float64)
    n, m = Y.shape
    top_k, last_k = min(int(top_k), m), min(int(last_k), m)
    rng = np.random.default_rng(0 if random_state is None else int(random_state))
    pos = np.empty((n, top_k), dtype=np.int64)
    neg = np.empty((n, last_k), dtype=np.int64)
    for start in range(0, n, SORT_ROWS):
        part = Y[start : start + SORT_ROWS]
        observed = ~np.isnan(part)
        key = np.where(observed, part, 0.0) + TIE_JITTER * rng.random(part.shape)
        pos[start : start + SORT_ROWS] = _smallest(-np.where(observed, key, -np.inf), top_k)
        neg[start : start + SORT_ROWS] = _smallest(np.where(observed, key, np.inf), last_k)
    rows = np.arange(n)[:, None]
    y_pos, y_neg = Y[rows, pos], Y[rows, neg]  # NaN where unobserved: every comparison is False
    valid = y_pos[:, :, None] > y_neg[:, None, :]
    return pos, neg, valid


def _smallest(key: np.ndarray, k: int) -> np.ndarray:
    """int64 (n, k): the columns of each row's k smallest keys, in ascending key order. The jittered
    keys have no ties (almost surely), so the partition's choice is the same on every CPU; only
    unobserved cells (infinite keys) can tie, and those pairs are never valid, so which of them
    fills a slot changes no loss."""
    if k < key.shape[1]:
        part = np.argpartition(key, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(key.shape[1]), key.shape)
    order = np.argsort(np.take_along_axis(key, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1).astype(np.int64)


def sample_llm_loss(pos_sims, neg_sims, valid):
    """RouterDC's sample-LLM loss (torch scalar): the mean over prompts of the sum over positives of
    -log(e^{s_pos} / (e^{s_pos} + sum of e^{s_neg} over the valid negatives)).

    pos_sims (b, top_k), neg_sims (b, last_k): scaled similarities; valid bool (b, top_k, last_k).
    A positive without a valid negative adds 0.
    """
    import torch

    negs = torch.where(valid, neg_sims[:, None, :].expand_as(valid), torch.tensor(float("-inf")))
    logits = torch.cat([pos_sims[:, :, None], negs], dim=2)
    terms = torch.logsumexp(logits, dim=2) - pos_sims
    return terms.sum(dim=1).mean()


def sample_sample_loss(E, clusters, n_negatives: int):
    """RouterDC's sample-sample loss (torch scalar) over one mini-batch.

    E (b, dim) unit-length prompt encodings, clusters int64 (b,). Each prompt with another member
    of its cluster and at least ``n_negatives`` prompts of other clusters in the batch draws one
    positive and ``n_negatives`` negatives at random (torch's RNG) and adds
    -log softmax(cos(E, E+), cos(E, E-_1), ...)[0]; the mean over those prompts (0 when none).
    """
    import torch

    b = E.shape[0]
    sims = E @ E.T
    same = clusters[:, None] == clusters[None, :]
    partner = same & ~torch.eye(b, dtype=torch.bool)
    other = ~same
    usable = partner.any(dim=1) & (other.sum(dim=1) >= int(n_negatives))
    if not bool(usable.any()) or int(n_negatives) < 1:
        return E.sum() * 0.0
    draws = torch.rand(b, b)
    pos = torch.where(partner, draws, torch.tensor(-1.0)).argmax(dim=1)
    neg = torch.where(other, torch.rand(b, b), torch.tensor(-1.0)).topk(int(n_negatives), dim=1).indices
    logits = torch.cat([sims.gather(1, pos[:, None]), sims.gather(1, neg)], dim=1)[usable]
    return (torch.logsumexp(logits, dim=1) - logits[:, 0]).mean()


def cluster_labels(X: np.ndarray, n_clusters: int, random_state: int | None) -> np.ndarray:
    """int64 (n,) k-means labels of the rows of X (at most n clusters; one cluster when n < 2)."""
    k = min(int(n_clusters), len(X))
    if k < 2:
        return np.zeros(len(X), dtype=np.int64)
    from sklearn.cluster import KMeans
    from threadpoolctl import threadpool_limits

    kmeans = KMeans(n_clusters=k, random_state=0 if random_state is None else int(random_state), n_init=1)
    with threadpool_limits(1):  # one k-means run: extra OpenMP threads only spin on a shared machine
        return kmeans.fit_predict(np.asarray(X, dtype=np.float32)).astype(np.int64)


def routerdc_batch_loss(E, llm_embeddings, pos, neg, valid, clusters, temperature: float, cluster_weight: float,
                        n_negatives: int):
    """Both losses for one mini-batch: E (b, dim) unit encodings, llm_embeddings (n_llms, dim) (normalised
    here, only the rows the batch uses), pos/neg/valid/clusters the batch's rows of :func:`ranked_pairs`
    and :func:`cluster_labels` (tensors)."""
    from torch.nn.functional import normalize

    pos_sims = (E[:, None, :] * normalize(llm_embeddings[pos], dim=2)).sum(dim=2) / temperature
    neg_sims = (E[:, None, :] * normalize(llm_embeddings[neg], dim=2)).sum(dim=2) / temperature
    loss = sample_llm_loss(pos_sims, neg_sims, valid)
    if cluster_weight:
        loss = loss + float(cluster_weight) * sample_sample_loss(E, clusters, n_negatives)
    return loss


def check_contrastive_params(owner: str, top_k, last_k, n_negatives, temperature, cluster_weight) -> None:
    """ValueError naming the bad RouterDC setting."""
    if int(top_k) < 1 or int(last_k) < 1:
        raise ValueError(f"{owner}: top_k and last_k must be at least 1; got {top_k!r}, {last_k!r}")
    if int(n_negatives) < 1:
        raise ValueError(f"{owner}: n_negatives must be at least 1; got {n_negatives!r}")
    if not float(temperature) > 0:
        raise ValueError(f"{owner}: temperature must be positive; got {temperature!r}")
    if float(cluster_weight) < 0:
        raise ValueError(f"{owner}: cluster_weight must be >= 0; got {cluster_weight!r}")


try:  # the network class lives at module level so routers pickle
    import torch
    from torch import nn

    class RouterDCNet(nn.Module):
        """Prompt head (MLP, d -> dim) and LLM embeddings (n_llms, dim); forward gives cosines (n, n_llms)."""

        def __init__(self, d: int, n_llms: int, dim: int, hidden: tuple[int, ...], dropout: float):
            super().__init__()
            layers, width = [], d
            for h in hidden:
                layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
                width = h
            self.head = nn.Sequential(*layers, nn.Linear(width, dim))
            self.llm_embedding = nn.Embedding(n_llms, dim)
            nn.init.normal_(self.llm_embedding.weight, std=0.78)

        def encode(self, x):
            return nn.functional.normalize(self.head(x), dim=1)

        def llm_vectors(self):
            return nn.functional.normalize(self.llm_embedding.weight, dim=1)

        def forward(self, x):
            return self.encode(x) @ self.llm_vectors().T

except ImportError:  # pragma: no cover - torch is a dependency
    RouterDCNet = None


class RouterDCRouter(TorchRouter):
    """RouterDC on fixed prompt embeddings; see the module docstring. ``score`` = cos / temperature."""

    name = "routerdc"
    score_scale = "raw"  # scaled cosines, not probabilities (cost routing calibrates them first)

    def __init__(
        self,
        dim: int = 128,
        hidden: tuple[int, ...] | list[int] = (256,),
        dropout: float = 0.1,
        top_k: int = 3,
        last_k: int = 3,
        n_clusters: int = 5,
        n_negatives: int = 3,
        cluster_weight: float = 1.0,
        temperature: float = 0.3,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        epochs: int = 10,
        max_steps: int | None = 1000,
        batch_size: int = 64,
        random_state: int | None = 0,
        n_threads: int | None = 1,
    ) -> None:
        self.dim = dim
        self.hidden = hidden
        self.dropout = dropout
        self.top_k = top_k
        self.last_k = last_k
        self.n_clusters = n_clusters
        self.n_negatives = n_negatives
        self.cluster_weight = cluster_weight
        self.temperature = temperature
        self.lr = lr
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.random_state = random_state
        self.n_threads = n_threads

    def fit(self, data, X: np.ndarray | None = None) -> "RouterDCRouter":
        """As ``Router.fit``. No per-cell weights: the contrastive losses rank LLMs within a prompt, so
        IPS weights from a decision log have no cell loss to weigh (learning from logs names this)."""
        return Router.fit(self, data, X)

    def _make_net(self, d: int, m: int):
        return RouterDCNet(d, m, int(self.dim), tuple(int(h) for h in self.hidden), float(self.dropout))

    def _fit(self, Y: np.ndarray, X: np.ndarray) -> None:
        self._check_train_params()
        check_contrastive_params(self.name, self.top_k, self.last_k, self.n_negatives, self.temperature,
                                 self.cluster_weight)
        if int(self.dim) < 1:
            raise DataError(f"{self.name}: dim must be at least 1; got {self.dim!r}")
        pos, neg, valid = (torch.from_numpy(a) for a in ranked_pairs(Y, self.top_k, self.last_k, self.random_state))
        clusters = torch.from_numpy(cluster_labels(X, self.n_clusters, self.random_state))
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))
        temperature, weight, h = float(self.temperature), float(self.cluster_weight), int(self.n_negatives)

        def batch_loss(rows):
            return routerdc_batch_loss(self.net_.encode(Xt[rows]), self.net_.llm_embedding.weight, pos[rows], neg[rows],
                                       valid[rows], clusters[rows], temperature, weight, h)

        with torch_threads(self.n_threads):
            self.net_ = self._build_net(X.shape[1], Y.shape[1])
            self.training_ = train_batches(
                self.net_, len(X), batch_loss, lr=float(self.lr), weight_decay=float(self.weight_decay),
                epochs=int(self.epochs), batch_size=int(self.batch_size), random_state=self.random_state,
                max_steps=None if self.max_steps is None else int(self.max_steps),
            )

    def _score(self, X: np.ndarray, n: int) -> np.ndarray:
        return self._logits(X).astype(np.float64) / float(self.temperature)

    def encode(self, X: np.ndarray) -> np.ndarray:
        """float32 (n, dim) unit-length RouterDC encodings E(x) of prompt embeddings X."""
        self._check_fitted()
        X, _ = self._check_query(X, None)
        self.net_.eval()
        with torch.no_grad(), torch_threads(self.n_threads):
            return self.net_.encode(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy()
