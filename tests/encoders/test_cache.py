"""The on-disk embedding cache: each text encoded once, keyed by encoder, damage detected."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from recroute.encoders import EmbeddingCache, default_cache_dir, encode_cached
from recroute.encoders.cache import CacheWarning, cache_key, encode_cached_with_stats, save_embeddings, text_key


def shards(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


def test_each_text_is_encoded_once(counting_encoder, private_cache):
    enc = counting_encoder
    X = encode_cached(enc, ["a", "b", "a", "c"])
    assert enc.n_encoded == 3  # the repeated "a" once
    np.testing.assert_array_equal(X, np.stack([enc.vector(t) for t in ["a", "b", "a", "c"]]))
    Y = encode_cached(enc, ["c", "d", "b"])
    assert enc.calls[-1] == ["d"] and enc.n_encoded == 4
    np.testing.assert_array_equal(Y, np.stack([enc.vector(t) for t in ["c", "d", "b"]]))
    assert Y.dtype == np.float32
    # everything known: the encoder is not called at all
    n_calls = len(enc.calls)
    encode_cached(enc, ["a", "b", "c", "d"])
    assert len(enc.calls) == n_calls
    assert len(EmbeddingCache.for_encoder(enc)) == 4
    assert all(p.is_relative_to(private_cache / "fake-encoder") for p in shards(private_cache))


def test_stats_and_empty_input(counting_encoder):
    _, stats = encode_cached_with_stats(counting_encoder, ["x", "y", "x"])
    assert (stats.n_texts, stats.n_unique, stats.n_cached, stats.n_encoded) == (3, 2, 0, 2)
    _, stats = encode_cached_with_stats(counting_encoder, ["x", "z"])
    assert (stats.n_cached, stats.n_encoded) == (1, 1)
    X = encode_cached(counting_encoder, [])
    assert X.shape == (0, 8)


def test_encode_missing_gets_only_the_missing_texts_under_the_same_key(counting_encoder, private_cache):
    """Another route to an encoder's vectors shares the lookup, the counts, the key and the writes."""
    enc = counting_encoder
    encode_cached(enc, ["a", "b"])  # the plain route caches a and b
    seen: list[list[str]] = []

    def other_route(chunk):
        seen.append(list(chunk))
        return np.stack([enc.vector(t) for t in chunk])

    X, stats = encode_cached_with_stats(enc, ["b", "c", "a", "c", "d"], encode_missing=other_route)
    assert sorted(t for call in seen for t in call) == ["c", "d"]  # each missing text once, nothing else
    assert enc.n_encoded == 2  # encoder.encode was not called again
    assert (stats.n_texts, stats.n_unique, stats.n_cached, stats.n_encoded) == (5, 4, 2, 2)
    np.testing.assert_array_equal(X, np.stack([enc.vector(t) for t in "bcacd"]))
    _, again = encode_cached_with_stats(enc, list("abcd"))  # the plain route finds the route's writes
    assert (again.n_cached, again.n_encoded, enc.n_encoded) == (4, 0, 2)
    assert {p.parent.name for p in shards(private_cache)} == {"fake-encoder"}
    n_shards = len(shards(private_cache))
    _, off = encode_cached_with_stats(enc, ["a", "e"], use_cache=False, encode_missing=other_route)
    assert (off.n_cached, off.n_encoded) == (0, 2) and seen[-1] == ["a", "e"]
    assert len(shards(private_cache)) == n_shards  # no cache: nothing written
    with pytest.raises(ValueError, match="batch_size is for encoder.encode"):
        encode_cached_with_stats(enc, ["f"], batch_size=4, encode_missing=other_route)
    with pytest.raises(ValueError, match=r"'fake-encoder' returned shape \(1, 3\)"):
        encode_cached_with_stats(enc, ["f"], encode_missing=lambda chunk: np.zeros((len(chunk), 3)))


def test_keyed_by_encoder_name(make_encoder, private_cache):
    first, second = make_encoder("enc-one"), make_encoder("enc-two")
    a = encode_cached(first, ["same text"])
    b = encode_cached(second, ["same text"])
    assert first.n_encoded == 1 and second.n_encoded == 1
    assert not np.array_equal(a, b)
    assert {p.parent.name for p in shards(private_cache)} == {"enc-one", "enc-two"}
    # an encoder with a fitted state is keyed by its cache_key, not its bare name
    class Fitted(make_encoder):
        cache_key = "enc-one-abcdef"

    assert cache_key(Fitted("enc-one")) == "enc-one-abcdef"
    encode_cached(Fitted("enc-one"), ["same text"])
    assert (private_cache / "enc-one-abcdef").is_dir()


def test_corrupted_shard_is_detected_and_reencoded(counting_encoder, private_cache):
    texts = [f"text {i}" for i in range(5)]
    expected = encode_cached(counting_encoder, texts)
    (npy,) = shards(private_cache)
    raw = bytearray(npy.read_bytes())
    raw[-7] ^= 0xFF  # flip a byte inside the vectors: still a loadable array, but wrong
    npy.write_bytes(bytes(raw))
    with pytest.warns(CacheWarning, match="corrupted"):
        again = encode_cached(counting_encoder, texts)
    np.testing.assert_array_equal(again, expected)
    assert counting_encoder.n_encoded == 10  # all five re-encoded
    # the damaged shard is gone, its replacement serves the next call
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encode_cached(counting_encoder, texts)
    assert counting_encoder.n_encoded == 10


def test_truncated_shard_and_broken_index(counting_encoder, private_cache):
    encode_cached(counting_encoder, ["p", "q"])
    (npy,) = shards(private_cache)
    npy.write_bytes(npy.read_bytes()[:50])
    with pytest.warns(CacheWarning, match="corrupted"):
        X = encode_cached(counting_encoder, ["p", "q"])
    np.testing.assert_array_equal(X, np.stack([counting_encoder.vector(t) for t in "pq"]))
    (index,) = sorted(private_cache.rglob("*.json"))
    index.write_text('{"format": 1, "keys": [')
    with pytest.warns(CacheWarning, match="unreadable"):
        encode_cached(counting_encoder, ["p"])
    assert counting_encoder.n_encoded == 5


def test_index_holds_text_hashes_not_texts(counting_encoder, private_cache):
    encode_cached(counting_encoder, ["secret prompt"])
    (index,) = sorted(private_cache.rglob("*.json"))
    meta = json.loads(index.read_text())
    assert meta["keys"] == [text_key("secret prompt")]
    assert meta["encoder"] == "fake-encoder" and meta["dim"] == 8 and meta["rows"] == 1
    assert "secret prompt" not in index.read_text()
    np.load(index.with_suffix(".npy"), allow_pickle=False)


def test_interrupted_run_resumes(make_encoder, private_cache):
    class Flaky(make_encoder):
        def encode(self, texts, batch_size=64, show_progress=False):
            if len(self.calls) == 1:
                self.calls.append(list(texts))
                raise KeyboardInterrupt
            return super().encode(texts, batch_size, show_progress)

    enc = Flaky()
    texts = [f"t{i:02d}" for i in range(10)]
    with pytest.raises(KeyboardInterrupt):
        encode_cached_with_stats(enc, texts, shard_rows=4)
    _, stats = encode_cached_with_stats(enc, texts, shard_rows=4)
    assert stats.n_cached == 4 and stats.n_encoded == 6


def test_no_cache_and_unwritable_cache(counting_encoder, tmp_path):
    encode_cached(counting_encoder, ["u"], use_cache=False)
    assert not default_cache_dir().exists()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.warns(CacheWarning, match="not writable"):
        X = encode_cached(counting_encoder, ["u", "v"], cache_dir=blocker)
    np.testing.assert_array_equal(X[1], counting_encoder.vector("v"))


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "c"))
    assert default_cache_dir("all-MiniLM-L6-v2") == tmp_path / "c" / "all-MiniLM-L6-v2"
    monkeypatch.delenv("RECROUTE_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "recroute" / "embeddings"
    # names that are not safe folder names stay distinct
    assert default_cache_dir("a/b").name != default_cache_dir("a_b").name


def test_encoder_returning_wrong_shape_is_an_error(make_encoder):
    class Broken(make_encoder):
        def encode(self, texts, batch_size=64, show_progress=False):
            return super().encode(texts)[:, :4]

    with pytest.raises(ValueError, match="expected"):
        encode_cached(Broken(), ["a"])


def test_save_embeddings_is_atomic(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(3, 4)
    path = save_embeddings(tmp_path / "out" / "emb.npy", X)
    Y = np.load(path, allow_pickle=False)
    assert Y.dtype == np.float32 and Y.shape == (3, 4)
    assert [p.name for p in path.parent.iterdir()] == ["emb.npy"]
    with pytest.raises(ValueError, match="2-D"):
        save_embeddings(tmp_path / "bad.npy", np.zeros(3))
