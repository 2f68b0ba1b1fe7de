"""`recroute fit` keeps prices, `recroute route --cost-weight/--max-cost`, `recroute tradeoff`, and the HTTP
service's cost_weight / max_cost, end to end on a small priced text dataset (TF-IDF, no model download)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.data.dataset import RoutingDataset
from recroute.serve.bundle import RoutingBundle

runner = CliRunner()
WORDS = {"math": "integral derivative equation algebra matrix prime theorem proof".split(),
         "code": "python function compile bug loop variable class recursion".split()}
LLMS = ["math-small", "code-small", "big"]  # big is right on everything but costs 10x
PRICES = {"math-small": 1.0, "code-small": 1.0, "big": 10.0}


@pytest.fixture(scope="module")
def priced_folder(tmp_path_factory):
    rng = np.random.default_rng(0)
    n = 80
    topic = np.arange(n) % 2
    texts = [" ".join(rng.choice(WORDS["math" if t == 0 else "code"], size=6)) + f" q{i}" for i, t in enumerate(topic)]
    Y = np.zeros((n, 3), dtype=np.float32)
    Y[np.arange(n), topic] = (rng.random(n) < 0.8)
    Y[:, 2] = 1.0
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(n)], "text": texts, "task": topic.astype(str),
                            "split": np.where(np.arange(n) < 60, "train", "test")})
    llms = pd.DataFrame({"llm": LLMS, "cost_per_prompt": [PRICES[n] for n in LLMS]})
    data = RoutingDataset.from_wide(Y, prompts.prompt_id.tolist(), LLMS, prompts=prompts, llms=llms, name="priced")
    return data.save(tmp_path_factory.mktemp("data") / "priced")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "embedding-cache"))


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory, priced_folder):
    out = tmp_path_factory.mktemp("fit") / "bundle"
    result = runner.invoke(app, ["fit", "-d", str(priced_folder), "-r", "knn:k=5", "-e", "tfidf", "-o", str(out), "-q"])
    assert result.exit_code == 0, result.output
    return out


def test_fit_keeps_prices_and_route_uses_them(bundle_dir, tmp_path):
    assert RoutingBundle.load(bundle_dir).prices.per_prompt.tolist() == [1.0, 1.0, 10.0]
    prompts = tmp_path / "p.txt"
    prompts.write_text("integral algebra theorem proof\npython loop bug recursion\n")
    plain = runner.invoke(app, ["route", "-b", str(bundle_dir), "-i", str(prompts), "-q"])
    assert [json.loads(x)["llm"] for x in plain.stdout.splitlines()] == ["big", "big"]
    cheap = runner.invoke(app, ["route", "-b", str(bundle_dir), "-i", str(prompts), "-q", "--cost-weight", "0.1"])
    assert [json.loads(x)["llm"] for x in cheap.stdout.splitlines()] == ["math-small", "code-small"]
    capped = runner.invoke(app, ["route", "-b", str(bundle_dir), "-i", str(prompts), "-q", "--max-cost", "5"])
    assert [json.loads(x)["llm"] for x in capped.stdout.splitlines()] == ["math-small", "code-small"]
    none = runner.invoke(app, ["route", "-b", str(bundle_dir), "-i", str(prompts), "-q", "--max-cost", "0.5"])
    assert none.exit_code == 2 and "the cheapest, math-small, costs 1" in none.output


def test_tradeoff_command_writes_rows_and_figure(priced_folder, tmp_path):
    out, fig = tmp_path / "t.json", tmp_path / "t.png"
    result = runner.invoke(app, ["tradeoff", "-d", str(priced_folder), "-r", "knn:k=5,best_single", "-e", "tfidf",
                                 "--json", str(out), "--plot", str(fig), "--target-cost", "5", "--at-cost", "2"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    kinds = {r["kind"] for r in rows}
    assert kinds == {"single", "zero_router", "oracle", "router", "summary"}
    summary = {r["router"]: r for r in rows if r["kind"] == "summary"}
    assert summary["best_single"]["aiq_ratio"] <= 1 + 1e-9  # one LLM per lambda: never above the zero router
    assert summary["knn:k=5"]["aiq"] > summary["best_single"]["aiq"]  # topic routing beats the single LLMs
    oracle = next(r for r in rows if r["kind"] == "oracle")
    assert oracle["quality"] == 1.0 and oracle["mean_cost"] < 10
    assert fig.stat().st_size > 1000
    bad = runner.invoke(app, ["tradeoff", "-d", str(priced_folder), "--pool", "big", "-e", "tfidf"])
    assert bad.exit_code == 2 and "at least 2 LLMs" in bad.output


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_http_route_with_cost_weight_and_max_cost(bundle_dir):
    httpx = pytest.importorskip("httpx")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recroute", "serve", "-b", str(bundle_dir), "--port", str(port), "-q"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode()
            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "no /healthz within 90 s"
            time.sleep(0.2)
        body = {"prompts": ["integral algebra theorem proof", "python loop bug recursion"]}
        plain = httpx.post(url + "/route", json=body).json()
        assert [d["llm"] for d in plain["decisions"]] == ["big", "big"]
        cheap = httpx.post(url + "/route", json={**body, "cost_weight": 0.1}).json()
        assert [d["llm"] for d in cheap["decisions"]] == ["math-small", "code-small"]
        capped = httpx.post(url + "/route", json={**body, "max_cost": 5.0}).json()
        assert [d["llm"] for d in capped["decisions"]] == ["math-small", "code-small"]
        refused = httpx.post(url + "/route", json={**body, "max_cost": 0.5})
        assert refused.status_code == 422 and "cheapest, math-small" in refused.json()["detail"]
        assert httpx.post(url + "/route", json={**body, "cost_weight": -1}).status_code == 422
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
