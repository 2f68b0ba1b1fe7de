"""Routing bundles carry the prices they were fitted with; cost_weight / max_cost on the route path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recroute.data.costs import Prices
from recroute.errors import DataError, SavedArtifactError
from recroute.routers.registry import make_router
from recroute.serve.bundle import RoutingBundle

NAMES = ["big", "mid", "small"]


@pytest.fixture()
def fitted():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 8)).astype(np.float32)
    Y = np.tile(np.array([0.9, 0.7, 0.2], dtype=np.float32), (40, 1))
    Y = np.where(rng.random(Y.shape) < Y, 1.0, 0.0).astype(np.float32)
    Y[:, 0], Y[:, 1], Y[:, 2] = 1.0, 0.8 * (rng.random(40) < 0.9), 0.0  # big > mid > small on every prompt
    router = make_router("knn:k=5").fit(Y, X)
    router.llm_names_ = np.asarray(NAMES, dtype=object)
    prices = Prices.from_table(pd.DataFrame({"llm": NAMES, "input_price_per_mtok": [10.0, 1.0, 0.1],
                                             "output_price_per_mtok": [30.0, 2.0, 0.1], "output_tokens": [100, 100, 100]}))
    return router, X, prices


def test_bundle_saves_and_reloads_prices(tmp_path, fitted):
    router, X, prices = fitted
    RoutingBundle.build(router, None, prices).save(tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert doc["prices"]["input_price_per_mtok"] == [10.0, 1.0, 0.1]
    loaded = RoutingBundle.load(tmp_path / "b")
    np.testing.assert_allclose(loaded.prices.input_per_mtok, [10.0, 1.0, 0.1])
    # expected cost of a 1000-token prompt: in * 1000/1e6 + out * 100/1e6
    costs = loaded.expected_costs(1, np.array([1000.0]))
    np.testing.assert_allclose(costs, [[0.013, 0.0012, 0.00011]])


def test_route_with_cost_weight_and_max_cost(tmp_path, fitted):
    router, X, prices = fitted
    bundle = RoutingBundle.build(router, None, prices)
    plain = bundle.route_arrays(X[:3])[0][:, 0]
    assert (plain == 0).all()
    tokens = np.full(3, 1000.0)
    # utility: big 1 - lam*0.013, mid ~0.72 - lam*0.0012: lam = 100 makes mid the best
    idx, scores = bundle.route_arrays(X[:3], cost_weight=100.0, prompt_tokens=tokens)
    assert (idx[:, 0] == 1).all()
    np.testing.assert_allclose(scores[:, 0], router.score(X[:3])[:, 1])
    idx, _ = bundle.route_arrays(X[:3], max_cost=0.001, prompt_tokens=tokens)
    assert (idx[:, 0] == 2).all()
    with pytest.raises(DataError, match="cheapest, small, costs 0.00011"):
        bundle.route_arrays(X[:3], max_cost=0.0001, prompt_tokens=tokens)


def test_bundle_without_prices_refuses_cost_routing(fitted):
    router, X, _ = fitted
    with pytest.raises(DataError, match="without prices"):
        RoutingBundle.build(router).route_arrays(X[:2], cost_weight=1.0)


def test_tampered_prices_are_refused(tmp_path, fitted):
    router, X, prices = fitted
    RoutingBundle.build(router, None, prices).save(tmp_path / "b")
    doc = json.loads((tmp_path / "b" / "bundle.json").read_text())
    doc["prices"]["input_price_per_mtok"][0] = 1.0
    (tmp_path / "b" / "bundle.json").write_text(json.dumps(doc))
    with pytest.raises(SavedArtifactError):
        RoutingBundle.load(tmp_path / "b")


def test_prices_must_cover_every_llm(fitted):
    router, _, _ = fitted
    partial = Prices.from_table(pd.DataFrame({"llm": NAMES, "cost_per_prompt": [1.0, None, 0.1]}))
    with pytest.raises(DataError, match=r"no price for 1 of 3 LLMs: \['mid'\]"):
        RoutingBundle.build(router, None, partial)
