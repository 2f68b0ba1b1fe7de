"""The HTTP service as a real server process (``python -m recroute serve``) spoken to over loopback."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from servers import free_port, serve_command, server_process

httpx = pytest.importorskip("httpx", reason="the HTTP tests need httpx (dev extra)")
pytest.importorskip("fastapi", reason="the HTTP service needs fastapi")
pytest.importorskip("uvicorn", reason="the HTTP service needs uvicorn")

MATH = "prove the theorem about the prime number with algebra"
CODE = "my python function has a bug in the loop over the array"
HISTORY = "which king won the battle that ended the medieval dynasty"
MAX_BATCH = 8
MAX_BODY = 4096


@pytest.fixture(scope="module")
def server(tfidf_bundle_dir):
    """Base URL of a running `recroute serve` on a free loopback port; stopped after the module."""
    port = free_port()
    command = serve_command(tfidf_bundle_dir, port, "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY))
    with server_process(command, port) as url:
        yield url


def post(url: str, payload, **kwargs):
    return httpx.post(url + "/route", json=payload, timeout=30, **kwargs)


def test_healthz_llms_and_openapi(server):
    assert httpx.get(server + "/healthz").json() == {"status": "ok"}
    llms = httpx.get(server + "/llms").json()
    assert llms["llms"] == ["math-llm", "code-llm", "history-llm", "generalist"]
    assert llms["router"] == "knn" and llms["encoder"].startswith("tfidf-svd-")
    schema = httpx.get(server + "/openapi.json").json()
    assert {"/route", "/llms", "/healthz"} <= set(schema["paths"])
    assert "RouteRequest" in schema["components"]["schemas"]


def test_route_one_prompt(server):
    answer = post(server, {"prompt": MATH})
    assert answer.status_code == 200, answer.text
    (decision,) = answer.json()["decisions"]
    assert decision["llm"] == "math-llm" and len(decision["top_k"]) == 1
    assert decision["top_k"][0] == {"llm": "math-llm", "score": decision["score"]}


def test_route_a_batch_with_k_and_candidates(server):
    answer = post(server, {"prompts": [MATH, CODE, HISTORY], "k": 2})
    assert [d["llm"] for d in answer.json()["decisions"]] == ["math-llm", "code-llm", "history-llm"]
    assert all(len(d["top_k"]) == 2 and d["top_k"][0]["score"] >= d["top_k"][1]["score"]
               for d in answer.json()["decisions"])
    limited = post(server, {"prompts": [MATH, CODE], "candidates": ["generalist", "history-llm"], "k": 2})
    assert limited.status_code == 200
    assert all({t["llm"] for t in d["top_k"]} == {"generalist", "history-llm"} for d in limited.json()["decisions"])


@pytest.mark.parametrize("payload, status, message", [
    ({}, 422, "exactly one of 'prompt'"),
    ({"prompt": MATH, "prompts": [CODE]}, 422, "exactly one of 'prompt'"),
    ({"prompt": ""}, 422, "'prompt' empty"),
    ({"prompt": "   "}, 422, "'prompt' empty"),
    ({"prompts": []}, 422, "'prompts' is empty"),
    ({"prompts": [MATH, " "]}, 422, "item(s) [1] empty"),
    ({"prompt": 5}, 422, "string"),
    ({"prompts": MATH}, 422, "list"),
    ({"prompts": [MATH, 3]}, 422, "string"),
    ({"prompt": MATH, "k": "2"}, 422, "integer"),
    ({"prompt": MATH, "k": 0}, 422, "greater than or equal to 1"),
    ({"prompt": MATH, "k": 1.5}, 422, "integer"),
    ({"prompt": MATH, "k": 5}, 422, "k=5 is more than the 4 candidate"),
    ({"prompt": MATH, "k": 3, "candidates": ["math-llm", "generalist"]}, 422, "k=3 is more than the 2"),
    ({"prompt": MATH, "candidates": ["math-llm", "gpt-17"]}, 422, "unknown LLM 'gpt-17'"),
    ({"prompt": MATH, "candidates": []}, 422, "'candidates' is empty"),
    ({"prompt": MATH, "candidates": "math-llm"}, 422, "list"),
    ({"prompt": MATH, "temperature": 0}, 422, "temperature"),
    ([MATH], 422, "dictionary"),
    ({"prompts": [MATH] * (MAX_BATCH + 1)}, 413, f"the limit is {MAX_BATCH}"),
])
def test_bad_requests_get_a_4xx_saying_what_is_wrong(server, payload, status, message):
    answer = post(server, payload)
    assert answer.status_code == status, answer.text
    assert message in answer.text


def test_malformed_json_and_wrong_method(server):
    answer = httpx.post(server + "/route", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "json" in answer.text.lower()
    assert httpx.get(server + "/route").status_code == 405
    assert httpx.get(server + "/nowhere").status_code == 404


def test_body_size_limit_by_header_and_by_stream(server):
    big = {"prompt": "x " * MAX_BODY}
    answer = post(server, big)
    assert answer.status_code == 413 and f"over {MAX_BODY} bytes" in answer.text

    def chunks():  # no Content-Length: the limit applies as the body streams in
        body = json.dumps(big).encode()
        for i in range(0, len(body), 1024):
            yield body[i : i + 1024]

    streamed = httpx.post(server + "/route", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text


def test_bounded_concurrent_load_is_answered_fully(server):
    """200 requests from 16 threads (singles and batches mixed): every one 200 and right."""
    prompts = [MATH, CODE, HISTORY]
    expected = ["math-llm", "code-llm", "history-llm"]

    with httpx.Client(base_url=server, timeout=60) as client:
        def one(i: int):
            if i % 4 == 0:
                answer = client.post("/route", json={"prompts": prompts, "k": 2})
                return answer.status_code, [d["llm"] for d in answer.json()["decisions"]] == expected
            answer = client.post("/route", json={"prompt": prompts[i % 3]})
            return answer.status_code, answer.json()["decisions"][0]["llm"] == expected[i % 3]

        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(one, range(200)))
    assert [s for s, _ in results].count(200) == 200
    assert all(ok for _, ok in results)
    assert httpx.get(server + "/healthz").status_code == 200
