"""A bundle whose router predicts costs (graphrouter fitted on priced data) routes --cost-weight / --max-cost
by those predicted costs when built with costs="predicted" (``recroute fit --costs predicted``); real
llmrouter_nim data (token prices), a 300-prompt slice, the static encoder."""

from __future__ import annotations

import asyncio
import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.cost.decide import utility
from recroute.errors import DataError
from recroute.routers.registry import make_router
from recroute.serve.bundle import RoutingBundle


@pytest.fixture(scope="module")
def nim(shared_data):
    import recroute
    from recroute.encoders import embed_dataset, get_encoder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = recroute.load_dataset(shared_data / "llmrouter_nim")
    part = data.subset(prompts=np.sort(np.random.default_rng(0).choice(data.n_prompts, 300, replace=False)))
    embed_dataset(part, get_encoder("static"), use_cache=False)
    return part


@pytest.fixture(scope="module")
def graph(nim):
    return make_router("graphrouter", epochs=10).fit(nim)


def test_predicted_costs_drive_the_cost_step_and_survive_save_load(nim, graph, tmp_path):
    from recroute.encoders import get_encoder

    X = nim.embeddings
    bundle = RoutingBundle.build(graph, get_encoder("static"), nim.prices(), costs="predicted")
    assert bundle.has_costs and bundle.describe()["costs"] == "predicted"
    C = graph.predict_costs(X)
    np.testing.assert_array_equal(bundle.expected_costs(len(X), None, X), C)
    priced = RoutingBundle.build(graph, get_encoder("static"), nim.prices())  # the default: prices
    assert priced.costs == "prices"
    np.testing.assert_allclose(priced.expected_costs(len(X)), nim.prices().expected(None, n=len(X)))
    # utility routing by hand: argmax of score - weight · predicted cost
    weight = 0.5 / np.median(C)  # half a unit of P(correct) per median predicted cost
    idx, _ = bundle.route_arrays(X, k=1, cost_weight=weight)
    np.testing.assert_array_equal(idx[:, 0], utility(graph.score(X), C, weight).argmax(axis=1))
    # the price path gives other costs (per prompt: 128 assumed tokens without texts; predicted: per prompt)
    assert not np.allclose(priced.expected_costs(len(X)), C)
    # a huge weight: every prompt to its cheapest LLM by the predicted costs; max_cost masks by them too
    np.testing.assert_array_equal(bundle.route_arrays(X, k=1, cost_weight=1e6 / np.median(C))[0][:, 0], C.argmin(axis=1))
    limit = float(max(np.median(C[:50]), C[:50].min(axis=1).max()))  # every prompt keeps one LLM at least
    chosen = bundle.route_arrays(X[:50], k=1, max_cost=limit)[0][:, 0]
    allowed = C[:50] <= limit
    by_hand = np.where(allowed, graph.score(X[:50]), -np.inf).argmax(axis=1)
    np.testing.assert_array_equal(chosen, by_hand)
    assert (~allowed).any()  # the limit excluded some (prompt, LLM) pairs
    # texts: encoded once, the same decisions as their embeddings
    texts = list(nim.texts[:20])
    got = [d.llm for d in bundle.route_texts(texts, cost_weight=weight)]
    assert got == [bundle.llm_names[j] for j in idx[:20, 0]]
    bundle.save(tmp_path / "b")
    loaded = RoutingBundle.load(tmp_path / "b")
    assert loaded.costs == "predicted"
    np.testing.assert_array_equal(loaded.route_arrays(X, k=1, cost_weight=weight)[0], idx)
    explained = loaded.explain_embeddings(X[:3], cost_weight=weight)
    assert len(explained) == 3


def test_predicted_costs_need_a_router_that_predicts_them(nim, graph):
    knn = make_router("knn").fit(nim, nim.embeddings)
    with pytest.raises(DataError, match="needs a router that predicts costs.*'knn'"):
        RoutingBundle.build(knn, None, nim.prices(), costs="predicted")
    with pytest.raises(DataError, match="costs must be one of prices, predicted; got 'model'"):
        RoutingBundle.build(graph, None, nim.prices(), costs="model")
    bundle = RoutingBundle.build(graph, None, None, costs="predicted")  # no prices needed
    with pytest.raises(DataError, match="give X"):
        bundle.expected_costs(3)


def test_gateway_cost_step_uses_the_predicted_costs(nim, graph):
    from recroute.encoders import get_encoder
    from recroute.serve.gateway import Decider, RouteOptions, Upstream

    bundle = RoutingBundle.build(graph, get_encoder("static"), nim.prices(), costs="predicted")
    ups = {n: Upstream(n, "http://127.0.0.1:9/v1", n) for n in bundle.llm_names}  # no prices in the upstreams
    decider = Decider(bundle, ups, decide_on="loop")
    text = str(nim.texts[0])
    X = bundle.encode([text])
    C = graph.predict_costs(X)[0]
    allowed = np.ones(len(C), dtype=bool)
    allowed[0] = False
    np.testing.assert_allclose(decider.expected_costs(text, allowed, X), np.where(allowed, C, 0.0))
    with pytest.raises(DataError, match="give X"):  # predicted costs come from the routing features alone
        decider.expected_costs(text, allowed)

    async def run():
        await decider.start()
        try:
            return await decider.decide(text, RouteOptions(cost_weight=1e6 / float(np.median(C))))
        finally:
            await decider.close()

    assert asyncio.run(run()).chosen == bundle.llm_names[int(np.argmin(C))]


def test_fit_costs_predicted_on_the_command_line(nim, tmp_path):
    folder = nim.save(tmp_path / "nim300")
    out = tmp_path / "bundle"
    runner = CliRunner()
    result = runner.invoke(app, ["fit", "--dataset", str(folder), "--router", "graphrouter:epochs=3", "--encoder", "static",
                                 "--costs", "predicted", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "bundle.json").read_text())["costs"] == "predicted"
    assert RoutingBundle.load(out).costs == "predicted"
    bad = runner.invoke(app, ["fit", "--dataset", str(folder), "--router", "best_single", "--costs", "predicted",
                              "--out", str(tmp_path / "b2"), "--quiet"])
    assert bad.exit_code != 0 and "needs a router that predicts costs" in bad.output
