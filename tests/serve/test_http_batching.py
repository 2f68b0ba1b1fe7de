"""Micro-batching in a real server process: batched answers equal unbatched ones row for row, the
N prompts / T ms limits hold, one request's error leaves the others answered, settings validated."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the HTTP tests need httpx (dev extra)")
pytest.importorskip("fastapi", reason="the HTTP service needs fastapi")

from servers import free_port, serve_command, server_processes  # noqa: E402

HERE = Path(__file__).resolve().parent
N, T_MS = 4, 300
WORDS = ["prove the prime number theorem with algebra", "my python function has a bug in the loop",
         "which king won the medieval battle", "integral of the matrix derivative", "ancient empire treaty war",
         "recursion over an array pointer class"]
REQUESTS = [
    {"prompt": f"{WORDS[i % len(WORDS)]} {i}", "k": 1 + i % 3,
     **({"candidates": ["generalist", "history-llm", "code-llm"]} if i % 4 == 3 else {})}
    for i in range(24)
] + [{"prompts": [WORDS[0], WORDS[1], WORDS[2]], "k": 2}]


@pytest.fixture(scope="module")
def servers(tfidf_bundle_dir):
    """(micro-batching server with N prompts / T ms, server with micro-batching off, a micro-batching
    server whose encoder refuses texts holding "POISON"), started together."""
    ports = [free_port() for _ in range(3)]
    on = serve_command(tfidf_bundle_dir, ports[0], "--micro-batch-size", str(N), "--micro-batch-wait-ms", str(T_MS),
                       "--threads", "1")
    off = serve_command(tfidf_bundle_dir, ports[1], "--no-micro-batch")
    poisoned = [sys.executable, str(HERE / "poisoned_server.py"), str(tfidf_bundle_dir), str(ports[2]), "64", "400"]
    with server_processes(list(zip([on, off, poisoned], ports))) as urls:
        yield urls


def send_all(url: str, payloads: list[dict], concurrency: int = 16) -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(lambda p: client.post("/route", json=p), payloads))


def test_batched_answers_equal_unbatched_ones_row_for_row_and_batches_stay_within_n(servers):
    on_url, off_url, _ = servers
    batched, alone = send_all(on_url, REQUESTS), send_all(off_url, REQUESTS)
    assert [r.status_code for r in batched] == [200] * len(REQUESTS)
    assert [r.status_code for r in alone] == [200] * len(REQUESTS)
    assert [r.json() for r in batched] == [r.json() for r in alone]
    sizes = [int(r.headers["x-recroute-batch-size"]) for r in batched]
    assert max(sizes[:-1]) <= N and max(sizes) > 1  # N respected (the 3-prompt request may go alone)
    assert {int(r.headers["x-recroute-batch-size"]) for r in alone[:-1]} == {1}
    for payload, answer in zip(REQUESTS, batched):
        assert all(len(d["top_k"]) == payload["k"] for d in answer.json()["decisions"])
        if "candidates" in payload:
            assert {t["llm"] for d in answer.json()["decisions"] for t in d["top_k"]} <= set(payload["candidates"])


def test_a_lone_request_waits_about_t_then_is_answered(servers):
    on_url, _, _ = servers
    with httpx.Client(base_url=on_url, timeout=30) as client:
        client.post("/route", json={"prompt": WORDS[0]})  # connection open
        start = time.perf_counter()
        answer = client.post("/route", json={"prompt": WORDS[1]})
        seconds = time.perf_counter() - start
    assert answer.status_code == 200 and answer.headers["x-recroute-batch-size"] == "1"
    assert T_MS / 1000 * 0.9 <= seconds < T_MS / 1000 + 2.0  # waited for companions up to T, not much longer


def test_an_error_in_one_request_leaves_the_rest_of_its_batch_answered(servers):
    payloads = [{"prompt": WORDS[i % 3]} for i in range(6)]
    payloads[2] = {"prompt": "POISON pill"}
    payloads[4] = {"prompts": [WORDS[0], "POISON again"]}
    answers = send_all(servers[2], payloads, concurrency=6)
    assert [a.status_code for a in answers] == [200, 200, 422, 200, 422, 200]
    assert "POISON pill" in answers[2].json()["detail"] and "POISON again" in answers[4].json()["detail"]
    expected = ["math-llm", "code-llm", "history-llm"]
    for i in (0, 1, 3, 5):
        assert answers[i].json()["decisions"][0]["llm"] == expected[i % 3]
    assert max(int(answers[i].headers["x-recroute-batch-size"]) for i in (0, 1, 3, 5)) > 1  # they shared a batch


@pytest.mark.parametrize("option, value, message", [
    ("--micro-batch-size", "0", "max_batch"),
    ("--micro-batch-wait-ms", "-1", "max_wait_ms"),
    ("--micro-batch-wait-ms", "nan", "max_wait_ms"),
    ("--threads", "0", "threads"),
])
def test_bad_settings_stop_serve_with_one_line(tfidf_bundle_dir, option, value, message):
    from typer.testing import CliRunner

    from recroute.cli.main import app

    result = CliRunner().invoke(app, ["serve", "--bundle", str(tfidf_bundle_dir), option, value])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
