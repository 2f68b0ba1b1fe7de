"""TF-IDF + SVD encoder: fit, encode, exact save/load round trip without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recroute.encoders import get_encoder, load_encoder
from recroute.encoders.tfidf import TfidfEncoder
from recroute.errors import NotFittedError, SavedArtifactError

CORPUS = [
    "What is the derivative of x squared with respect to x?",
    "Compute the integral of sin x from zero to pi.",
    "Which amendment of the US constitution protects free speech?",
    "Who wrote the Federalist Papers and why?",
    "Balance the chemical equation for the combustion of methane.",
    "What is the molar mass of water in grams per mole?",
    "A company reports revenue growth; compute its operating margin.",
    "Explain the law of supply and demand in a competitive market.",
    "Find the limit of (1 + 1/n)^n as n goes to infinity.",
    "Which enzyme breaks down starch in the human mouth?",
] * 3


@pytest.fixture
def fitted() -> TfidfEncoder:
    return get_encoder("tfidf", dim=8).fit(CORPUS)


def test_fit_encode_shapes_and_norms(fitted):
    X = fitted.encode(CORPUS[:10])
    assert X.shape == (10, 8) and X.dtype == np.float32
    assert fitted.name == "tfidf-svd-8" and fitted.dim == 8
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    # a question is closest to itself, and the calculus questions are closer to each other than to history
    sim = X @ X.T
    assert sim[0, 8] > sim[0, 3]


def test_dim_shrinks_with_a_small_corpus():
    enc = TfidfEncoder().fit(["red apple", "green apple", "red car"])
    assert enc.dim == 2 and enc.name == "tfidf-svd-2"  # at most n_texts - 1
    assert TfidfEncoder(dim=256).dim == 256  # the bound, before fitting


def test_round_trip_is_exact(tmp_path, fitted):
    texts = CORPUS[:10] + ["an unseen question about integrals and enzymes"]
    before = fitted.encode(texts)
    fitted.save(tmp_path / "tfidf")
    assert sorted(p.name for p in (tmp_path / "tfidf").iterdir()) == ["arrays.npz", "encoder.json"]
    with np.load(tmp_path / "tfidf" / "arrays.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"idf", "components"}
    loaded = load_encoder(tmp_path / "tfidf")
    assert isinstance(loaded, TfidfEncoder)
    assert loaded.name == fitted.name and loaded.dim == fitted.dim
    assert loaded.cache_key == fitted.cache_key
    assert loaded.vocabulary_ == fitted.vocabulary_
    np.testing.assert_array_equal(loaded.encode(texts), before)


def test_tampered_or_incomplete_saves_are_refused(tmp_path, fitted):
    path = fitted.save(tmp_path / "tfidf")
    spec = json.loads((path / "encoder.json").read_text())
    arrays = dict(np.load(path / "arrays.npz"))
    arrays["components"] = arrays["components"] * 1.01
    np.savez(path / "arrays.npz", **arrays)
    with pytest.raises(SavedArtifactError, match="fingerprint"):
        load_encoder(path)
    np.savez(path / "arrays.npz", idf=arrays["idf"][:-1], components=arrays["components"])
    with pytest.raises(SavedArtifactError, match="inconsistent"):
        load_encoder(path)
    (path / "arrays.npz").unlink()
    with pytest.raises(SavedArtifactError, match="arrays.npz"):
        load_encoder(path)
    (path / "encoder.json").write_text(json.dumps({**spec, "type": "word2vec"}))
    with pytest.raises(SavedArtifactError, match="unknown encoder type"):
        load_encoder(path)


def test_unfitted_and_unfittable():
    enc = TfidfEncoder()
    assert not enc.is_fitted
    with pytest.raises(NotFittedError, match="fit"):
        enc.encode(["hello"])
    with pytest.raises(NotFittedError):
        enc.cache_key
    with pytest.raises(ValueError, match="at least 2 texts"):
        enc.fit(["only one"])
    with pytest.raises(ValueError, match="cannot fit"):
        enc.fit(["a", "b", "?"])  # no token of 2+ characters: empty vocabulary


def test_unknown_words_give_a_zero_row(fitted):
    X = fitted.encode(["zzzz qqqq", CORPUS[0]])
    assert np.all(X[0] == 0) and abs(np.linalg.norm(X[1]) - 1) < 1e-5
    assert fitted.encode([]).shape == (0, 8)


def test_different_fits_have_different_cache_keys(fitted):
    other = TfidfEncoder(dim=8).fit(list(reversed(CORPUS[:9])) + ["a new text about sorting algorithms"])
    assert other.name == fitted.name
    assert other.cache_key != fitted.cache_key


def test_fitted_name_is_not_a_get_encoder_name():
    with pytest.raises(ValueError, match="load_encoder"):
        get_encoder("tfidf-svd-256")
