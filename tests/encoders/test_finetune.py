"""Fine-tuning the static encoder with RouterDC's losses: what moves, what must not, where it is kept,
and that only training prompts are used.

A hand-made vocabulary: filler words with long vectors drown one short "signal" word per text, so
untuned encodings barely separate the prompts LLM 0 answers from those LLM 1 answers; tuning must.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute.data.dataset import RoutingDataset
from recroute.encoders import get_encoder, load_encoder
from recroute.encoders.cache import EmbeddingCache
from recroute.encoders.finetune import cluster_embeddings, finetune_for_dataset, finetune_static, training_prompts
from recroute.encoders.static import StaticEncoder

FILLERS = [f"f{i}" for i in range(5)]
SIGNALS = [f"a{i}" for i in range(5)] + [f"b{i}" for i in range(5)]
VOCAB = ["[UNK]", *FILLERS, *SIGNALS, "rare", "unused"]
FAST = {"epochs": 3, "lr": 0.05, "batch_size": 16, "n_clusters": 2, "anchor": 0.01, "temperature": 0.1}


def tiny_base() -> StaticEncoder:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    rng = np.random.default_rng(0)
    V = rng.standard_normal((len(VOCAB), 8)).astype(np.float32)
    V[1 : 1 + len(FILLERS)] *= 5.0  # fillers dominate
    V[1 + len(FILLERS) :] *= 0.3
    return StaticEncoder(V, tokenizer, unk_token_id=0)


def make_texts(n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """n texts of three fillers and one signal word; Y (n, 2): LLM 0 right on a-words, LLM 1 on b-words."""
    rng = np.random.default_rng(seed)
    texts, Y = [], np.zeros((n, 2), dtype=np.float32)
    for i in range(n):
        word = SIGNALS[rng.integers(len(SIGNALS))]
        texts.append(" ".join([*rng.choice(FILLERS, 3), word]))
        Y[i, 0 if word.startswith("a") else 1] = 1.0
    return texts, Y


def nn_accuracy(encoder, train, Y_train, test, Y_test) -> float:
    """How often a test text's nearest training text (cosine) has the same right LLM."""
    A, B = encoder.encode(train), encoder.encode(test)
    nearest = np.argmax(B @ A.T, axis=1)
    return float((Y_train[nearest].argmax(1) == Y_test.argmax(1)).mean())


@pytest.fixture(scope="module")
def tuned_case():
    base = tiny_base()
    train, Y = make_texts(160, seed=0)
    train = train + ["f0 rare"]  # "rare" appears in one training text only
    Y = np.vstack([Y, [[1.0, 0.0]]])
    return base, train, Y, finetune_static(base, train, Y, min_count=2, **FAST)


def test_tuning_separates_what_the_llms_answer(tuned_case):
    base, train, Y, tuned = tuned_case
    test, Y_test = make_texts(80, seed=1)
    before, after = nn_accuracy(base, train, Y, test, Y_test), nn_accuracy(tuned, train, Y, test, Y_test)
    assert after >= before + 0.2 and after >= 0.9, (before, after)


def test_what_moves_and_what_must_not(tuned_case):
    base, train, Y, tuned = tuned_case
    index = {w: i for i, w in enumerate(VOCAB)}
    moved = np.abs(tuned.vectors - base.vectors).max(axis=1)
    assert (moved[[index[w] for w in SIGNALS]] > 1e-3).all()
    np.testing.assert_array_equal(tuned.vectors[index["unused"]], base.vectors[index["unused"]])  # never seen
    np.testing.assert_array_equal(tuned.vectors[index["rare"]], base.vectors[index["rare"]])  # below min_count
    # same tokenizer and pooling: only the vectors differ
    assert tuned.token_ids(train[:5]) == base.token_ids(train[:5])
    assert tuned.name.startswith(f"{base.name}-ft-") and tuned.cache_key != base.cache_key
    again = finetune_static(base, train, Y, min_count=2, **FAST)
    np.testing.assert_array_equal(again.vectors, tuned.vectors)  # deterministic under random_state
    assert again.name == tuned.name


def test_saved_loaded_and_never_mixed_with_untuned_vectors(tuned_case, tmp_path):
    base, train, _, tuned = tuned_case
    folder = tuned.save(tmp_path / "tuned")
    spec = json.loads((folder / "encoder.json").read_text())
    assert spec["name"] == tuned.name and spec["finetune"]["options"]["min_count"] == 2
    for loaded in (load_encoder(folder), get_encoder(str(folder))):
        assert loaded.name == tuned.name and loaded.cache_key == tuned.cache_key
        np.testing.assert_array_equal(loaded.encode(train[:7]), tuned.encode(train[:7]))
    with pytest.raises(ValueError, match="folder"):
        get_encoder(tuned.name)  # a tuned name alone must not silently give the untuned encoder
    assert EmbeddingCache.for_encoder(tuned, tmp_path).directory != EmbeddingCache.for_encoder(base, tmp_path).directory


def test_tuned_encoder_travels_in_a_bundle(tuned_case, tmp_path):
    from recroute.routers.registry import make_router
    from recroute.serve.bundle import RoutingBundle

    _, train, Y, tuned = tuned_case
    router = make_router("knn").fit(Y, tuned.encode(train))
    RoutingBundle.build(router, tuned).save(tmp_path / "bundle")
    loaded = RoutingBundle.load(tmp_path / "bundle")
    assert loaded.encoder.name == tuned.name
    texts = make_texts(20, seed=5)[0]
    decisions = loaded.route_texts(texts)
    expected = router.route(tuned.encode(texts))[0][:, 0]  # the tuned vectors, not the untuned ones
    assert [d.llm for d in decisions] == [f"llm_{j}" for j in expected]
    assert not np.allclose(tiny_base().encode(texts), loaded.encoder.encode(texts))


def test_bad_input_is_named():
    base = tiny_base()
    texts, Y = make_texts(10, seed=0)
    with pytest.raises(ValueError, match="unknown fine-tuning option"):
        finetune_static(base, texts, Y, learning_rate=1)
    with pytest.raises(ValueError, match="shape"):
        finetune_static(base, texts, Y[:5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        finetune_static(base, texts, Y * 3)


# ---------------------------------------------------------------------- training prompts only
def task_dataset(n: int = 60) -> RoutingDataset:
    texts, Y = make_texts(n, seed=3)
    ids = [f"q{i:03d}" for i in range(n)]
    split = ["train"] * (n - 10) + ["test"] * 10
    prompts = pd.DataFrame({"prompt_id": ids, "text": texts, "task": np.where(np.arange(n) % 3, "x", "y"), "split": split})
    return RoutingDataset.from_wide(Y, ids, ["llm_a", "llm_b"], prompts=prompts, name="tiny-ft")


def test_training_prompts_are_routerevals_training_part():
    from recroute.data.routereval import build_router_dataset

    data = task_dataset()
    rows = training_prompts(data)
    rd = build_router_dataset(data, {"easy": (2,)}, embeddings=np.arange(data.n_prompts, dtype=np.float64)[:, None])
    parts = {p: set(rd["embedding"][f"{p}_embed"][:, 0].astype(int).tolist()) for p in ("train", "val", "test")}
    assert set(rows.tolist()) == parts["train"]
    assert not set(rows.tolist()) & (parts["val"] | parts["test"])  # never a validation or test prompt
    np.testing.assert_array_equal(training_prompts(data, "column"), np.arange(50))
    with pytest.raises(ValueError, match="train_part"):
        training_prompts(data, "everything")


def test_finetune_for_dataset_is_kept_in_the_artefact_store(tmp_path, monkeypatch):
    data = task_dataset()
    first = finetune_for_dataset(data, tiny_base(), root=tmp_path, clusters_from="static", **FAST)
    assert first.path.parent == tmp_path and first.name.startswith("minilm-static-8-ft-")
    import recroute.encoders.finetune as finetune

    monkeypatch.setattr(finetune, "finetune_static", lambda *a, **k: pytest.fail("retrained a cached encoder"))
    second = finetune_for_dataset(data, tiny_base(), root=tmp_path, clusters_from="static", **FAST)
    assert second.path == first.path and second.cache_key == first.cache_key
    other = tmp_path / "other"
    monkeypatch.undo()
    column = finetune_for_dataset(data, tiny_base(), root=other, train_part="column", clusters_from="static", **FAST)
    assert column.path.name != first.path.name  # another training part, another artefact


def test_cli_encode_finetune(tmp_path, monkeypatch):
    import recroute.encoders.base as base_module
    from recroute.cli.main import app

    real = base_module.get_encoder
    monkeypatch.setattr(base_module, "get_encoder", lambda name=None, **kw: tiny_base() if name == "static" else real(name, **kw))
    monkeypatch.setenv("RECROUTE_ENCODER_CACHE", str(tmp_path / "encoders"))
    folder = task_dataset().save(tmp_path / "tiny")
    out = tmp_path / "tuned.npy"
    result = CliRunner().invoke(app, ["encode", str(folder), "--finetune", "static", "--epochs", "1", "--clusters-from", "static",
                                      "--out", str(out), "--json", "-", "--quiet"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert "-ft-" in row["encoder"] and row["encoder_saved_to"].startswith(str(tmp_path / "encoders"))
    tuned = load_encoder(row["encoder_saved_to"])
    np.testing.assert_allclose(np.load(out), tuned.encode(task_dataset().texts), atol=1e-6)
    bad = CliRunner().invoke(app, ["encode", str(folder), "--finetune", "tfidf"])
    assert bad.exit_code == 2 and "static" in bad.output


def test_clusters_come_from_the_stored_minilm_set():
    data = task_dataset()
    M = np.random.default_rng(0).standard_normal((data.n_prompts, 4)).astype(np.float32)
    data.set_embeddings(M, "all-MiniLM-L6-v2")
    rows = training_prompts(data)
    np.testing.assert_array_equal(cluster_embeddings(data, rows, [], "minilm"), M[rows])
    assert cluster_embeddings(data, rows, [], "static") is None
    with pytest.raises(ValueError, match="clusters_from"):
        cluster_embeddings(data, rows, [], "bert")
