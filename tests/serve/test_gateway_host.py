"""The state the workers of a gateway host share, in-process: the shared selection window, circuit
breakers and 429 blocks (with explicit clocks), the reload board, decision ids, metrics added over
workers, torn decision-log lines, and off-policy evaluation of logs in which the breaker skipped an LLM."""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from recroute.feedback.logs import DecisionLogWriter, read_decision_log  # noqa: E402
from recroute.serve.gateway import (  # noqa: E402
    Decider, RouteOptions, is_decision_id, new_decision_id, retry_after_s,
)
from recroute.serve.gateway_metrics import GatewayMetrics, SelectionWindow  # noqa: E402
from recroute.serve.shared import BreakerSettings, Breakers, ReloadBoard, SharedWindow  # noqa: E402
from recroute.serve.upstreams import Upstream  # noqa: E402

LLMS = ["math-llm", "code-llm", "history-llm"]


# ---------------------------------------------------------------------- the selection window
def test_shared_window_slides_like_the_private_one():
    shared, private = SharedWindow(["a", "b", "c"], 3), SelectionWindow(3)
    for llm in ["a", "a", "b", "b", "c"]:
        shared.add(llm)
        private.add(llm)
        assert dict(shared.counts) == dict(private.counts) and len(shared) == len(private)
        assert shared.entropy() == pytest.approx(private.entropy())
    assert dict(shared.counts) == {"b": 2, "c": 1} and shared.full  # the window holds b, b, c
    assert shared.entropy() == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    assert shared.flip_collapsed(True) and not shared.flip_collapsed(True) and shared.flip_collapsed(False)


def test_metrics_of_several_workers_add_up():
    one, two = GatewayMetrics(LLMS), GatewayMetrics(LLMS)
    one.request("math-llm", 200, 0.02, 0.001)
    two.request("math-llm", 200, 0.5, 0.004)
    two.upstream_error("code-llm", "http_500", fell_back=True)
    total = one.total([json.loads(json.dumps(two.state()))])  # the state travels as JSON
    text = total.render()
    assert 'recroute_gateway_requests_total{llm="math-llm",code="200"} 2' in text
    assert 'recroute_gateway_fallbacks_total{llm="code-llm"} 1' in text
    assert 'recroute_gateway_request_duration_seconds_bucket{llm="math-llm",le="0.025"} 1' in text
    assert 'recroute_gateway_request_duration_seconds_bucket{llm="math-llm",le="0.5"} 2' in text
    assert 'recroute_gateway_overhead_seconds_bucket{le="0.001"} 1' in text
    assert 'recroute_gateway_overhead_seconds_bucket{le="0.005"} 2' in text
    assert "recroute_gateway_overhead_seconds_count 2" in text
    assert one.requests[("math-llm", "200")] == 1  # the worker's own counts are untouched


# ---------------------------------------------------------------------- circuit breakers
def test_breaker_opens_after_n_failures_and_one_half_open_probe_decides():
    b = Breakers(LLMS, BreakerSettings(failures=2, cooldown_s=10))
    b.failure(0, now=100.0)
    assert b.available(100.0).tolist() == [True, True, True]  # one failure: still closed
    b.success(0)
    b.failure(0, now=101.0)
    assert b.available(101.0)[0]  # the success reset the count
    b.failure(0, now=102.0)
    assert b.available(102.0).tolist() == [False, True, True] and not b.acquire(0, now=105.0)
    assert b.describe(105.0)["math-llm"] == {"state": "open", "consecutive_failures": 2, "rate_limited": False,
                                             "in_routing": False, "out_for_s": 7.0}
    assert b.available(112.0)[0]  # cooldown over: due a probe
    assert b.acquire(0, now=112.0) and not b.acquire(0, now=112.5)  # one probe; the others are refused
    assert not b.available(113.0)[0]
    b.failure(0, now=113.0)  # the probe failed: open for another cooldown
    assert not b.available(122.0)[0] and b.available(123.0)[0]
    assert b.acquire(0, now=123.0)
    b.success(0)  # the probe succeeded
    assert b.describe(124.0)["math-llm"]["state"] == "closed" and b.acquire(0, now=124.0)


def test_a_probe_that_never_reports_is_replaced_after_a_cooldown():
    b = Breakers(LLMS, BreakerSettings(failures=1, cooldown_s=5))
    b.failure(1, now=0.0)
    assert b.acquire(1, now=5.0)  # the probe's worker dies without reporting
    assert not b.acquire(1, now=9.0) and b.acquire(1, now=10.0)


def test_rate_limit_blocks_until_retry_after_capped_and_no_breaker_with_zero_failures():
    b = Breakers(LLMS, BreakerSettings(failures=0, cooldown_s=5, max_retry_after_s=60))
    for _ in range(100):
        b.failure(2, now=0.0)
    assert b.available(0.0).all()  # failures 0: no breaker
    b.rate_limited(2, 3.0, now=10.0)
    assert not b.available(12.9)[2] and not b.acquire(2, now=12.9) and b.available(13.0)[2]
    b.rate_limited(2, 10_000, now=20.0)  # capped at max_retry_after_s
    assert not b.available(79.0)[2] and b.available(80.0)[2]
    assert b.wait_s(np.array([False, False, True]), now=50.0) == pytest.approx(30.0)
    b.rate_limited(2, None, now=100.0)
    assert b.available(100.0)[2]
    with pytest.raises(Exception, match="breaker failures must be an integer >= 0"):
        BreakerSettings(failures=-1)
    with pytest.raises(Exception, match="cooldown_s must be a positive"):
        BreakerSettings(cooldown_s=0)


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_s("3") == 3.0 and retry_after_s("0.5") == 0.5 and retry_after_s("-2") == 0.0
    assert retry_after_s(None) is None and retry_after_s("soon") is None and retry_after_s("nan") is None
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 28 <= retry_after_s(when) <= 30


# ---------------------------------------------------------------------- reload board and decision ids
def test_reload_board_publishes_generations_and_lists_live_workers():
    board = ReloadBoard("/b/one", "c1", n_slots=3)
    assert board.desired() == (1, "/b/one", "c1") and board.workers() == []
    board.report(0, "c1")
    board.report(2, "c1", pid=2 ** 22 + 12345)  # no such process: not listed
    assert board.workers() == [{"slot": 0, "pid": __import__("os").getpid(), "checksum": "c1", "shadow_checksum": None}]
    assert board.publish("/b/two", None) == 2 and board.desired() == (2, "/b/two", None)
    # the shadow: its own generation, and each worker's shadow checksum
    assert board.desired_shadow() == (0, None)
    shadow = {"bundle": "/s/one", "checksum": "s1", "epsilon": 0.1, "tau": 0.0}
    assert board.publish_shadow(shadow) == 1 and board.desired_shadow() == (1, shadow)
    board.report_shadow(0, "s1")
    assert board.workers()[0]["shadow_checksum"] == "s1" and board.desired()[0] == 2
    assert board.publish_shadow(None) == 2 and board.desired_shadow() == (2, None)


def test_decision_ids_are_recognised_by_their_host_only():
    secret = b"s" * 16
    ids = {new_decision_id(secret) for _ in range(100)}
    assert len(ids) == 100 and all(len(i) == 32 and is_decision_id(secret, i) for i in ids)
    one = next(iter(ids))
    assert not is_decision_id(b"t" * 16, one)
    assert not is_decision_id(secret, one[:-1] + ("0" if one[-1] != "0" else "1"))
    assert not is_decision_id(secret, "f" * 32) and not is_decision_id(secret, 7) and not is_decision_id(secret, "ab")


# ---------------------------------------------------------------------- torn log lines
def _row(i: int) -> dict:
    return {"prompt_id": f"q{i}", "candidates": ["a", "b"], "chosen": "a", "propensity": 1.0}


def test_a_torn_last_line_is_skipped_with_a_warning_and_cut_before_the_next_append(tmp_path):
    path = tmp_path / "log.jsonl"
    writer = DecisionLogWriter(path)
    writer.append([_row(0), _row(1)])
    with open(path, "a") as fh:
        fh.write('{"event": "decision", "decision_id": "x", "prom')  # a writer killed mid-line
    with pytest.warns(UserWarning, match="line 3: a torn last line"):
        log = read_decision_log(path)
    assert list(log.prompt_id) == ["q0", "q1"]
    with pytest.warns(UserWarning, match="removed a torn last line"):
        writer.append([_row(2)])
    assert list(read_decision_log(path).prompt_id) == ["q0", "q1", "q2"]
    path.write_text(path.read_text() + "{not json\n" + json.dumps({**_row(3), "decision_id": "d3",
                                                                    "timestamp": 1.0}) + "\n")
    with pytest.raises(Exception, match="line 4: not valid JSON"):  # a bad line inside the log stays an error
        read_decision_log(path)


# ---------------------------------------------------------------------- off-policy evaluation
def test_ope_on_logs_where_the_breaker_skipped_an_llm_stays_unbiased(tfidf_bundle_dir, topics, tmp_path):
    """Half the decisions are made while math-llm's breaker is open. The log's candidates leave it out
    and the propensity is the policy's over what is left, so IPS of a target policy (uniform over each
    decision's candidates) matches its true value; propensities computed over every configured LLM
    would not."""
    from recroute.feedback.bandit import bandit_from_log
    from recroute.feedback.ope import decision_terms, estimate
    from recroute.serve.bundle import RoutingBundle

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    ups = {n: Upstream(n, "http://127.0.0.1:9/v1", n) for n in LLMS}
    breakers = Breakers(LLMS, BreakerSettings(failures=1, cooldown_s=1e6))
    epsilon = 0.5
    decider = Decider(bundle, ups, "epsilon_greedy:epsilon=0.5", seed=0, breakers=breakers)
    Y = topics.dense()
    ids = list(topics.prompt_ids)
    writer = DecisionLogWriter(tmp_path / "log.jsonl")

    async def run() -> list[dict]:
        rows = []
        await decider.start()
        for i in range(800):
            p = i % topics.n_prompts
            if i % 2:
                breakers.failure(0)  # math-llm out of routing for this decision
            else:
                breakers.success(0)
            d = await decider.decide(topics.texts[p], RouteOptions())
            rows.append({"prompt_id": ids[p], "candidates": d.candidates, "chosen": d.chosen,
                         "propensity": d.propensity, "outcome": float(Y[p, LLMS.index(d.chosen)])})
        await decider.close()
        return rows

    rows = asyncio.run(run())
    writer.append(rows)
    assert {len(r["candidates"]) for r in rows[1::2]} == {2} and all("math-llm" not in r["candidates"]
                                                                      for r in rows[1::2])
    for r in rows:  # epsilon-greedy over the logged candidates
        m = len(r["candidates"])
        assert r["propensity"] in (pytest.approx(1 - epsilon + epsilon / m), pytest.approx(epsilon / m))
    bandit, _ = bandit_from_log(read_decision_log(tmp_path / "log.jsonl"), LLMS, ids)
    target = bandit.allowed / bandit.allowed.sum(axis=1, keepdims=True)
    truth = float((target * Y[bandit.rows][:, :3]).sum(axis=1).mean())
    got = estimate(decision_terms(bandit, target), "ips")
    assert abs(float(got["value"]) - truth) < 3 * float(got["se"])
    terms = decision_terms(bandit, target)
    assert abs(terms.w.mean() - 1) < 3 * terms.w.std(ddof=1) / np.sqrt(len(terms.w))  # E[w] = 1: weights are right
    wrong = bandit.propensity.copy()  # as if every configured LLM had been a candidate
    greedy = bandit.propensity > 0.5
    wrong[greedy], wrong[~greedy] = 1 - epsilon + epsilon / 3, epsilon / 3
    w_wrong = target[np.arange(len(wrong)), bandit.chosen] / wrong
    assert abs(w_wrong.mean() - 1) > 3 * w_wrong.std(ddof=1) / np.sqrt(len(w_wrong))  # E[w] = 1.1 here: biased


def _other_worker(host) -> None:
    """What another worker process does: route three times to code-llm, fail math-llm twice."""
    for _ in range(3):
        host.window.add("code-llm")
    host.breakers.failure(0)
    host.breakers.failure(0)
    host.board.report(1, "c2")


def test_host_state_is_shared_with_a_spawned_worker_process():
    import multiprocessing as mp

    from recroute.serve.shared import HostState

    host = HostState(LLMS, window=4, breaker=BreakerSettings(failures=2, cooldown_s=60), bundle_path="/b",
                     checksum="c1", n_slots=2)
    host.window.add("math-llm")
    child = mp.get_context("spawn").Process(target=_other_worker, args=(host,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert dict(host.window.counts) == {"math-llm": 1, "code-llm": 3} and host.window.full  # one window for both
    assert host.breakers.describe()["math-llm"]["state"] == "open"  # the other worker's failures opened it here
    assert not host.breakers.available()[0]


def test_hot_reload_in_one_python_process(tfidf_bundle_dir, topics, tmp_path):
    """create_gateway(..., GatewayConfig(admin_key=...)) reloads in-process too (no supervisor)."""
    from fastapi.testclient import TestClient

    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle, bundle_checksum
    from recroute.serve.gateway import GatewayConfig, create_gateway

    encoder = get_encoder("tfidf", dim=16)
    other = RoutingBundle.build(KNNRouter(k=1).fit(topics, encoder.fit_encode(topics.texts)), encoder).save(
        tmp_path / "other")
    ups = {n: Upstream(n, "http://127.0.0.1:9/v1", n) for n in LLMS}
    app = create_gateway(RoutingBundle.load(tfidf_bundle_dir), ups, GatewayConfig(admin_key="k"))
    auth = {"authorization": "Bearer k"}
    with TestClient(app) as client:
        assert client.get("/healthz").json()["bundle_checksum"] == bundle_checksum(tfidf_bundle_dir)
        got = client.post("/admin/reload", json={"bundle": str(other)}, headers=auth)
        assert got.status_code == 200
        assert got.json() == {"status": "reloaded", "bundle": str(other), "checksum": bundle_checksum(other),
                              "workers": 1, "workers_swapped": 1}
        assert client.get("/healthz").json()["bundle_checksum"] == bundle_checksum(other)
        assert client.post("/admin/reload", headers=auth).json()["bundle"] == str(other)  # the same path again
        refused = client.post("/admin/reload", json={"bundle": str(tmp_path / "nope")}, headers=auth)
        assert refused.status_code == 422 and "no routing bundle there" in refused.json()["error"]
        assert client.get("/healthz").json()["bundle_checksum"] == bundle_checksum(other)
