"""TF-IDF + TruncatedSVD: a prompt encoder that needs no model download.

Fit on a corpus, then encode any text into L2-normalised float32 (n, dim) rows. The fitted state
(vocabulary, idf, SVD components) is saved as JSON + ``.npz`` (no pickle), so a router that records
this encoder can be reloaded safely and applies exactly the same transform.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from recroute.encoders.base import ENCODER_FILE, check_texts, l2_normalise, read_spec
from recroute.errors import NotFittedError, SavedArtifactError

ARRAYS_FILE = "arrays.npz"
FORMAT_VERSION = 1
DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"


class TfidfEncoder:
    """TF-IDF (sublinear tf, l2) followed by TruncatedSVD to ``dim`` dimensions.

    ``dim`` is an upper bound: a corpus with a small vocabulary (or few texts) gets
    ``min(dim, n_terms - 1, n_texts - 1)`` dimensions. The name is ``"tfidf-svd-<dim>"`` with the
    fitted dim; ``cache_key`` adds a fingerprint of the fitted state.

    Fitted attributes: ``vocabulary_`` (terms in column order), ``idf_`` float64 (n_terms,),
    ``components_`` float32 (dim, n_terms).
    """

    def __init__(
        self,
        dim: int = 256,
        *,
        max_features: int | None = 50_000,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: int = 1,
        sublinear_tf: bool = True,
        lowercase: bool = True,
        token_pattern: str = DEFAULT_TOKEN_PATTERN,
        random_state: int = 42,
        batch_size: int = 4096,
    ) -> None:
        if int(dim) < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.requested_dim = int(dim)
        self.max_features = None if max_features is None else int(max_features)
        self.ngram_range = (int(ngram_range[0]), int(ngram_range[1]))
        self.min_df = int(min_df)
        self.sublinear_tf = bool(sublinear_tf)
        self.lowercase = bool(lowercase)
        self.token_pattern = str(token_pattern)
        self.random_state = int(random_state)
        self.batch_size = int(batch_size)
        self.vocabulary_: list[str] | None = None
        self.idf_: np.ndarray | None = None
        self.components_: np.ndarray | None = None
        self._counter = None
        self._projection: np.ndarray | None = None
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ identity
    @property
    def is_fitted(self) -> bool:
        return self.components_ is not None

    @property
    def dim(self) -> int:
        """Output dimension: the fitted one, or the requested upper bound before fitting."""
        return int(self.components_.shape[0]) if self.components_ is not None else self.requested_dim

    @property
    def name(self) -> str:
        return f"tfidf-svd-{self.dim}"

    @property
    def cache_key(self) -> str:
        """``name`` plus a fingerprint of the fitted state (different fits never share a cache)."""
        return f"{self.name}-{self._require_fitted()[:16]}"

    def __repr__(self) -> str:
        state = f"{len(self.vocabulary_)} terms" if self.vocabulary_ is not None else "unfitted"
        return f"TfidfEncoder(name={self.name!r}, {state})"

    def params(self) -> dict:
        """Constructor settings (JSON-serialisable)."""
        return {
            "dim": self.requested_dim,
            "max_features": self.max_features,
            "ngram_range": list(self.ngram_range),
            "min_df": self.min_df,
            "sublinear_tf": self.sublinear_tf,
            "lowercase": self.lowercase,
            "token_pattern": self.token_pattern,
            "random_state": self.random_state,
            "batch_size": self.batch_size,
        }

    def _require_fitted(self) -> str:
        if self._fingerprint is None:
            raise NotFittedError(f"{self.name} is not fitted: call fit(texts) first (or load a saved one)")
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        digest = hashlib.sha256()
        digest.update(json.dumps(self.params(), sort_keys=True).encode())
        digest.update(json.dumps(self.vocabulary_, ensure_ascii=False).encode("utf-8", "surrogatepass"))
        digest.update(np.ascontiguousarray(self.idf_, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.components_, dtype="<f4").tobytes())
        return digest.hexdigest()

    # ------------------------------------------------------------------ fitting
    def fit(self, texts: Sequence[str]) -> "TfidfEncoder":
        """Learn vocabulary, idf and the SVD projection from ``texts`` (at least 2 of them)."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        texts = check_texts(texts)
        if len(texts) < 2:
            raise ValueError(f"the TF-IDF encoder needs at least 2 texts to fit, got {len(texts)}")
        vectoriser = TfidfVectorizer(
            lowercase=self.lowercase,
            token_pattern=self.token_pattern,
            ngram_range=self.ngram_range,
            min_df=self.min_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            dtype=np.float64,
        )
        try:
            vectoriser.fit(texts)
        except ValueError as exc:  # "empty vocabulary; perhaps the documents only contain stop words"
            raise ValueError(f"cannot fit the TF-IDF encoder: {exc}") from None
        vocab = vectoriser.vocabulary_
        terms = [""] * len(vocab)
        for term, j in vocab.items():
            terms[j] = term
        n_terms = len(terms)
        dim = min(self.requested_dim, n_terms - 1, len(texts) - 1)
        if dim < 1:
            raise ValueError(
                f"cannot fit the TF-IDF encoder: the corpus has {n_terms} distinct term(s) in {len(texts)} "
                "texts; at least 2 terms are needed"
            )
        self.vocabulary_ = terms
        self.idf_ = np.asarray(vectoriser.idf_, dtype=np.float64)
        self.components_, self._fingerprint, self._counter, self._projection = None, None, None, None
        T = self._tfidf(texts)
        svd = TruncatedSVD(n_components=dim, algorithm="randomized", n_iter=7, random_state=self.random_state)
        svd.fit(T)
        self.components_ = np.ascontiguousarray(svd.components_, dtype=np.float32)
        self._fingerprint = self._compute_fingerprint()
        return self

    def fit_encode(self, texts: Sequence[str]) -> np.ndarray:
        """``fit(texts)`` then ``encode(texts)``: float32 (len(texts), dim)."""
        return self.fit(texts).encode(texts)

    # ------------------------------------------------------------------ encoding
    def _tfidf(self, texts: list[str]):
        """scipy CSR float64 (n, n_terms): sublinear tf × idf, rows L2-normalised (as sklearn's)."""
        from sklearn.feature_extraction.text import CountVectorizer
        from sklearn.preprocessing import normalize

        if self._counter is None:
            self._counter = CountVectorizer(
                lowercase=self.lowercase,
                token_pattern=self.token_pattern,
                ngram_range=self.ngram_range,
                vocabulary={t: j for j, t in enumerate(self.vocabulary_)},
                dtype=np.float64,
            )
        counts = self._counter.transform(texts).tocsr()
        if self.sublinear_tf:
            np.log(counts.data, out=counts.data)
            counts.data += 1.0
        counts = counts.multiply(self.idf_[None, :]).tocsr()
        return normalize(counts, norm="l2", copy=False)

    def encode(self, texts: Sequence[str], batch_size: int | None = None, show_progress: bool = False) -> np.ndarray:
        """float32 (len(texts), dim), unit-norm rows (a text with no known term gives a zero row)."""
        self._require_fitted()
        texts = check_texts(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        step = int(batch_size or self.batch_size)
        if self._projection is None:
            self._projection = np.ascontiguousarray(self.components_.T, dtype=np.float32)  # (n_terms, dim)
        for start in range(0, len(texts), step):
            T = self._tfidf(texts[start : start + step]).astype(np.float32)
            out[start : start + step] = np.asarray(T @ self._projection, dtype=np.float32)
        return l2_normalise(out)

    # ------------------------------------------------------------------ persistence
    def spec(self) -> dict:
        """What a saved router records about this encoder (JSON; the arrays live in the .npz)."""
        return {
            "type": "tfidf",
            "format": FORMAT_VERSION,
            "name": self.name,
            "dim": self.dim,
            "params": self.params(),
            "fingerprint": self._require_fitted(),
        }

    def save(self, path: str | Path) -> Path:
        """Write folder ``path``: ``encoder.json`` (settings, vocabulary) + ``arrays.npz`` (idf, components).

        Atomic: written to a temp folder beside ``path``, then renamed over it.
        """
        from recroute.atomic import atomic_dir

        spec = self.spec()
        spec["vocabulary"] = self.vocabulary_
        with atomic_dir(path) as tmp:
            (tmp / ENCODER_FILE).write_text(json.dumps(spec, ensure_ascii=False))
            np.savez(tmp / ARRAYS_FILE, idf=self.idf_, components=self.components_)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> "TfidfEncoder":
        """Read a folder written by :meth:`save`; shapes and the fingerprint are checked."""
        path = Path(path)
        spec = read_spec(path)
        where = path / ENCODER_FILE
        if spec.get("type") != "tfidf":
            raise SavedArtifactError(f"{where}: not a TF-IDF encoder (type {spec.get('type')!r})")
        if spec.get("format") != FORMAT_VERSION:
            raise SavedArtifactError(f"{where}: format {spec.get('format')!r}, this recroute reads {FORMAT_VERSION}")
        try:
            params = dict(spec["params"])
            vocabulary = list(spec["vocabulary"])
            enc = cls(**params)
        except (KeyError, TypeError, ValueError) as exc:
            raise SavedArtifactError(f"{where}: missing or invalid settings ({exc})") from None
        arrays_file = path / ARRAYS_FILE
        try:
            with np.load(arrays_file, allow_pickle=False) as npz:
                idf = np.asarray(npz["idf"], dtype=np.float64)
                components = np.asarray(npz["components"], dtype=np.float32)
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise SavedArtifactError(f"{arrays_file}: missing or unreadable ({exc})") from None
        n_terms = len(vocabulary)
        if (
            not all(isinstance(t, str) for t in vocabulary)
            or len(set(vocabulary)) != n_terms
            or idf.shape != (n_terms,)
            or components.ndim != 2
            or components.shape[1] != n_terms
            or components.shape[0] != spec.get("dim")
        ):
            raise SavedArtifactError(
                f"{path}: inconsistent TF-IDF encoder: {n_terms} terms, idf {idf.shape}, "
                f"components {components.shape}, dim {spec.get('dim')!r}"
            )
        enc.vocabulary_, enc.idf_, enc.components_ = vocabulary, idf, np.ascontiguousarray(components)
        enc._fingerprint = enc._compute_fingerprint()
        if enc._fingerprint != spec.get("fingerprint"):
            raise SavedArtifactError(f"{path}: the TF-IDF arrays do not match their recorded fingerprint (modified?)")
        return enc
