"""The gateway as a real process (``python -m recroute gateway``) in front of real upstream processes
(tests/serve/fake_upstream.py) on loopback, spoken to with the official ``openai`` client and raw HTTP."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

httpx = pytest.importorskip("httpx", reason="the gateway needs httpx")
openai = pytest.importorskip("openai", reason="the gateway tests speak through the openai client (dev extra)")
pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from recroute.feedback.logs import read_decision_log  # noqa: E402
from servers import stop  # noqa: E402

FAKE = Path(__file__).with_name("fake_upstream.py")
MATH = "prove the theorem about the prime number with algebra"
CODE = "my python function has a bug in the loop over the array"
HISTORY = "which king won the battle that ended the medieval dynasty"
UPSTREAM_KEY = "sk-upstream-secret-7f3a"
CLIENT_KEY = "client-key-1"
CONFIGURED = ["math-llm", "code-llm", "history-llm"]  # the bundle's "generalist" has no upstream


def start_upstream(names: list[str], env: dict | None = None, key_env: str | None = None):
    """(process, port) of a fake upstream serving ``names``; it prints its port once listening."""
    cmd = [sys.executable, str(FAKE), "--names", ",".join(names)] + (["--key-env", key_env] if key_env else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        proc.kill()
        pytest.fail(f"the fake upstream did not start: {line}{proc.stdout.read().decode()}")
    return proc, int(line.split()[1])


def start_gateway(args: list[str], env: dict, output: Path):
    """(process, base URL) of `recroute gateway` on a free port, once /healthz answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    sink = open(output, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "recroute", "gateway", *args, "--port", str(port), "--quiet"],
                            stdout=sink, stderr=subprocess.STDOUT,
                            env={**os.environ, **env, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the gateway exited ({proc.returncode}): {output.read_text()}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the gateway did not answer /healthz within 90 s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def upstream():
    proc, port = start_upstream(CONFIGURED, {"UPKEY": UPSTREAM_KEY}, key_env="UPKEY")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture(scope="module")
def gateway(upstream, tfidf_bundle_dir, tmp_path_factory):
    """(base URL, decision log path, output file) of a gateway with client keys and limits."""
    folder = tmp_path_factory.mktemp("gateway")
    toml = "".join(
        f'[upstreams."{name}"]\nbase_url = "{upstream}/{name}/v1"\nmodel = "{name}-upstream"\n'
        f'api_key_env = "UPKEY"\ntimeout_s = 0.5\n' + ('input_price_per_mtok = 3.0\noutput_price_per_mtok = 5.0\n'
                                                      if name == "math-llm" else "") + "\n"
        for name in CONFIGURED)
    (folder / "upstreams.toml").write_text(toml)
    log = folder / "decisions.jsonl"
    args = ["--bundle", str(tfidf_bundle_dir), "--upstreams", str(folder / "upstreams.toml"), "--log", str(log),
            "--api-keys-env", "GWKEYS", "--max-tokens", "100", "--max-body-bytes", "4096",
            "--entropy-floor", "0.5", "--window", "4",
            "--breaker-failures", "0",  # these tests fail one LLM on purpose, request after request
            "--workers", "2"]  # the same on any machine (the default is one per core)
    proc, url = start_gateway(args, {"UPKEY": UPSTREAM_KEY, "GWKEYS": f"{CLIENT_KEY},other-key"}, folder / "out.txt")
    yield url, log, folder / "out.txt"
    stop(proc)


@pytest.fixture
def client(gateway):
    return openai.OpenAI(base_url=gateway[0] + "/v1", api_key=CLIENT_KEY, max_retries=0, timeout=10)


@pytest.fixture
def faults(upstream):
    """set(name, mode) for the fake upstream; every LLM is back to ok after the test."""
    def set_mode(name: str, mode: str) -> None:
        assert httpx.post(upstream + "/_control", json={"name": name, "mode": mode}).status_code == 200

    yield set_mode
    for name in CONFIGURED:
        set_mode(name, "ok")


def requests_to(upstream: str, name: str) -> list[dict]:
    return httpx.get(upstream + "/_requests", params={"name": name}).json()


def user(text: str) -> list[dict]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


# ---------------------------------------------------------------------- routing and forwarding
def test_models_lists_recroute_and_configured_llms_and_warns_about_the_left_out_one(client, gateway):
    assert [m.id for m in client.models.list().data] == ["recroute", *CONFIGURED]
    assert re.search(r"left out of routing: generalist", gateway[2].read_text())


def test_routes_forwards_and_names_the_llm(client, upstream):
    raw = client.chat.completions.with_raw_response.create(model="recroute", messages=user(MATH))
    answer = raw.parse()
    assert answer.model == "math-llm"
    assert answer.choices[0].message.content == f"math-llm says: {MATH}"
    assert answer.usage.prompt_tokens == 2 + len(MATH.split())
    assert raw.headers["x-recroute-llm"] == raw.headers["x-recroute-routed"] == "math-llm"
    assert float(raw.headers["x-recroute-score"]) == pytest.approx(1.0)
    assert raw.headers["x-recroute-propensity"] == "1.0"
    assert raw.headers["x-recroute-fallbacks"] == "0"
    sent = requests_to(upstream, "math-llm")[-1]
    body = json.loads(sent["body"])
    assert body["model"] == "math-llm-upstream"  # the upstream's own name
    assert body["messages"] == user(MATH)  # forwarded unchanged otherwise
    assert sent["headers"]["authorization"] == f"Bearer {UPSTREAM_KEY}"  # from the environment


def test_streams_chunk_by_chunk_with_the_llm_name(client):
    stream = client.chat.completions.create(model="recroute", messages=user(CODE), stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"code-llm says: {CODE}"
    assert len(chunks) == len(text.split(" ")) + 2  # one per word, the stop chunk, the usage chunk
    assert {c.model for c in chunks} == {"code-llm"}
    assert chunks[-1].usage.completion_tokens == len(text.split(" "))


def test_a_named_llm_is_forwarded_without_routing(client):
    raw = client.chat.completions.with_raw_response.create(model="history-llm", messages=user(MATH))
    assert raw.parse().choices[0].message.content == f"history-llm says: {MATH}"
    assert raw.headers["x-recroute-llm"] == "history-llm"


def test_cost_options_route_through_the_cost_step(client):
    raw = client.chat.completions.with_raw_response.create(model="recroute:cost_weight=0.5,candidates=math-llm",
                                                           messages=user(CODE))
    assert raw.parse().model == "math-llm" and raw.headers["x-recroute-routed"] == "math-llm"


def test_candidates_option_restricts_the_choice(client):
    answer = client.chat.completions.create(model="recroute:candidates=code-llm|history-llm", messages=user(HISTORY))
    assert answer.model == "history-llm"
    answer = client.chat.completions.create(model="recroute:candidates=code-llm|history-llm", messages=user(MATH))
    assert answer.model in ("code-llm", "history-llm")


# ---------------------------------------------------------------------- fallback
@pytest.mark.parametrize("mode, kind", [("error500", "http_500"), ("hang", "timeout"), ("close", "closed")])
@pytest.mark.parametrize("stream", [False, True])
def test_falls_back_to_the_next_best_llm(client, faults, mode, kind, stream):
    faults("math-llm", mode)
    raw = client.chat.completions.with_raw_response.create(model="recroute", messages=user(MATH), stream=stream)
    llm = raw.headers["x-recroute-llm"]
    assert llm in ("code-llm", "history-llm")
    assert raw.headers["x-recroute-routed"] == "math-llm"
    assert raw.headers["x-recroute-fallbacks"] == "1"
    assert raw.headers["x-recroute-failed"] == f"math-llm:{kind}"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == f"{llm} says: {MATH}"


def test_nothing_is_retried_after_the_first_streamed_byte(client, faults, upstream):
    faults("math-llm", "break")
    before = len(requests_to(upstream, "code-llm")) + len(requests_to(upstream, "history-llm"))
    stream = client.chat.completions.create(model="recroute", messages=user(MATH), stream=True)
    got = []
    with pytest.raises(openai.APIError, match="math-llm failed mid-stream"):
        for chunk in stream:
            got.append(chunk)
    assert [c.choices[0].delta.content for c in got] == ["math-llm"]  # the one event sent before the break
    assert len(requests_to(upstream, "code-llm")) + len(requests_to(upstream, "history-llm")) == before


def test_a_client_leaving_mid_stream_is_still_logged(client, faults, gateway):
    faults("history-llm", "slow")
    stream = client.chat.completions.create(model="recroute", messages=user(HISTORY), stream=True)
    decision_id = stream.response.headers["x-recroute-decision-id"]
    assert next(iter(stream)).choices[0].delta.content == "history-llm"
    stream.close()  # the client goes away after the first chunk
    deadline = time.monotonic() + 5
    while decision_id not in gateway[1].read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    row = read_decision_log(gateway[1]).set_index("decision_id").loc[decision_id]
    assert row.error == "the client went away mid-stream" and row.upstream == "history-llm"


def test_upstream_4xx_is_passed_back_as_is(client, faults, upstream):
    faults("math-llm", "error400")
    before = len(requests_to(upstream, "code-llm"))
    with pytest.raises(openai.BadRequestError, match="math-llm rejects this") as info:
        client.chat.completions.create(model="recroute", messages=user(MATH))
    assert info.value.response.headers["x-recroute-fallbacks"] == "0"
    assert len(requests_to(upstream, "code-llm")) == before  # no fallback on a 4xx


def test_when_every_try_fails_the_last_upstream_error_comes_back(client, faults):
    for name in CONFIGURED:
        faults(name, "error500")
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="recroute", messages=user(MATH))
    assert info.value.response.headers["x-recroute-fallbacks"] == "3"
    assert "is down" in info.value.response.text  # the upstream's own body
    for name in CONFIGURED:
        faults(name, "close")
    with pytest.raises(openai.APIStatusError, match="no upstream answered") as info:
        client.chat.completions.create(model="recroute", messages=user(CODE))
    assert info.value.status_code == 502


# ---------------------------------------------------------------------- bad input
BAD = [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "must be a JSON object"),
    (json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), 400, "missing 'model'"),
    (json.dumps({"model": "recroute"}).encode(), 400, "'messages' must be a non-empty list"),
    (json.dumps({"model": "recroute", "messages": []}).encode(), 400, "'messages' must be a non-empty list"),
    (json.dumps({"model": "recroute", "messages": [{"content": "hi"}]}).encode(), 400, "messages[0]"),
    (json.dumps({"model": "recroute", "messages": [{"role": "system", "content": "x"}]}).encode(), 400, "no message with role 'user'"),
    (json.dumps({"model": "recroute", "messages": [{"role": "user", "content": "  "}]}).encode(), 400, "holds no text"),
    (json.dumps({"model": "recroute", "stream": "yes", "messages": user("hi")}).encode(), 400, "'stream' must be true or false"),
    (json.dumps({"model": "recroute", "max_tokens": 101, "messages": user("hi")}).encode(), 400, "limit of 100"),
    (json.dumps({"model": "recroute", "max_tokens": -1, "messages": user("hi")}).encode(), 400, "'max_tokens' must be a positive"),
    (json.dumps({"model": "gpt-5", "messages": user("hi")}).encode(), 404, "unknown model 'gpt-5'"),
    (json.dumps({"model": "generalist", "messages": user("hi")}).encode(), 404, "unknown model 'generalist'"),
    (json.dumps({"model": "recroute:temperature=3", "messages": user("hi")}).encode(), 400, "unknown routing option 'temperature'"),
    (json.dumps({"model": "recroute:candidates=nope", "messages": user("hi")}).encode(), 400, "candidates ['nope']"),
    (json.dumps({"model": "recroute:cost_weight=-1", "messages": user("hi")}).encode(), 400, "cost_weight must be a number >= 0"),
    (json.dumps({"model": "recroute", "messages": user("x" * 5000)}).encode(), 413, "over 4096 bytes"),
    (json.dumps({"model": "recroute:cost_weight=0.5", "messages": user("hi")}).encode(), 400,
     "no price for candidate LLM(s) ['code-llm', 'history-llm']"),
    (json.dumps({"model": "recroute:max_cost=0,candidates=math-llm", "messages": user("hi")}).encode(), 400,
     "the cheapest, math-llm"),
]


@pytest.mark.parametrize("body, status, message", BAD, ids=[b[2] for b in BAD])
def test_bad_requests_get_a_4xx_naming_the_problem(gateway, body, status, message):
    got = httpx.post(gateway[0] + "/v1/chat/completions", content=body,
                     headers={"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"})
    assert got.status_code == status
    doc = got.json()
    assert message in (doc["error"]["message"] if "error" in doc else doc["detail"])


def test_client_keys_are_required_on_v1(gateway):
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {CLIENT_KEY}"}):
        got = httpx.post(gateway[0] + "/v1/chat/completions", json={"model": "recroute", "messages": user(MATH)},
                         headers=headers)
        assert got.status_code == 401 and "API key" in got.json()["error"]["message"]
    assert httpx.get(gateway[0] + "/v1/models", headers={"authorization": "Bearer other-key"}).status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gateway[0] + "/v1", api_key="nope", max_retries=0).models.list()


# ---------------------------------------------------------------------- decision log, feedback, metrics
def test_every_request_is_in_the_decision_log_with_status_tokens_and_cost(client, gateway, faults):
    ids = {}
    raw = client.chat.completions.with_raw_response.create(model="recroute", messages=user(MATH))
    ids["math"] = raw.headers["x-recroute-decision-id"]
    faults("math-llm", "error500")
    raw = client.chat.completions.with_raw_response.create(model="recroute", messages=user(MATH))
    ids["fallback"] = raw.headers["x-recroute-decision-id"]
    raw = client.chat.completions.with_raw_response.create(model="code-llm", messages=user(HISTORY))
    ids["direct"] = raw.headers["x-recroute-decision-id"]
    log = read_decision_log(gateway[1]).set_index("decision_id")
    assert log.index.is_unique
    math = log.loc[ids["math"]]
    n_in, n_out = 2 + len(MATH.split()), 2 + len(MATH.split())  # the fake upstream counts words
    assert (math.chosen, math.upstream, math.status, math.propensity) == ("math-llm", "math-llm", 200, 1.0)
    assert (math.input_tokens, math.output_tokens) == (n_in, n_out)
    assert math.cost == pytest.approx((n_in * 3.0 + n_out * 5.0) / 1e6)  # the upstream's prices per Mtok
    assert list(math.candidates) == CONFIGURED
    assert math.policy == "greedy" and math.router == "knn" and math.score == pytest.approx(1.0)
    assert math.prompt_hash == __import__("hashlib").sha256(MATH.encode()).hexdigest()
    assert pd.isna(math.prompt_text) and math.latency_ms > 0
    fallback = log.loc[ids["fallback"]]
    assert fallback.chosen == "math-llm" and fallback.upstream != "math-llm"
    assert list(fallback.fallbacks) == ["math-llm:http_500"]
    assert pd.isna(fallback.cost)  # no prices for the LLM that answered
    direct = log.loc[ids["direct"]]
    assert (direct.chosen, direct.policy, list(direct.candidates)) == ("code-llm", "direct", ["code-llm"])


def test_feedback_appends_an_outcome_joined_by_the_reader(client, gateway):
    raw = client.chat.completions.with_raw_response.create(model="recroute", messages=user(CODE))
    decision_id = raw.headers["x-recroute-decision-id"]
    auth = {"authorization": f"Bearer {CLIENT_KEY}"}
    got = httpx.post(gateway[0] + "/v1/feedback", json={"decision_id": decision_id, "outcome": 0.75}, headers=auth)
    assert got.status_code == 200
    assert read_decision_log(gateway[1]).set_index("decision_id").loc[decision_id].outcome == 0.75
    bad = httpx.post(gateway[0] + "/v1/feedback", json={"decision_id": "f" * 32, "outcome": 1}, headers=auth)
    assert bad.status_code == 404 and "unknown decision_id" in bad.json()["error"]["message"]
    bad = httpx.post(gateway[0] + "/v1/feedback", json={"decision_id": decision_id, "outcome": 2}, headers=auth)
    assert bad.status_code == 400 and "outcome must be a number in [0, 1]" in bad.json()["error"]["message"]


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name + ("{" + want + "}" if want else "")) + r" (\S+)"
    found = re.search(r"^" + pattern + "$", text, re.M)
    assert found, f"no {name} {labels} in /metrics"
    return float(found.group(1))


def test_metrics_count_requests_errors_and_fallbacks(client, gateway, faults):
    before = httpx.get(gateway[0] + "/metrics").text
    faults("math-llm", "error500")
    client.chat.completions.create(model="recroute", messages=user(MATH))
    after = httpx.get(gateway[0] + "/metrics").text

    def delta(name, **labels):
        old = metric(before, name, **labels) if re.search(re.escape(name + "{" + ",".join(
            f'{k}="{v}"' for k, v in labels.items()) + "}"), before) else 0.0
        return metric(after, name, **labels) - old

    assert delta("recroute_gateway_fallbacks_total", llm="math-llm") == 1
    assert delta("recroute_gateway_upstream_errors_total", llm="math-llm", kind="http_500") == 1
    answered = [m for m in ("code-llm", "history-llm") if delta("recroute_gateway_requests_total", llm=m, code="200") == 1]
    assert len(answered) == 1
    assert delta("recroute_gateway_request_duration_seconds_count", llm=answered[0]) == 1
    assert metric(after, "recroute_gateway_request_duration_seconds_bucket", llm=answered[0], le="+Inf") == \
        metric(after, "recroute_gateway_request_duration_seconds_count", llm=answered[0])
    assert "# TYPE recroute_gateway_selection_entropy_bits gauge" in after


def test_collapse_onto_one_llm_warns_in_the_log_and_on_healthz(client, gateway):
    for _ in range(4):  # the window holds 4 routed requests: all math-llm -> entropy 0 < floor 0.5
        client.chat.completions.create(model="recroute", messages=user(MATH))
    health = httpx.get(gateway[0] + "/healthz").json()
    assert health["status"] == "degraded" and health["selection_entropy_bits"] == 0.0
    assert "below the floor 0.5" in health["warnings"][0]
    assert metric(httpx.get(gateway[0] + "/metrics").text, "recroute_gateway_collapsed") == 1
    deadline = time.monotonic() + 5
    while "the router is collapsing" not in gateway[2].read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the router is collapsing ('math-llm' took 100%)" in gateway[2].read_text()
    for text in (CODE, HISTORY, MATH, CODE):  # shares 1/4, 1/4, 2/4: 1.5 bits
        client.chat.completions.create(model="recroute", messages=user(text))
    health = httpx.get(gateway[0] + "/healthz").json()
    assert health["status"] == "ok" and health["selection_entropy_bits"] == pytest.approx(1.5)


def test_the_upstream_key_is_never_logged_or_returned(client, gateway):
    raw = client.chat.completions.with_raw_response.create(model="recroute", messages=user(HISTORY))
    assert UPSTREAM_KEY not in json.dumps(dict(raw.headers)) + raw.text
    assert UPSTREAM_KEY not in gateway[1].read_text()
    assert UPSTREAM_KEY not in gateway[2].read_text()
    assert UPSTREAM_KEY not in httpx.get(gateway[0] + "/metrics").text + httpx.get(gateway[0] + "/healthz").text


def test_a_missing_upstream_key_variable_stops_the_gateway_at_start(tfidf_bundle_dir, tmp_path):
    (tmp_path / "u.toml").write_text('[upstreams."math-llm"]\nbase_url = "http://127.0.0.1:9/v1"\n'
                                     'api_key_env = "RECROUTE_TEST_UNSET_KEY"\n')
    env = {k: v for k, v in os.environ.items() if k != "RECROUTE_TEST_UNSET_KEY"}
    got = subprocess.run([sys.executable, "-m", "recroute", "gateway", "--bundle", str(tfidf_bundle_dir),
                          "--upstreams", str(tmp_path / "u.toml")], capture_output=True, text=True, env=env, timeout=120)
    assert got.returncode == 2
    assert "environment variable RECROUTE_TEST_UNSET_KEY (api_key_env) is not set" in got.stderr
