"""A static encoder distilled from all-MiniLM-L6-v2 with model2vec: token vectors looked up and averaged.

Distillation (model2vec's ``distill``, offline from the packaged weights, ~15 s on 2 cores) runs
MiniLM once over every word piece of its vocabulary, reduces the outputs to 256 dimensions with
PCA and weights them by token frequency rank (SIF). At run time no transformer is involved: a text
is split into word pieces (no [CLS]/[SEP], at most 512) and its vector is the mean of their
vectors, L2-normalised. The result is made once per machine (``recroute encode --make static``
or on first use), cached under :func:`~recroute.encoders.store.encoder_cache_dir`, and saved into
bundles as ``vectors.npz`` (float16 (n_tokens, dim), ``allow_pickle=False``) + ``tokenizer.json``
+ ``encoder.json``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from recroute.encoders.base import ENCODER_FILE, check_texts, l2_normalise, read_spec
from recroute.encoders.store import artifact_dir, encoder_cache_dir, ensure_artifact, file_sha256
from recroute.errors import SavedArtifactError

STATIC_DIM = 256
MAX_TOKENS = 512  # model2vec's default truncation
VECTORS_FILE = "vectors.npz"
TOKENIZER_FILE = "tokenizer.json"
RECIPE_VERSION = 1
NAME_PREFIX = "minilm-static"


def pool_tokens(ids: Sequence[Sequence[int]], vectors: np.ndarray) -> np.ndarray:
    """float32 (n, d): row i is the mean of ``vectors[ids[i]]`` (zeros when ``ids[i]`` is empty).

    One sparse (n, n_tokens) averaging matrix times ``vectors`` float32 (n_tokens, d): no per-text loop
    over vectors.
    """
    lengths = np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))
    n, total = len(ids), int(lengths.sum())
    flat = np.fromiter((t for row in ids for t in row), dtype=np.int64, count=total)
    if total and (flat.min() < 0 or flat.max() >= vectors.shape[0]):
        raise ValueError(f"token ids must be in 0..{vectors.shape[0] - 1}")
    rows = np.repeat(np.arange(n), lengths)
    weights = np.repeat(1.0 / np.maximum(lengths, 1), lengths).astype(np.float32)
    averaging = sp.csr_matrix((weights, (rows, flat)), shape=(n, vectors.shape[0]))
    return np.asarray(averaging @ vectors, dtype=np.float32)


def distill_static(folder: Path, dim: int = STATIC_DIM) -> dict:
    """Distil the packaged MiniLM into ``folder`` (vectors.npz + tokenizer.json); returns meta fields."""
    from recroute.encoders.minilm import _force_offline, _quiet_transformers, model_path

    _force_offline()
    from model2vec.distill import distill

    with _quiet_transformers(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        static = distill(str(model_path()), pca_dims=int(dim), device="cpu", quantize_to="float16")
    vectors = np.asarray(static.embedding, dtype=np.float16)
    if static.weights is not None or static.token_mapping is not None:  # pragma: no cover - not this recipe
        raise RuntimeError("model2vec returned a vocabulary-quantised model; expected one vector per token")
    tokenizer = static.tokenizer
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.save(str(folder / TOKENIZER_FILE))
    with open(folder / VECTORS_FILE, "wb") as fh:
        np.savez(fh, vectors=vectors)
    unk = static.unk_token_id
    return {"file": VECTORS_FILE, "sha256": file_sha256(folder / VECTORS_FILE), "dim": int(vectors.shape[1]),
            "n_tokens": int(vectors.shape[0]), "unk_token_id": None if unk is None else int(unk)}


def ensure_static(dim: int = STATIC_DIM, root: str | Path | None = None) -> Path:
    """The folder of the cached static encoder of ``dim`` dimensions, distilled on first use."""
    from recroute.encoders.onnx import _version, source_identity

    root = Path(root) if root is not None else encoder_cache_dir()
    recipe = {"version": RECIPE_VERSION, **source_identity(), "method": "model2vec.distill",
              "model2vec": _version("model2vec"), "pca_dims": int(dim), "torch": _version("torch")}
    folder = artifact_dir(root, f"static-{int(dim)}", recipe)
    ensure_artifact(folder, recipe, lambda tmp: distill_static(tmp, dim))
    return folder


class StaticEncoder:
    """Static token vectors (model2vec distillation of MiniLM): L2-normalised float32 (n, dim).

    Build one with :meth:`make` (cached distillation) or :meth:`load` (a saved folder). ``name`` is
    ``minilm-static-<dim>``; ``cache_key`` adds a fingerprint of the vectors and tokenizer.
    Attributes: ``vectors`` float32 (n_tokens, dim), ``tokenizer`` (``tokenizers.Tokenizer``).
    """

    def __init__(self, vectors: np.ndarray, tokenizer, unk_token_id: int | None = None,
                 max_tokens: int = MAX_TOKENS, batch_size: int = 4096, fingerprint: str | None = None,
                 name: str | None = None, finetune: dict | None = None) -> None:
        V = np.asarray(vectors)
        if V.ndim != 2 or V.shape[0] < 1 or V.shape[1] < 1:
            raise ValueError(f"vectors must be a non-empty 2-D (n_tokens, dim) array, got shape {V.shape}")
        if not np.isfinite(V).all():
            raise ValueError("vectors hold NaN or inf")
        if tokenizer.get_vocab_size() != V.shape[0]:
            raise ValueError(f"the tokenizer has {tokenizer.get_vocab_size()} tokens but vectors has {V.shape[0]} rows")
        self.stored = V.astype(np.float16) if V.dtype != np.float16 else V
        self.vectors = self.stored.astype(np.float32)
        self.tokenizer = tokenizer
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        self.unk_token_id = unk_token_id
        self.max_tokens = int(max_tokens)
        self.batch_size = int(batch_size)
        if self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"max_tokens and batch_size must be >= 1, got {max_tokens}, {batch_size}")
        self._fingerprint = fingerprint
        default = f"{NAME_PREFIX}-{self.stored.shape[1]}"
        if name is not None and not str(name).startswith(default):
            raise ValueError(f"a static encoder's name starts with {default!r}; got {name!r}")
        self._name = str(name) if name is not None else default
        self.finetune = finetune  # the recipe of a fine-tuned encoder (recroute.encoders.finetune), else None
        self.path: Path | None = None  # the folder it was loaded from, if any

    @classmethod
    def make(cls, dim: int = STATIC_DIM, cache_dir: str | Path | None = None, **kwargs) -> "StaticEncoder":
        """The static encoder distilled on this machine (distilling it first when not cached)."""
        return cls.load(ensure_static(dim, cache_dir), **kwargs)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def name(self) -> str:
        """``minilm-static-<dim>``, or ``minilm-static-<dim>-ft-<hash>`` once fine-tuned."""
        return self._name

    @property
    def cache_key(self) -> str:
        """Name plus a fingerprint of the vectors and tokenizer: two distillations never share cached vectors."""
        if self._fingerprint is None:
            digest = hashlib.sha256(np.ascontiguousarray(self.stored).tobytes())
            digest.update(self.tokenizer.to_str().encode())
            self._fingerprint = digest.hexdigest()[:12]
        return f"{self.name}-{self._fingerprint}"

    def __repr__(self) -> str:
        return f"StaticEncoder(name={self.name!r}, dim={self.dim}, n_tokens={self.vectors.shape[0]})"

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """Word-piece ids of each text (no special tokens, unknown pieces dropped, at most ``max_tokens``)."""
        encodings = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        unk, cap = self.unk_token_id, self.max_tokens
        if unk is None:
            return [e.ids[:cap] for e in encodings]
        return [[t for t in e.ids if t != unk][:cap] for e in encodings]

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dim), unit-norm rows in input order; a text with no known piece gives zeros."""
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = int(batch_size or self.batch_size)
        for start in range(0, len(texts), step):
            out[start : start + step] = pool_tokens(self.token_ids(texts[start : start + step]), self.vectors)
        return l2_normalise(out)

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        return {"type": "static", "name": self.name, "dim": self.dim, "n_tokens": int(self.vectors.shape[0]),
                "unk_token_id": self.unk_token_id, "max_tokens": self.max_tokens, "source": "all-MiniLM-L6-v2",
                "method": "model2vec.distill", "fingerprint": self.cache_key.rsplit("-", 1)[1],
                **({"finetune": self.finetune} if self.finetune is not None else {})}

    def save(self, path: str | Path) -> Path:
        """Write ``encoder.json`` + ``vectors.npz`` + ``tokenizer.json`` into folder ``path``."""
        from recroute.atomic import atomic_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_file(path / VECTORS_FILE) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, vectors=self.stored)
        with atomic_file(path / TOKENIZER_FILE) as tmp:
            tmp.write_text(self.tokenizer.to_str())
        with atomic_file(path / ENCODER_FILE) as tmp:
            tmp.write_text(json.dumps(self.spec(), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, **kwargs) -> "StaticEncoder":
        """Read a folder written by :meth:`save` or by distillation; checks dim, size and fingerprint."""
        from tokenizers import Tokenizer

        path = Path(path)
        spec = read_spec(path) if (path / ENCODER_FILE).exists() else None
        if spec is not None and spec.get("type") != "static":
            raise SavedArtifactError(f"{path / ENCODER_FILE}: expected a static encoder, found type {spec.get('type')!r}")
        meta = spec or _distilled_meta(path)
        try:
            with np.load(path / VECTORS_FILE, allow_pickle=False) as npz:
                vectors = npz["vectors"]
            tokenizer = Tokenizer.from_file(str(path / TOKENIZER_FILE))
        except Exception as exc:  # tokenizers raises its own Exception type
            raise SavedArtifactError(f"{path}: cannot read the static encoder ({type(exc).__name__}: {exc})") from None
        options = {"max_tokens": int(meta.get("max_tokens", MAX_TOKENS)), "name": meta.get("name"),
                   "finetune": meta.get("finetune"), **kwargs}
        enc = cls(vectors, tokenizer, unk_token_id=meta.get("unk_token_id"), **options)
        if meta.get("dim") not in (None, enc.dim):
            raise SavedArtifactError(f"{path}: records dim {meta.get('dim')} but its vectors have dim {enc.dim}")
        expected = meta.get("fingerprint")
        if expected is not None and enc.cache_key != f"{enc.name}-{expected}":
            raise SavedArtifactError(f"{path}: vectors or tokenizer differ from the recorded fingerprint (damaged?)")
        enc.path = path  # where it was loaded from
        return enc


def _distilled_meta(path: Path) -> dict:
    file = path / "meta.json"
    if not file.exists():
        raise SavedArtifactError(f"{path}: not a static encoder (no {ENCODER_FILE} or meta.json)")
    try:
        return json.loads(file.read_text())
    except ValueError as exc:
        raise SavedArtifactError(f"{file}: not valid JSON ({exc})") from None

