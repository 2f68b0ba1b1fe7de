"""The fast encoders: MiniLM on ONNX Runtime (fp32, int8) and the static (model2vec) encoder.

The ONNX graphs are exported once per test run into a private folder (session fixture); the static
encoder's run-time path is tested on a hand-made four-token vocabulary (the real distillation runs
MiniLM over 30k word pieces: marked slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recroute.encoders import encode_cached, get_encoder, load_encoder
from recroute.encoders.base import canonical_name, encoder_names
from recroute.encoders.cache import cache_key, default_cache_dir
from recroute.encoders.onnx import OnnxMiniLMEncoder, mean_pool
from recroute.encoders.static import StaticEncoder, pool_tokens
from recroute.encoders.store import encoder_cache_dir
from recroute.errors import SavedArtifactError

BUNDLED_PROMPTS = Path(__file__).resolve().parents[2] / "recroute" / "data" / "bundled" / "mmlu_pro" / "prompts.parquet"
SHORT = ["What is the capital of France?", "hi", "Write a Python function that reverses a list."]


@pytest.fixture(scope="session")
def real_prompts() -> list[str]:
    """Three long MMLU-Pro questions (over 256 word pieces for some) and three short prompts."""
    texts = pd.read_parquet(BUNDLED_PROMPTS, columns=["text"])["text"].tolist()
    longest = sorted(texts[:200], key=len)[-3:]
    return longest + SHORT


@pytest.fixture(scope="session")
def onnx_root(tmp_path_factory) -> Path:
    """A private encoder-artefact folder holding the fp32 and int8 graphs, exported once per run."""
    from recroute.encoders.onnx import ensure_onnx

    root = tmp_path_factory.mktemp("encoder-artifacts")
    ensure_onnx(True, root)  # exports fp32, then quantises it
    return root


@pytest.fixture(scope="session")
def minilm_vectors(real_prompts) -> np.ndarray:
    return get_encoder("minilm").encode(real_prompts)


@pytest.fixture
def tiny_static() -> StaticEncoder:
    """Four tokens ([UNK], a, b, c) with 2-d vectors: pooling can be checked by hand."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "a": 1, "b": 2, "c": 3}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    vectors = np.array([[9, 9], [1, 0], [0, 1], [3, 4]], dtype=np.float32)
    return StaticEncoder(vectors, tokenizer, unk_token_id=0)


# ---------------------------------------------------------------------- pooling by hand
def test_mean_pool_by_hand():
    H = np.array([[[1, 2], [3, 4], [100, 100]], [[2, 0], [0, 0], [0, 0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]])
    np.testing.assert_allclose(mean_pool(H, mask), [[2, 3], [2, 0]])  # (1+3)/2, (2+4)/2; only token 0
    np.testing.assert_allclose(mean_pool(H, np.zeros((2, 3))), np.zeros((2, 2)))  # no token: zeros
    with pytest.raises(ValueError, match="do not match"):
        mean_pool(H, mask[:, :2])


def test_pool_tokens_by_hand():
    V = np.array([[1, 0], [0, 1], [3, 4]], dtype=np.float32)
    np.testing.assert_allclose(pool_tokens([[0, 1], [2], [], [2, 2, 0]], V),
                               [[0.5, 0.5], [3, 4], [0, 0], [7 / 3, 8 / 3]], rtol=1e-6)
    with pytest.raises(ValueError, match="token ids must be in 0..2"):
        pool_tokens([[3]], V)


def test_static_encode_by_hand(tiny_static):
    X = tiny_static.encode(["a b", "c", "a zzz", "zzz", "c c a"])
    s = np.sqrt(0.5)
    expected = [[s, s], [0.6, 0.8], [1, 0], [0, 0], [7 / np.hypot(7, 8), 8 / np.hypot(7, 8)]]
    np.testing.assert_allclose(X, expected, rtol=1e-5, atol=1e-7)  # unknown word dropped; none left: zeros
    assert X.dtype == np.float32


# ---------------------------------------------------------------------- ONNX vs torch
def test_fp32_onnx_matches_torch(onnx_root, real_prompts, minilm_vectors):
    enc = OnnxMiniLMEncoder(cache_dir=onnx_root)
    X = enc.encode(real_prompts, batch_size=4)  # batches of mixed length: padding must not leak
    assert X.shape == (len(real_prompts), 384) and X.dtype == np.float32
    cos = np.sum(X * minilm_vectors, axis=1)
    assert cos.min() >= 0.9999, cos


def test_int8_agrees_with_torch(onnx_root, real_prompts, minilm_vectors):
    X = OnnxMiniLMEncoder(quantized=True, cache_dir=onnx_root).encode(real_prompts)
    cos = np.sum(X * minilm_vectors, axis=1)
    # measured on this recipe: mean 0.99, min 0.98 (MMLU-Pro + short prompts)
    assert cos.mean() >= 0.98 and cos.min() >= 0.95, cos
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1, rtol=1e-5)


def test_onnx_export_is_cached_and_identified(onnx_root):
    fp32, int8 = OnnxMiniLMEncoder(cache_dir=onnx_root), OnnxMiniLMEncoder(quantized=True, cache_dir=onnx_root)
    (int8_dir,) = onnx_root.glob("minilm-int8-*")  # the folder name ends with a hash of the recipe
    meta = json.loads((int8_dir / "meta.json").read_text())
    assert meta["recipe"]["quantization"]["weight_type"] == "QInt8"
    assert int8.cache_key == f"all-MiniLM-L6-v2-onnx-int8-{meta['sha256'][:12]}"
    assert fp32.cache_key.startswith("all-MiniLM-L6-v2-onnx-") and fp32.cache_key != int8.cache_key
    (fp32_dir,) = onnx_root.glob("minilm-onnx-*")
    stamp = (fp32_dir / "model.onnx").stat().st_mtime_ns
    OnnxMiniLMEncoder(cache_dir=onnx_root).prepare()
    assert (fp32_dir / "model.onnx").stat().st_mtime_ns == stamp  # not exported again


def test_damaged_export_is_named(onnx_root, tmp_path):
    import shutil

    root = tmp_path / "artifacts"
    (fp32_dir,) = onnx_root.glob("minilm-onnx-*")
    shutil.copytree(fp32_dir, root / fp32_dir.name)
    with open(root / fp32_dir.name / "model.onnx", "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(SavedArtifactError, match="checksum differs"):
        OnnxMiniLMEncoder(cache_dir=root).prepare()


def test_onnx_threads_and_bad_arguments(onnx_root):
    assert OnnxMiniLMEncoder(cache_dir=onnx_root).n_threads >= 1
    assert OnnxMiniLMEncoder(n_threads=1, cache_dir=onnx_root).encode(["x"]).shape == (1, 384)
    with pytest.raises(ValueError, match="n_threads must be >= 1"):
        OnnxMiniLMEncoder(n_threads=0)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        OnnxMiniLMEncoder(batch_size=0)


# ---------------------------------------------------------------------- bad input, every encoder
@pytest.mark.parametrize("which", ["onnx", "int8", "static"])
def test_bad_input(which, onnx_root, tiny_static):
    enc = tiny_static if which == "static" else OnnxMiniLMEncoder(quantized=which == "int8", cache_dir=onnx_root)
    assert enc.encode([]).shape == (0, enc.dim)
    with pytest.raises(ValueError, match="row 1"):
        enc.encode(["fine", 3])
    with pytest.raises(TypeError, match="list of strings"):
        enc.encode("a single string")


def test_static_rejects_mismatched_parts(tiny_static):
    with pytest.raises(ValueError, match="tokenizer has 4 tokens but vectors has 3 rows"):
        StaticEncoder(tiny_static.vectors[:3], tiny_static.tokenizer)
    with pytest.raises(ValueError, match="NaN or inf"):
        StaticEncoder(np.full((4, 2), np.nan), tiny_static.tokenizer)
    with pytest.raises(ValueError, match="2-D"):
        StaticEncoder(np.ones(4), tiny_static.tokenizer)


# ---------------------------------------------------------------------- static: determinism, save/load
def test_static_is_deterministic_and_round_trips(tiny_static, tmp_path):
    texts = ["a b c", "b", "c a zzz"]
    first = tiny_static.encode(texts)
    np.testing.assert_array_equal(first, tiny_static.encode(texts))
    folder = tiny_static.save(tmp_path / "static")
    assert sorted(p.name for p in folder.iterdir()) == ["encoder.json", "tokenizer.json", "vectors.npz"]
    loaded = load_encoder(folder)
    assert isinstance(loaded, StaticEncoder)
    assert (loaded.name, loaded.dim, loaded.cache_key) == (tiny_static.name, 2, tiny_static.cache_key)
    np.testing.assert_array_equal(loaded.encode(texts), first)
    with np.load(folder / "vectors.npz", allow_pickle=False) as npz:  # plain arrays only, no pickle
        assert npz["vectors"].dtype == np.float16


def test_static_load_refuses_tampered_vectors(tiny_static, tmp_path):
    folder = tiny_static.save(tmp_path / "static")
    np.savez(folder / "vectors.npz", vectors=np.ones((4, 2), dtype=np.float16))
    with pytest.raises(SavedArtifactError, match="fingerprint"):
        load_encoder(folder)
    (folder / "vectors.npz").write_bytes(b"not a zip")
    with pytest.raises(SavedArtifactError, match="cannot read the static encoder"):
        load_encoder(folder)


# ---------------------------------------------------------------------- names and cache separation
def test_names_resolve():
    assert encoder_names()[:5] == ["minilm", "minilm-onnx", "minilm-int8", "static", "tfidf"]
    for spelling, key in [("minilm-onnx", "minilm-onnx"), ("all-MiniLM-L6-v2-onnx", "minilm-onnx"),
                          ("MINILM-INT8", "minilm-int8"), ("all-MiniLM-L6-v2-onnx-int8", "minilm-int8"),
                          ("static", "static"), ("minilm-static-256", "static"),
                          ("minilm-static-256-0123456789ab", "static"), ("all-MiniLM-L6-v2", "minilm")]:
        assert canonical_name(spelling) == key, spelling
    with pytest.raises(ValueError, match="unknown encoder 'bert'.*minilm-int8"):
        get_encoder("bert")


def test_cache_keeps_encoders_apart(onnx_root, tiny_static, tmp_path):
    texts = ["a b", "c"]
    fp32, int8 = OnnxMiniLMEncoder(cache_dir=onnx_root), OnnxMiniLMEncoder(quantized=True, cache_dir=onnx_root)
    other = StaticEncoder(tiny_static.vectors[::-1].copy(), tiny_static.tokenizer, unk_token_id=0)
    keys = {cache_key(e) for e in (fp32, int8, tiny_static, other)}
    assert len(keys) == 4 and "all-MiniLM-L6-v2" not in keys
    root = tmp_path / "cache"
    results = {e.cache_key: encode_cached(e, texts, cache_dir=root) for e in (fp32, int8, tiny_static, other)}
    assert len({p.name for p in root.iterdir()}) == 4  # one folder per encoder identity
    again = encode_cached(other, texts, cache_dir=root)  # read back from its own folder, not the other static's
    np.testing.assert_array_equal(again, results[other.cache_key])
    assert not np.allclose(results[other.cache_key], results[tiny_static.cache_key])


def test_encoder_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RECROUTE_ENCODER_CACHE", raising=False)
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "emb"))
    assert encoder_cache_dir() == tmp_path / "emb" / "_encoders"
    assert encoder_cache_dir() != default_cache_dir("_encoders")  # no encoder's cache folder has that name
    monkeypatch.setenv("RECROUTE_ENCODER_CACHE", str(tmp_path / "enc"))
    assert encoder_cache_dir() == tmp_path / "enc"
    monkeypatch.delenv("RECROUTE_ENCODER_CACHE")
    monkeypatch.delenv("RECROUTE_CACHE")
    assert encoder_cache_dir() == Path.home() / ".cache" / "recroute" / "encoders"


# ---------------------------------------------------------------------- bundles
def test_bundle_keeps_and_checks_its_encoder(tiny_static, onnx_root, tmp_path):
    from recroute.data.synthetic import make_synthetic
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data = make_synthetic(n_prompts=40, n_llms=3, embedding_dim=2, random_state=0)
    texts = ["a b", "c", "a", "b c"] * 10
    router = KNNRouter(k=3).fit(data, tiny_static.encode(texts))
    path = RoutingBundle.build(router, tiny_static).save(tmp_path / "bundle")
    loaded = RoutingBundle.load(path, encoder="static")
    assert loaded.encoder.cache_key == tiny_static.cache_key
    assert [d.llm for d in loaded.route_texts(["a b"])] == [d.llm for d in RoutingBundle(router, tiny_static).route_texts(["a b"])]
    for other in ("minilm", "minilm-int8", "minilm-onnx", "tfidf"):
        with pytest.raises(SavedArtifactError, match=f"holds minilm-static-2, not the requested encoder '{other}'"):
            RoutingBundle.load(path, encoder=other)
    from recroute.errors import DataError

    with pytest.raises(DataError, match="makes 384-d features but the router was fitted on 2-d"):
        RoutingBundle.build(router, OnnxMiniLMEncoder(cache_dir=onnx_root))  # 384-d encoder, 2-d router


def test_onnx_encoder_round_trips_through_a_bundle_spec(onnx_root, tmp_path):
    enc = OnnxMiniLMEncoder(quantized=True, cache_dir=onnx_root)
    folder = enc.save(tmp_path / "enc")
    spec = json.loads((folder / "encoder.json").read_text())
    assert (spec["type"], spec["name"], spec["dim"]) == ("minilm-int8", "all-MiniLM-L6-v2-onnx-int8", 384)
    loaded = load_encoder(folder)
    assert isinstance(loaded, OnnxMiniLMEncoder) and loaded.quantized and loaded.name == enc.name
    spec["type"] = "minilm-onnx"
    (folder / "encoder.json").write_text(json.dumps(spec))
    with pytest.raises(SavedArtifactError, match="type 'minilm-onnx' but name"):
        load_encoder(folder)


# ---------------------------------------------------------------------- the real distillation
@pytest.mark.slow
def test_real_static_distillation(tmp_path, real_prompts, minilm_vectors):
    enc = StaticEncoder.make(cache_dir=tmp_path)
    assert enc.name == "minilm-static-256" and enc.vectors.shape[1] == 256
    X = enc.encode(real_prompts)
    np.testing.assert_array_equal(X, StaticEncoder.make(cache_dir=tmp_path).encode(real_prompts))  # cached
    # nearest-neighbour structure roughly kept: each prompt is closest to itself across the two spaces' Gram
    G_static, G_minilm = X @ X.T, minilm_vectors @ minilm_vectors.T
    iu = np.triu_indices(len(X), 1)
    assert np.corrcoef(G_static[iu], G_minilm[iu])[0, 1] > 0.5


# ---------------------------------------------------------------------- CLI
def test_cli_make_and_encode_int8(onnx_root, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from recroute import RoutingDataset
    from recroute.cli.main import app

    monkeypatch.setenv("RECROUTE_ENCODER_CACHE", str(onnx_root))
    runner = CliRunner()
    made = runner.invoke(app, ["encode", "--make", "minilm-int8", "--threads", "1", "--json", str(tmp_path / "m.json")])
    assert made.exit_code == 0, made.output
    (row,) = json.loads((tmp_path / "m.json").read_text())
    assert row["encoder"] == "all-MiniLM-L6-v2-onnx-int8" and row["dim"] == 384
    prompts = pd.DataFrame({"prompt_id": ["q0", "q1", "q2"], "text": SHORT})
    folder = RoutingDataset.from_wide(np.eye(3, 2), prompt_ids=prompts["prompt_id"], llm_names=["x", "y"],
                                      prompts=prompts, name="tiny").save(tmp_path / "tiny")
    out = tmp_path / "e.npy"
    result = runner.invoke(app, ["encode", str(folder), "-e", "minilm-int8", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(np.load(out), OnnxMiniLMEncoder(quantized=True, cache_dir=onnx_root).encode(SHORT), atol=1e-6)
    bad = runner.invoke(app, ["encode", "--make", "tfidf"])
    assert bad.exit_code != 0 and "--make builds static, minilm-onnx or minilm-int8" in bad.output


# ---------------------------------------------------------------------- datasets carrying several sets
def _folder_with_two_sets(tmp_path, make_encoder):
    from recroute import RoutingDataset

    prompts = pd.DataFrame({"prompt_id": ["q0", "q1", "q2"], "text": ["one", "two", "three"]})
    data = RoutingDataset.from_wide(np.eye(3, 2), prompt_ids=prompts["prompt_id"], llm_names=["x", "y"],
                                    prompts=prompts, name="tiny")
    primary = np.eye(3, 4, dtype=np.float32)
    data.set_embeddings(primary, "primary-encoder")
    folder = data.save(tmp_path / "tiny")
    other = make_encoder("other-encoder", dim=2)
    np.save(folder / "embeddings-other.npy", other.encode(["one", "two", "three"]))
    meta = json.loads((folder / "dataset.json").read_text())
    meta["embedding_files"] = {"other-encoder": "embeddings-other.npy"}
    (folder / "dataset.json").write_text(json.dumps(meta))
    return folder, primary, other


def test_datasets_pick_the_embeddings_of_the_encoder_asked_for(tmp_path, make_encoder):
    from recroute import load_dataset
    from recroute.encoders import embed_dataset

    folder, primary, _ = _folder_with_two_sets(tmp_path, make_encoder)
    data = load_dataset(folder)
    assert data.embedding_name == "primary-encoder"  # the main embeddings.npy stays the active set
    np.testing.assert_array_equal(data.embeddings, primary)
    fresh = make_encoder("other-encoder", dim=2)
    X = embed_dataset(data, fresh)
    assert fresh.n_encoded == 0 and data.embedding_name == "other-encoder"  # the stored set, nothing encoded
    np.testing.assert_allclose(X[1], fresh.vector("two"), rtol=1e-6)
    part = data.subset([2, 0])  # every set follows the rows
    assert part.use_embeddings("primary-encoder")
    np.testing.assert_array_equal(part.embeddings, primary[[2, 0]])
    assert not part.use_embeddings("absent")
    third = make_encoder("third-encoder", dim=2)
    embed_dataset(data, third)
    assert third.n_encoded == 3  # no stored set for it: encoded


@pytest.mark.parametrize("entry", ["../outside.npy", "missing.npy", "prompts.parquet"])
def test_bad_embedding_files_are_named(tmp_path, make_encoder, entry):
    from recroute import load_dataset
    from recroute.errors import DataError

    folder, _, _ = _folder_with_two_sets(tmp_path, make_encoder)
    meta = json.loads((folder / "dataset.json").read_text())
    meta["embedding_files"] = {"other-encoder": entry}
    (folder / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="embedding_files.*is not a .npy file"):
        load_dataset(folder)


def test_fp32_onnx_reuses_minilm_embeddings_and_int8_does_not(onnx_root, tmp_path):
    from recroute import RoutingDataset
    from recroute.encoders import embed_dataset

    prompts = pd.DataFrame({"prompt_id": ["q0", "q1", "q2"], "text": SHORT})
    data = RoutingDataset.from_wide(np.eye(3, 2), prompt_ids=prompts["prompt_id"], llm_names=["x", "y"],
                                    prompts=prompts, name="tiny")
    stored = np.eye(3, 384, dtype=np.float32)  # stand-in vectors recorded as torch MiniLM's
    data.set_embeddings(stored, "all-MiniLM-L6-v2")
    empty = tmp_path / "no-artifacts"
    assert embed_dataset(data, OnnxMiniLMEncoder(cache_dir=empty)) is stored  # same vectors: reused by name
    assert not empty.exists()  # nothing exported just to compare names
    X = embed_dataset(data, OnnxMiniLMEncoder(quantized=True, cache_dir=onnx_root))  # int8 differs: encodes
    assert not np.array_equal(X, stored) and data.embedding_name == "all-MiniLM-L6-v2-onnx-int8"
