"""Prompt encoders: text -> float32 (n, d) features, with an on-disk embedding cache.

``get_encoder(name)``: "minilm" (the packaged all-MiniLM-L6-v2 on torch, offline), "minilm-onnx"
(the same network on ONNX Runtime; ``DEFAULT_ENCODER``), "minilm-int8" (int8 weights), "static"
(model2vec distillation, no transformer at run time) or "tfidf" (TF-IDF + TruncatedSVD, no model). ``encode_cached`` skips texts already encoded;
``embed_dataset`` gives a RoutingDataset its prompt features. Heavy backends load lazily.
"""

from __future__ import annotations

from recroute.encoders.base import (
    DEFAULT_ENCODER,
    Encoder,
    encoder_names,
    get_encoder,
    load_encoder,
)
from recroute.encoders.cache import EmbeddingCache, default_cache_dir, encode_cached
from recroute.encoders.embed import embed_dataset

__all__ = [
    "DEFAULT_ENCODER",
    "Encoder",
    "EmbeddingCache",
    "default_cache_dir",
    "embed_dataset",
    "encode_cached",
    "encoder_names",
    "get_encoder",
    "load_encoder",
]
