"""Fine-tuning the static encoder's token vectors with RouterDC's two contrastive losses.

The static encoder (:mod:`recroute.encoders.static`) encodes a text as the L2-normalised mean of
its word-piece vectors. Here those vectors become trainable (an ``EmbeddingBag`` in mean mode,
initialised from the distilled vectors) and are trained as RouterDC's prompt encoder
(:mod:`recroute.routers.routerdc`, arXiv 2409.19886): learned LLM embeddings in the same space, the
sample-LLM loss over each training prompt's best and worst LLMs and the sample-sample loss over
k-means clusters of the training prompts (by default of their MiniLM embeddings, so the tuned
static space inherits MiniLM's neighbourhoods). The defaults were chosen on RouterEval's validation
part of MMLU-Pro, never its test part (``benchmarks/finetune_select.py``: kNN's validation mean V_B
0.8866 at the defaults, against 0.8828-0.8858 with temperature 0.1, anchor 0.3 or 3, 5 clusters or 2
epochs; MiniLM's own 0.8899). A squared-distance penalty (``anchor``) keeps
the vectors near the distilled ones, and word pieces found in fewer than ``min_count`` training
prompts stay frozen where MiniLM put them (so a rare piece cannot memorise its prompt's results). The result is a plain :class:`~recroute.encoders.static.StaticEncoder` (same tokenizer and
speed) named ``minilm-static-<dim>-ft-<recipe hash>``: its cache key differs from the untuned
encoder's, so tuned and untuned vectors never share an embedding-cache folder, and any router
family uses it through ``--encoder PATH`` or a bundle.

Only training prompts may be used: :func:`finetune_for_dataset` takes RouterEval's seeded training
part (the protocol's split, seed 42) or the dataset's ``split`` column, never test prompts.
The LLM embeddings start at the normalised difference of the mean untuned encodings of the prompts
each LLM got right and wrong (the paper starts them at random), which makes a few epochs enough.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from recroute.errors import DataError

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.encoders.static import StaticEncoder

FINETUNE_VERSION = 1
TRAIN_PARTS = ("routereval", "column")
CLUSTERS_FROM = ("minilm", "static")
DEFAULTS = {"top_k": 3, "last_k": 3, "n_clusters": 30, "n_negatives": 3, "cluster_weight": 1.0,
            "temperature": 1.0, "anchor": 1.0, "min_count": 1, "lr": 3e-4, "epochs": 4, "batch_size": 64,
            "random_state": 0}


def _bag_inputs(ids: list[list[int]]):
    """(flat token ids, offsets) LongTensors for ``EmbeddingBag``."""
    import torch

    lengths = np.fromiter((len(r) for r in ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter((t for r in ids for t in r), dtype=np.int64, count=int(lengths.sum()))
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return torch.from_numpy(flat), torch.from_numpy(offsets)


def finetune_static(
    base: "StaticEncoder", texts: Sequence[str], Y: np.ndarray, *, cluster_X: np.ndarray | None = None,
    n_threads: int | None = 1, **options,
) -> "StaticEncoder":
    """A copy of ``base`` whose token vectors are trained with RouterDC's losses on (texts, Y).

    texts: n training prompts; Y float (n, n_llms) their scores in [0, 1], NaN = not evaluated.
    ``cluster_X`` (n, d'): the embeddings the sample-sample loss's k-means clusters come from
    (e.g. the dataset's MiniLM embeddings of these prompts); default the untuned static encodings.
    ``options`` override :data:`DEFAULTS` (top_k, last_k, n_clusters, n_negatives, cluster_weight,
    temperature, anchor, lr, epochs, batch_size, random_state). Deterministic under random_state.
    """
    import torch
    from torch import nn

    from recroute.encoders.static import StaticEncoder
    from recroute.routers.routerdc import routerdc_batch_loss
    from recroute.routers.torch_base import torch_threads, train_batches

    opts = check_options(options, DEFAULTS)
    texts, Y = check_training_data(texts, Y)
    seed = int(opts["random_state"])
    ids = base.token_ids(texts)
    X0 = base.encode(texts)
    pos, neg, valid, clusters, start = contrastive_targets(X0, Y, cluster_X, opts)
    V0 = torch.from_numpy(base.vectors.copy())

    class StaticRouterDC(nn.Module):
        def __init__(self):
            super().__init__()
            self.bag = nn.EmbeddingBag.from_pretrained(V0.clone(), freeze=False, mode="mean")
            self.llm_embedding = nn.Parameter(torch.from_numpy(start))

    net = StaticRouterDC()
    counts = np.bincount(np.fromiter((t for r in ids for t in set(r)), dtype=np.int64), minlength=len(V0))
    frozen = torch.from_numpy(counts < int(opts["min_count"]))  # word pieces in too few training prompts
    if bool(frozen.any()):
        net.bag.weight.register_hook(lambda grad: grad.masked_fill(frozen[:, None], 0.0))
    temperature, weight, h, anchor = float(opts["temperature"]), float(opts["cluster_weight"]), int(opts["n_negatives"]), float(opts["anchor"])

    def batch_loss(rows):
        flat, offsets = _bag_inputs([ids[i] for i in rows.tolist()])
        E = nn.functional.normalize(net.bag(flat, offsets), dim=1)
        loss = routerdc_batch_loss(E, net.llm_embedding, pos[rows], neg[rows], valid[rows], clusters[rows], temperature, weight, h)
        if anchor:
            touched = torch.unique(flat)
            loss = loss + anchor * ((net.bag.weight[touched] - V0[touched]) ** 2).sum(dim=1).mean()
        return loss

    with torch_threads(n_threads):
        info = train_batches(net, len(texts), batch_loss, lr=float(opts["lr"]), weight_decay=0.0,
                             epochs=int(opts["epochs"]), batch_size=int(opts["batch_size"]), random_state=seed)
    vectors = net.bag.weight.detach().numpy().astype(np.float32)
    recipe = {"version": FINETUNE_VERSION, "base": base.cache_key, "options": opts,
              "data": _data_fingerprint(texts, Y),
              "clusters_from": None if cluster_X is None else hashlib.sha256(
                  np.ascontiguousarray(cluster_X, dtype=np.float32).tobytes()).hexdigest()[:16]}
    tag = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    tuned = StaticEncoder(vectors, base.tokenizer, unk_token_id=base.unk_token_id, max_tokens=base.max_tokens,
                          batch_size=base.batch_size, name=f"{base.name}-ft-{tag}",
                          finetune={**recipe, "final_loss": info["final_loss"], "n_train": len(texts)})
    return tuned


def check_options(options: dict, defaults: dict) -> dict:
    """``defaults`` updated by ``options``; a ValueError names an unknown or bad option."""
    from recroute.routers.routerdc import check_contrastive_params

    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"unknown fine-tuning option(s) {unknown}; known: {sorted(defaults)}")
    opts = {**defaults, **options}
    check_contrastive_params("finetune", opts["top_k"], opts["last_k"], opts["n_negatives"], opts["temperature"],
                             opts["cluster_weight"])
    if float(opts.get("anchor", 0)) < 0 or not float(opts["lr"]) > 0 or int(opts["epochs"]) < 1 or int(opts["batch_size"]) < 1:
        raise ValueError(f"finetune: need anchor >= 0, lr > 0, epochs >= 1 and batch_size >= 1; got {opts}")
    return opts


def check_training_data(texts: Sequence[str], Y: np.ndarray) -> tuple[list[str], np.ndarray]:
    """(texts as a list, Y float32 (n, n_llms >= 2) in [0, 1], NaN = not evaluated) or a DataError."""
    from recroute.encoders.base import check_texts

    texts = check_texts(texts, "training texts")
    Y = np.asarray(Y, dtype=np.float32)
    if Y.ndim != 2 or Y.shape[0] != len(texts) or Y.shape[1] < 2:
        raise DataError(f"scores must be (n_texts={len(texts)}, n_llms >= 2); got shape {Y.shape}")
    if np.isinf(Y).any() or (np.nan_to_num(Y, nan=0.5) < 0).any() or (np.nan_to_num(Y, nan=0.5) > 1).any():
        raise DataError("scores must lie in [0, 1] (NaN = not evaluated)")
    return texts, Y


def contrastive_targets(X0: np.ndarray, Y: np.ndarray, cluster_X: np.ndarray | None, opts: dict):
    """RouterDC's training targets for an encoder whose untuned encodings are X0 (n, d): (pos, neg,
    valid, clusters) tensors (:func:`~recroute.routers.routerdc.ranked_pairs`, k-means of ``cluster_X``
    or X0) and the LLM embeddings' start float32 (n_llms, d): the normalised difference of the mean
    encodings of the prompts each LLM got right and wrong."""
    import torch

    from recroute.encoders.base import l2_normalise
    from recroute.routers.routerdc import cluster_labels, ranked_pairs

    seed = int(opts["random_state"])
    pos, neg, valid = (torch.from_numpy(a) for a in ranked_pairs(Y, opts["top_k"], opts["last_k"], seed))
    if cluster_X is not None and np.shape(cluster_X)[0] != len(X0):
        raise DataError(f"cluster_X has {np.shape(cluster_X)[0]} rows for {len(X0)} texts")
    clusters = torch.from_numpy(cluster_labels(X0 if cluster_X is None else cluster_X, opts["n_clusters"], seed))
    observed = ~np.isnan(Y)
    good = np.where(observed, Y, 0.0)
    bad = observed - good
    start = (good.T @ X0) / np.maximum(good.sum(0), 1)[:, None] - (bad.T @ X0) / np.maximum(bad.sum(0), 1)[:, None]
    return pos, neg, valid, clusters, l2_normalise(start + 1e-6)


def _data_fingerprint(texts: Sequence[str], Y: np.ndarray) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
    digest.update(np.ascontiguousarray(np.nan_to_num(Y, nan=-1.0), dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def training_prompts(data: "RoutingDataset", train_part: str = "routereval", seed: int = 42) -> np.ndarray:
    """int64 positions of the prompts a fine-tune may use: RouterEval's seeded training part
    (``"routereval"``, the split ``recroute eval`` evaluates under) or the rows whose ``split``
    column says ``train`` (``"column"``). Validation and test prompts are never included."""
    if train_part == "routereval":
        from recroute.data.routereval import routereval_train_prompts

        return routereval_train_prompts(data, seed)
    if train_part == "column":
        split = data.prompts.get("split")
        if split is None or not (split == "train").any():
            raise DataError(f"{data.name or 'the dataset'} has no prompt with split == 'train'; use train_part='routereval'")
        return np.flatnonzero((split == "train").to_numpy()).astype(np.int64)
    raise ValueError(f"train_part must be one of {TRAIN_PARTS}; got {train_part!r}")


def training_data(data: "RoutingDataset", train_part: str = "routereval",
                  seed: int = 42) -> tuple[np.ndarray, list[str], np.ndarray]:
    """(rows int64 (n,), texts (n,), Y (n, n_llms), NaN unobserved) of the prompts a fine-tune may use
    (``training_prompts``); at least 2 of them."""
    from recroute.encoders.embed import dataset_texts

    rows = training_prompts(data, train_part, seed)
    if len(rows) < 2:
        raise DataError(f"fine-tuning needs at least 2 training prompts; {data.name or 'the dataset'} has {len(rows)}")
    texts = dataset_texts(data)
    return rows, [texts[i] for i in rows], data.dense(np.nan)[rows]


def cluster_embeddings(data: "RoutingDataset", rows: np.ndarray, texts: list[str], clusters_from: str) -> np.ndarray | None:
    """float32 (len(rows), d) embeddings of the training prompts for the sample-sample clusters, or None
    (the untuned static encodings). "minilm": the dataset's stored MiniLM set when it has one, else
    the training texts encoded by minilm-onnx through the embedding cache (once)."""
    if clusters_from == "static":
        return None
    if clusters_from != "minilm":
        raise ValueError(f"clusters_from must be one of {CLUSTERS_FROM}; got {clusters_from!r}")
    from recroute.encoders.base import embedding_names, get_encoder
    from recroute.encoders.cache import encode_cached

    names = embedding_names("minilm-onnx")
    sets = dict(getattr(data, "embedding_sets", None) or {})
    if data.embeddings is not None and data.embedding_name in names:
        sets.setdefault(data.embedding_name, data.embeddings)
    for name in names:
        if name in sets:
            return np.asarray(sets[name], dtype=np.float32)[rows]
    return np.asarray(encode_cached(get_encoder("minilm-onnx"), texts), dtype=np.float32)


def finetune_for_dataset(
    data: "RoutingDataset", base: "StaticEncoder | None" = None, *, train_part: str = "routereval", seed: int = 42,
    clusters_from: str = "minilm", root: str | Path | None = None, n_threads: int | None = 1, **options,
) -> "StaticEncoder":
    """The static encoder fine-tuned on ``data``'s training prompts, cached in the encoder artefact store.

    ``clusters_from``: what the sample-sample loss's clusters are made from ("minilm": MiniLM's
    embeddings of the training prompts, so the tuned vectors inherit MiniLM's neighbourhoods;
    "static": the untuned static encodings, no transformer at all). The artefact folder is keyed
    by the recipe (base encoder fingerprint, the training prompts' texts and scores, the options,
    the train part, clusters_from), so the same request reuses it and another gets its own.
    """
    from recroute.encoders.static import StaticEncoder
    from recroute.encoders.store import artifact_dir, encoder_cache_dir, ensure_artifact

    if base is None:
        from recroute.encoders.base import get_encoder

        base = get_encoder("static")
    rows, train_texts, Y = training_data(data, train_part, seed)
    if clusters_from not in CLUSTERS_FROM:
        raise ValueError(f"clusters_from must be one of {CLUSTERS_FROM}; got {clusters_from!r}")
    recipe = {"version": FINETUNE_VERSION, "base": base.cache_key, "options": {**DEFAULTS, **options},
              "data": _data_fingerprint(train_texts, Y), "train_part": train_part, "seed": int(seed),
              "clusters_from": clusters_from}
    root = Path(root) if root is not None else encoder_cache_dir()
    folder = artifact_dir(root, f"static-{base.dim}-ft", recipe)

    def build(tmp: Path) -> dict:
        cluster_X = cluster_embeddings(data, rows, train_texts, clusters_from)
        tuned = finetune_static(base, train_texts, Y, cluster_X=cluster_X, n_threads=n_threads, **options)
        tuned.save(tmp)
        return {"name": tuned.name, "n_train": len(rows), "dataset": data.name}

    ensure_artifact(folder, recipe, build)
    return StaticEncoder.load(folder)
