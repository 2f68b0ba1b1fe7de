"""The packaged all-MiniLM-L6-v2 encoder: offline, lazy, 384-d unit vectors (few texts only)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from recroute.encoders import get_encoder, load_encoder
from recroute.encoders import minilm as minilm_module
from recroute.encoders.minilm import MiniLMEncoder
from recroute.errors import SavedArtifactError


@pytest.fixture(scope="module")
def encoder():
    """MiniLM loaded from scratch while every network connection is refused."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    saved = dict(minilm_module._MODELS)
    minilm_module._MODELS.clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.delenv("HF_HUB_OFFLINE", raising=False)
        mp.delenv("TRANSFORMERS_OFFLINE", raising=False)
        enc = get_encoder("minilm")
        enc.prepare()
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
    minilm_module._MODELS.update({k: v for k, v in saved.items() if k not in minilm_module._MODELS})
    return enc


def test_names_and_aliases():
    for name in ("minilm", "MiniLM", "all-MiniLM-L6-v2"):
        enc = get_encoder(name)
        assert isinstance(enc, MiniLMEncoder)
        assert enc.name == "all-MiniLM-L6-v2" and enc.dim == 384
    default = get_encoder(None)  # DEFAULT_ENCODER: the same network on ONNX Runtime (nothing loaded yet)
    assert default.name == "all-MiniLM-L6-v2-onnx" and default.dim == 384
    enc = MiniLMEncoder()
    assert get_encoder(enc) is enc
    with pytest.raises(ValueError, match="unknown encoder 'bert'"):
        get_encoder("bert")


def test_import_and_get_encoder_load_nothing_heavy():
    code = (
        "import sys, recroute.encoders as e; enc = e.get_encoder('minilm'); enc.name, enc.dim; "
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_offline_unit_vectors(encoder):
    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "The stock market fell sharply today."]
    X = encoder.encode(texts)
    assert X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    sim = X @ X.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert sim[0, 1] > sim[1, 2] + 0.2


def test_model_is_cached_per_process(encoder):
    assert MiniLMEncoder().model is encoder.model


def test_same_vector_alone_or_in_a_batch(encoder):
    texts = ["Solve for x: 2x + 3 = 7.", "What is the capital of France?", "Name a prime number above 10."]
    batch = encoder.encode(texts, batch_size=2)
    alone = encoder.encode(texts[1:2])
    assert float(batch[1] @ alone[0]) > 0.9999


def test_empty_and_bad_input(encoder):
    assert encoder.encode([]).shape == (0, 384)
    with pytest.raises(TypeError, match="list of strings"):
        encoder.encode("just one string")
    with pytest.raises(ValueError, match="row 1"):
        encoder.encode(["fine", None])


def test_save_and_load_spec(tmp_path):
    MiniLMEncoder().save(tmp_path / "enc")
    spec = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    assert spec["name"] == "all-MiniLM-L6-v2" and spec["dim"] == 384
    assert isinstance(load_encoder(tmp_path / "enc"), MiniLMEncoder)
    (tmp_path / "enc" / "encoder.json").write_text(json.dumps({**spec, "dim": 512}))
    with pytest.raises(SavedArtifactError, match="dim 384"):
        load_encoder(tmp_path / "enc")
    with pytest.raises(SavedArtifactError, match="not a saved encoder"):
        load_encoder(tmp_path / "nowhere")
