"""The baselines reproduce RouterEval's official numbers on the shared llmrouter_nim fixture.

knn (k=5) and cluster (3 clusters, seed 0) are trained on ``embedding/train_embed`` with the
training target ``train_label`` (the fixture's scores are continuous, as for RouterEval's
truthfulqa) and must match mu, V_B and E_p to 3 decimals per group and as group means. The
oracle is exact; r_o(0.5) and random, which RouterEval estimates by Monte Carlo, are compared
through their exact expectation within 0.01 (E_p is exact either way).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from recroute.data.routereval import iter_groups, safe_load_pickle
from recroute.eval.metrics import e_p, mu_o, v_b
from recroute.routers.baselines import OracleRouter, RandomRouter, ROPRouter
from recroute.routers.cluster import ClusterRouter
from recroute.routers.knn import KNNRouter

GROUPS = [(m, g) for m in (3, 5) for g in ("all_strong", "all_weak", "strong_to_weak")]


@pytest.fixture(scope="module")
def fixture(routereval_fixture):
    reference_path = routereval_fixture.parent / "llmrouter_nim_reference.json"
    if not reference_path.exists():
        pytest.skip(f"RouterEval reference numbers not found at {reference_path} (set RECROUTE_SHARED)")
    data = safe_load_pickle(routereval_fixture)
    reference = json.loads(reference_path.read_text())["results"]
    return data, reference


@pytest.fixture(scope="module")
def learned(fixture):
    """{(router, m, group): (mu, vb, ep)} for knn and cluster on every easy group."""
    data, _ = fixture
    X_train, X_test = data["embedding"]["train_embed"], data["embedding"]["test_embed"]
    out = {}
    for setting, m, group, entry in iter_groups(data):
        if setting != "easy":
            continue
        Y_train, Y_test = entry["data"]["train_label"], entry["data"]["test_score"]
        for name, router in (("knn", KNNRouter(k=5)), ("cluster", ClusterRouter(n_clusters=3, random_state=0))):
            router.fit(Y_train, X_train)
            mu = mu_o(Y_test, router.route(X_test)[0][:, 0])
            out[name, m, group] = (mu, v_b(mu, Y_test), e_p(router.selection_probs(X_test), router.entropy_floor))
    return out


def test_fixture_holds_the_six_easy_groups(fixture):
    data, _ = fixture
    assert sorted((m, g) for s, m, g, _ in iter_groups(data) if s == "easy") == sorted(GROUPS)


@pytest.mark.parametrize("name", ["knn", "cluster"])
@pytest.mark.parametrize("m,group", GROUPS)
def test_learned_baselines_match_per_group(fixture, learned, name, m, group):
    ref = fixture[1][f"easy/m={m}/{group}"][name]
    mu, vb, ep = learned[name, m, group]
    assert mu == pytest.approx(ref["mu"], abs=1e-3)
    assert vb == pytest.approx(ref["vb"], abs=1e-3)
    assert ep == pytest.approx(ref["ep"], abs=1e-3)


@pytest.mark.parametrize("name", ["knn", "cluster"])
@pytest.mark.parametrize("m", [3, 5])
def test_learned_baselines_match_group_means(fixture, learned, name, m):
    ref = fixture[1][f"easy/m={m}/mean"][name]
    ours = np.mean([learned[name, m, g] for g in ("all_strong", "all_weak", "strong_to_weak")], axis=0)
    np.testing.assert_allclose(ours, [ref["mu"], ref["vb"], ref["ep"]], atol=1e-3)


@pytest.mark.parametrize("m,group", GROUPS)
def test_reference_routers_match(fixture, m, group):
    data, reference = fixture
    Y_train = data["easy"][m][group]["data"]["train_label"]
    Y = data["easy"][m][group]["data"]["test_score"]
    ref = reference[f"easy/m={m}/{group}"]

    oracle = OracleRouter().fit(Y_train)
    mu = mu_o(Y, oracle.route_truth(Y))
    assert mu == pytest.approx(ref["oracle"]["mu"], abs=1e-6)
    assert oracle.expected_mu(Y) == pytest.approx(mu, abs=1e-12)
    assert v_b(mu, Y) == pytest.approx(ref["oracle"]["vb"], abs=1e-6)
    assert e_p(oracle.selection_probs_truth(Y)) == pytest.approx(ref["oracle"]["ep"], abs=1e-3)

    r_o = ROPRouter(p=0.5).fit(Y_train)
    assert r_o.expected_mu(Y) == pytest.approx(ref["r_o_0.5"]["mu"], abs=0.01)
    assert v_b(r_o.expected_mu(Y), Y) == pytest.approx(ref["r_o_0.5"]["vb"], abs=0.02)
    assert e_p(r_o.selection_probs_truth(Y)) == pytest.approx(ref["r_o_0.5"]["ep"], abs=1e-3)

    random = RandomRouter().fit(Y_train)
    assert random.expected_mu(Y) == pytest.approx(ref["random"]["mu"], abs=0.01)
    assert v_b(random.expected_mu(Y), Y) == pytest.approx(ref["random"]["vb"], abs=0.02)
    ep = e_p(random.selection_probs(None, n=len(Y)))
    assert ep == pytest.approx(math.log2(m)) and ep == pytest.approx(ref["random"]["ep"], abs=1e-3)
