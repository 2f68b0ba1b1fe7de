"""Per-decision explanations: kNN's neighbours reproduce every decision, the cost counterfactual flips where
it says, the uncertainty of each family, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import beta

from recroute.audit.explain import choice_from_neighbours, cost_flips, explain_arrays
from recroute.errors import DataError
from recroute.serve.bundle import RoutingBundle

N_PROMPTS = 1000
LAMBDA = 20.0  # scores in [0, 1], costs 0.001..0.02: a weight that trades them off


@pytest.fixture(scope="module")
def queries(mmlu, mmlu_split):
    held = mmlu_split[1]
    rows = np.random.default_rng(0).choice(held, N_PROMPTS, replace=False)
    return mmlu.embeddings[np.sort(rows)]


@pytest.fixture(scope="module")
def bundle(knn_router, flat_prices):
    return RoutingBundle.build(knn_router, None, flat_prices)


@pytest.fixture(scope="module", params=[None, LAMBDA], ids=["no-cost", "cost"])
def explained(request, bundle, queries, mmlu_train):
    """(cost_weight, explanations of the 1,000 prompts, the bundle's routed LLM positions)."""
    cost_weight = request.param
    explanations = bundle.explain_embeddings(queries, cost_weight=cost_weight, training=mmlu_train)
    return cost_weight, explanations, bundle.route_arrays(queries, cost_weight=cost_weight)[0][:, 0]


def test_knn_neighbours_and_outcomes_reproduce_every_decision(bundle, explained, mmlu_train):
    cost_weight, explanations, routed = explained
    names = bundle.llm_names
    assert [e["llm"] for e in explanations] == [names[j] for j in routed]
    recomputed = [choice_from_neighbours(e) for e in explanations]
    assert recomputed == [names[j] for j in routed]  # 100 % of the 1,000 prompts
    first = explanations[0]["evidence"]["neighbours"]
    assert len(first) == 5 and all(n["prompt_id"] == str(mmlu_train.prompt_ids[n["row"]]) for n in first)
    assert all(n["text"] for n in first) and first == sorted(first, key=lambda n: (n["distance"], n["row"]))


def _probe(lam: float) -> float:
    return lam + max(lam, 1.0) * 1e-6  # just past a crossing, well before the next one


def test_cost_counterfactual_flips_where_it_says(bundle, queries, explained):
    cost_weight, explanations, _ = explained
    lam0 = 0.0 if cost_weight is None else cost_weight
    names = bundle.llm_names
    ups = [(i, e["counterfactuals"]["flip_up"]) for i, e in enumerate(explanations) if e["counterfactuals"]["flip_up"]]
    downs = [(i, e["counterfactuals"]["flip_down"]) for i, e in enumerate(explanations)
             if e["counterfactuals"]["flip_down"]]
    assert len(ups) > N_PROMPTS // 2 and (cost_weight is None or len(downs) > N_PROMPTS // 10)
    above = bundle.route_arrays(queries[[i for i, _ in ups]], cost_weight=np.array([_probe(f["cost_weight"]) for _, f in ups]))
    assert [names[j] for j in above[0][:, 0]] == [f["llm"] for _, f in ups]
    before = [(i, f) for i, f in ups if f["cost_weight"] > lam0 * (1 + 1e-6)]
    mid = np.array([(lam0 + f["cost_weight"]) / 2 for _, f in before])
    still = bundle.route_arrays(queries[[i for i, _ in before]], cost_weight=mid)[0][:, 0]
    assert [names[j] for j in still] == [explanations[i]["llm"] for i, _ in before]
    if downs:
        below = np.array([max(f["cost_weight"] - max(f["cost_weight"], 1.0) * 1e-6, 0.0) for _, f in downs])
        got = bundle.route_arrays(queries[[i for i, _ in downs]], cost_weight=below)[0][:, 0]
        assert [names[j] for j in got] == [f["llm"] for _, f in downs]


def test_cost_flips_by_hand():
    s, c = np.array([0.9, 0.8, 0.5]), np.array([3.0, 2.0, 1.0])
    allowed = np.ones(3, dtype=bool)
    assert cost_flips(s, c, allowed, 0, 0.0) == ((pytest.approx(0.1), 1), None)  # (0.9-0.8)/(3-2) < 0.4/2
    up, down = cost_flips(s, c, allowed, 1, 0.15)
    assert up == (pytest.approx(0.3), 2) and down == (pytest.approx(0.1), 0)
    assert cost_flips(s, c, np.array([True, False, False]), 0, 0.0) == (None, None)
    # two lines tie with the chosen one at lambda 0: just above it the cheaper wins
    assert cost_flips(np.array([1.0, 1.0, 1.0]), np.array([3.0, 2.0, 1.0]), allowed, 0, 0.0) == ((0.0, 2), None)


def test_beta_posterior_and_margin_by_hand(bundle, queries):
    e = bundle.explain_embeddings(queries[:1])[0]
    rows = {r["llm"]: r for r in e["candidates"]}
    for name, row in list(rows.items())[:5]:
        outcomes = [n["outcomes"][name] for n in e["evidence"]["neighbours"] if n["outcomes"][name] is not None]
        wins, n = sum(outcomes), len(outcomes)
        assert row["n_evidence"] == n and row["score"] == pytest.approx(wins / max(n, 1))
        assert row["low"] == pytest.approx(beta.ppf(0.05, 1 + wins, 1 + n - wins))
        assert row["high"] == pytest.approx(beta.ppf(0.95, 1 + wins, 1 + n - wins))
        assert row["spread"] == pytest.approx(np.std(outcomes) if n else 0.0)
    assert e["margin"] == pytest.approx(rows[e["llm"]]["score"] - rows[e["runner_up"]]["score"]) and e["margin"] >= 0
    assert e["tie"] == (e["margin"] == 0)


def test_excluded_candidate_that_would_have_won(bundle, queries):
    full = bundle.explain_embeddings(queries[:50])
    for e, q in zip(full, queries[:50]):
        others = [n for n in bundle.llm_names if n != e["llm"]]
        narrowed = bundle.explain_embeddings(q[None], candidates=others)[0]
        assert narrowed["counterfactuals"]["excluded_best"]["llm"] == e["llm"]
        assert narrowed["counterfactuals"]["excluded_best"]["why_excluded"] == "not a candidate"
        assert narrowed["llm"] != e["llm"]
    cheap = bundle.explain_embeddings(queries[:5], max_cost=0.01)
    for e in cheap:
        best = e["counterfactuals"]["excluded_best"]
        assert best is None or best["why_excluded"] == "over max_cost"
        assert all(r["cost"] <= 0.01 for r in e["candidates"] if r["allowed"])


def _small(n=160, m=4, d=8, seed=0):
    from recroute.data.dataset import RoutingDataset

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    Y = (rng.random((n, m)) < 1 / (1 + np.exp(-X[:, :m]))).astype(np.float32)
    data = RoutingDataset.from_wide(Y, [f"p{i}" for i in range(n)], [f"llm{j}" for j in range(m)])
    return data, X


def test_ensemble_spread_is_the_bagged_fits_spread():
    from recroute.routers.cluster import ClusterRouter
    from recroute.routers.ensemble import EnsembleRouter
    from recroute.routers.knn import KNNRouter

    data, X = _small()
    router = EnsembleRouter(members="knn:k=7+cluster:n_clusters=4", n_seeds=2).fit(data, X)
    e = explain_arrays(router, X[:3])
    fits = [KNNRouter(k=7).fit(data, X), ClusterRouter(n_clusters=4, random_state=0).fit(data, X),
            ClusterRouter(n_clusters=4, random_state=1).fit(data, X)]
    copies = np.stack([f.score(X[:3]) for f in fits])
    for i, doc in enumerate(e):
        assert doc["uncertainty"]["kind"] == "members"
        for row in doc["candidates"]:
            j = int(row["llm"][3:])
            assert row["spread"] == pytest.approx(copies[:, i, j].std(), abs=1e-6)
            assert row["low"] == pytest.approx(copies[:, i, j].min(), abs=1e-6)
            assert row["n_evidence"] == 3


def test_cluster_and_representation_evidence():
    from recroute.routers.cluster import ClusterRouter
    from recroute.routers.logistic import LogisticRouter

    data, X = _small()
    data.set_embeddings(X, "synthetic")
    cluster = ClusterRouter(n_clusters=3).fit(data, X)
    e = explain_arrays(cluster, X[:4])
    assert [d["evidence"]["cluster"] for d in e] == cluster.predict_cluster(X[:4]).tolist()
    assert e[0]["uncertainty"]["kind"] is None and "point estimate" in e[0]["uncertainty"]["note"]
    logistic = LogisticRouter().fit(data, X)
    doc = explain_arrays(logistic, X[:1], training=data, n_neighbours=3)[0]
    assert doc["evidence"]["kind"] == "representation" and len(doc["evidence"]["neighbours"]) == 3
    Y = data.dense(np.nan)
    for n in doc["evidence"]["neighbours"]:
        assert n["outcomes"] == {f"llm{j}": float(Y[n["row"], j]) for j in range(4)}
    assert doc["evidence"]["neighbours"][0]["row"] == 0  # a training prompt is nearest to itself
    assert explain_arrays(logistic, X[:1])[0]["evidence"]["kind"] is None


def test_two_tower_evidence_is_nearest_in_its_prompt_vectors():
    from recroute.routers.knn import exact_neighbours
    from recroute.routers.two_tower import TwoTowerRouter

    data, X = _small()
    data.set_embeddings(X, "synthetic")
    router = TwoTowerRouter(dim=4, hidden=(8,), epochs=3, random_state=0).fit(data, X)
    doc = explain_arrays(router, X[5:6], training=data, n_neighbours=4)[0]
    P = router.prompt_vectors(X)[0]
    expected = exact_neighbours(P, P[5:6], 4, metric="l2")[0]
    assert [n["row"] for n in doc["evidence"]["neighbours"]] == expected.tolist()
    assert doc["uncertainty"]["kind"] is None


def test_bad_input_is_named(bundle, queries, knn_router, mmlu):
    with pytest.raises(DataError, match="unknown LLM"):
        bundle.explain_embeddings(queries[:2], candidates=["no-such-llm"])
    with pytest.raises(DataError, match="fitted on"):
        explain_arrays(knn_router, queries[:2], training=mmlu)
    with pytest.raises(DataError, match="features"):
        bundle.explain_embeddings(queries[:2, :10])
    no_prices = RoutingBundle.build(knn_router)
    with pytest.raises(DataError, match="prices"):
        no_prices.explain_embeddings(queries[:2], cost_weight=1.0)
    assert no_prices.explain_embeddings(queries[:1])[0]["counterfactuals"]["flip_up"] is None


def test_irt_evidence_is_difficulty_and_abilities():
    """MIRT: sigmoid(ability - difficulty) from the explanation is the router's P(correct)."""
    from recroute.routers.irt import IRTRouter

    data, X = _small()
    router = IRTRouter(epochs=3, random_state=0).fit(data, X)
    doc = explain_arrays(router, X[:1])[0]
    evidence = doc["evidence"]
    assert evidence["kind"] == "irt" and evidence["variant"] == "mirt"
    scores = router.score(X[:1])[0]
    for row in doc["candidates"]:
        p = 1.0 / (1.0 + np.exp(-(evidence["ability"][row["llm"]] - evidence["difficulty"])))
        assert p == pytest.approx(float(scores[int(row["llm"][3:])]), abs=1e-5)
