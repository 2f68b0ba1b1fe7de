"""The gateway under production conditions, as real processes on loopback: two workers on one port,
hot reload (POST /admin/reload and SIGHUP), circuit breakers and 429s shared by the workers, the
overhead header, keys on /metrics and /healthz, and one worker killed with SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time

import pytest

httpx = pytest.importorskip("httpx", reason="the gateway needs httpx")
pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from test_gateway import CODE, HISTORY, MATH, metric, start_gateway, start_upstream, stop, user  # noqa: E402

from recroute.feedback.logs import read_decision_log  # noqa: E402
from recroute.serve.bundle import RoutingBundle, bundle_checksum  # noqa: E402

ADMIN_KEY = "admin-key-42"
METRICS_KEY = "metrics-key-7"
LLMS3 = ["math-llm", "code-llm", "history-llm"]
COOLDOWN_S = 1.5


@pytest.fixture(scope="module")
def bundles(tfidf_bundle_dir, topics, tmp_path_factory):
    """{"a": the fixture bundle, "b": another router over the same LLMs, "broken": b with a modified file}."""
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter

    folder = tmp_path_factory.mktemp("fleet-bundles")
    encoder = get_encoder("tfidf", dim=16)
    X = encoder.fit_encode(topics.texts)
    b = RoutingBundle.build(KNNRouter(k=1).fit(topics, X), encoder).save(folder / "b")
    broken = shutil.copytree(b, folder / "broken")
    with open(broken / "router" / "router.json", "a") as fh:
        fh.write(" ")
    return {"a": tfidf_bundle_dir, "b": b, "broken": broken}


@pytest.fixture(scope="module")
def upstream():
    proc, port = start_upstream(LLMS3)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def fleet(upstream, bundles, tmp_path_factory):
    """(base URL, log path, gateway process, its output file, the path it serves) with two workers."""
    folder = tmp_path_factory.mktemp("fleet")
    serving = shutil.copytree(bundles["a"], folder / "serving")  # SIGHUP reloads this path: replaced below
    (folder / "u.toml").write_text("".join(  # history-llm gives up on a first byte sooner than on a read
        f'[upstreams."{n}"]\nbase_url = "{upstream}/{n}/v1"\ntimeout_s = 5\n'
        + ('first_byte_timeout_s = 0.6\n' if n == "history-llm" else "") + "\n" for n in LLMS3))
    log = folder / "decisions.jsonl"
    args = ["--bundle", str(serving), "--upstreams", str(folder / "u.toml"), "--log", str(log), "--workers", "2",
            "--admin-key-env", "GW_ADMIN", "--metrics-key-env", "GW_METRICS", "--breaker-failures", "2",
            "--breaker-cooldown-s", str(COOLDOWN_S), "--max-tries", "3"]
    proc, url = start_gateway(args, {"GW_ADMIN": ADMIN_KEY, "GW_METRICS": METRICS_KEY}, folder / "out.txt")
    deadline = time.monotonic() + 90
    while len(details(url)["workers"]) < 2:  # both workers up
        assert time.monotonic() < deadline, "the second worker did not start"
        time.sleep(0.2)
    yield url, log, proc, folder / "out.txt", serving
    stop(proc)


@pytest.fixture
def faults(upstream):
    def set_mode(name: str, mode: str, **extra) -> None:
        assert httpx.post(upstream + "/_control", json={"name": name, "mode": mode, **extra}).status_code == 200

    yield set_mode
    for name in LLMS3:
        set_mode(name, "ok", delay_ms=0)


def details(url: str) -> dict:
    return httpx.get(url + "/healthz", headers={"authorization": f"Bearer {METRICS_KEY}"}, timeout=10).json()


def chat(url: str, text: str, model: str = "recroute", timeout: float = 10) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": model, "messages": user(text)}, timeout=timeout)


def reload(url: str, body: dict | None = None, key: str = ADMIN_KEY) -> httpx.Response:
    return httpx.post(url + "/admin/reload", content=b"" if body is None else json.dumps(body).encode(),
                      headers={"authorization": f"Bearer {key}"}, timeout=90)


def requests_to(upstream: str, name: str) -> int:
    """How many requests the fake upstream ``name`` received."""
    return httpx.get(upstream + "/_count", params={"name": name}).json()


def served_checksums(url: str, n: int = 12) -> set:
    """The checksums the workers report (each /healthz lists every worker's)."""
    return {w["checksum"] for w in details(url)["workers"]}


# ---------------------------------------------------------------------- hot reload
def test_reload_swaps_every_worker_and_the_log_names_the_bundle(fleet, bundles):
    url, log, *_ = fleet
    before = chat(url, MATH)
    old = bundle_checksum(bundles["a"])
    assert served_checksums(url) == {old} and httpx.get(url + "/healthz").json()["bundle_checksum"] == old
    got = reload(url, {"bundle": str(bundles["b"])})
    new = bundle_checksum(bundles["b"])
    assert got.status_code == 200, got.text
    doc = got.json()
    assert (doc["status"], doc["bundle"], doc["checksum"]) == ("reloaded", str(bundles["b"]), new)
    assert doc["workers"] == doc["workers_swapped"] == 2
    assert served_checksums(url) == {new}
    after = [chat(url, text) for text in (MATH, CODE, HISTORY, MATH)]
    assert all(r.status_code == 200 for r in after), [r.text for r in after]
    rows = read_decision_log(log).set_index("decision_id")
    assert rows.loc[before.headers["x-recroute-decision-id"]].bundle_checksum == old
    assert {rows.loc[r.headers["x-recroute-decision-id"]].bundle_checksum for r in after} == {new}
    again = reload(url)  # no body: the same path again
    assert again.status_code == 200 and again.json()["checksum"] == new and again.json()["bundle"] == str(bundles["b"])


def test_a_bundle_that_fails_verification_is_refused_and_the_old_one_keeps_serving(fleet, bundles):
    url, *_ = fleet
    serving = served_checksums(url)
    got = reload(url, {"bundle": str(bundles["broken"])})
    assert got.status_code == 422
    assert "router/router.json" in got.json()["error"] and "bundle" in got.json()["error"]
    missing = reload(url, {"bundle": str(bundles["broken"]) + "-nope"})
    assert missing.status_code == 422 and "no routing bundle there" in missing.json()["error"]
    assert reload(url, {"path": "x"}).status_code == 400
    assert served_checksums(url) == serving
    assert chat(url, CODE).status_code == 200


def test_reload_needs_the_admin_key(fleet, bundles):
    url, *_ = fleet
    for key in ("wrong", METRICS_KEY):
        got = reload(url, {"bundle": str(bundles["a"])}, key=key)
        assert got.status_code == 401 and "admin key" in got.json()["error"]
    assert httpx.post(url + "/admin/reload").status_code == 401


def test_requests_in_flight_finish_on_the_old_bundle(fleet, bundles, faults, upstream):
    url, log, *_ = fleet
    assert reload(url, {"bundle": str(bundles["a"])}).status_code == 200
    faults("math-llm", "ok", delay_ms=1500)
    sent = requests_to(upstream, "math-llm")
    slow = {}
    thread = threading.Thread(target=lambda: slow.setdefault("r", chat(url, MATH)))
    thread.start()
    deadline = time.monotonic() + 10
    while requests_to(upstream, "math-llm") == sent:  # decided: its upstream has it, and waits 1.5 s
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert reload(url, {"bundle": str(bundles["b"])}).status_code == 200
    thread.join(10)
    response = slow["r"]
    assert response.status_code == 200 and response.headers["x-recroute-llm"] == "math-llm"
    row = read_decision_log(log).set_index("decision_id").loc[response.headers["x-recroute-decision-id"]]
    assert row.bundle_checksum == bundle_checksum(bundles["a"]) and row.status == 200


def test_sighup_reloads_the_same_path_in_every_worker(fleet, bundles):
    url, _, proc, _, serving = fleet
    assert reload(url, {"bundle": str(serving)}).status_code == 200
    RoutingBundle.load(bundles["b"]).save(serving)  # a new bundle at the same path
    want = bundle_checksum(serving)
    assert served_checksums(url) != {want}
    proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while served_checksums(url) != {want}:
        assert time.monotonic() < deadline, "SIGHUP did not reload every worker"
        time.sleep(0.1)
    assert chat(url, HISTORY).status_code == 200


# ---------------------------------------------------------------------- upstream health
def breaker(url: str, llm: str) -> dict:
    return details(url)["breakers"][llm]


def test_the_breaker_takes_a_failing_llm_out_of_routing_in_every_worker_and_a_probe_brings_it_back(
        fleet, upstream, faults):
    url, log, *_ = fleet
    faults("math-llm", "error500")
    first = [chat(url, MATH) for _ in range(2)]  # breaker-failures 2: both fall back, then the breaker opens
    assert all(r.status_code == 200 and r.headers["x-recroute-failed"] == "math-llm:http_500" for r in first)
    assert breaker(url, "math-llm")["state"] == "open" and not breaker(url, "math-llm")["in_routing"]
    sent = requests_to(upstream, "math-llm")
    skipped = [chat(url, MATH) for _ in range(6)]  # whichever worker answers: math-llm is out of routing
    assert requests_to(upstream, "math-llm") == sent
    assert all(r.status_code == 200 and r.headers["x-recroute-fallbacks"] == "0" for r in skipped)
    rows = read_decision_log(log).set_index("decision_id")
    for r in skipped:  # the log says which LLMs the decision chose among, and the propensity over them
        row = rows.loc[r.headers["x-recroute-decision-id"]]
        assert list(row.candidates) == ["code-llm", "history-llm"] and row.chosen != "math-llm"
        assert row.propensity == 1.0
    faults("math-llm", "ok")  # recovered: after one cooldown, one probe closes the breaker
    time.sleep(COOLDOWN_S + 0.1)
    assert breaker(url, "math-llm")["in_routing"]
    probe = chat(url, MATH)
    assert probe.headers["x-recroute-llm"] == "math-llm"
    assert breaker(url, "math-llm")["state"] == "closed"


def test_a_429_falls_back_and_keeps_the_llm_out_for_its_retry_after(fleet, upstream, faults):
    url, log, *_ = fleet
    faults("code-llm", "error429", retry_after=3)  # long enough for the next requests on a loaded machine
    got = chat(url, CODE)
    assert got.status_code == 200 and got.headers["x-recroute-failed"] == "code-llm:http_429"
    assert breaker(url, "code-llm")["rate_limited"]
    sent = requests_to(upstream, "code-llm")
    during = chat(url, CODE)
    assert during.headers["x-recroute-fallbacks"] == "0" and requests_to(upstream, "code-llm") == sent
    row = read_decision_log(log).set_index("decision_id").loc[during.headers["x-recroute-decision-id"]]
    assert "code-llm" not in list(row.candidates)
    faults("code-llm", "ok")
    time.sleep(3.1)
    assert chat(url, CODE).headers["x-recroute-llm"] == "code-llm"  # back without a probe
    faults("code-llm", "error429", retry_after=1)  # a direct request gets the 429 itself
    direct = chat(url, CODE, model="code-llm")
    assert direct.status_code == 429 and "rate limit" in direct.text


def test_first_byte_timeout_is_its_own(fleet, faults):
    url, *_ = fleet
    faults("history-llm", "ok", delay_ms=1500)  # over first_byte_timeout_s = 0.6, under timeout_s = 5
    got = chat(url, HISTORY)
    assert got.headers["x-recroute-failed"] == "history-llm:timeout" and got.status_code == 200
    assert got.headers["x-recroute-llm"] != "history-llm"


def test_every_candidate_out_of_routing_is_a_503_with_retry_after(fleet, faults):
    url, *_ = fleet
    deadline = time.monotonic() + 10
    while breaker(url, "code-llm")["rate_limited"]:  # the block of an earlier test's 429 passes first
        assert time.monotonic() < deadline
        time.sleep(0.1)
    faults("code-llm", "error429", retry_after=5)
    assert chat(url, CODE, model="code-llm").status_code == 429  # sent: its 429 comes back, and blocks it
    again = chat(url, CODE, model="code-llm")  # a direct request to a blocked LLM: not sent at all
    assert again.status_code == 503 and "code-llm (breaker_open)" in again.json()["error"]["message"]
    assert 1 <= int(again.headers["retry-after"]) <= 5
    got = httpx.post(url + "/v1/chat/completions", json={"model": "recroute:candidates=code-llm",
                                                         "messages": user(CODE)})
    assert got.status_code == 503 and "out of routing" in got.json()["error"]["message"]
    assert 1 <= int(got.headers["retry-after"]) <= 5


# ---------------------------------------------------------------------- overhead, metrics, keys
def test_overhead_header_and_metrics_add_up_every_worker(fleet):
    from concurrent.futures import ThreadPoolExecutor

    url, *_ = fleet
    auth = {"authorization": f"Bearer {METRICS_KEY}"}

    def total(text: str) -> float:
        found = [float(v) for v in __import__("re").findall(
            r'^recroute_gateway_requests_total\{llm="[^"]*",code="\d+"\} (\S+)$', text, __import__("re").M)]
        return sum(found)

    before = httpx.get(url + "/metrics", headers=auth).text
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: chat(url, (MATH, CODE, HISTORY)[i % 3]), range(40)))
    assert all(r.status_code == 200 for r in answers)
    overheads = [float(r.headers["x-recroute-overhead-ms"]) for r in answers]
    assert all(0 <= o < 10_000 for o in overheads)
    after = httpx.get(url + "/metrics", headers=auth).text
    assert total(after) - total(before) == 40
    assert metric(after, "recroute_gateway_overhead_seconds_count") - metric(
        before, "recroute_gateway_overhead_seconds_count") == 40


def test_metrics_and_healthz_details_need_the_metrics_key(fleet):
    url, *_ = fleet
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/metrics", headers={"authorization": "Bearer nope"}).status_code == 401
    for key in (METRICS_KEY, ADMIN_KEY):
        assert httpx.get(url + "/metrics", headers={"authorization": f"Bearer {key}"}).status_code == 200
    public = httpx.get(url + "/healthz").json()
    assert set(public) == {"status", "bundle_checksum", "shadow_checksum"}
    assert {"selection_entropy_bits", "breakers", "workers", "llms"} <= set(details(url))


# ---------------------------------------------------------------------- a worker killed under load
def test_sigkill_of_one_worker_under_load(fleet, upstream):
    url, log, *_ = fleet
    victim = details(url)["workers"][0]["pid"]
    results: list[int] = []
    stop_at = time.monotonic() + 4.0

    def client() -> None:
        with httpx.Client(timeout=10) as session:
            while time.monotonic() < stop_at:
                try:
                    r = session.post(url + "/v1/chat/completions", json={"model": "recroute", "messages": user(MATH)})
                    results.append(r.status_code)
                except httpx.TransportError:
                    results.append(-1)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(victim, signal.SIGKILL)
    for t in threads:
        t.join(20)
    failed = results.count(-1)
    assert failed <= 4, f"{failed} requests failed: only those in flight on the killed worker may"
    assert results.count(200) == len(results) - failed and results.count(200) > 20
    deadline = time.monotonic() + 60
    while len(details(url)["workers"]) < 2:  # the supervisor starts another worker
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert victim not in {w["pid"] for w in details(url)["workers"]}
    read_decision_log(log)  # readable, whatever the kill left
