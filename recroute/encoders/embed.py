"""Prompt features for a RoutingDataset: reuse its embeddings or encode its texts (cached)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from recroute.encoders.base import Encoder, get_encoder
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

    The dataset's own embeddings are returned unchanged when the same encoder made them: their
    recorded name equals the encoder's cache key (its name for MiniLM; name + fingerprint for the
    ONNX, static and TF-IDF encoders, so another export or fit never passes for this one) and the
    dim matches. Otherwise the prompt texts are encoded through
    :func:`~recroute.encoders.cache.encode_cached`.
    An unfitted TF-IDF encoder is first fitted on this dataset's texts (unsupervised: no scores used).
    """
    encoder = get_encoder(encoder)
    if (
        data.embeddings is not None
        and data.embeddings.shape[1] == encoder.dim
        and data.embedding_name == cache_key(encoder)
    ):
        return data.embeddings
    texts = dataset_texts(data)
    if getattr(encoder, "is_fitted", True) is False:
        encoder.fit(texts)  # type: ignore[attr-defined]
    X = encode_cached(
        encoder, texts, cache_dir=cache_dir, use_cache=use_cache, batch_size=batch_size, show_progress=show_progress
    )
    data.set_embeddings(X, encoder.name)
    return X
