"""The lexical encoder (TF-IDF + format statistics) and encoders side by side ("minilm-onnx+lexical")."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from recroute import RoutingDataset
from recroute.encoders import embed_dataset, get_encoder, load_encoder
from recroute.encoders.concat import ConcatEncoder
from recroute.encoders.lexical import FORMAT_NAMES, N_FORMAT, LexicalEncoder, format_statistics
from recroute.encoders.onnx import OnnxMiniLMEncoder
from recroute.errors import SavedArtifactError

TRAIN = [f"What is {i} + {i}? Explain the sum of small numbers." for i in range(30)] + \
        [f"Which planet is number {i}?\nA. Mars\nB. Venus\nC. Earth" for i in range(30)]


def test_format_statistics_by_hand():
    text = "Q: 2+2=$x$\nA. 3\nB) 4"  # 20 characters, 6 words, 4 digits, 2 options, 2 newlines, 2 operators
    row = dict(zip(FORMAT_NAMES, format_statistics([text])[0]))
    assert len(text) == 20
    assert row["log_chars"] == pytest.approx(math.log1p(20)) and row["log_words"] == pytest.approx(math.log1p(6))
    assert row["digit_share"] == pytest.approx(4 / 20)  # 2, 2, 3, 4
    assert row["n_options"] == 2 and row["newlines_per_100"] == pytest.approx(100 * 2 / 20)
    assert row["operators_per_100"] == pytest.approx(100 * 2 / 20)  # '+' and '='
    assert row["has_dollar"] == 1 and row["has_backslash"] == 0
    assert row["upper_share"] == pytest.approx(3 / 20)  # Q, A, B
    np.testing.assert_array_equal(format_statistics([""])[0], np.zeros(N_FORMAT))


def test_lexical_rows_are_tfidf_then_standardised_statistics():
    enc = LexicalEncoder(tfidf_dim=8, format_scale=0.5).fit(TRAIN)
    stats = format_statistics(TRAIN)
    np.testing.assert_allclose(enc.format_mean_, stats.mean(axis=0))
    X = enc.encode(TRAIN)
    assert X.shape == (60, enc.dim) and enc.dim == 8 + N_FORMAT and enc.name == f"lexical-{8 + N_FORMAT}"
    np.testing.assert_allclose(np.linalg.norm(X[:, :8], axis=1), 1.0, atol=1e-5)
    # the statistics part has mean 0 and spread format_scale on the training texts (0 where constant)
    spread = X[:, 8:].std(axis=0)
    constant = np.ptp(stats, axis=0) == 0
    np.testing.assert_allclose(spread[~constant], 0.5, rtol=1e-4)
    np.testing.assert_allclose(X[:, 8:][:, constant], 0.0, atol=1e-6)
    with pytest.raises(Exception, match="not fitted"):
        LexicalEncoder().encode(["x"])


def test_concatenated_encoder_is_its_parts_side_by_side_and_round_trips(tmp_path):
    enc = get_encoder("lexical+tfidf")
    assert isinstance(enc, ConcatEncoder) and not enc.is_fitted
    enc.fit(TRAIN)
    lexical, tfidf = enc.parts
    X = enc.encode(TRAIN[:5])
    np.testing.assert_array_equal(X, np.hstack([lexical.encode(TRAIN[:5]), tfidf.encode(TRAIN[:5])]))
    assert enc.dim == lexical.dim + tfidf.dim and enc.name == f"{lexical.name}+{tfidf.name}"
    copy = load_encoder(enc.save(tmp_path / "enc"))
    assert isinstance(copy, ConcatEncoder) and copy.name == enc.name
    np.testing.assert_array_equal(copy.encode(TRAIN[:5]), X)
    spec = json.loads((tmp_path / "enc" / "encoder.json").read_text())
    spec["dim"] += 1
    (tmp_path / "enc" / "encoder.json").write_text(json.dumps(spec))
    with pytest.raises(SavedArtifactError, match="dim"):
        load_encoder(tmp_path / "enc")
    with pytest.raises(ValueError, match="empty part"):
        get_encoder("lexical+")


def test_concatenation_reuses_a_datasets_stored_minilm_set(monkeypatch):
    def fail(self, *args, **kwargs):
        raise AssertionError("MiniLM ran although the dataset stores its vectors")

    monkeypatch.setattr(OnnxMiniLMEncoder, "encode", fail)
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(60)], "text": TRAIN})
    data = RoutingDataset.from_wide(np.tile([[1.0, 0.0]], (60, 1)), prompt_ids=prompts["prompt_id"],
                                    llm_names=["a", "b"], prompts=prompts)
    stored = np.random.default_rng(0).standard_normal((60, 384)).astype(np.float32)
    data.set_embeddings(stored, "all-MiniLM-L6-v2-onnx")
    enc = get_encoder("minilm-onnx+lexical").fit(TRAIN)
    X = embed_dataset(data, enc, use_cache=False)
    np.testing.assert_array_equal(X[:, :384], stored)
    np.testing.assert_array_equal(X[:, 384:], enc.parts[1].encode(TRAIN))
    assert data.embedding_name == enc.name and X.shape == (60, enc.dim)


def test_the_protocol_fits_the_lexical_part_on_routerevals_training_prompts_only():
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.protocol import dataset_embeddings

    n = 80
    texts = [f"question tag{i} about topic {i % 4}" for i in range(n)]  # one word per prompt: tag<i>
    prompts = pd.DataFrame({"prompt_id": [f"p{i:02d}" for i in range(n)], "text": texts, "task": ["t"] * n})
    scores = np.random.default_rng(1).integers(0, 2, size=(n, 3)).astype(float)
    data = RoutingDataset.from_wide(scores, prompt_ids=prompts["prompt_id"], llm_names=["a", "b", "c"], prompts=prompts)
    enc = LexicalEncoder(tfidf_dim=4)
    X = dataset_embeddings(data, encoder=enc, fit_seed=42)
    rd = build_router_dataset(data, {}, seed=42)
    train_tags = {t.split()[1] for t in rd["prompt"]["train_prompt"]}
    held_tags = {t.split()[1] for p in ("val", "test") for t in rd["prompt"][f"{p}_prompt"]}
    vocabulary = {term for term in enc.tfidf_.vocabulary_ if term.startswith("tag") and " " not in term}
    assert len(train_tags) == 64 and vocabulary == train_tags and not vocabulary & held_tags
    np.testing.assert_allclose(enc.format_mean_, format_statistics(list(rd["prompt"]["train_prompt"])).mean(axis=0))
    assert X.shape == (n, enc.dim)


def test_a_bundle_keeps_a_concatenated_encoder(tmp_path):
    from recroute.routers.registry import make_router
    from recroute.serve.bundle import RoutingBundle

    enc = get_encoder("lexical+tfidf").fit(TRAIN)
    Y = np.stack([[float("+" in t), float("+" not in t)] for t in TRAIN])  # LLM 0 does sums, LLM 1 the rest
    router = make_router("logistic").fit(Y, enc.encode(TRAIN))
    RoutingBundle.build(router, enc).save(tmp_path / "bundle")
    bundle = RoutingBundle.load(tmp_path / "bundle")
    assert bundle.encoder_name == enc.name
    idx = [d.llm for d in bundle.route_texts(["What is 7 + 7? Explain the sum.", "Which planet is number 3?\nA. Mars"])]
    assert idx == ["llm_0", "llm_1"]


def test_a_reencoded_pickle_fits_the_lexical_part_on_its_training_prompts_only():
    from recroute.eval.protocol import reembed_router_dataset

    rd = {"prompt": {"train_prompt": np.array([f"train word{i}" for i in range(6)], dtype=object),
                     "val_prompt": np.array(["val onlyval"], dtype=object),
                     "test_prompt": np.array(["test onlytest"], dtype=object)}}
    enc = LexicalEncoder(tfidf_dim=2)
    out = reembed_router_dataset(rd, enc)
    assert not {"onlyval", "onlytest", "val", "test"} & set(enc.tfidf_.vocabulary_)
    assert [out["embedding"][f"{p}_embed"].shape[0] for p in ("train", "val", "test")] == [6, 1, 1]
