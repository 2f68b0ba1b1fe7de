"""On-disk embedding cache: no text is encoded twice by the same encoder.

Layout, one folder per encoder (``$RECROUTE_CACHE/<encoder>/`` or
``~/.cache/recroute/embeddings/<encoder>/``)::

    <shard>.npy    float32 (m, d) vectors (plain numpy, read with allow_pickle=False)
    <shard>.json   the shard's index: format, encoder, dim, rows, sha256 of the .npy file and
                   the sha256 of each row's text (hex), in row order

A shard counts only once its ``.json`` exists; both files are written to a temp name and renamed,
so a crash never leaves a half-written shard that is read. A shard whose ``.npy`` no longer matches
its checksum (or whose index is unreadable) is discarded with a warning and its texts re-encoded.
Several processes may share one cache: each writes its own shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from recroute.encoders.base import Encoder, check_texts

CACHE_ENV = "RECROUTE_CACHE"
FORMAT_VERSION = 1
SHARD_ROWS = 2048  # texts encoded (and written) per shard, so an interrupted run resumes
PROGRESS_ROWS = 256  # texts per encoder call within a shard (progress bar granularity)

EncodeFn = Callable[[list[str]], np.ndarray]  # texts -> float32 (len(texts), dim)


class CacheWarning(UserWarning):
    """The embedding cache found a damaged shard or could not write; results stay correct."""


def default_cache_dir(encoder_key: str | None = None) -> Path:
    """Root of the cache (``$RECROUTE_CACHE`` or ``~/.cache/recroute/embeddings``), or one encoder's folder."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "recroute" / "embeddings"
    return root / _safe_dirname(encoder_key) if encoder_key else root


def cache_key(encoder: Encoder) -> str:
    """The key an encoder's vectors are cached under: its ``cache_key`` if it has one, else its name.

    Encoders whose vectors depend on fitted state (TF-IDF) add a fingerprint of that state, so two
    different fits with the same name never share cached vectors.
    """
    key = getattr(encoder, "cache_key", None)
    return str(key) if key else str(encoder.name)


def text_key(text: str) -> str:
    """sha256 (hex) of the text's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _safe_dirname(name: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._+-]+", "_", name).strip("._") or "encoder"
    if safe != name:  # keep distinct names distinct after sanitising
        safe = f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return safe


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class CacheStats:
    """What one ``encode_cached`` call did."""

    n_texts: int = 0  # rows returned
    n_unique: int = 0  # distinct texts among them
    n_cached: int = 0  # distinct texts found in the cache
    n_encoded: int = 0  # distinct texts sent to the encoder
    seconds_loading: float = 0.0  # encoder set-up (model load) before the first batch
    seconds_encoding: float = 0.0


class EmbeddingCache:
    """The cached vectors of one encoder (keyed by ``cache_key(encoder)``) in one folder."""

    def __init__(self, encoder_key: str, dim: int, directory: str | Path | None = None) -> None:
        self.encoder_key = encoder_key
        self.dim = int(dim)
        self.directory = Path(directory) if directory is not None else default_cache_dir(encoder_key)
        self._writable = True

    @classmethod
    def for_encoder(cls, encoder: Encoder, root: str | Path | None = None) -> "EmbeddingCache":
        """The cache of ``encoder`` under ``root`` (default: :func:`default_cache_dir`)."""
        key = cache_key(encoder)
        root = Path(root) if root is not None else default_cache_dir()
        return cls(key, encoder.dim, root / _safe_dirname(key))

    def __repr__(self) -> str:
        return f"EmbeddingCache({self.encoder_key!r}, dim={self.dim}, directory='{self.directory}')"

    # ------------------------------------------------------------------ reading
    def _manifests(self) -> dict[str, dict]:
        """shard id -> parsed index, for every committed shard of this encoder and dim."""
        out: dict[str, dict] = {}
        if not self.directory.is_dir():
            return out
        for file in sorted(self.directory.glob("*.json")):
            shard = file.stem
            try:
                meta = json.loads(file.read_text())
                keys = meta["keys"]
                ok = (
                    meta.get("format") == FORMAT_VERSION
                    and isinstance(keys, list)
                    and int(meta["rows"]) == len(keys)
                    and isinstance(meta["sha256"], str)
                )
            except (OSError, ValueError, KeyError, TypeError) as exc:
                self._discard(shard, f"its index {file.name} is unreadable ({type(exc).__name__})")
                continue
            if not ok:
                self._discard(shard, f"its index {file.name} is malformed")
                continue
            if meta.get("encoder") != self.encoder_key or int(meta.get("dim", -1)) != self.dim:
                continue  # another encoder's shard in a shared folder: not ours, leave it
            out[shard] = meta
        return out

    def _load_shard(self, shard: str, meta: dict) -> np.ndarray | None:
        """The shard's vectors, or None (after a warning) when they fail their checks."""
        file = self.directory / f"{shard}.npy"
        try:
            if _file_sha256(file) != meta["sha256"]:
                raise ValueError("checksum mismatch")
            X = np.load(file, allow_pickle=False)
            if X.dtype != np.float32 or X.shape != (int(meta["rows"]), self.dim) or not np.isfinite(X).all():
                raise ValueError(f"unexpected array {X.dtype} {X.shape}")
        except (OSError, ValueError) as exc:
            self._discard(shard, f"{file.name} is corrupted ({exc})", n_rows=int(meta.get("rows", 0)))
            return None
        return X

    def _discard(self, shard: str, reason: str, n_rows: int | None = None) -> None:
        what = f"its {n_rows} text(s) will be re-encoded" if n_rows else "its texts will be re-encoded"
        warnings.warn(
            f"embedding cache {self.directory}: discarding shard {shard}: {reason}; {what}",
            CacheWarning,
            stacklevel=4,
        )
        for suffix in (".json", ".npy"):
            try:
                (self.directory / f"{shard}{suffix}").unlink(missing_ok=True)
            except OSError:
                pass

    def lookup(self, keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """(float32 (len(keys), dim) vectors, bool (len(keys),) found); rows not found are zero."""
        keys = list(keys)
        out = np.zeros((len(keys), self.dim), dtype=np.float32)
        found = np.zeros(len(keys), dtype=bool)
        if not keys:
            return out, found
        wanted: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            wanted.setdefault(k, []).append(i)
        for shard, meta in self._manifests().items():
            rows = [(r, wanted[k]) for r, k in enumerate(meta["keys"]) if k in wanted and not found[wanted[k][0]]]
            if not rows:
                continue
            X = self._load_shard(shard, meta)
            if X is None:
                continue
            for r, positions in rows:
                out[positions] = X[r]
                found[positions] = True
        return out, found

    def __len__(self) -> int:
        return len({k for meta in self._manifests().values() for k in meta["keys"]})

    # ------------------------------------------------------------------ writing
    def add(self, keys: Sequence[str], X: np.ndarray) -> Path | None:
        """Store float32 (len(keys), dim) vectors as one new shard; returns its .npy path.

        A cache that cannot be written (read-only disk, full disk) warns once and is skipped.
        """
        keys = list(keys)
        X = np.ascontiguousarray(X, dtype=np.float32)
        if X.shape != (len(keys), self.dim):
            raise ValueError(f"cache add: vectors have shape {X.shape}, expected {(len(keys), self.dim)}")
        if not keys or not self._writable:
            return None
        shard = f"{time.time_ns():x}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        npy = self.directory / f"{shard}.npy"
        tmp_npy = self.directory / f".{shard}.npy.tmp"
        tmp_json = self.directory / f".{shard}.json.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(tmp_npy, "wb") as fh:
                np.save(fh, X, allow_pickle=False)
                fh.flush()
                os.fsync(fh.fileno())
            meta = {
                "format": FORMAT_VERSION,
                "encoder": self.encoder_key,
                "dim": self.dim,
                "rows": len(keys),
                "dtype": "float32",
                "sha256": _file_sha256(tmp_npy),
                "keys": keys,
            }
            tmp_json.write_text(json.dumps(meta))
            os.replace(tmp_npy, npy)
            os.replace(tmp_json, self.directory / f"{shard}.json")  # the shard is committed here
        except OSError as exc:
            self._writable = False
            for tmp in (tmp_npy, tmp_json):
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass
            warnings.warn(
                f"embedding cache {self.directory} is not writable ({exc}); continuing without caching",
                CacheWarning,
                stacklevel=3,
            )
            return None
        return npy

    def clear(self) -> int:
        """Delete every shard of this encoder; returns how many files were removed."""
        removed = 0
        if self.directory.is_dir():
            for file in self.directory.iterdir():
                if file.suffix in (".npy", ".json", ".tmp") and file.is_file():
                    file.unlink(missing_ok=True)
                    removed += 1
        return removed


def _plain_encode(encoder: Encoder, batch_size: int | None) -> EncodeFn:
    """``encoder.encode`` without its progress bar (and at ``batch_size`` when given)."""
    kwargs = {} if batch_size is None else {"batch_size": batch_size}

    def encode(chunk: list[str]) -> np.ndarray:
        return encoder.encode(chunk, show_progress=False, **kwargs)

    return encode


def _encode_checked(encoder: Encoder, encode: EncodeFn, chunk: list[str]) -> np.ndarray:
    """``encode(chunk)`` as float32 (len(chunk), dim), refusing a wrong shape or NaN/inf."""
    X = np.asarray(encode(chunk), dtype=np.float32)
    if X.shape != (len(chunk), encoder.dim):
        raise ValueError(
            f"encoder {encoder.name!r} returned shape {X.shape} for {len(chunk)} texts; "
            f"expected {(len(chunk), encoder.dim)}"
        )
    if not np.isfinite(X).all():
        raise ValueError(f"encoder {encoder.name!r} returned NaN or inf vectors")
    return X


def encode_cached_with_stats(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int | None = None,
    show_progress: bool = False,
    shard_rows: int = SHARD_ROWS,
    encode_missing: EncodeFn | None = None,
) -> tuple[np.ndarray, CacheStats]:
    """Like :func:`encode_cached`, also returning what was read from the cache and what was encoded."""
    if encode_missing is not None and batch_size is not None:
        raise ValueError("batch_size is for encoder.encode; an encode_missing function batches by itself")
    texts = check_texts(texts)
    stats = CacheStats(n_texts=len(texts))
    keys = [text_key(t) for t in texts]
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique_keys = list(first)
    stats.n_unique = len(unique_keys)
    cache = EmbeddingCache.for_encoder(encoder, cache_dir) if use_cache else None
    if cache is not None:
        U, found = cache.lookup(unique_keys)
    else:
        U, found = np.zeros((len(unique_keys), encoder.dim), dtype=np.float32), np.zeros(len(unique_keys), bool)
    stats.n_cached = int(found.sum())
    missing = np.flatnonzero(~found)
    if missing.size:
        # longest first, so each shard's batches pad to similar lengths
        missing = missing[np.argsort([-len(texts[first[unique_keys[j]]]) for j in missing], kind="stable")]
        from tqdm.auto import tqdm

        started = time.perf_counter()
        if encode_missing is None:
            encode_missing = _plain_encode(encoder, batch_size)
            prepare = getattr(encoder, "prepare", None)
            if callable(prepare):  # load weights now, so the encoding time below is pure encoding
                prepare()
        stats.seconds_loading = time.perf_counter() - started
        started = time.perf_counter()
        with tqdm(total=int(missing.size), unit="text", desc=f"encoding ({encoder.name})",
                  disable=not show_progress, leave=False) as bar:
            shard_rows = max(1, int(shard_rows))
            step = min(shard_rows, PROGRESS_ROWS)  # encoder call size: keeps the progress bar moving
            for start in range(0, missing.size, shard_rows):
                part = missing[start : start + shard_rows]
                for sub in range(0, part.size, step):
                    rows = part[sub : sub + step]
                    U[rows] = _encode_checked(encoder, encode_missing, [texts[first[unique_keys[j]]] for j in rows])
                    bar.update(rows.size)
                if cache is not None:
                    cache.add([unique_keys[j] for j in part], U[part])
        stats.seconds_encoding = time.perf_counter() - started
        stats.n_encoded = int(missing.size)
    index = {k: j for j, k in enumerate(unique_keys)}
    out = U[[index[k] for k in keys]] if keys else np.zeros((0, encoder.dim), dtype=np.float32)
    return np.ascontiguousarray(out, dtype=np.float32), stats


def encode_cached(
    encoder: Encoder,
    texts: Sequence[str],
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int | None = None,
    show_progress: bool = False,
    encode_missing: EncodeFn | None = None,
) -> np.ndarray:
    """float32 (len(texts), encoder.dim): cached rows are read, only the misses are encoded.

    Texts are keyed by sha256 under the encoder's cache key; repeated texts are encoded once.
    ``cache_dir`` is the cache root (default ``$RECROUTE_CACHE`` or ``~/.cache/recroute/embeddings``);
    ``use_cache=False`` encodes everything and writes nothing.

    ``encode_missing(texts) -> float32 (len(texts), encoder.dim)``: how the texts not found are
    encoded (default ``encoder.encode``; ``batch_size`` goes to that only). Another route to the same
    encoder's vectors, such as a tuned MiniLM through cached frozen states
    (:func:`recroute.encoders.minilm_states.states_encoder`), shares this lookup, the cache key and
    the writes; the caller vouches that it gives ``encoder``'s vectors.
    """
    X, _ = encode_cached_with_stats(
        encoder, texts, cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, show_progress=show_progress,
        encode_missing=encode_missing,
    )
    return X


def save_embeddings(path: str | Path, X: np.ndarray) -> Path:
    """Write float32 (n, d) ``X`` to ``path`` (.npy) atomically: a temp file beside it, then a rename."""
    path = Path(path)
    X = np.ascontiguousarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, d); got shape {X.shape}")
    from recroute.atomic import atomic_file

    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, X, allow_pickle=False)
        fh.flush()
        os.fsync(fh.fileno())
    return path
