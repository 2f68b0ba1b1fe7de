"""embed_dataset: reuse embeddings made by the same encoder, else encode the prompt texts."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recroute import RoutingDataset, load_dataset
from recroute.data.catalog import dataset_path
from recroute.encoders import embed_dataset, get_encoder
from recroute.encoders.minilm import MiniLMEncoder
from recroute.encoders.tfidf import TfidfEncoder
from recroute.errors import DataError


def small_dataset(texts) -> RoutingDataset:
    n = len(texts)
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "text": texts})
    scores = np.tile([[1.0, 0.0], [0.0, 1.0]], (n // 2 + 1, 1))[:n]
    return RoutingDataset.from_wide(scores, prompt_ids=prompts["prompt_id"], llm_names=["a", "b"], prompts=prompts)


@pytest.fixture(scope="module")
def mmlu_pro() -> RoutingDataset:
    return load_dataset("mmlu_pro")


def test_bundled_embeddings_are_minilm(mmlu_pro):
    meta = json.loads((dataset_path("mmlu_pro") / "dataset.json").read_text())
    assert meta["embedding_name"] == "all-MiniLM-L6-v2" and "written_by" not in meta
    X = mmlu_pro.embeddings
    assert X is not None and X.shape == (12032, 384) and X.dtype == np.float32
    assert mmlu_pro.embedding_name == "all-MiniLM-L6-v2"
    assert np.isfinite(X).all()
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-4)


def test_bundled_embeddings_are_reused_without_encoding(mmlu_pro, monkeypatch):
    def fail(self, *args, **kwargs):
        raise AssertionError("embed_dataset encoded although the bundled embeddings match")

    monkeypatch.setattr(MiniLMEncoder, "encode", fail)
    monkeypatch.setattr(MiniLMEncoder, "prepare", fail)
    X = embed_dataset(mmlu_pro)
    assert X is mmlu_pro.embeddings
    assert embed_dataset(mmlu_pro, "all-MiniLM-L6-v2") is X


def test_bundled_embeddings_match_the_encoder(mmlu_pro):
    rows = np.random.default_rng(7).choice(mmlu_pro.n_prompts, size=5, replace=False)
    texts = [mmlu_pro.texts[i] for i in rows]
    fresh = MiniLMEncoder().encode(texts)
    cosine = np.sum(fresh * mmlu_pro.embeddings[rows], axis=1)
    assert cosine.min() > 0.999, cosine


def test_datasets_without_text_are_refused(shared_data):
    data = load_dataset(shared_data / "open_llm_leaderboard_v2")
    with pytest.raises(DataError, match=r"without text.*open_llm_leaderboard_v2|open_llm_leaderboard_v2.*without text"):
        embed_dataset(data, get_encoder("tfidf"))


def test_some_missing_texts_are_named(counting_encoder):
    data = small_dataset(["first prompt", None, "third prompt"])
    with pytest.raises(DataError, match=r"1 of 3 prompts without text \(row 1, e\.g\. prompt_id \['p1'\]\)"):
        embed_dataset(data, counting_encoder)
    assert counting_encoder.n_encoded == 0


def test_encodes_and_attaches_then_reuses(counting_encoder):
    data = small_dataset(["one", "two", "three", "one"])
    X = embed_dataset(data, counting_encoder)
    assert X.shape == (4, 8) and data.embeddings is X and data.embedding_name == "fake-encoder"
    assert counting_encoder.n_encoded == 3
    assert embed_dataset(data, counting_encoder) is X
    assert counting_encoder.n_encoded == 3


def test_other_encoder_reencodes(make_encoder):
    data = small_dataset(["one", "two"])
    data.set_embeddings(np.ones((2, 8), dtype=np.float32), "something-else")
    enc = make_encoder("fake-encoder")
    X = embed_dataset(data, enc)
    assert enc.n_encoded == 2 and data.embedding_name == "fake-encoder"
    np.testing.assert_array_equal(X[0], enc.vector("one"))


def test_tfidf_is_fitted_on_the_texts_and_never_reused_by_name():
    texts = ["integrals and limits", "constitutional law", "organic chemistry", "market supply", "limits of sequences"]
    data = small_dataset(texts)
    enc = get_encoder("tfidf", dim=3)
    X = embed_dataset(data, enc)
    assert isinstance(enc, TfidfEncoder) and enc.is_fitted
    assert X.shape == (5, 3) and data.embedding_name == "tfidf-svd-3"
    other = TfidfEncoder(dim=3).fit(["totally different words here", "and some more words", "more", "words words"])
    Y = embed_dataset(data, other)  # same name, different fit: must not reuse X
    assert other.name == enc.name and not np.array_equal(X, Y)
