"""`recroute serve --policy --log`: a real server on a free loopback port writes the decision log;
POST /outcome joins outcomes; the bundle routes with a policy in-process too."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from recroute.data.dataset import RoutingDataset
from recroute.feedback.logs import read_decision_log

httpx = pytest.importorskip("httpx", reason="the HTTP tests need httpx (dev extra)")
pytest.importorskip("fastapi", reason="the HTTP service needs fastapi")

WORDS = {"math": "integral algebra prime proof".split(), "code": "python bug loop array".split()}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    rng = np.random.default_rng(0)
    topic = np.arange(60) % 2
    texts = [" ".join(rng.choice(WORDS["math" if t == 0 else "code"], 5)) + f" q{i}" for i, t in enumerate(topic)]
    Y = np.stack([topic == 0, topic == 1, rng.random(60) < 0.5], axis=1).astype(np.float32)
    prompts = pd.DataFrame({"prompt_id": [f"q{i}" for i in range(60)], "text": texts})
    data = RoutingDataset.from_wide(Y, prompts.prompt_id.tolist(), ["m", "c", "g"], prompts=prompts)
    encoder = get_encoder("tfidf", dim=8)
    X = encoder.fit_encode(texts)
    return RoutingBundle.build(KNNRouter(k=3).fit(data, X), encoder).save(tmp_path_factory.mktemp("b") / "bundle")


def test_bundle_routes_with_a_policy(bundle_dir, monkeypatch, tmp_path):
    from recroute.errors import DataError
    from recroute.serve.bundle import RoutingBundle

    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "cache"))
    bundle = RoutingBundle.load(bundle_dir)
    texts = ["integral proof"] * 400
    got = bundle.route_texts(texts, policy="epsilon_greedy:epsilon=0.3", rng=0)
    props = np.array([d.propensity for d in got])
    assert set(np.round(props, 6)) <= {0.8, 0.1}
    assert abs(np.mean([d.llm == "m" for d in got]) - 0.8) < 0.08
    greedy = bundle.route_texts(texts[:3])
    assert greedy[0].propensity is None and "propensity" not in greedy[0].to_dict()
    idx, scores, prop = bundle.route_arrays(bundle.encode(texts[:2]), 1, ["c", "g"], policy="greedy")
    assert idx.shape == (2, 1) and set(idx[:, 0]) <= {1, 2} and (prop == 1).all()
    with pytest.raises(DataError, match="k must be 1"):
        bundle.route_texts(texts[:2], k=2, policy="softmax:temperature=0.1")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_server_logs_decisions_and_outcomes(bundle_dir, tmp_path):
    port, log = _free_port(), tmp_path / "decisions.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "recroute", "serve", "--bundle", str(bundle_dir), "--port", str(port), "--quiet",
         "--policy", "epsilon_greedy:epsilon=0.5", "--log", str(log)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "RECROUTE_CACHE": str(tmp_path / "cache")},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the server exited: {proc.stdout.read().decode()}")
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        body = httpx.post(url + "/route", json={"prompts": ["python loop bug", "prime algebra"]}, timeout=30).json()
        first, second = body["decisions"]
        for d in (first, second):  # epsilon = 0.5 over 3 LLMs: 0.5 + 0.5/3 for the greedy choice, 0.5/3 otherwise
            assert min(abs(d["propensity"] - 2 / 3), abs(d["propensity"] - 1 / 6)) < 1e-9
        greedy = httpx.post(url + "/route", json={"prompt": "python", "policy": "greedy", "candidates": ["m", "g"]},
                            timeout=30).json()["decisions"][0]
        assert greedy["propensity"] == 1.0 and greedy["llm"] in ("m", "g")
        assert httpx.post(url + "/outcome", json={"decision_id": first["decision_id"], "outcome": 0.25},
                          timeout=30).status_code == 200
        missing = httpx.post(url + "/outcome", json={"decision_id": "nope", "outcome": 1.0}, timeout=30)
        assert missing.status_code == 404 and "nope" in missing.text
        bad = httpx.post(url + "/route", json={"prompt": "x", "policy": "boltzmann"}, timeout=30)
        assert bad.status_code == 422 and "unknown policy" in bad.text
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    written = read_decision_log(log)
    assert len(written) == 3
    assert written.decision_id.tolist()[:2] == [first["decision_id"], second["decision_id"]]
    assert written.outcome.iloc[0] == 0.25 and np.isnan(written.outcome.iloc[1])
    assert written.prompt_text.tolist()[:2] == ["python loop bug", "prime algebra"]
    assert written.candidates.iloc[2] == ["m", "g"] and written.policy.iloc[2] == "greedy"
