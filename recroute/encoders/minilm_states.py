"""MiniLM's frozen bottom layers computed once: cached hidden states for top-layer fine-tuning.

A top-``N`` fine-tune (:mod:`recroute.encoders.minilm_finetune`) never changes MiniLM's embeddings
or its bottom ``6 − N`` transformer layers, so their output for a text is fixed. :func:`compute_states`
runs them once per text (no gradient, eval mode, MiniLM's own tokenizer and 256 word-piece limit) and
keeps the hidden states after ``depth`` layers, float16, ragged (only a text's real tokens, no
padding): about 2 × 384 bytes per token, 1.6 GB for MMLU-Pro's 12,032 questions (177 tokens on
average). Fine-tuning epochs and the final encoding of every prompt then run only layers
``depth .. 5`` (:func:`top_forward`: the model's own attention mask, mean pooling over the real
tokens and L2 normalisation, as sentence-transformers does), about ``N / 6`` of a full pass.

The only approximation is the float16 rounding of the cached states (relative 2^-11): the encodings
match the plain path (``SentenceTransformer.encode``) to about 1e-3 per coordinate of a unit vector
(``tests/encoders/test_minilm_states.py`` checks 5e-4 per coordinate and a cosine above 0.99999 on real prompts).

On disk (:meth:`FrozenStates.save`, a folder): ``states_<depth>.npy`` float16 (n_tokens, 384) per
depth, ``lengths.npy`` int64 (n,), ``index.json`` (depths, max_length, the sha256 of every text in
row order, the packaged weights' fingerprint of the frozen layers). Loading memory-maps the states.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recroute.errors import SavedArtifactError

N_LAYERS = 6  # all-MiniLM-L6-v2's transformer layers
HIDDEN = 384
INDEX_FILE = "index.json"
STATES_VERSION = 1


def bert(model):
    """The BertModel inside a SentenceTransformer of MiniLM (its first module's ``auto_model``)."""
    inner = getattr(model[0], "auto_model", None) or getattr(model[0], "model", None)
    if inner is None or not hasattr(inner, "encoder") or not hasattr(inner, "embeddings"):
        raise RuntimeError("cannot find the BertModel inside the SentenceTransformer (sentence-transformers changed?)")
    return inner


def _check_depth(depth: int) -> int:
    if not 0 <= int(depth) < N_LAYERS:
        raise ValueError(f"depth must be between 0 and {N_LAYERS - 1} (frozen layers below the tuned ones); got {depth!r}")
    return int(depth)


def _mask4d(bert_model, hidden, mask):
    """The model's own attention mask for (b, L, 384) hidden states and a (b, L) 0/1 mask."""
    return bert_model._create_attention_masks(attention_mask=mask, encoder_attention_mask=None, embedding_output=hidden,
                                              encoder_hidden_states=None, cache=None, position_ids=None)[0]


def run_layers(model, hidden, mask, start: int, stop: int = N_LAYERS):
    """Hidden states after MiniLM's layers ``start .. stop − 1`` applied to ``hidden`` (b, L, 384)."""
    inner = bert(model)
    extended = _mask4d(inner, hidden, mask)
    for layer in inner.encoder.layer[start:stop]:
        out = layer(hidden, extended)
        hidden = out[0] if isinstance(out, tuple) else out
    return hidden


def top_forward(model, hidden, mask, depth: int):
    """Unit-norm sentence embeddings (b, 384) from the states after ``depth`` layers: layers
    ``depth .. 5``, mean pooling over ``mask`` (b, L), L2 normalisation. Differentiable."""
    import torch

    out = run_layers(model, hidden, mask, _check_depth(depth))
    weights = mask.unsqueeze(-1).to(out.dtype)
    pooled = (out * weights).sum(1) / torch.clamp(weights.sum(1), min=1e-9)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def frozen_fingerprint(model, depth: int) -> str:
    """sha256 (16 hex) of the embeddings' and bottom ``depth`` layers' weights: what the states depend on."""
    from recroute.encoders.minilm_finetune import layer_prefixes

    tuned = tuple(layer_prefixes(model, N_LAYERS - depth)) if depth < N_LAYERS else ()
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        if "encoder.layer." in key and (not tuned or key.startswith(tuned)):
            continue  # a top layer (may be tuned) ...
        if "encoder.layer." not in key and ".embeddings." not in key:
            continue  # ... or the unused pooler
        digest.update(key.encode())
        digest.update(value.detach().cpu().numpy().astype(np.float32).tobytes())
    return digest.hexdigest()[:16]


def text_hashes(texts: Sequence[str]) -> list[str]:
    """The embedding cache's key of each text (sha256 hex of its UTF-8 bytes)."""
    from recroute.encoders.cache import text_key

    return [text_key(t) for t in texts]


class FrozenStates:
    """Hidden states after ``depths`` layers for n texts: ``states[d]`` float16 (n_tokens, 384), rows of
    text i at ``offsets[i] : offsets[i + 1]`` (its real tokens, [CLS] .. [SEP], at most ``max_length``)."""

    def __init__(self, states: dict[int, np.ndarray], lengths: np.ndarray, keys: list[str], max_length: int,
                 fingerprints: dict[int, str], path: Path | None = None) -> None:
        self.path = path  # the folder it was loaded from (named in errors), None when computed in memory
        self.states = {int(d): s for d, s in states.items()}
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)]).astype(np.int64)
        self.keys = list(keys)
        self.max_length = int(max_length)
        self.fingerprints = {int(d): str(f) for d, f in fingerprints.items()}
        if len(self.keys) != len(self.lengths):
            raise ValueError(f"{len(self.keys)} text keys for {len(self.lengths)} lengths")
        for d, s in self.states.items():
            if s.shape != (int(self.offsets[-1]), HIDDEN):
                raise ValueError(f"states after {d} layers have shape {s.shape}, expected {(int(self.offsets[-1]), HIDDEN)}")

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def depths(self) -> list[int]:
        return sorted(self.states)

    @property
    def where(self) -> str:
        """How errors name these states: their folder, or "in memory"."""
        return f"the MiniLM states in {self.path}" if self.path is not None else "the MiniLM states (in memory)"

    def rows_of(self, texts: Sequence[str]) -> np.ndarray:
        """int64 rows of ``texts`` (each must have been computed); a ValueError names a missing one."""
        where = {k: i for i, k in enumerate(self.keys)}
        rows = []
        for pos, key in enumerate(text_hashes(texts)):
            if key not in where:
                raise ValueError(f"text {pos} ({texts[pos][:40]!r}...) is not among {self.where} "
                                 f"({len(self)} texts)")
            rows.append(where[key])
        return np.asarray(rows, dtype=np.int64)

    def batch(self, rows: Sequence[int], depth: int):
        """(hidden float32 (b, L, 384), mask int64 (b, L)) tensors of ``rows``, zero-padded to the longest."""
        import torch

        rows = np.asarray(rows, dtype=np.int64)
        if depth not in self.states:
            raise ValueError(f"no states after {depth} layers cached (have {self.depths})")
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 0
        hidden = np.zeros((len(rows), width, HIDDEN), dtype=np.float32)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        source = self.states[depth]
        for j, (r, n) in enumerate(zip(rows.tolist(), lengths.tolist())):
            hidden[j, :n] = source[self.offsets[r]: self.offsets[r] + n]
            mask[j, :n] = 1
        return torch.from_numpy(hidden), torch.from_numpy(mask)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Write the folder (module docstring); ``index.json`` last, so a folder without it is incomplete."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for d, s in self.states.items():
            np.save(path / f"states_{d}.npy", np.asarray(s, dtype=np.float16))
        np.save(path / "lengths.npy", self.lengths)
        index = {"version": STATES_VERSION, "depths": self.depths, "max_length": self.max_length,
                 "fingerprints": {str(d): f for d, f in self.fingerprints.items()}, "keys": self.keys}
        (path / INDEX_FILE).write_text(json.dumps(index))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FrozenStates":
        """Read a folder written by :meth:`save` (the states memory-mapped, read-only)."""
        path = Path(path)
        reading = path / INDEX_FILE  # the file an error names
        try:
            index = json.loads(reading.read_text())
            if index.get("version") != STATES_VERSION:
                raise ValueError(f"version {index.get('version')!r}, expected {STATES_VERSION}")
            states = {}
            for d in index["depths"]:
                reading = path / f"states_{int(d)}.npy"
                states[int(d)] = np.load(reading, mmap_mode="r", allow_pickle=False)
                if states[int(d)].dtype != np.float16:
                    raise ValueError(f"dtype {states[int(d)].dtype}, expected float16")
            reading = path / "lengths.npy"
            lengths = np.load(reading, allow_pickle=False)
            reading = path  # the files disagree with each other
            return cls(states, lengths, index["keys"], index["max_length"],
                       {int(d): f for d, f in index["fingerprints"].items()}, path=path)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SavedArtifactError(f"{reading}: cannot read cached MiniLM states ({type(exc).__name__}: {exc})") from None


def compute_states(model, texts: Sequence[str], depths: Sequence[int], *, batch_size: int = 32,
                   n_threads: int | None = 1, show_progress: bool = False) -> FrozenStates:
    """The hidden states after each of ``depths`` layers (each in 0..5) for every text, float16.

    Runs MiniLM's tokenizer (truncating at the model's ``max_seq_length``, 256) and its embeddings and
    layers 0 .. max(depths) − 1 once, in eval mode without gradients, in batches sorted by length."""
    import torch

    from recroute.encoders.base import check_texts
    from recroute.routers.torch_base import torch_threads

    texts = check_texts(texts)
    depths = sorted({_check_depth(d) for d in depths})
    if not depths:
        raise ValueError("give at least one depth")
    inner = bert(model)
    max_length = int(model.max_seq_length)
    tok = model.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    lengths = np.asarray([len(ids) for ids in tok], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    states = {d: np.zeros((int(offsets[-1]), HIDDEN), dtype=np.float16) for d in depths}
    order = np.argsort(-lengths, kind="stable")
    was_training = model.training
    model.eval()
    try:
        with torch_threads(n_threads), torch.inference_mode():
            for start in range(0, len(order), int(batch_size)):
                rows = order[start: start + int(batch_size)]
                width = int(lengths[rows].max())
                ids = np.zeros((len(rows), width), dtype=np.int64)
                mask = np.zeros((len(rows), width), dtype=np.int64)
                for j, r in enumerate(rows.tolist()):
                    ids[j, : lengths[r]] = tok[r]
                    mask[j, : lengths[r]] = 1
                ids_t, mask_t = torch.from_numpy(ids), torch.from_numpy(mask)
                hidden = inner.embeddings(input_ids=ids_t, token_type_ids=torch.zeros_like(ids_t))
                done = 0
                for d in depths:
                    hidden = run_layers(model, hidden, mask_t, done, d)
                    done = d
                    block = hidden.numpy()
                    for j, r in enumerate(rows.tolist()):
                        states[d][offsets[r]: offsets[r + 1]] = block[j, : lengths[r]]
                if show_progress:
                    print(f"states: {min(start + len(rows), len(order))}/{len(order)}", flush=True)
    finally:
        model.train(was_training)
    return FrozenStates(states, lengths, text_hashes(texts), max_length,
                        {d: frozen_fingerprint(model, d) for d in depths})


def encode_states(model, states: FrozenStates, rows: Sequence[int] | None = None, *, depth: int,
                  batch_size: int = 64, n_threads: int | None = 1) -> np.ndarray:
    """float32 (len(rows), 384) unit-norm encodings of cached texts (all of them by default): only
    layers ``depth .. 5`` run. ``model``'s layers below ``depth`` must be those the states came from."""
    check_weights(model, states, depth)
    rows = np.arange(len(states)) if rows is None else np.asarray(rows, dtype=np.int64)
    return _encode_rows(model, states, rows, depth, batch_size, n_threads)


def check_weights(model, states: FrozenStates, depth: int) -> None:
    """A ValueError naming ``states`` unless they hold ``depth`` and ``model``'s frozen weights made them."""
    if depth not in states.states:
        raise ValueError(f"no states after {depth} layers in {states.where} (have {states.depths})")
    if frozen_fingerprint(model, depth) != states.fingerprints.get(depth):
        raise ValueError(f"the model's embeddings or bottom {depth} layers differ from those {states.where} came from")


def _encode_rows(model, states: FrozenStates, rows: np.ndarray, depth: int, batch_size: int,
                 n_threads: int | None) -> np.ndarray:
    """:func:`encode_states` after its weight check: float32 (len(rows), 384)."""
    import torch

    from recroute.routers.torch_base import torch_threads

    out = np.zeros((len(rows), HIDDEN), dtype=np.float32)
    order = np.argsort(-states.lengths[rows], kind="stable")  # similar lengths together: little padding
    was_training = model.training
    model.eval()
    try:
        with torch_threads(n_threads), torch.inference_mode():
            for start in range(0, len(order), int(batch_size)):
                pick = order[start: start + int(batch_size)]
                hidden, mask = states.batch(rows[pick], depth)
                out[pick] = top_forward(model, hidden, mask, depth).numpy()
    finally:
        model.train(was_training)
    return out


def states_for_texts(texts: Sequence[str], depths: Sequence[int], *, root: str | Path | None = None,
                     n_threads: int | None = 1, show_progress: bool = False) -> FrozenStates:
    """The frozen states of ``texts`` at ``depths``, computed once and kept in the encoder artefact store
    (``~/.cache/recroute/encoders/minilm-states-<recipe hash>``, or ``root``), keyed by the texts' hashes,
    the depths and the packaged weights' fingerprint, so a second call (another fine-tune, the final
    encoding) only memory-maps them."""
    from recroute.encoders.minilm_finetune import fresh_model
    from recroute.encoders.store import artifact_dir, encoder_cache_dir, ensure_artifact

    depths = sorted({_check_depth(d) for d in depths})
    model = fresh_model()
    digest = hashlib.sha256("\n".join(text_hashes(list(texts))).encode()).hexdigest()[:16]
    recipe = {"version": STATES_VERSION, "texts": digest, "n_texts": len(texts), "depths": depths,
              "max_length": int(model.max_seq_length),
              "weights": {str(d): frozen_fingerprint(model, d) for d in depths}}
    folder = artifact_dir(Path(root) if root is not None else encoder_cache_dir(), "minilm-states", recipe)

    def build(tmp: Path) -> dict:
        compute_states(model, texts, depths, n_threads=n_threads, show_progress=show_progress).save(tmp)
        return {"n_texts": len(texts)}

    ensure_artifact(folder, recipe, build)
    try:
        return FrozenStates.load(folder)
    except SavedArtifactError as exc:
        raise SavedArtifactError(f"{exc}; delete {folder} and they are computed again") from None


def states_encoder(encoder, states: FrozenStates, *, batch_size: int = 64,
                   n_threads: int | None = 1) -> Callable[[Sequence[str]], np.ndarray]:
    """``texts -> float32 (len(texts), 384)``: a :class:`~recroute.encoders.minilm_finetune.TunedMiniLMEncoder`'s
    encodings through the cached states (only the layers above the deepest cached depth ≤ 6 − n_layers
    run; every text must be among the states). The ``encode_missing`` of
    :func:`~recroute.encoders.cache.encode_cached`, so these vectors go through the same cache lookup,
    key and writes as ``encoder.encode``'s. The frozen weights are checked here, once."""
    depth = max((d for d in states.depths if d <= N_LAYERS - int(encoder.n_layers)), default=None)
    if depth is None:
        raise ValueError(f"{encoder.name} tunes {encoder.n_layers} layer(s); {states.where} hold depths {states.depths}")
    check_weights(encoder.model, states, depth)

    def encode(texts: Sequence[str]) -> np.ndarray:
        return _encode_rows(encoder.model, states, states.rows_of(list(texts)), depth, batch_size, n_threads)

    return encode


def cache_tuned_embeddings(encoder, states: FrozenStates, texts: Sequence[str], *, cache_dir: str | Path | None = None,
                           use_cache: bool = True, batch_size: int = 64, n_threads: int | None = 1) -> np.ndarray:
    """float32 (len(texts), 384): ``encode_cached(encoder, texts)`` with the missing texts encoded through
    the states (:func:`states_encoder`), so ``--encoder FOLDER`` (and ``FOLDER+lexical``) in
    ``recroute eval`` or ``benchmarks/zoo.py`` read them instead of running all six layers."""
    from recroute.encoders.cache import encode_cached

    return encode_cached(encoder, texts, cache_dir=cache_dir, use_cache=use_cache,
                         encode_missing=states_encoder(encoder, states, batch_size=batch_size, n_threads=n_threads))
