"""Several encoders side by side: ``get_encoder("minilm-onnx+lexical")``.

A row is the concatenation of the parts' rows, in order: float32 (n, Σ dim_i). The encoder is
fitted when every part is (``fit(texts)`` fits the unfitted ones, e.g. the lexical part, on the
texts given: the protocol gives RouterEval's training prompts). ``embed_dataset`` builds each part
on its own, so a dataset's stored MiniLM embeddings are reused and only the other parts are computed.
Saved as ``encoder.json`` (type "concat", the parts' names) and one folder per part.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from recroute.encoders.base import ENCODER_FILE, Encoder, read_spec
from recroute.errors import SavedArtifactError

SEPARATOR = "+"


class ConcatEncoder:
    """The parts' features side by side (module docstring). ``parts``: encoders, at least two."""

    def __init__(self, parts: Sequence[Encoder]) -> None:
        self.parts = list(parts)
        if len(self.parts) < 2:
            raise ValueError(f"a concatenated encoder needs at least two parts; got {len(self.parts)}")

    @classmethod
    def from_name(cls, name: str) -> "ConcatEncoder":
        """``"minilm-onnx+lexical"`` -> the parts by name (each through ``get_encoder``)."""
        from recroute.encoders.base import get_encoder

        names = [part.strip() for part in name.split(SEPARATOR)]
        if any(not part for part in names):
            raise ValueError(f"encoder {name!r}: an empty part between {SEPARATOR!r}; e.g. 'minilm-onnx+lexical'")
        return cls([get_encoder(part) for part in names])

    # ------------------------------------------------------------------ identity
    @property
    def name(self) -> str:
        return SEPARATOR.join(str(part.name) for part in self.parts)

    @property
    def dim(self) -> int:
        return sum(int(part.dim) for part in self.parts)

    @property
    def is_fitted(self) -> bool:
        return all(getattr(part, "is_fitted", True) is not False for part in self.parts)

    @property
    def cache_key(self) -> str:
        from recroute.encoders.cache import cache_key

        return SEPARATOR.join(cache_key(part) for part in self.parts)

    def __repr__(self) -> str:
        return f"ConcatEncoder({self.name!r}, dim={self.dim})"

    # ------------------------------------------------------------------ fit / encode
    def fit(self, texts: Sequence[str]) -> "ConcatEncoder":
        """Fit the parts that are not fitted yet on ``texts``."""
        for part in self.parts:
            if getattr(part, "is_fitted", True) is False:
                part.fit(texts)  # type: ignore[attr-defined]
        return self

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dim): each part's rows side by side."""
        blocks = [part.encode(texts, batch_size=batch_size, show_progress=show_progress) for part in self.parts]
        return np.hstack(blocks).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        return {"type": "concat", "name": self.name, "dim": self.dim, "parts": [str(p.name) for p in self.parts]}

    def save(self, path: str | Path) -> Path:
        """Folder ``path``: ``encoder.json`` and ``part_<i>/`` per part (each part's own save). Atomic."""
        from recroute.atomic import atomic_dir

        for part in self.parts:
            if not callable(getattr(part, "save", None)):
                raise ValueError(f"encoder part {part.name!r} cannot be saved (no save method)")
        with atomic_dir(path) as tmp:
            for i, part in enumerate(self.parts):
                part.save(tmp / f"part_{i}")
            (tmp / ENCODER_FILE).write_text(json.dumps(self.spec(), indent=1))
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "ConcatEncoder":
        """Read a folder written by :meth:`save`; each part's name and the total dim are checked."""
        from recroute.encoders.base import load_encoder

        path = Path(path)
        spec = read_spec(path)
        names = spec.get("parts")
        if spec.get("type") != "concat" or not isinstance(names, list) or len(names) < 2:
            raise SavedArtifactError(f"{path / ENCODER_FILE}: not a concatenated encoder with at least two parts")
        parts = [load_encoder(path / f"part_{i}") for i in range(len(names))]
        enc = cls(parts)
        if [str(p.name) for p in parts] != names or enc.dim != spec.get("dim"):
            raise SavedArtifactError(f"{path / ENCODER_FILE}: records parts {names} of dim {spec.get('dim')!r}, "
                                     f"its folders hold {[p.name for p in parts]} of dim {enc.dim}")
        return enc
