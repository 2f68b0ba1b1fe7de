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
from recroute.loop.shadow import first_epsilon  # noqa: E402
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


def start_stack(procs: dict, tmp_path: Path, data_dir, replay_port: int, replay_url: str, gateway_args: list[str],
                gw_url: str, loop_args: list[str], env: dict) -> None:
    """The replay upstreams, the gateway and the loop, started in that order into ``procs`` (so a failed start
    still stops what already runs)."""
    procs["replay"] = start(["-m", "recroute.loop.replay", "--dataset", str(data_dir), "--port", str(replay_port)],
                            tmp_path / "replay.out", replay_url)
    procs["gateway"] = start(gateway_args, tmp_path / "gateway.out", gw_url, env)
    procs["loop"] = start(loop_args, tmp_path / "loop.out", env=env)


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


def read_log(log: Path) -> tuple[list[dict], Counter]:
    """(the gateway log's decision records in order, outcome records per decision id)."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return ([x for x in lines if x["event"] == "decision"],
            Counter(x["decision_id"] for x in lines if x["event"] == "outcome"))


def shadow_run(stream_setup, tmp_path: Path, monkeypatch, tau: str) -> tuple:
    """The set-up of a shadow-exploration run (``--explore shadow --shadow-tau TAU``, forced passes with
    margin -1000): the stream, free ports, upstreams, paths, the gateway's and the loop's arguments, the
    journal; in the order the tests unpack them."""
    data_dir, anchor_dir, bundle, stream = stream_setup
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "cache"))
    data = load_dataset(data_dir)
    replay_port, gw_port = free_port(), free_port()
    replay_url, gw_url = f"http://127.0.0.1:{replay_port}", f"http://127.0.0.1:{gw_port}"
    known = [str(n) for n in data.llm_names if str(n) != NEW_LLM]
    upstreams = write_upstreams(tmp_path / "upstreams.toml", known, replay_url)
    log, journal_path = tmp_path / "decisions.jsonl", tmp_path / "loop.jsonl"
    env = {"LOOP_ADMIN_KEY": ADMIN_KEY, "RECROUTE_CACHE": str(tmp_path / "cache")}
    gateway_args = ["-m", "recroute", "gateway", "--bundle", str(bundle), "--upstreams", str(upstreams),
                    "--port", str(gw_port), "--log", str(log), "--log-prompt-text", "--seed", "0", "--workers", "1",
                    "--admin-key-env", "LOOP_ADMIN_KEY", "--quiet"]
    loop_args = ["-m", "recroute", "loop", "run", "--log", str(log), "--bundle", str(bundle), "--journal",
                 str(journal_path), "--gateway", gw_url, "--admin-key-env", "LOOP_ADMIN_KEY", "--every-outcomes", "100",
                 "--min-outcomes", "100", "--holdout", "0.3", "--reward-router", "knn", "--anchor", str(anchor_dir),
                 "--margin", "-1000", "--explore", "shadow", "--explore-budget", "0.3", "--shadow-tau", tau,
                 "--poll", "0.3", "--quiet"]
    journal = Journal(journal_path)
    return (data_dir, bundle, stream, data, known, replay_port, replay_url, gw_url, log, journal_path, env,
            gateway_args, loop_args, journal)


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
        start_stack(procs, tmp_path, data_dir, replay_port, replay_url, gateway_args, gw_url, loop_args, env)
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

    decisions, outcomes = read_log(log)
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


def test_shadow_exploration_through_the_gateway_installs_gates_promotes_and_survives_restarts(
        stream_setup, tmp_path, monkeypatch):
    """``--explore shadow --shadow-tau 0``: each refit becomes the gateway's shadow, is gated on the decisions logged since
    (logging probabilities rebuilt from the log) and promoted by hot reload; the loop and the gateway are
    each killed mid-stream and the shadow comes back (reinstalled on the restarted gateway)."""
    (data_dir, bundle, stream, data, known, replay_port, replay_url, gw_url, log, journal_path, env, gateway_args,
     loop_args, journal) = \
        shadow_run(stream_setup, tmp_path, monkeypatch, "0")

    def shadows() -> list[dict]:
        return [e for e in journal.events() if e["event"] == "shadow"]

    def served_shadow() -> str | None:
        return httpx.get(gw_url + "/healthz").json()["shadow_checksum"]

    procs = {}
    try:
        start_stack(procs, tmp_path, data_dir, replay_port, replay_url, gateway_args, gw_url, loop_args, env)
        sent = send_traffic(gw_url, data, stream[:120])
        first = wait_for(shadows, "the first shadow installed")[0]
        assert served_shadow() == first["checksum"] == bundle_checksum(Path(first["bundle"]))
        assert 0 < first["epsilon"] <= 0.5 and first["tau"] == 0

        # the loop killed and restarted: the journal says which shadow is installed; the next step gates it
        stop(procs["loop"], signal.SIGKILL)
        sent += send_traffic(gw_url, data, stream[120:230])
        procs["loop"] = start(loop_args, tmp_path / "loop.out", env=env)
        wait_for(lambda: len(shadows()) >= 2, "the shadow gated, promoted and a fresh one installed")
        promoted = [e for e in journal.events() if e["event"] == "promoted" and e["kind"] == "refit"]
        assert promoted and promoted[0]["bundle"] == first["bundle"]
        assert httpx.get(gw_url + "/healthz").json()["bundle_checksum"] == first["checksum"]  # the shadow is live

        # the gateway killed: it comes back on its start-up bundle and no shadow; the loop restores both
        stop(procs["gateway"], signal.SIGKILL)
        wait_for(lambda: not answers(gw_url), "the killed gateway to stop")
        procs["gateway"] = start(gateway_args, tmp_path / "gateway.out", gw_url, env)
        second = shadows()[-1]
        wait_for(lambda: served_shadow() == second["checksum"], "the shadow reinstalled on the restarted gateway")
        wait_for(lambda: httpx.get(gw_url + "/healthz").json()["bundle_checksum"] == first["checksum"], "live restored")
        sent += send_traffic(gw_url, data, stream[230:340])
        wait_for(lambda: any(e["n_outcomes"] >= 300 for e in refits(journal)), "a step after the gateway's restart")
    finally:
        for proc in procs.values():
            stop(proc)

    decisions, outcomes = read_log(log)
    assert len(decisions) == len(sent) == 340 and set(outcomes.values()) == {1}  # nothing lost, nothing twice
    with_shadow = [d for d in decisions if d.get("shadow_checksum")]
    assert len(with_shadow) > 100
    for d in with_shadow:  # each propensity is the mixture's: 1 where they agree, else ε or 1 - ε
        eps = d["shadow_epsilon"]
        want = 1.0 if d["live_choice"] == d["shadow_choice"] else eps if d["chosen"] == d["shadow_choice"] else 1 - eps
        assert d["chosen"] in (d["live_choice"], d["shadow_choice"]) and d["propensity"] == pytest.approx(want)
    events = Journal(journal_path).events()
    gates = [e for e in events if e["event"] == "estimate"]
    assert gates and all(e["shadow"] and e["look"] >= 1 and e["expected_support"] > 0 for e in gates)
    explored = [e for e in events if e["event"] == "explore"]  # the served off-greedy share of each window
    assert len(explored) == len(gates) and all(0 <= e["share"] < 0.5 and e["budget"] == 0.3 for e in explored)
    assert {e["kind"] for e in events if e["event"] == "shadow"} >= {"refit", "restore"}
    assert not [e for e in events if e["event"] in ("refused", "shadow_refused")]
    fresh = [e for e in events if e["event"] == "shadowing" and e["kind"] == "refit"]
    assert fresh and all(set(e["disagreement"]) == {"n_recent", "d_trained", "d_heldout"} for e in fresh)
    for e in fresh:  # the first ε from the estimates made before it served (shadow.first_epsilon, budget 0.3)
        assert e["epsilon"] == pytest.approx(first_epsilon(e["disagreement"], 0.3))
    decided = [e for e in events if e["event"] == "decision"]
    assert decided and all(e["kind"] == "shadow" for e in decided) and decided[0]["action"] == "promote"
    counts = [e["n_outcomes"] for e in events if e["event"] == "refit"]
    assert counts == sorted(set(counts))  # no step twice on the same outcomes


def test_a_conservative_shadow_is_promoted_as_the_policy_the_gate_tested(stream_setup, tmp_path, monkeypatch):
    """``--explore shadow --shadow-tau 0.2`` with requests restricted to varying candidates: the gateway serves
    the conservative shadow (its logged choices are ConservativeRouter(refit, live, 0.2)'s among each request's
    candidates), the gate is given that router (its disagreement share is the logged one); the forced pass
    (margin -1000) passes it and then the plain refit (the fixed sequence's second stage, journalled as
    ``"stage": "plain"``), so the shadow's own bundle is promoted (live stays one level deep), and the
    gateway then routes as it does; a fresh refit becomes the next shadow against it."""
    from recroute.routers.conservative import ConservativeRouter
    from recroute.serve.bundle import RoutingBundle

    (data_dir, bundle, stream, data, known, replay_port, replay_url, gw_url, log, journal_path, env, gateway_args,
     loop_args, journal) = \
        shadow_run(stream_setup, tmp_path, monkeypatch, "0.2")

    def candidates(row: int) -> list[str]:  # 5 of the 8 LLMs per request, fixed by the row
        picked = np.random.default_rng(int(row)).choice(len(known), size=5, replace=False)
        return [known[j] for j in np.sort(picked)]

    def events(kind: str) -> list[dict]:
        return [e for e in journal.events() if e["event"] == kind]

    procs = {}
    try:
        start_stack(procs, tmp_path, data_dir, replay_port, replay_url, gateway_args, gw_url, loop_args, env)
        sent = send_traffic(gw_url, data, stream[:120], candidates=candidates)
        first = wait_for(lambda: events("shadow"), "the first shadow installed")[0]
        assert first["tau"] == 0.2
        sent += send_traffic(gw_url, data, stream[120:230], candidates=candidates)
        promoted = wait_for(lambda: [e for e in events("promoted") if e["kind"] == "refit"], "the promotion")[0]
        wait_for(lambda: len(events("shadow")) >= 2, "the next shadow installed")
        assert httpx.get(gw_url + "/healthz").json()["bundle_checksum"] == promoted["response"]["checksum"]
        sent += send_traffic(gw_url, data, stream[230:340], candidates=candidates)
    finally:
        for proc in procs.values():
            stop(proc)

    assert all(r["status"] == 200 for r in sent)
    start_b, shadow_b = RoutingBundle.load(bundle), RoutingBundle.load(first["bundle"])
    live_b = RoutingBundle.load(promoted["bundle"])
    assert promoted["bundle"] == first["bundle"] and live_b.checksum == promoted["response"]["checksum"]
    passed = next(e for e in events("decision") if e["action"] == "promote")
    assert passed["bundle"] == first["bundle"] and passed["stage"] == "plain" and "promote_bundle" not in passed
    router = live_b.router
    assert not isinstance(router, ConservativeRouter)  # the plain refit: depth 1
    X_all = start_b.encode([str(t) for t in data.texts])
    np.testing.assert_array_equal(router.score(X_all), shadow_b.router.score(X_all))  # the gated shadow's refit
    second = events("shadow")[1]
    assert second["tau"] == 0.2 and second["bundle"] not in (first["bundle"], promoted["bundle"])

    decisions, _ = read_log(log)
    assert len(decisions) == 340
    names = start_b.llm_names

    def choices(rtr, ds) -> list[str]:
        """``rtr``'s greedy choice among each logged decision's candidates, on its logged prompt text."""
        X = start_b.encode([d["prompt_text"] for d in ds])
        allowed = np.array([[n in d["candidates"] for n in names] for d in ds])
        C = rtr.score_among(X, allowed)
        return [names[j] for j in np.where(allowed, C, -np.inf).argmax(axis=1)]

    under_first = [d for d in decisions if d.get("shadow_checksum") == first["checksum"]]
    conservative = ConservativeRouter(shadow_b.router, start_b.router, 0.2)
    assert len(under_first) > 80 and all(len(d["candidates"]) == 5 for d in under_first)
    assert [d["shadow_choice"] for d in under_first] == choices(conservative, under_first)  # the gateway's shadow
    assert [d["live_choice"] for d in under_first] == choices(start_b.router, under_first)
    plain = choices(shadow_b.router, under_first)
    assert sum(p != d["live_choice"] for p, d in zip(plain, under_first)) > sum(
        d["shadow_choice"] != d["live_choice"] for d in under_first)  # tau 0.2 leaves live more often
    # the gate was given the conservative router: its disagreement share is the logged conservative one
    gate, second_stage = [e for e in events("estimate") if e["shadow"] == first["checksum"]]
    assert gate["stage"] == "conservative" and second_stage["stage"] == "plain"
    assert (second_stage["n"], second_stage["since"], second_stage["level"]) == (gate["n"], gate["since"], gate["level"])
    window = under_first[: gate["n"]]
    assert len(window) == gate["n"]
    assert gate["disagree"] == pytest.approx(np.mean([d["shadow_choice"] != d["live_choice"] for d in window]))
    assert second_stage["disagree"] > gate["disagree"]  # the plain refit leaves live more often
    # after the promotion the gateway routes as the promoted plain refit among each request's candidates
    served = [d for d in decisions if d["bundle_checksum"] == live_b.checksum]
    assert len(served) >= 100
    greedy = [d["live_choice"] if d.get("shadow_checksum") else d["chosen"] for d in served]
    assert greedy == choices(router, served)
