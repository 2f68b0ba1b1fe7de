"""Lexical and format features of a prompt, the part of a prompt MiniLM does not carry.

    enc = LexicalEncoder().fit(training_texts)        # TF-IDF + SVD and the format statistics' scale
    X = enc.encode(texts)                             # float32 (n, tfidf_dim + N_FORMAT)
    get_encoder("minilm-onnx+lexical")                # beside MiniLM (recroute.encoders.concat)

A row is ``[tfidf (tfidf_dim, unit norm), format_scale · standardised format statistics (N_FORMAT)]``:
the TF-IDF + TruncatedSVD projection of the prompt's words and bigrams (:class:`TfidfEncoder`), and
nine statistics of its form (:func:`format_statistics`: length, digits, answer options, operators,
LaTeX...), standardised by their mean and spread over the training texts. Both are fitted on the
texts given to ``fit`` only; the protocol (``recroute eval --encoder minilm-onnx+lexical``) fits
them on RouterEval's training prompts, never on test prompts.

Why: on MMLU-Pro and llmrouter_nim a two-tower router on MiniLM + these features has a lower
validation log loss than on MiniLM alone at every m (docs/zoo.md, "What the features add"): whether
a weak LLM answers depends on the prompt's length and format (long prompts, many options, formulas),
which a mean-pooled sentence embedding hardly keeps. Saved as JSON + ``.npz`` (no pickle).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from recroute.encoders.base import ENCODER_FILE, check_texts, read_spec
from recroute.errors import NotFittedError, SavedArtifactError

ARRAYS_FILE = "arrays.npz"
TFIDF_DIR = "tfidf"
FORMAT_VERSION = 1
FORMAT_NAMES = ("log_chars", "log_words", "digit_share", "n_options", "newlines_per_100", "operators_per_100",
                "has_dollar", "has_backslash", "upper_share")
N_FORMAT = len(FORMAT_NAMES)
_OPTION_LINE = re.compile(r"^[A-J][.)] ", flags=re.M)  # "A. ..." / "B) ..." answer options
_OPERATORS = "=+^*/<>"


def format_statistics(texts: Sequence[str]) -> np.ndarray:
    """float64 (n, N_FORMAT) raw statistics of each text's form, in ``FORMAT_NAMES`` order.

    Counts per character are per 100 characters; an empty text gives zeros (its logs are log1p(0)).
    """
    texts = check_texts(texts)
    out = np.zeros((len(texts), N_FORMAT), dtype=np.float64)
    for i, text in enumerate(texts):
        n = max(len(text), 1)
        out[i] = (
            np.log1p(len(text)), np.log1p(len(text.split())), sum(c.isdigit() for c in text) / n,
            len(_OPTION_LINE.findall(text)), 100.0 * text.count("\n") / n,
            100.0 * sum(text.count(c) for c in _OPERATORS) / n, float("$" in text), float("\\" in text),
            sum(c.isupper() for c in text) / n,
        )
    return out


class LexicalEncoder:
    """TF-IDF + SVD of the words (``tfidf_dim``) and the standardised format statistics (module docstring).

    ``format_scale`` weighs the standardised statistics against the unit-norm TF-IDF (and MiniLM) rows.
    Fitted attributes: ``tfidf_`` (a fitted TfidfEncoder), ``format_mean_``/``format_std_`` float64 (N_FORMAT,).
    """

    def __init__(self, tfidf_dim: int = 128, format_scale: float = 0.1) -> None:
        from recroute.encoders.tfidf import TfidfEncoder

        if int(tfidf_dim) < 1 or not float(format_scale) > 0:
            raise ValueError(f"need tfidf_dim >= 1 and format_scale > 0; got {tfidf_dim!r}, {format_scale!r}")
        self.tfidf_dim = int(tfidf_dim)
        self.format_scale = float(format_scale)
        self.tfidf_ = TfidfEncoder(dim=self.tfidf_dim)
        self.format_mean_: np.ndarray | None = None
        self.format_std_: np.ndarray | None = None

    # ------------------------------------------------------------------ identity
    @property
    def is_fitted(self) -> bool:
        return self.format_mean_ is not None and self.tfidf_.is_fitted

    @property
    def dim(self) -> int:
        return int(self.tfidf_.dim) + N_FORMAT

    @property
    def name(self) -> str:
        return f"lexical-{self.dim}"

    @property
    def cache_key(self) -> str:
        """``name`` plus a fingerprint of the fitted TF-IDF and format scale (different fits never share a cache)."""
        self._require_fitted()
        digest = hashlib.sha256(self.tfidf_.cache_key.encode())
        digest.update(np.ascontiguousarray([*self.format_mean_, *self.format_std_, self.format_scale], dtype="<f8").tobytes())
        return f"{self.name}-{digest.hexdigest()[:16]}"

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{self.name} is not fitted: call fit(texts) on the training prompts first")

    # ------------------------------------------------------------------ fit / encode
    def fit(self, texts: Sequence[str]) -> "LexicalEncoder":
        """Fit the TF-IDF projection and the statistics' mean and spread on ``texts`` (at least 2)."""
        texts = check_texts(texts)
        self.tfidf_.fit(texts)
        stats = format_statistics(texts)
        self.format_mean_ = stats.mean(axis=0)
        varies = np.ptp(stats, axis=0) > 0  # a statistic constant over the texts stays (about) 0
        self.format_std_ = np.where(varies, stats.std(axis=0), 1.0)
        return self

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dim): TF-IDF rows (unit norm) then the scaled standardised statistics."""
        self._require_fitted()
        texts = check_texts(texts)
        stats = (format_statistics(texts) - self.format_mean_) / self.format_std_ * self.format_scale
        return np.hstack([self.tfidf_.encode(texts, batch_size=batch_size), stats]).astype(np.float32)

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        """What a saved router or bundle records about this encoder (JSON)."""
        return {"type": "lexical", "format": FORMAT_VERSION, "name": self.name, "dim": self.dim,
                "params": {"tfidf_dim": self.tfidf_dim, "format_scale": self.format_scale},
                "format_statistics": list(FORMAT_NAMES)}

    def save(self, path: str | Path) -> Path:
        """Folder ``path``: ``encoder.json``, ``arrays.npz`` (the statistics' mean and spread), ``tfidf/``. Atomic."""
        from recroute.atomic import atomic_dir

        self._require_fitted()
        with atomic_dir(path) as tmp:
            (tmp / ENCODER_FILE).write_text(json.dumps(self.spec(), indent=1))
            np.savez(tmp / ARRAYS_FILE, format_mean=self.format_mean_, format_std=self.format_std_)
            self.tfidf_.save(tmp / TFIDF_DIR)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "LexicalEncoder":
        """Read a folder written by :meth:`save`; shapes and the recorded dim are checked."""
        from recroute.encoders.tfidf import TfidfEncoder

        path = Path(path)
        spec = read_spec(path)
        where = path / ENCODER_FILE
        if spec.get("type") != "lexical" or spec.get("format") != FORMAT_VERSION:
            raise SavedArtifactError(f"{where}: not a lexical encoder of format {FORMAT_VERSION} "
                                     f"(type {spec.get('type')!r}, format {spec.get('format')!r})")
        if list(spec.get("format_statistics", [])) != list(FORMAT_NAMES):
            raise SavedArtifactError(f"{where}: its format statistics {spec.get('format_statistics')!r} are not {list(FORMAT_NAMES)}")
        try:
            enc = cls(**dict(spec["params"]))
            with np.load(path / ARRAYS_FILE, allow_pickle=False) as npz:
                mean, std = np.asarray(npz["format_mean"], np.float64), np.asarray(npz["format_std"], np.float64)
        except (KeyError, TypeError, ValueError, OSError, EOFError) as exc:
            raise SavedArtifactError(f"{path}: missing or invalid lexical encoder state ({exc})") from None
        if mean.shape != (N_FORMAT,) or std.shape != (N_FORMAT,) or not (std > 0).all():
            raise SavedArtifactError(f"{path / ARRAYS_FILE}: format mean/std must be {N_FORMAT} numbers (std > 0)")
        enc.tfidf_ = TfidfEncoder.load(path / TFIDF_DIR)
        enc.format_mean_, enc.format_std_ = mean, std
        if enc.dim != spec.get("dim"):
            raise SavedArtifactError(f"{where}: records dim {spec.get('dim')!r}, its parts give {enc.dim}")
        return enc
