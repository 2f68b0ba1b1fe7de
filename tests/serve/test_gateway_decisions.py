"""``GET /v1/decisions/{id}``: a real gateway process explains its recent routed decisions (behind the client
key); the in-memory ring forgets the oldest first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway needs httpx")
pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from servers import await_health, free_port, stop  # noqa: E402

FAKE = Path(__file__).with_name("fake_upstream.py")
NAMES = ["math-llm", "code-llm", "history-llm"]
KEY = "client-key-explain"
MATH = "prove the theorem about the prime number with algebra"


@pytest.fixture(scope="module")
def gateway(tfidf_bundle_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("gateway-explain")
    up = subprocess.Popen([sys.executable, str(FAKE), "--names", ",".join(NAMES)], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)
    line = up.stdout.readline().decode()
    assert line.startswith("PORT "), line
    upstream = f"http://127.0.0.1:{int(line.split()[1])}"
    (folder / "upstreams.toml").write_text("".join(
        f'[upstreams."{n}"]\nbase_url = "{upstream}/{n}/v1"\nmodel = "{n}"\ninput_price_per_mtok = {p}\n'
        f'output_price_per_mtok = {p}\n\n' for n, p in zip(NAMES, (3.0, 1.0, 2.0))))
    port = free_port()
    out = open(folder / "out.txt", "wb")
    # two workers: each keeps its own decisions and asks the other for the rest (serve/peer_decisions.py)
    proc = subprocess.Popen([sys.executable, "-m", "recroute", "gateway", "--bundle", str(tfidf_bundle_dir),
                             "--upstreams", str(folder / "upstreams.toml"), "--api-keys-env", "GWKEYS",
                             "--port", str(port), "--workers", "2", "--quiet"], stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "GWKEYS": KEY, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    await_health(proc, url, time.monotonic() + 90, lambda: f"the gateway ({(folder / 'out.txt').read_text()})")
    yield url
    stop(proc)
    stop(up)


def _chat(url: str, model: str = "recroute") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": MATH}]}
    return httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=20)


def test_a_routed_decision_is_explained_by_its_id(gateway):
    answer = _chat(gateway)
    assert answer.status_code == 200
    decision_id = answer.headers["x-recroute-decision-id"]
    got = httpx.get(f"{gateway}/v1/decisions/{decision_id}", headers={"Authorization": f"Bearer {KEY}"}, timeout=20)
    assert got.status_code == 200, got.text
    doc = got.json()
    assert doc["decision_id"] == decision_id and doc["chosen"] == answer.headers["x-recroute-routed"] == "math-llm"
    explanation = doc["explanation"]
    assert explanation["llm"] == "math-llm" and explanation["evidence"]["kind"] == "neighbours"
    assert len(explanation["evidence"]["neighbours"]) == 3  # the bundle's k
    rows = {r["llm"]: r for r in explanation["candidates"]}
    assert not rows["generalist"]["allowed"]  # not configured: never a candidate
    assert rows["math-llm"]["cost"] > rows["code-llm"]["cost"]  # the upstreams' prices
    flip = explanation["counterfactuals"]["flip_up"]
    assert flip is not None and flip["cost_weight"] > 0


def test_every_worker_explains_every_decision(gateway):
    """Whichever of the two workers routed a request and whichever answers its lookup, it is explained."""
    answers = [_chat(gateway) for _ in range(8)]
    for answer in answers:
        got = httpx.get(f"{gateway}/v1/decisions/{answer.headers['x-recroute-decision-id']}",
                        headers={"Authorization": f"Bearer {KEY}"}, timeout=30)
        assert got.status_code == 200, got.text
        assert got.json()["explanation"]["llm"] == answer.headers["x-recroute-routed"] == "math-llm"


def test_cost_options_are_explained_and_unknown_ids_are_404(gateway):
    answer = _chat(gateway, "recroute:cost_weight=1000000,candidates=math-llm|history-llm")
    assert answer.status_code == 200
    got = httpx.get(f"{gateway}/v1/decisions/{answer.headers['x-recroute-decision-id']}",
                    headers={"Authorization": f"Bearer {KEY}"}, timeout=20).json()["explanation"]
    assert got["cost_weight"] == 1e6 and got["llm"] == answer.headers["x-recroute-routed"]
    assert {r["llm"] for r in got["candidates"] if r["allowed"]} == {"math-llm", "history-llm"}
    missing = httpx.get(f"{gateway}/v1/decisions/nope", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert missing.status_code == 404 and "unknown decision_id" in missing.json()["error"]["message"]
    assert httpx.get(f"{gateway}/v1/decisions/nope", timeout=10).status_code == 401  # behind the client key
    direct = _chat(gateway, "code-llm")  # no routing decision to explain
    assert httpx.get(f"{gateway}/v1/decisions/{direct.headers['x-recroute-decision-id']}",
                     headers={"Authorization": f"Bearer {KEY}"}, timeout=10).status_code == 404


def test_the_ring_forgets_the_oldest(tfidf_bundle_dir):
    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.recent_decisions import RecentDecisions

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    recent = RecentDecisions(size=2)
    for i in range(3):
        recent.add(f"d{i}", bundle, MATH, bundle.llm_names, "math-llm", 1.0, "greedy")
    assert len(recent) == 2 and recent.explain("d0") is None
    assert recent.explain("d2")["explanation"]["llm"] == "math-llm"


def test_decisions_are_explained_by_the_bundle_that_made_them(tfidf_bundle_dir):
    """After hot reloads only the last two bundles are kept: older decisions say so, none is explained wrong."""
    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.recent_decisions import BUNDLES_KEPT, RecentDecisions

    bundles = [RoutingBundle.load(tfidf_bundle_dir) for _ in range(BUNDLES_KEPT + 1)]  # three "reloads"
    recent = RecentDecisions()
    for i, bundle in enumerate(bundles):
        recent.add(f"d{i}", bundle, MATH, bundle.llm_names, "math-llm", 1.0, "greedy")
    oldest = recent.explain("d0")
    assert oldest["explanation"] is None and "no longer loaded" in oldest["note"]
    assert all(recent.explain(f"d{i}")["explanation"]["llm"] == "math-llm" for i in (1, 2))
