"""The Encoder protocol, encoders by name, and loading a saved encoder.

An encoder turns a list of texts into float32 (n, d) rows. Its ``name`` and ``dim`` are recorded
in every saved router so a mismatch is caught at load time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np

from recroute.errors import SavedArtifactError

DEFAULT_ENCODER = "minilm-onnx"  # fastest within the quality bound on both sets: benchmarks/results/encoders.md
ENCODER_FILE = "encoder.json"

# lower-cased alias -> canonical key (the encoder names themselves included)
_ALIASES = {
    "minilm": "minilm",
    "all-minilm-l6-v2": "minilm",
    "sentence-transformers/all-minilm-l6-v2": "minilm",
    "minilm-onnx": "minilm-onnx",
    "all-minilm-l6-v2-onnx": "minilm-onnx",
    "minilm-int8": "minilm-int8",
    "all-minilm-l6-v2-onnx-int8": "minilm-int8",
    "static": "static",
    "minilm-static": "static",
    "minilm-static-256": "static",
    "tfidf": "tfidf",
    "tf-idf": "tfidf",
    "tfidf-svd": "tfidf",
    "lexical": "lexical",
}


@runtime_checkable
class Encoder(Protocol):
    """Anything with a ``name``, a ``dim`` and ``encode(texts) -> float32 (len(texts), dim)``."""

    name: str
    dim: int

    def encode(
        self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False
    ) -> np.ndarray:
        """float32 (len(texts), dim), one L2-normalised row per text, in input order.

        ``batch_size`` None means the encoder's own default.
        """
        ...


ENCODER_KINDS = ("minilm", "minilm-onnx", "minilm-int8", "static", "tfidf", "lexical")
# the ``name`` each kind's encoder reports (TF-IDF's depends on its fit); datasets record it
_KIND_NAMES = {"minilm": "all-MiniLM-L6-v2", "minilm-onnx": "all-MiniLM-L6-v2-onnx",
               "minilm-int8": "all-MiniLM-L6-v2-onnx-int8", "static": "minilm-static-256"}


# torch MiniLM and its fp32 ONNX export give the same vectors (cosine >= 0.9999, tested), so a dataset's
# embeddings recorded under either name serve both; int8 and static differ and never stand in
EQUIVALENT_NAMES = {"all-MiniLM-L6-v2": ("all-MiniLM-L6-v2-onnx",), "all-MiniLM-L6-v2-onnx": ("all-MiniLM-L6-v2",)}


def encoder_display_name(kind: str) -> str | None:
    """The ``name`` an encoder of this kind (any accepted spelling) reports, without building it; None for TF-IDF."""
    key = canonical_name(kind)
    return _KIND_NAMES.get(key) if key else None


def embedding_names(kind: str) -> list[str]:
    """Names under which a dataset's stored embeddings serve an encoder of this kind (its own name first)."""
    name = encoder_display_name(kind)
    return [] if name is None else [name, *EQUIVALENT_NAMES.get(name, ())]


def encoder_names() -> list[str]:
    """The encoder names ``get_encoder`` accepts (canonical names first)."""
    return [*ENCODER_KINDS, "all-MiniLM-L6-v2"]


def canonical_name(name: str) -> str | None:
    """The canonical key (one of ``ENCODER_KINDS``) for any accepted spelling of an encoder name, else None.

    A static encoder's name with its fingerprint (``minilm-static-256-<hex>``) counts as "static".
    """
    key = name.strip().lower()
    if key.startswith("minilm-static-"):
        return "static"
    return _ALIASES.get(key)


def default_n_threads(library: str = "onnx") -> int:
    """Threads for one encoder's ONNX Runtime ("onnx") or torch ("torch") work, from the one place that
    sets them (:mod:`recroute.threads`: ``--threads``, ``RECROUTE_THREADS``, ``RECROUTE_ORT_THREADS``,
    ``RECROUTE_TORCH_THREADS``; default the cores, at most 4: 2 on a 2-core machine)."""
    from recroute.threads import current_threads

    return getattr(current_threads(), library)


def get_encoder(name: str | Encoder | None = None, **kwargs: Any) -> Encoder:
    """An encoder by name or saved folder: "minilm" (torch; alias "all-MiniLM-L6-v2"), "minilm-onnx" (ONNX Runtime
    fp32), "minilm-int8" (ONNX Runtime, int8 weights), "static" (model2vec distillation), "tfidf" or
    "lexical" (TF-IDF + format statistics); parts joined by "+" side by side ("minilm-onnx+lexical").

    A path to a folder holding ``encoder.json`` (a saved or fine-tuned encoder) loads it. An object
    that already is an encoder is returned unchanged. ``kwargs`` go to the encoder's
    constructor (``batch_size``/``device``/``n_threads`` for MiniLM, ``batch_size``/``n_threads``/
    ``cache_dir`` for the ONNX ones, ``dim``/``cache_dir`` for static, ``dim`` and vectoriser settings
    for TF-IDF). The TF-IDF encoder comes back unfitted: call ``fit(texts)`` first (``embed_dataset``
    does). Nothing heavy is loaded here except for "static", which loads (or, the first time on a
    machine, distils) its vectors; the others load or export their weights on first use.
    """
    if name is None:
        name = DEFAULT_ENCODER
    if not isinstance(name, str):
        if isinstance(name, Encoder):
            return name
        raise TypeError(f"encoder must be a name or an Encoder, got {type(name).__name__}")
    if (Path(name).expanduser() / ENCODER_FILE).is_file():  # a saved encoder's folder (e.g. a fine-tuned one)
        return load_encoder(Path(name).expanduser())
    if "+" in name:  # several encoders side by side, e.g. "minilm-onnx+lexical"
        from recroute.encoders.concat import ConcatEncoder

        return ConcatEncoder.from_name(name)
    key = canonical_name(name)
    if key == "static" and "-ft-" in name:
        raise ValueError(
            f"encoder {name!r} is a fine-tuned static encoder: give its folder (recroute encode --finetune "
            "prints it), or load it with recroute.encoders.load_encoder(path)"
        )
    if key is None and name.strip().lower().startswith("all-minilm-l6-v2-ft-"):
        raise ValueError(
            f"encoder {name!r} is a fine-tuned MiniLM: give its folder (recroute encode --finetune minilm "
            "prints it), or load it with recroute.encoders.load_encoder(path)"
        )
    if key is None and name.strip().lower().startswith("tfidf-svd-"):
        raise ValueError(
            f"encoder {name!r} is a fitted TF-IDF encoder: load it from its saved folder with "
            "recroute.encoders.load_encoder(path), or fit a new one with get_encoder('tfidf')"
        )
    if key == "minilm":
        from recroute.encoders.minilm import MiniLMEncoder

        return MiniLMEncoder(**kwargs)
    if key in ("minilm-onnx", "minilm-int8"):
        from recroute.encoders.onnx import OnnxMiniLMEncoder

        return OnnxMiniLMEncoder(quantized=key == "minilm-int8", **kwargs)
    if key == "static":
        from recroute.encoders.static import STATIC_DIM, StaticEncoder

        dim = int(kwargs.pop("dim", STATIC_DIM))
        return StaticEncoder.make(dim, kwargs.pop("cache_dir", None), **kwargs)
    if key == "tfidf":
        from recroute.encoders.tfidf import TfidfEncoder

        return TfidfEncoder(**kwargs)
    if key == "lexical":
        from recroute.encoders.lexical import LexicalEncoder

        return LexicalEncoder(**kwargs)
    raise ValueError(f"unknown encoder {name!r}; expected one of {encoder_names()}")


def load_encoder(path: str | Path) -> Encoder:
    """Load an encoder saved with its ``save(path)`` (a folder holding ``encoder.json``).

    Never executes code: JSON + ``.npz`` read with ``allow_pickle=False``.
    """
    path = Path(path)
    spec = read_spec(path)
    kind = spec.get("type")
    if kind == "minilm":
        from recroute.encoders.minilm import MiniLMEncoder

        return MiniLMEncoder.load(path)
    if kind in ("minilm-onnx", "minilm-int8"):
        from recroute.encoders.onnx import OnnxMiniLMEncoder

        return OnnxMiniLMEncoder.load(path)
    if kind == "static":
        from recroute.encoders.static import StaticEncoder

        return StaticEncoder.load(path)
    if kind == "minilm-ft":
        from recroute.encoders.minilm_finetune import TunedMiniLMEncoder

        return TunedMiniLMEncoder.load(path)
    if kind == "tfidf":
        from recroute.encoders.tfidf import TfidfEncoder

        return TfidfEncoder.load(path)
    if kind == "lexical":
        from recroute.encoders.lexical import LexicalEncoder

        return LexicalEncoder.load(path)
    if kind == "concat":
        from recroute.encoders.concat import ConcatEncoder

        return ConcatEncoder.load(path)
    raise SavedArtifactError(f"{path / ENCODER_FILE}: unknown encoder type {kind!r} (expected one of {[*ENCODER_KINDS, 'concat', 'minilm-ft']})")


def read_spec(path: Path) -> dict:
    """The parsed ``encoder.json`` of a saved encoder folder, with clear errors."""
    file = Path(path) / ENCODER_FILE
    if not file.exists():
        raise SavedArtifactError(f"{path}: not a saved encoder (no {ENCODER_FILE})")
    try:
        spec = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SavedArtifactError(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise SavedArtifactError(f"{file}: expected a JSON object")
    return spec


def write_spec(path: str | Path, spec: dict) -> Path:
    """Write ``encoder.json`` (the encoder's spec) into folder ``path`` atomically; returns the folder."""
    from recroute.atomic import atomic_file

    with atomic_file(Path(path) / ENCODER_FILE) as tmp:
        tmp.write_text(json.dumps(spec, indent=2))
    return Path(path)


def check_texts(texts: Sequence[str], what: str = "texts") -> list[str]:
    """``texts`` as a list of str; a bare string or a non-string item raises with its position."""
    if isinstance(texts, (str, bytes)):
        raise TypeError(f"{what} must be a list of strings, not a single {type(texts).__name__}")
    out = list(texts)
    bad = [i for i, t in enumerate(out) if not isinstance(t, str)]
    if bad:
        from recroute.errors import describe_rows

        raise ValueError(
            f"{what} must all be strings; {describe_rows(bad)} hold "
            f"{sorted({type(out[i]).__name__ for i in bad})}"
        )
    return out


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero), float32."""
    X = np.asarray(X, dtype=np.float32)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    np.maximum(norms, np.float32(1e-12), out=norms)
    return (X / norms).astype(np.float32, copy=False)
