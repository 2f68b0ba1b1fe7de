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
    (folder / "u.toml").write_text("".join(
        f'[upstreams."{n}"]\nbase_url = "{upstream}/{n}/v1"\ntimeout_s = 5\nfirst_byte_timeout_s = 0.6\n\n'
        for n in LLMS3))
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


def test_requests_in_flight_finish_on_the_old_bundle(fleet, bundles, faults):
    url, log, *_ = fleet
    assert reload(url, {"bundle": str(bundles["a"])}).status_code == 200
    faults("math-llm", "ok", delay_ms=400)  # under the 0.6 s first-byte timeout
    slow = {}
    thread = threading.Thread(target=lambda: slow.setdefault("r", chat(url, MATH)))
    thread.start()
    time.sleep(0.15)  # the slow request has decided and waits on its upstream
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
