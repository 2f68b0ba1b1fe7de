"""A gateway whose bundle predicts costs (graphrouter fitted on priced data, ``costs="predicted"``) encodes
each routed prompt once, cost options or not: a real one-worker gateway process
(tests/serve/counting_gateway.py: its TF-IDF encoder counts the texts it encodes) in front of a fake
upstream on loopback, deciding on the event loop and on the batching thread, through a hot reload and with
a predicted-cost shadow installed. Each choice is the bundle's own ``route_arrays`` with the same
cost_weight / max_cost on the same prompt."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

httpx = pytest.importorskip("httpx", reason="the gateway needs httpx")
pytest.importorskip("fastapi", reason="the gateway needs fastapi")
pytest.importorskip("torch", reason="graphrouter needs torch")

from conftest import LLMS, topic_dataset  # noqa: E402
from servers import free_port, server_process  # noqa: E402
from test_gateway import start_upstream  # noqa: E402

from recroute.serve.bundle import RoutingBundle  # noqa: E402

HERE = Path(__file__).resolve().parent
ADMIN = "admin-key-costs"
PRICES = {"math-llm": (30.0, 60.0), "code-llm": (1.0, 2.0), "history-llm": (3.0, 6.0), "generalist": (0.2, 0.4)}
PRICES_B = {"math-llm": (0.5, 1.0), "code-llm": (8.0, 16.0), "history-llm": (3.0, 6.0), "generalist": (20.0, 40.0)}


def priced_topics(prices: dict[str, tuple[float, float]]):
    llms = pd.DataFrame({"llm": LLMS, "input_price_per_mtok": [prices[n][0] for n in LLMS],
                         "output_price_per_mtok": [prices[n][1] for n in LLMS]})
    return topic_dataset(llms=llms)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    """{"a", "b"}: two predicted-cost graphrouter bundles of the topic data sharing one TF-IDF encoder
    (so either may be the other's shadow), b fitted on other prices (other costs, other choices)."""
    from recroute.encoders import get_encoder
    from recroute.routers.registry import make_router

    encoder = get_encoder("tfidf", dim=16)
    X = encoder.fit_encode(priced_topics(PRICES).texts)
    folder = tmp_path_factory.mktemp("predicted-bundles")
    out = {}
    for name, prices in (("a", PRICES), ("b", PRICES_B)):
        data = priced_topics(prices)
        router = make_router("graphrouter", epochs=10).fit(data, X)
        assert router.predicts_costs
        out[name] = RoutingBundle.build(router, encoder, data.prices(), costs="predicted").save(folder / name)
    return out


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    """Prompts of the three topics the bundles were not fitted on."""
    return [str(t) for t in topic_dataset(n_prompts=12, seed=7).texts]


@pytest.fixture(scope="module")
def upstream():
    proc, port = start_upstream(LLMS)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module", params=["loop", "thread"])
def gateway(request, bundles, upstream, tmp_path_factory):
    """(base URL, decision log) of a counting gateway on bundle a, deciding on the loop or the thread."""
    folder = tmp_path_factory.mktemp(f"gateway-{request.param}")
    (folder / "u.toml").write_text("".join(f'[upstreams."{n}"]\nbase_url = "{upstream}/{n}/v1"\n\n' for n in LLMS))
    log = folder / "decisions.jsonl"
    port = free_port()
    command = [sys.executable, str(HERE / "counting_gateway.py"), "--bundle", str(bundles["a"]), "--upstreams",
               str(folder / "u.toml"), "--port", str(port), "--log", str(log), "--decide-on", request.param,
               "--admin-key", ADMIN]
    with server_process(command, port) as url:
        yield url, log


def encoded(url: str) -> int:
    """Texts the gateway process has encoded so far."""
    return httpx.get(url + "/_encoded", timeout=10).json()["texts"]


def chat_all(url: str, requests: list[tuple[str, str]], concurrent: bool) -> list[httpx.Response]:
    """(model, text) each through the gateway: one after the other, or all at once (batched together)."""
    async def run():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
            async def one(model, text):
                return await client.post(url + "/v1/chat/completions",
                                         json={"model": model, "messages": [{"role": "user", "content": text}]})
            if concurrent:
                return await asyncio.gather(*(one(m, t) for m, t in requests))
            return [await one(m, t) for m, t in requests]

    out = asyncio.run(run())
    for r in out:
        assert r.status_code == 200, r.text
    return out


def cost_settings(bundle, prompts) -> tuple[float, float, np.ndarray]:
    """(cost_weight, max_cost, predicted costs (n, m)) that change some choices and mask some LLMs."""
    X = bundle.encode(prompts)
    C = bundle.expected_costs(len(prompts), None, X)
    limit = float(max(np.median(C), C.min(axis=1).max()))  # every prompt keeps one LLM at least
    return 0.5 / float(np.median(C)), limit, C


def expected_choice(bundle, text: str, cost_weight=None, max_cost=None) -> str:
    idx, _ = bundle.route_arrays(bundle.encode([text]), k=1, cost_weight=cost_weight, max_cost=max_cost)
    return bundle.llm_names[int(idx[0, 0])]


def options_of(weight: float, limit: float) -> list[tuple[str, float | None, float | None]]:
    return [("recroute", None, None), (f"recroute:cost_weight={weight!r}", weight, None),
            (f"recroute:max_cost={limit!r}", None, limit),
            (f"recroute:cost_weight={weight!r},max_cost={limit!r}", weight, limit)]


def logged(log: Path, ids: list[str]) -> dict[str, dict]:
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    return {r["decision_id"]: r for r in rows if r.get("event") == "decision" and r["decision_id"] in ids}


@pytest.mark.parametrize("concurrent", [False, True])
def test_each_request_is_encoded_once_and_routed_as_the_bundle_routes(gateway, bundles, prompts, concurrent):
    url, log = gateway
    bundle = RoutingBundle.load(bundles["a"])
    weight, limit, C = cost_settings(bundle, prompts)
    options = options_of(weight, limit)
    expected = {(model, text): expected_choice(bundle, text, w, c) for model, w, c in options for text in prompts}
    plain = [expected[("recroute", t)] for t in prompts]
    assert [expected[(options[1][0], t)] for t in prompts] != plain  # the weight changes some choices
    assert (C > limit).any()  # and max_cost leaves some LLMs out
    requests = [(model, text) for model, _, _ in options for text in prompts]
    before = encoded(url)
    answers = chat_all(url, requests, concurrent)
    assert encoded(url) - before == len(requests)  # one encoding per request, predicted costs or not
    assert [r.headers["x-recroute-routed"] for r in answers] == [expected[q] for q in requests]
    rows = logged(log, [r.headers["x-recroute-decision-id"] for r in answers])
    assert len(rows) == len(requests)
    keys = {frozenset(r) for r in rows.values()}
    assert len(keys) == 1  # the same decision-log fields with cost options as without
    for (model, text), r in zip(requests, answers):
        row = rows[r.headers["x-recroute-decision-id"]]
        assert row["chosen"] == row["upstream"] == r.headers["x-recroute-routed"] and row["policy"] == "greedy"
        if "max_cost" in model:  # the candidates are the LLMs whose predicted cost is within the limit
            i = prompts.index(text)
            assert row["candidates"] == [n for n, c in zip(bundle.llm_names, C[i]) if c <= limit]
        else:
            assert row["candidates"] == LLMS


def test_an_explanation_encodes_once_with_the_predicted_costs(gateway, bundles, prompts):
    url, _ = gateway
    bundle = RoutingBundle.load(bundles["a"])
    weight, _, C = cost_settings(bundle, prompts)
    [answer] = chat_all(url, [(f"recroute:cost_weight={weight!r}", prompts[0])], False)
    before = encoded(url)
    got = httpx.get(f"{url}/v1/decisions/{answer.headers['x-recroute-decision-id']}", timeout=30)
    assert got.status_code == 200, got.text
    assert encoded(url) - before == 1  # the explanation's features serve its predicted costs too
    explanation = got.json()["explanation"]
    assert explanation["llm"] == answer.headers["x-recroute-routed"] and explanation["cost_weight"] == weight
    costs = {row["llm"]: row["cost"] for row in explanation["candidates"]}
    assert [costs[n] for n in bundle.llm_names] == pytest.approx(C[0].tolist(), rel=1e-5)


def test_a_reload_and_a_shadow_with_predicted_costs_still_encode_once(gateway, bundles, prompts):
    url, log = gateway
    a, b = RoutingBundle.load(bundles["a"]), RoutingBundle.load(bundles["b"])
    admin = {"authorization": f"Bearer {ADMIN}"}
    reloaded = httpx.post(url + "/admin/reload", json={"bundle": str(bundles["b"])}, headers=admin, timeout=60)
    assert reloaded.status_code == 200, reloaded.text
    try:
        weight, limit, _ = cost_settings(b, prompts)
        options = options_of(weight, limit)
        requests = [(model, text) for model, _, _ in options for text in prompts]
        before = encoded(url)
        answers = chat_all(url, requests, True)
        assert encoded(url) - before == len(requests)
        assert [r.headers["x-recroute-routed"] for r in answers] == [
            expected_choice(b, t, w, c) for (m, w, c) in options for t in prompts]

        # bundle a as the shadow of b (tau 0: where they differ the shadow's greedy choice is served at ε)
        shadow = httpx.post(url + "/admin/shadow", json={"bundle": str(bundles["a"]), "epsilon": 0.5},
                            headers=admin, timeout=60)
        assert shadow.status_code == 200, shadow.text
        costed = options[1:]
        requests = [(model, text) for model, _, _ in costed for text in prompts]
        before = encoded(url)
        answers = chat_all(url, requests, True)
        assert encoded(url) - before == len(requests)  # live and shadow: one encoding, both costed from it
        rows = logged(log, [r.headers["x-recroute-decision-id"] for r in answers])
        for (model, text), (_, w, c), r in zip(requests, [o for o in costed for _ in prompts], answers):
            row = rows[r.headers["x-recroute-decision-id"]]
            assert row["live_choice"] == expected_choice(b, text, w, c)
            assert row["shadow_choice"] == expected_choice(a, text, w, c)
            assert row["chosen"] in (row["live_choice"], row["shadow_choice"])
            assert row["shadow_checksum"] == a.checksum and row["bundle_checksum"] == b.checksum
        assert any(r["live_choice"] != r["shadow_choice"] for r in rows.values())  # the shadow had a say
    finally:
        assert httpx.delete(url + "/admin/shadow", headers=admin, timeout=60).status_code == 200
        back = httpx.post(url + "/admin/reload", json={"bundle": str(bundles["a"])}, headers=admin, timeout=60)
        assert back.status_code == 200, back.text
