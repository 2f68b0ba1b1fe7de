"""Prompt features for a RoutingDataset: reuse its embeddings or encode its texts (cached)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from recroute.encoders.base import EQUIVALENT_NAMES, Encoder, get_encoder
from recroute.encoders.cache import cache_key, encode_cached
from recroute.errors import DataError, describe_rows

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset


def dataset_texts(data: "RoutingDataset") -> list[str]:
    """The prompt texts in row order; a DataError names the prompts that have none."""
    texts = data.texts
    missing = [i for i, t in enumerate(texts) if t is None]
    if missing:
        label = f"dataset {data.name!r}" if data.name else "the dataset"
        ids = data.prompt_ids[missing[:3]].tolist()
        raise DataError(
            f"{label} has {len(missing)} of {len(texts)} prompts without text "
            f"({describe_rows(missing)}, e.g. prompt_id {ids}); an encoder needs the prompt text: "
            "add a 'text' column to the prompt table, or supply precomputed embeddings (embeddings.npy)"
        )
    return texts  # type: ignore[return-value]


def reusable_names(encoder: Encoder) -> Iterator[str]:
    """Names under which a dataset's stored embeddings count as this encoder's.

    The plain name for the MiniLM family (``name_identifies_vectors``: their vectors are fixed by the
    packaged weights, up to the numerical noise of a runtime version), and for torch MiniLM and its
    fp32 ONNX export each other's name (``EQUIVALENT_NAMES``: cosine >= 0.9999), checked first so no
    graph is exported just to compare names; then the cache key (name + fingerprint of the artefact
    or fit for the ONNX, static and TF-IDF encoders).
    """
    if getattr(encoder, "name_identifies_vectors", False):
        yield encoder.name
        yield from EQUIVALENT_NAMES.get(encoder.name, ())
    key = cache_key(encoder)
    if key != encoder.name or not getattr(encoder, "name_identifies_vectors", False):
        yield key


def embed_dataset(
    data: "RoutingDataset",
    encoder: Encoder | str | None = None,
    *,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    batch_size: int | None = None,
    show_progress: bool = False,
) -> np.ndarray:
    """float32 (n_prompts, d) prompt features of ``data``, attached to it (``data.embeddings``).

    The dataset's own embeddings are returned unchanged when the same encoder made them (same dim,
    and a recorded name in :func:`reusable_names`); a dataset folder may carry several sets by
    encoder name (``dataset.json`` ``"embedding_files"``), and the matching one becomes the active
    set. Otherwise the prompt texts are encoded through :func:`~recroute.encoders.cache.encode_cached`.
    An unfitted TF-IDF encoder is first fitted on this dataset's texts (unsupervised: no scores used).
    """
    encoder = get_encoder(encoder)
    if hasattr(encoder, "parts"):  # a concatenated encoder: each part on its own, stored sets reused
        parts = [embed_dataset(data, part, cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size,
                               show_progress=show_progress) for part in encoder.parts]
        X = np.hstack(parts).astype(np.float32)
        data.set_embeddings(X, encoder.name)
        return X
    stored = data.embeddings is not None or bool(getattr(data, "embedding_sets", None))
    fitted = getattr(encoder, "is_fitted", True) is not False  # an unfitted TF-IDF made nothing stored
    for key in reusable_names(encoder) if stored and fitted else ():
        if data.embedding_name == key and data.embeddings is not None and data.embeddings.shape[1] == encoder.dim:
            return data.embeddings
        X = getattr(data, "embedding_sets", {}).get(key)
        if X is not None and X.shape[1] == encoder.dim:
            data.use_embeddings(key)
            return data.embeddings
    texts = dataset_texts(data)
    if getattr(encoder, "is_fitted", True) is False:
        encoder.fit(texts)  # type: ignore[attr-defined]
    X = encode_cached(
        encoder, texts, cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, show_progress=show_progress
    )
    data.set_embeddings(X, encoder.name)
    return X
