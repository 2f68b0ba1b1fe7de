"""The routing bundle: build, save, load, route; every kind of damage is named."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recroute.errors import DataError, SavedArtifactError
from recroute.routers.baselines import BestSingleRouter
from recroute.routers.knn import KNNRouter
from recroute.serve.bundle import MANIFEST_FILE, RoutingBundle, verify

MATH = "prove the theorem about the prime number with algebra"
CODE = "my python function has a bug in the loop over the array"


def copy(src, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def test_round_trip_routes_like_the_fitted_router(tfidf_bundle_dir, topics):
    bundle = RoutingBundle.load(tfidf_bundle_dir)
    assert bundle.llm_names == ["math-llm", "code-llm", "history-llm", "generalist"]
    assert bundle.encoder_name.startswith("tfidf-svd-")
    got = bundle.route_texts([MATH, CODE], k=2)
    assert [d.llm for d in got] == ["math-llm", "code-llm"]
    assert len(got[0].top_k) == 2 and got[0].top_k[0] == (got[0].llm, got[0].score)
    assert got[0].top_k[0][1] >= got[0].top_k[1][1]
    # the same as encoding and routing by hand
    X = bundle.encode([MATH, CODE])
    idx, scores = bundle.router.route(X, k=2)
    assert [[n for n, _ in d.top_k] for d in got] == [[bundle.llm_names[j] for j in row] for row in idx]
    np.testing.assert_allclose([[s for _, s in d.top_k] for d in got], scores)
    assert bundle.route_embeddings(X, k=2) == got


def test_candidates_restrict_the_choice(tfidf_bundle_dir):
    bundle = RoutingBundle.load(tfidf_bundle_dir)
    got = bundle.route_texts([MATH], k=2, candidates=["history-llm", "generalist"])[0]
    assert {n for n, _ in got.top_k} == {"history-llm", "generalist"}
    with pytest.raises(DataError, match="unknown LLM 'nope'"):
        bundle.route_texts([MATH], candidates=["nope"])
    with pytest.raises(ValueError, match="k=3 is more than the 2 candidate"):
        bundle.route_texts([MATH], k=3, candidates=["math-llm", "generalist"])
    with pytest.raises(DataError, match="k must be at least 1"):
        bundle.route_texts([MATH], k=0)


def test_to_dict_is_json(tfidf_bundle_dir):
    d = RoutingBundle.load(tfidf_bundle_dir).route_texts([CODE], k=2)[0].to_dict()
    assert set(d) == {"llm", "score", "top_k"} and len(d["top_k"]) == 2
    json.dumps(d)


def test_manifest_lists_every_file_with_sha256(tfidf_bundle_dir):
    manifest = json.loads((tfidf_bundle_dir / MANIFEST_FILE).read_text())
    assert manifest["format_version"] == 1
    assert {"bundle.json", "router/router.json", "router/arrays.npz", "router/index.faiss",
            "encoder/encoder.json", "encoder/arrays.npz"} == set(manifest["files"])
    assert all(len(e["sha256"]) == 64 for e in manifest["files"].values())


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "router" / "index.faiss").unlink(), "missing file router/index.faiss"),
    (lambda d: (d / "router" / "arrays.npz").write_bytes((d / "router" / "arrays.npz").read_bytes()[:50]),
     "truncated"),
    (lambda d: (d / "encoder" / "encoder.json").write_text(
        (d / "encoder" / "encoder.json").read_text().replace("question", "questioN")), "modified"),
    (lambda d: (d / "notes.txt").write_text("hi"), "not in the manifest: notes.txt"),
    (lambda d: (d / MANIFEST_FILE).unlink(), "missing manifest.json"),
    (lambda d: (d / MANIFEST_FILE).write_text("{"), "corrupt JSON"),
])
def test_damage_is_named(tfidf_bundle_dir, tmp_path, damage, message):
    bundle_dir = copy(tfidf_bundle_dir, tmp_path)
    damage(bundle_dir)
    with pytest.raises(SavedArtifactError, match=message):
        RoutingBundle.load(bundle_dir)


def test_unknown_format_version(tfidf_bundle_dir, tmp_path):
    bundle_dir = copy(tfidf_bundle_dir, tmp_path)
    manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    manifest["format_version"] = 99
    (bundle_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(SavedArtifactError, match="format version 99; this recroute reads version 1"):
        RoutingBundle.load(bundle_dir)


def test_requested_encoder_must_match(tfidf_bundle_dir):
    assert RoutingBundle.load(tfidf_bundle_dir, encoder="tfidf").encoder is not None
    with pytest.raises(SavedArtifactError, match="not the requested encoder 'minilm'"):
        RoutingBundle.load(tfidf_bundle_dir, encoder="minilm")


def test_encoder_and_router_dims_must_agree(topics, tmp_path):
    from recroute.encoders import get_encoder

    encoder = get_encoder("tfidf", dim=16).fit(topics.texts)
    router = KNNRouter().fit(topics, np.zeros((topics.n_prompts, 5), dtype=np.float32) + 1)
    with pytest.raises(DataError, match="makes 16-d features but the router was fitted on 5-d"):
        RoutingBundle.build(router, encoder)


def test_a_rebuilt_mismatched_bundle_is_refused_on_load(tfidf_bundle_dir, tmp_path, topics):
    """Swap in a router of another width and re-sign the manifest: the dims check still catches it."""
    from recroute.serve import bundle as bundle_module

    bundle_dir = copy(tfidf_bundle_dir, tmp_path)
    KNNRouter().fit(topics, np.ones((topics.n_prompts, 5), dtype=np.float32)).save(bundle_dir / "router")
    manifest = json.loads((bundle_dir / MANIFEST_FILE).read_text())
    for rel in list(manifest["files"]):
        file = bundle_dir / rel
        manifest["files"][rel] = {"sha256": bundle_module._sha256(file), "bytes": file.stat().st_size}
    (bundle_dir / MANIFEST_FILE).write_text(json.dumps(manifest))
    verify(bundle_dir)
    with pytest.raises(SavedArtifactError, match="fitted on 5-d"):
        RoutingBundle.load(bundle_dir)


def test_feature_free_router_needs_no_encoding(topics, tmp_path):
    bundle = RoutingBundle.build(BestSingleRouter().fit(topics))
    bundle.save(tmp_path / "b")
    loaded = RoutingBundle.load(tmp_path / "b")
    assert loaded.encoder is None
    got = loaded.route_texts(["anything", "else"])
    assert len(got) == 2 and got[0].llm == got[1].llm == loaded.route_texts(["x"])[0].llm


def test_embeddings_only_bundle(topics, tmp_path):
    X = np.random.default_rng(0).normal(size=(topics.n_prompts, 6)).astype(np.float32)
    bundle = RoutingBundle.build(KNNRouter().fit(topics, X))
    bundle.save(tmp_path / "b")
    loaded = RoutingBundle.load(tmp_path / "b")
    assert len(loaded.route_embeddings(X[:4])) == 4
    with pytest.raises(DataError, match="no encoder"):
        loaded.route_texts(["a prompt"])
    with pytest.raises(DataError, match="X has 3 features but the router was fitted on 6"):
        loaded.route_embeddings(X[:2, :3])


def test_save_is_atomic_over_an_old_bundle(tfidf_bundle_dir, tmp_path, topics):
    target = copy(tfidf_bundle_dir, tmp_path)
    RoutingBundle.build(BestSingleRouter().fit(topics)).save(target)
    assert RoutingBundle.load(target).router.name == "best_single"
    assert [p.name for p in tmp_path.iterdir()] == ["copy"]  # no temporaries left
