"""The loop through real processes on 127.0.0.1: the replay upstreams (``python -m recroute.loop.replay``),
``recroute gateway`` and ``recroute loop run``, with a slice of llmrouter_nim replayed as traffic: refits
promoted by hot reload, a new LLM onboarded mid-stream, either process killed (SIGKILL) and restarted
mid-stream without losing or double-counting an outcome."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))  # the HTTP tests' server helpers
from servers import await_health, free_port, stop  # noqa: E402

from recroute.data.catalog import load_dataset  # noqa: E402
from recroute.loop.journal import Journal  # noqa: E402
from recroute.loop.promote import PromotionError, gateway_reload  # noqa: E402
from recroute.loop.stream import send_traffic, write_anchor, write_upstreams  # noqa: E402
from recroute.serve.bundle import bundle_checksum  # noqa: E402

ADMIN_KEY = "admin-key-for-the-loop-test"
NEW_LLM = "llama-3.1-8b-instruct"


def start(args: list[str], output: Path, url: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """A ``python ARGS`` process writing to ``output``; waits for ``url``/healthz when given."""
    proc = subprocess.Popen([sys.executable, *args], stdout=open(output, "ab"), stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    if url is not None:
        await_health(proc, url, time.monotonic() + 90, lambda: f"{args[:3]} ({output.read_text()[-2000:]})")
    return proc


def wait_for(predicate, what: str, timeout_s: float = 90.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.3)
    pytest.fail(f"timed out waiting for {what}")


def answers(url: str) -> bool:
    try:
        httpx.get(url + "/healthz", timeout=2)
        return True
    except httpx.TransportError:
        return False


def refits(journal: Journal) -> list[dict]:
    return [e for e in journal.events() if e["event"] == "refit"]


@pytest.fixture(scope="module")
def stream_setup(tmp_path_factory, shared_data):
    """(data slice folder, anchor folder, bundle folder, stream rows) of 460 llmrouter_nim prompts."""
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    tmp = tmp_path_factory.mktemp("loop")
    full = load_dataset(shared_data / "llmrouter_nim")
    rows = np.sort(np.random.default_rng(0).permutation(full.n_prompts)[:460])
    data = full.subset(prompts=rows)
    data_dir = Path(data.save(tmp / "slice"))
    anchor_rows = np.arange(60)
    known = [str(n) for n in data.llm_names if str(n) != NEW_LLM]  # NEW_LLM joins mid-stream
    anchor_dir = write_anchor(data, anchor_rows, tmp / "anchor", llms=known)
    encoder = get_encoder("tfidf", dim=16)
    X = encoder.fit_encode([str(t) for t in data.texts[:60]])
    router = KNNRouter(k=5).fit(data.subset(llms=known).dense(np.nan)[anchor_rows], X)
    router.llm_names_ = np.asarray(known, dtype=object)
    bundle = RoutingBundle.build(router, encoder).save(tmp / "bundle")
    return data_dir, anchor_dir, bundle, np.arange(60, 460)


def test_the_loop_refits_gates_and_survives_restarts(stream_setup, tmp_path, monkeypatch):
    data_dir, anchor_dir, bundle, stream = stream_setup
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "cache"))
    data = load_dataset(data_dir)
    replay_port, gw_port = free_port(), free_port()
    replay_url, gw_url = f"http://127.0.0.1:{replay_port}", f"http://127.0.0.1:{gw_port}"
    upstreams = write_upstreams(tmp_path / "upstreams.toml", [str(n) for n in data.llm_names], replay_url)
    known = [str(n) for n in data.llm_names if str(n) != NEW_LLM]
    loop_upstreams = write_upstreams(tmp_path / "loop-upstreams.toml", known, replay_url)
    log, journal_path = tmp_path / "decisions.jsonl", tmp_path / "loop.jsonl"
    env = {"LOOP_ADMIN_KEY": ADMIN_KEY, "RECROUTE_CACHE": str(tmp_path / "cache")}
    gateway_args = ["-m", "recroute", "gateway", "--bundle", str(bundle), "--upstreams", str(upstreams),
                    "--port", str(gw_port), "--log", str(log), "--log-prompt-text", "--policy",
                    "epsilon_greedy:epsilon=0.3,top_k=3", "--seed", "0", "--workers", "1",
                    "--admin-key-env", "LOOP_ADMIN_KEY", "--spare-upstreams", "--quiet"]
    loop_args = ["-m", "recroute", "loop", "run", "--log", str(log), "--bundle", str(bundle), "--journal",
                 str(journal_path), "--gateway", gw_url, "--admin-key-env", "LOOP_ADMIN_KEY", "--every-outcomes", "100",
                 "--min-outcomes", "100", "--holdout", "0.3", "--reward-router", "knn", "--anchor", str(anchor_dir),
                 "--min-support", "0", "--margin", "-1000", "--explore-budget", "0.3", "--poll", "0.3",
                 "--onboard-margin", "-1000", "--onboard-min-support", "0",
                 "--upstreams", str(loop_upstreams), "--quiet"]
    procs = {}
    try:
        procs["replay"] = start(["-m", "recroute.loop.replay", "--dataset", str(data_dir), "--port", str(replay_port)],
                                tmp_path / "replay.out", replay_url)
        procs["gateway"] = start(gateway_args, tmp_path / "gateway.out", gw_url, env)
        procs["loop"] = start(loop_args, tmp_path / "loop.out", env=env)
        journal = Journal(journal_path)

        sent = send_traffic(gw_url, data, stream[:150])
        assert all(r["status"] == 200 and r.get("feedback_status") == 200 for r in sent), [r for r in sent if r["status"] != 200 or r.get("feedback_status") != 200][:3]
        first = wait_for(lambda: refits(journal), "the first refit")[0]
        assert first["n_outcomes"] >= 100

        # the loop killed mid-stream and restarted: it resumes from its journal, nothing refitted twice;
        # meanwhile a new LLM appears in its upstreams file: probed, placed, promoted, routed to
        stop(procs["loop"], signal.SIGKILL)
        sent += send_traffic(gw_url, data, stream[150:260])
        write_upstreams(loop_upstreams, [*known, NEW_LLM], replay_url)
        procs["loop"] = start(loop_args, tmp_path / "loop.out", env=env)
        wait_for(lambda: any(e["n_outcomes"] >= 250 for e in refits(journal)), "a refit after the loop's restart")
        onboard = next(e for e in journal.events() if e["event"] == "onboard")
        assert onboard["llm"] == NEW_LLM and onboard["placed"] and onboard["probes"] == 60  # the whole anchor
        assert onboard["gate"]["n"] == 60 and onboard["gate"]["lower"] <= onboard["gate"]["delta"]
        seen = len(sent)

        # the gateway killed with outcomes still to come: they are accepted after its restart
        pending = send_traffic(gw_url, data, stream[260:300], feedback=False)
        stop(procs["gateway"], signal.SIGKILL)
        wait_for(lambda: not answers(gw_url), "the killed gateway's worker to notice and stop")
        procs["gateway"] = start(gateway_args, tmp_path / "gateway.out", gw_url, env)
        for rec in pending:
            r = httpx.post(gw_url + "/v1/feedback", json={"decision_id": rec["decision_id"], "outcome": rec["outcome"]})
            assert r.status_code == 200, r.text
        # the restarted gateway came up on its start-up bundle: the loop puts its live bundle back
        live = bundle_checksum(Path(journal.state().live_bundle))
        wait_for(lambda: httpx.get(gw_url + "/healthz").json()["bundle_checksum"] == live, "the live bundle served")
        sent += pending + send_traffic(gw_url, data, stream[300:400])
        wait_for(lambda: any(e["n_outcomes"] >= 350 for e in refits(journal)), "a refit after the gateway's restart")
        # the reload client: a bundle that fails verification, or a wrong key, is a refusal with its reason
        for key, path, reason in ((ADMIN_KEY, tmp_path / "no-bundle", "(422)"), ("wrong", bundle, "(401)")):
            with pytest.raises(PromotionError, match=re.escape(reason)) as refusal:
                gateway_reload(gw_url, key)(str(path))
            assert refusal.value.refused
        assert httpx.get(gw_url + "/healthz").json()["bundle_checksum"] == bundle_checksum(Path(journal.state().live_bundle))
    finally:
        for proc in procs.values():
            stop(proc)

    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    decisions = [x for x in lines if x["event"] == "decision"]
    outcomes = Counter(x["decision_id"] for x in lines if x["event"] == "outcome")
    assert len(decisions) == len(sent) == 400  # every request logged once
    assert NEW_LLM not in decisions[0]["candidates"] and NEW_LLM in decisions[-1]["candidates"]
    assert all(NEW_LLM in d["candidates"] for d in decisions[seen:])  # in the pool since its promotion
    assert set(outcomes) == {r["decision_id"] for r in sent} and set(outcomes.values()) == {1}  # each outcome once
    events = Journal(journal_path).events()
    assert [e["event"] for e in events].count("start") == 1  # the restarted loop resumed its journal
    counts = [e["n_outcomes"] for e in events if e["event"] == "refit"]
    assert counts == sorted(set(counts)) and counts[-1] <= 400  # each refit on more outcomes than the last
    estimates = [e for e in events if e["event"] == "estimate"]
    assert len(estimates) == len(counts) and all(e["lower"] <= e["delta"] <= e["upper"] for e in estimates)
    assert all(e["share"] is None or 0 <= e["share"] <= 1 for e in events if e["event"] == "explore")
    # margin -1000, far below any lower bound (worst-case bounds where a choice was never explorable can
    # reach below -1): every refit is promoted through the gateway's hot reload, and served
    promote = [e for e in events if e["event"] == "decision" and e["action"] == "promote"]
    promoted = [e for e in events if e["event"] == "promoted"]
    assert len(promote) == len(counts) and [e["kind"] for e in promoted].count("refit") == len(promote)
    assert {"restore", "onboard"} <= {e["kind"] for e in promoted} and not [e for e in events if e["event"] == "refused"]
    assert all(e["response"]["status"] == "reloaded" for e in promoted)
    served = {x["bundle_checksum"] for x in decisions}
    assert {e["response"]["checksum"] for e in promoted if e["kind"] == "refit"} & served  # traffic on a promoted one
