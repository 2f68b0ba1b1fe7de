"""ConservativeRouter: the rule on hand-computed scores (with and without candidates), save/load of a
two-level nesting of real kNN routers on MMLU-Pro (TF-IDF features of the real prompts), damaged inner
folders, mismatched LLMs, and a bundle holding it routing as the object does."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recroute.data.catalog import load_dataset
from recroute.errors import DataError, NotSupportedError, SavedArtifactError
from recroute.routers.base import Router
from recroute.routers.baselines import BestSingleRouter
from recroute.routers.conservative import ConservativeRouter
from recroute.routers.knn import KNNRouter

NAMES = ["a", "b", "c"]


def means_router(means) -> BestSingleRouter:
    """best_single fitted on one prompt whose results are ``means``: its score on every prompt is ``means``."""
    router = BestSingleRouter().fit(np.asarray([means], dtype=np.float32))
    router.llm_names_ = np.asarray(NAMES, dtype=object)
    return router


def test_the_rule_on_hand_computed_scores_among_the_candidates():
    refit, live = means_router([0.5, 0.8, 0.2]), means_router([0.9, 0.3, 0.6])
    # live's choice a; the refit's b: 0.8 > 0.5 + 0.2 -> b; at tau 0.4, 0.8 < 0.9 -> a
    assert ConservativeRouter(refit, live, 0.2).route(None, n=1)[0].tolist() == [[1]]
    assert ConservativeRouter(refit, live, 0.4).route(None, n=1)[0].tolist() == [[0]]
    np.testing.assert_allclose(ConservativeRouter(refit, live, 0.4).score(None, n=1), [[0.9, 0.8, 0.2]], rtol=1e-6)
    # among {b, c} live's choice is c (0.6): b's 0.8 > 0.2 + 0.5 at tau 0.5, not at tau 0.7
    assert ConservativeRouter(refit, live, 0.5).route(None, n=1, candidates=["b", "c"])[0].tolist() == [[1]]
    cons = ConservativeRouter(refit, live, 0.7)
    assert cons.route(None, n=1, candidates=["b", "c"])[0].tolist() == [[2]]  # tau on c, not on a (no candidate)
    np.testing.assert_allclose(cons.score_among(None, np.array([False, True, True]), n=1), [[0.5, 0.8, 0.9]], rtol=1e-6)
    assert cons.score(None, n=1).dtype == np.float64 and not cons.needs_features


def test_fit_refuses_and_llms_must_match():
    with pytest.raises(NotSupportedError, match="built from two fitted routers"):
        ConservativeRouter().fit(np.ones((3, 3)))
    refit = means_router([0.5, 0.8, 0.2])
    other = BestSingleRouter().fit(np.ones((1, 3), dtype=np.float32))  # llm_0, llm_1, llm_2
    with pytest.raises(DataError, match=r"different LLMs \(refit only: \['a', 'b', 'c'\]"):
        ConservativeRouter(refit, other, 0.2)
    shuffled = means_router([0.5, 0.8, 0.2])
    shuffled.llm_names_ = np.asarray(["c", "b", "a"], dtype=object)
    with pytest.raises(DataError, match="another order"):
        ConservativeRouter(refit, shuffled, 0.2)
    for tau in (-0.1, float("nan"), True):
        with pytest.raises(DataError, match="tau"):
            ConservativeRouter(refit, means_router([0.1, 0.2, 0.3]), tau)
    with pytest.raises(DataError, match="both"):
        ConservativeRouter(refit, None)


@pytest.fixture(scope="module")
def mmlu(shared_data):
    """(X float32 (600, 32) TF-IDF of real MMLU-Pro prompts, Y (600, 31), LLM names, the encoder)."""
    from recroute.encoders import get_encoder

    data = load_dataset(shared_data / "mmlu_pro")
    rows = np.sort(np.random.default_rng(0).permutation(data.n_prompts)[:600])
    part = data.subset(prompts=rows)
    encoder = get_encoder("tfidf", dim=32)
    X = encoder.fit_encode([str(t) for t in part.texts])
    return X, part.dense(np.nan), [str(n) for n in part.llm_names], encoder


def nested(mmlu) -> ConservativeRouter:
    """Conservative(refit2, Conservative(refit1, live, 0.2), 0.1) of kNN routers on growing prompt sets."""
    X, Y, names, _ = mmlu

    def knn(k: int, n: int) -> KNNRouter:
        router = KNNRouter(k=k).fit(Y[:n], X[:n])
        router.llm_names_ = np.asarray(names, dtype=object)
        return router

    live, refit1, refit2 = knn(5, 150), knn(10, 300), knn(7, 400)
    return ConservativeRouter(refit2, ConservativeRouter(refit1, live, 0.2), 0.1)


def test_nested_rule_and_save_load_round_trip_on_mmlu_pro(mmlu, tmp_path):
    X, Y, names, _ = mmlu
    test = X[400:]
    router = nested(mmlu)
    assert router.needs_features and router.n_features_in_ == 32 and list(router.llm_names_) == names
    # the rule, level by level, written out: the refit's choice only where it beats live's by more than tau
    inner, outer = router.live, router
    S1 = inner.refit.score(test).astype(np.float64)
    L = inner.live.score(test).astype(np.float64)
    rows = np.arange(len(test))
    l = L.argmax(axis=1)
    c1 = np.where(S1[rows, S1.argmax(axis=1)] > S1[rows, l] + 0.2, S1.argmax(axis=1), l)
    assert (inner.route(test)[0][:, 0] == c1).all() and 0 < np.mean(c1 != l) < 1
    S2 = outer.refit.score(test).astype(np.float64)
    c2 = np.where(S2[rows, S2.argmax(axis=1)] > S2[rows, c1] + 0.1, S2.argmax(axis=1), c1)
    assert (outer.route(test)[0][:, 0] == c2).all()

    router.save(tmp_path / "cons")
    for role in ("refit", "live", "live/refit", "live/live"):
        assert (tmp_path / "cons" / role / "router.json").is_file()
    assert json.loads((tmp_path / "cons" / "router.json").read_text())["params"] == {"tau": 0.1}
    loaded = Router.load(tmp_path / "cons")
    assert isinstance(loaded, ConservativeRouter) and isinstance(loaded.live, ConservativeRouter)
    assert (loaded.tau, loaded.live.tau) == (0.1, 0.2) and isinstance(loaded.live.live, KNNRouter)
    np.testing.assert_array_equal(loaded.score(test), router.score(test))
    allowed = np.random.default_rng(1).random((len(test), len(names))) < 0.3
    allowed[:, 0] = True
    np.testing.assert_array_equal(loaded.score_among(test, allowed), router.score_among(test, allowed))
    cands = names[3:12]
    np.testing.assert_array_equal(loaded.route(test, k=3, candidates=cands)[0], router.route(test, k=3, candidates=cands)[0])


def test_damaged_inner_routers_are_named(mmlu, tmp_path):
    router = nested(mmlu)
    router.save(tmp_path / "a")
    (tmp_path / "a" / "live" / "refit" / "router.json").write_text("{ not json")
    with pytest.raises(SavedArtifactError, match=r"live router cannot be loaded: .*refit router cannot be loaded: .*corrupt JSON"):
        Router.load(tmp_path / "a")
    router.save(tmp_path / "b")
    (tmp_path / "b" / "refit" / "arrays.npz").write_bytes(b"truncated")
    with pytest.raises(SavedArtifactError, match=r"refit router cannot be loaded"):
        Router.load(tmp_path / "b")
    router.save(tmp_path / "c")
    doc = json.loads((tmp_path / "c" / "router.json").read_text())
    doc["llm_names"] = doc["llm_names"][::-1]
    (tmp_path / "c" / "router.json").write_text(json.dumps(doc))
    with pytest.raises(SavedArtifactError, match="LLM names differ from its inner routers"):
        Router.load(tmp_path / "c")


def test_a_bundle_holding_it_routes_and_explains_as_the_object(mmlu, tmp_path):
    from recroute.serve.bundle import RoutingBundle

    X, _, names, encoder = mmlu
    router = nested(mmlu)
    RoutingBundle.build(router, encoder).save(tmp_path / "bundle")
    bundle = RoutingBundle.load(tmp_path / "bundle")
    assert isinstance(bundle.router, ConservativeRouter) and bundle.describe()["router"]["spec"] == "conservative:tau=0.1"
    test = X[400:450]
    for cands in (None, names[2:9]):
        got = [d.llm for d in bundle.route_embeddings(test, candidates=cands)]
        want = [names[j] for j in router.route(test, candidates=cands)[0][:, 0]]
        assert got == want
        explained = bundle.explain_embeddings(test, candidates=cands)
        assert [e["llm"] for e in explained] == want
        assert "conservative router" in explained[0]["uncertainty"]["note"]


def test_a_new_llm_is_placed_into_both_inner_routers_and_onboarded(mmlu, tmp_path):
    """Onboarding after a conservative promotion: the loop's onboard_llm places a held-out real LLM into a
    nested conservative router of kNN routers (each level's refit and the innermost live), the proxy of
    its evidence being the refit's family."""
    from recroute.loop.onboard import onboard_llm
    from recroute.loop.refit import Anchor

    X, Y, names, _ = mmlu
    new = names.index("gpt-4o-2024-05-13")
    keep = [j for j in range(len(names)) if j != new]
    kept = [names[j] for j in keep]

    def knn(k: int, n: int) -> KNNRouter:
        router = KNNRouter(k=k).fit(Y[:n][:, keep], X[:n])
        router.llm_names_ = np.asarray(kept, dtype=object)
        return router

    router = ConservativeRouter(knn(7, 400), ConservativeRouter(knn(10, 300), knn(5, 150), 0.2), 0.1)
    assert router.can_place_new_llms() and not ConservativeRouter.supports_new_llms
    rows = np.arange(0, 400, 4)
    grown = router.partial_fit_llms(X[rows], np.nan_to_num(Y[rows, new]), [names[new]])
    assert list(grown.llm_names_) == [*kept, names[new]] and (grown.tau, grown.live.tau) == (0.1, 0.2)
    one = router.refit.partial_fit_llms(X[rows], np.nan_to_num(Y[rows, new]), [names[new]])
    np.testing.assert_array_equal(grown.refit.score(X[400:]), one.score(X[400:]))
    grown.save(tmp_path / "grown")
    np.testing.assert_array_equal(Router.load(tmp_path / "grown").score(X[400:]), grown.score(X[400:]))

    anchor = Anchor(X[:400], Y[:400][:, [*keep, new]].astype(np.float64), [*kept, names[new]])
    result = onboard_llm(router, anchor, names[new], lambda row: float(np.nan_to_num(Y[row, new])), budget=80,
                         margin=-1000.0, min_support=0)
    assert result.promote and isinstance(result.placed, ConservativeRouter)
    assert list(result.placed.llm_names_)[-1] == names[new] and result.gate.n == 80
    with pytest.raises(NotSupportedError, match="cannot place a new LLM"):
        ConservativeRouter(knn(7, 400), means_router_over(kept), 0.1).partial_fit_llms(
            X[rows], np.nan_to_num(Y[rows, new]), [names[new]])


def means_router_over(names: list[str]) -> BestSingleRouter:
    """best_single (which cannot place new LLMs) over ``names``."""
    router = BestSingleRouter().fit(np.full((1, len(names)), 0.5, dtype=np.float32))
    router.llm_names_ = np.asarray(names, dtype=object)
    return router


def test_the_simulators_conservative_keeps_its_class_and_arithmetic_when_an_llm_is_placed(mmlu):
    from recroute.loop.shadow import Conservative

    X, Y, names, _ = mmlu
    keep = list(range(len(names) - 1))

    def knn(k: int, n: int) -> KNNRouter:
        router = KNNRouter(k=k).fit(Y[:n][:, keep], X[:n])
        router.llm_names_ = np.asarray([names[j] for j in keep], dtype=object)
        return router

    sim = Conservative(knn(7, 400), knn(5, 150), 0.2)
    grown = sim.partial_fit_llms(X[:40], np.nan_to_num(Y[:40, -1]), [names[-1]])
    assert type(grown) is Conservative and grown.score(X[400:]).shape == (200, len(names))
    S = grown.refit.score(X[400:]).astype(np.float64)
    S[np.arange(200), grown.live.score(X[400:]).argmax(axis=1)] += 0.2  # live's choice among every LLM
    np.testing.assert_array_equal(grown.score(X[400:]), S)
