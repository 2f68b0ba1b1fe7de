"""A shadow bundle served beside the live one (POST/DELETE /admin/shadow) by a real two-worker gateway
process in front of the fake upstreams: installed and removed on both workers, bad requests refused with
their reason while live keeps serving, the shadow's choice served with probability ε where it differs
(a binomial bound), and logged propensities exact (the IPS weights of fixed policies average 1)."""

from __future__ import annotations

import json
import math
import shutil
import time

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the gateway needs httpx")
pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from test_gateway import start_gateway, start_upstream, stop  # noqa: E402

from recroute.serve.bundle import RoutingBundle, bundle_checksum  # noqa: E402

ADMIN = "shadow-admin-key"
UPSTREAM_LLMS = ["math-llm", "code-llm", "history-llm", "spare-llm"]  # spare-llm: no bundle of live's knows it
EPSILON = 0.3


def shadow_bundle(live_dir, topics, folder, llms: list[str], right: dict[str, str]):
    """A kNN bundle with the live bundle's encoder over ``llms``, where ``right[topic]`` is the LLM right
    on that topic's prompts."""
    from recroute.routers.knn import KNNRouter

    live = RoutingBundle.load(live_dir)
    X = live.encode(list(topics.texts))
    topic = topics.prompts["task"].to_numpy()
    Y = np.zeros((topics.n_prompts, len(llms)), dtype=np.float32)
    for t, llm in right.items():
        Y[topic == t, llms.index(llm)] = 1.0
    router = KNNRouter(k=3).fit(Y, X)
    router.llm_names_ = np.asarray(llms, dtype=object)
    return RoutingBundle.build(router, live.encoder).save(folder)


@pytest.fixture(scope="module")
def shadows(tfidf_bundle_dir, topics, tmp_path_factory):
    """{"rotate": every topic to another LLM, "spare": history to spare-llm, "unserved": history to
    ghost-llm (a new LLM without an upstream), "generalist": history to live's generalist (no upstream
    either: left out), "broken": rotate with a modified file}."""
    folder = tmp_path_factory.mktemp("shadows")
    llms3 = ["math-llm", "code-llm", "history-llm"]
    out = {
        "rotate": shadow_bundle(tfidf_bundle_dir, topics, folder / "rotate", llms3,
                                {"math": "code-llm", "code": "history-llm", "history": "math-llm"}),
        "spare": shadow_bundle(tfidf_bundle_dir, topics, folder / "spare", [*llms3, "spare-llm"],
                               {"math": "math-llm", "code": "code-llm", "history": "spare-llm"}),
        "unserved": shadow_bundle(tfidf_bundle_dir, topics, folder / "unserved", [*llms3, "ghost-llm"],
                                  {"math": "math-llm", "code": "code-llm", "history": "ghost-llm"}),
        "generalist": shadow_bundle(tfidf_bundle_dir, topics, folder / "generalist", [*llms3, "generalist"],
                                    {"math": "code-llm", "code": "code-llm", "history": "generalist"}),
    }
    out["broken"] = shutil.copytree(out["rotate"], folder / "broken")
    with open(out["broken"] / "router" / "router.json", "a") as fh:
        fh.write(" ")
    return out


@pytest.fixture(scope="module")
def gateway(tfidf_bundle_dir, tmp_path_factory):
    """(base URL, decision log) of a two-worker gateway with spare upstreams and an admin key."""
    proc_up, port = start_upstream(UPSTREAM_LLMS)
    folder = tmp_path_factory.mktemp("shadow-gateway")
    (folder / "u.toml").write_text("".join(f'[upstreams."{n}"]\nbase_url = "http://127.0.0.1:{port}/{n}/v1"\n\n'
                                           for n in UPSTREAM_LLMS))
    log = folder / "decisions.jsonl"
    proc, url = start_gateway(["--bundle", str(tfidf_bundle_dir), "--upstreams", str(folder / "u.toml"), "--log",
                               str(log), "--log-prompt-text", "--workers", "2", "--spare-upstreams", "--seed", "3",
                               "--admin-key-env", "GW_ADMIN"], {"GW_ADMIN": ADMIN}, folder / "out.txt")
    deadline = time.monotonic() + 90
    while len(httpx.get(url + "/healthz").json()["workers"]) < 2:
        assert time.monotonic() < deadline, "the second worker did not start"
        time.sleep(0.2)
    yield url, log
    stop(proc)
    stop(proc_up)


def admin(url: str, method: str, body=None, key: str | None = ADMIN) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return httpx.request(method, url + "/admin/shadow", json=body, headers=headers, timeout=60)


def traffic(url: str, texts: list[str]) -> list[dict]:
    """Each text once through the gateway on a new connection (so both workers get requests)."""
    out = []
    for text in texts:
        r = httpx.post(url + "/v1/chat/completions", json={"model": "recroute", "messages": [
            {"role": "user", "content": text}]}, timeout=30)
        assert r.status_code == 200, r.text
        out.append({"id": r.headers["x-recroute-decision-id"], "llm": r.headers["x-recroute-llm"],
                    "propensity": float(r.headers["x-recroute-propensity"])})
    return out


def logged(log, ids: list[str]) -> list[dict]:
    """The decision records of ``ids``, in their order (waits for the last writes)."""
    want = set(ids)
    deadline = time.monotonic() + 10
    while True:
        rows = {r["decision_id"]: r for r in map(json.loads, log.read_text().splitlines())
                if r.get("event") == "decision" and r["decision_id"] in want}
        if len(rows) == len(want) or time.monotonic() > deadline:
            return [rows[i] for i in ids]
        time.sleep(0.1)


def test_bad_shadow_requests_are_refused_with_their_reason_and_live_keeps_serving(gateway, shadows, topics, tmp_path):
    url, _ = gateway
    before = httpx.get(url + "/healthz").json()
    assert before["shadow"] is None and before["shadow_checksum"] is None
    good = {"bundle": str(shadows["rotate"]), "epsilon": 0.2}
    assert admin(url, "POST", good, key=None).status_code == 401
    assert admin(url, "POST", good, key="wrong").status_code == 401
    assert admin(url, "DELETE", key=None).status_code == 401
    cases = [
        ({"bundle": str(tmp_path / "nowhere"), "epsilon": 0.2}, 422, "nowhere"),
        ({"bundle": str(shadows["broken"]), "epsilon": 0.2}, 422, "router/router.json has"),
        ({**good, "epsilon": 1.5}, 422, "epsilon (its exploration probability) must be in [0, 1]; got 1.5"),
        ({**good, "epsilon": -0.1}, 422, "must be in [0, 1]"),
        ({**good, "epsilon": "0.2"}, 422, "epsilon must be a finite number"),
        ({**good, "tau": -1}, 422, "tau (its conservative margin) must be >= 0; got -1"),
        ({"bundle": str(shadows["unserved"]), "epsilon": 0.2}, 422, "LLM(s) ['ghost-llm'] that have no upstream"),
        ({"bundle": str(shadows["rotate"])}, 400, "expected {\"bundle\""),
        ({**good, "extra": 1}, 400, "expected {\"bundle\""),
    ]
    for body, status, reason in cases:
        r = admin(url, "POST", body)
        assert r.status_code == status and reason in r.json()["error"], (body, r.status_code, r.text)
    after = httpx.get(url + "/healthz").json()
    assert after["shadow_checksum"] is None and after["bundle_checksum"] == before["bundle_checksum"]
    assert traffic(url, [topics.texts[0]])[0]["propensity"] == 1.0  # live still serves, greedy


def test_the_shadow_is_served_where_it_differs_with_probability_epsilon(gateway, shadows, topics):
    url, log = gateway
    r = admin(url, "POST", {"bundle": str(shadows["rotate"]), "epsilon": EPSILON, "tau": 0})
    assert r.status_code == 200, r.text
    checksum = bundle_checksum(shadows["rotate"])
    assert r.json()["shadow"]["checksum"] == checksum and r.json()["workers_swapped"] == r.json()["workers"] == 2
    health = httpx.get(url + "/healthz").json()
    assert health["shadow_checksum"] == checksum and health["shadow"] == {"bundle": str(shadows["rotate"]), "checksum": checksum, "epsilon": EPSILON, "tau": 0.0,
                                "llms": 3}
    assert [w["shadow_checksum"] for w in health["workers"]] == [checksum, checksum]  # both workers serve it

    texts = [str(t) for t in topics.texts] * 4  # 480 requests
    sent = traffic(url, texts)
    rows = logged(log, [s["id"] for s in sent])
    assert all(r["shadow_checksum"] == checksum and r["shadow_epsilon"] == EPSILON for r in rows)
    differ = [r for r in rows if r["live_choice"] != r["shadow_choice"]]
    assert len(differ) > 0.9 * len(rows)  # the rotated shadow disagrees almost everywhere
    n, k = len(differ), sum(r["chosen"] == r["shadow_choice"] for r in differ)
    bound = 4 * math.sqrt(n * EPSILON * (1 - EPSILON))  # P(|k - n ε| > 4 sd) < 1e-4
    assert abs(k - n * EPSILON) <= bound, (k, n)
    for r, s in zip(rows, sent):  # the propensity of the served choice under the mixture, logged and in the header
        want = 1.0 if r["live_choice"] == r["shadow_choice"] else EPSILON if r["chosen"] == r["shadow_choice"] else 1 - EPSILON
        assert r["propensity"] == pytest.approx(want) and s["propensity"] == pytest.approx(want)
        assert r["chosen"] == s["llm"] and r["policy"] == "greedy"
    # exact propensities: the IPS weight 1{chosen = target's choice} / propensity of live's greedy policy and of
    # the conservative shadow's each average 1 (variance (1 - p) / p on a differing decision)
    for target in ("live_choice", "shadow_choice"):
        w = np.array([(r["chosen"] == r[target]) / r["propensity"] for r in rows])
        var = sum((1 - p) / p for p in (EPSILON if target == "shadow_choice" else 1 - EPSILON
                                       for r in rows if r["live_choice"] != r["shadow_choice"]))
        assert abs(w.mean() - 1) <= 4 * math.sqrt(var) / len(rows), (target, w.mean())

    r = admin(url, "DELETE")
    assert r.status_code == 200 and r.json()["was"] == checksum and r.json()["workers_swapped"] == 2
    health = httpx.get(url + "/healthz").json()
    assert health["shadow"] is None and [w["shadow_checksum"] for w in health["workers"]] == [None, None]
    after = logged(log, [s["id"] for s in traffic(url, texts[:20])])
    assert all("shadow_checksum" not in r and r["propensity"] == 1.0 for r in after)


def test_a_shadow_may_route_to_a_spare_upstream_and_survives_a_live_reload(gateway, shadows, topics, tfidf_bundle_dir):
    url, log = gateway
    r = admin(url, "POST", {"bundle": str(shadows["spare"]), "epsilon": 1.0})
    assert r.status_code == 200, r.text
    history = [str(t) for t, task in zip(topics.texts, topics.prompts["task"]) if task == "history"][:12]
    rows = logged(log, [s["id"] for s in traffic(url, history)])
    assert {r["chosen"] for r in rows} == {"spare-llm"} and all(r["propensity"] == 1.0 for r in rows)
    assert all("spare-llm" in r["candidates"] and r["live_choice"] == "history-llm" for r in rows)
    # a hot reload of the live bundle keeps the shadow on both workers
    reload = httpx.post(url + "/admin/reload", json={"bundle": str(tfidf_bundle_dir)},
                        headers={"authorization": f"Bearer {ADMIN}"}, timeout=60)
    assert reload.status_code == 200, reload.text
    time.sleep(1.0)
    checksum = bundle_checksum(shadows["spare"])
    assert [w["shadow_checksum"] for w in httpx.get(url + "/healthz").json()["workers"]] == [checksum, checksum]
    assert admin(url, "DELETE").status_code == 200


def test_an_llm_of_both_bundles_without_an_upstream_is_left_out_for_both(gateway, shadows, topics):
    url, log = gateway
    assert admin(url, "POST", {"bundle": str(shadows["generalist"]), "epsilon": 1.0}).status_code == 200
    history = [str(t) for t, task in zip(topics.texts, topics.prompts["task"]) if task == "history"][:6]
    rows = logged(log, [s["id"] for s in traffic(url, history)])
    assert all("generalist" not in r["candidates"] and r["chosen"] != "generalist" for r in rows)
    assert all(r["propensity"] == 1.0 for r in rows)
    assert admin(url, "DELETE").status_code == 200
