"""The routing gateway on loopback: overhead per request against calling the upstream directly, and
fault runs in which one of three upstreams fails.

Builds a TF-IDF + kNN bundle of MMLU-Pro (the fastest encoder available on this branch), starts three
fake OpenAI-compatible upstreams (tests/serve/fake_upstream.py, one process per LLM, for three LLMs
of the pool) and ``python -m recroute gateway`` in front of them (with a decision log), then:

1. **Routing decision**: p50/p99 of one prompt's encoder + router scoring in-process (the gateway's
   own decision cost, which the goal subtracts).
2. **Overhead**: with 1 and 16 concurrent clients (asyncio + httpx), requests straight to an upstream
   and the same requests through the gateway, interleaved in rounds; overhead = gateway p50 - direct
   p50 - routing p50 (goal: <= 3 ms).
3. **Faults**: 2,000 requests from 16 clients; the LLM the router picks most often returns 500 (then,
   in a second run, hangs past its timeout) for requests 500-1,499. Goal: 0 failed client requests and
   every request in the decision log.
4. **Bad input**: malformed bodies, unknown models, oversized requests: each must be a 4xx naming the
   problem; no 5xx of the gateway's own anywhere.

    python benchmarks/gateway.py                  # about 2 minutes on 2 shared cores
    python benchmarks/gateway.py --quick          # fewer requests, a smoke run

Writes benchmarks/results/gateway.json and gateway.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from fastapi import Request  # module level: FastAPI resolves the bare proxy's annotation from here

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FAKE = REPO / "tests" / "serve" / "fake_upstream.py"
sys.path.insert(0, str(HERE))
from machine import describe_machine  # noqa: E402

GOAL_OVERHEAD_MS = 3.0
DELAY_MS = 50.0  # the fake upstreams' time to answer in the main overhead runs (an LLM takes longer)
STATUSES: dict[str, int] = {}  # every status the clients saw in the whole run


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentiles(seconds) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "n": int(ms.size)}


def build_bundle(folder: Path, encoder_name: str, n_llms: int = 3):
    """(bundle, the benchmark's prompts, the n_llms LLMs given upstreams): ``encoder_name`` + kNN over
    MMLU-Pro, built into ``folder`` unless a bundle is already there."""
    import recroute
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data = recroute.load_dataset("mmlu_pro")
    if not (folder / "manifest.json").is_file():
        encoder = get_encoder(encoder_name)
        X = encoder.fit_encode(data.texts) if hasattr(encoder, "fit_encode") else encoder.encode(data.texts)
        RoutingBundle.build(KNNRouter(k=5).fit(data, X), encoder).save(folder)
    bundle = RoutingBundle.load(folder)
    means = np.nanmean(data.dense(), axis=0)
    pool = [bundle.llm_names[j] for j in np.argsort(-means, kind="stable")[:n_llms]]  # the strongest three
    return bundle, list(data.texts), pool


def routing_decision_seconds(bundle, texts: list[str]) -> tuple[list[float], float]:
    """(wall seconds per single-prompt decision (encode + score), mean CPU seconds per decision), in-process."""
    for text in texts[:20]:
        bundle.router.score(bundle.encode([text]))
    out = []
    cpu = time.process_time()
    for text in texts:
        start = time.perf_counter()
        bundle.router.score(bundle.encode([text]))
        out.append(time.perf_counter() - start)
    return out, (time.process_time() - cpu) / len(texts)


def start(cmd: list[str], env: dict | None = None, out=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def start_upstream(name: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(FAKE), "--names", name], stdout=subprocess.PIPE)
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        raise RuntimeError(f"fake upstream {name} did not start: {line}")
    return proc, int(line.split()[1])


def wait_ready(url: str, proc: subprocess.Popen, what: str) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError(f"{what} did not start within 180 s")


JSON_HEADERS = b"Content-Type: application/json\r\nAccept: application/json\r\n"


async def load(url: str, bodies, concurrency: int, on_index=None, seconds: float | None = None,
               resend: bool = True) -> list[dict]:
    """POST bodies to url from ``concurrency`` clients: every body of a list, or ``bodies(i)`` for
    ``seconds``; one result dict per request (``t``: its start, seconds into the run), in order.

    The clients use recroute's lean upstream client (keep-alive HTTP/1.1 on httptools), so that the
    load generator takes as little of the shared cores as it can. ``resend``: send a request once more
    when its kept-alive connection closed before any byte of an answer (False: count it failed)."""
    from recroute.serve.upstream_client import Target, UpstreamClient, UpstreamError

    body = bodies if callable(bodies) else bodies.__getitem__
    n = None if callable(bodies) else len(bodies)
    target, client = Target.parse(url), UpstreamClient(max_idle=2 * concurrency, resend_on_stale=resend)
    results: list[dict] = []
    counter = iter(range(n) if n is not None else __import__("itertools").count())
    t0 = time.perf_counter()

    async def worker():
        for i in counter:
            if seconds is not None and time.perf_counter() - t0 >= seconds:
                return
            if on_index is not None:
                await on_index(i)
            start = time.perf_counter()
            try:
                r = await client.post(target, JSON_HEADERS, json.dumps(body(i)).encode(), 5.0, 30.0)
                await r.aread()
                results.append({"i": i, "t": start - t0, "s": time.perf_counter() - start, "status": r.status_code,
                                "ok": r.status_code == 200 and b" says: " in r.content,
                                "id": r.headers.get("x-recroute-decision-id"), "llm": r.headers.get("x-recroute-llm"),
                                "fallbacks": int(r.headers.get("x-recroute-fallbacks", "0")),
                                "failed": r.headers.get("x-recroute-failed", ""),
                                "overhead_ms": float(r.headers.get("x-recroute-overhead-ms", "nan"))})
            except (UpstreamError, TimeoutError, OSError) as exc:  # a failed client request, counted
                results.append({"i": i, "t": start - t0, "s": time.perf_counter() - start, "status": None,
                                "ok": False, "error": f"{type(exc).__name__}: {exc}"})

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    await client.aclose()
    results.sort(key=lambda x: x["i"])
    for x in results:
        STATUSES[str(x["status"])] = STATUSES.get(str(x["status"]), 0) + 1
    return results


def chat(text: str, model: str = "recroute") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 64}


def cpu_seconds(pids) -> float:
    """User + system CPU seconds the processes ``pids`` (one pid or a list) have used (Linux /proc)."""
    total = 0.0
    for pid in [pids] if isinstance(pids, int) else pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # a worker that is gone
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def set_delay(controls: dict[str, str], delay_ms: float) -> None:
    import httpx

    for name, url in controls.items():
        httpx.post(url, json={"name": name, "mode": "ok", "delay_ms": delay_ms}).raise_for_status()


def overhead_rows(gateway: str, direct: str, prompts: list[str], routing: dict, n: int, rounds: int,
                  gateway_pid, controls: dict[str, str], modes=((DELAY_MS, 1), (DELAY_MS, 16), (0.0, 1), (0.0, 16))
                  ) -> list[dict]:
    """Direct and gateway blocks interleaved in ``rounds``, for each upstream delay and client count."""
    rows, routing_p50 = [], routing["p50_ms"]
    for delay_ms, concurrency in modes:
        set_delay(controls, delay_ms)
        per_round = max(concurrency, (n if concurrency > 1 else n // 4) // rounds)
        d_s, g_s, bad, g_cpu, header = [], [], 0, 0.0, []
        asyncio.run(load(direct, [chat(t, "warm") for t in prompts[:32]], concurrency))
        asyncio.run(load(gateway, [chat(t) for t in prompts[:32]], concurrency))
        for r in range(rounds):
            batch = prompts[r * per_round:(r + 1) * per_round]
            got_d = asyncio.run(load(direct, [chat(t, "m") for t in batch], concurrency))
            c1 = cpu_seconds(gateway_pid)
            got_g = asyncio.run(load(gateway, [chat(t) for t in batch], concurrency))
            g_cpu += cpu_seconds(gateway_pid) - c1
            d_s += [x["s"] for x in got_d]
            g_s += [x["s"] for x in got_g]
            header += [x["overhead_ms"] for x in got_g if x["ok"]]
            bad += sum(not x["ok"] for x in got_d + got_g)
        d, g = percentiles(d_s), percentiles(g_s)
        overhead = g["p50_ms"] - d["p50_ms"] - routing_p50
        cpu_ms = 1000 * g_cpu / len(g_s)
        rows.append({"upstream_delay_ms": delay_ms, "concurrency": concurrency, "requests_each": len(d_s),
                     "direct": d, "gateway": g, "routing_decision_p50_ms": round(routing_p50, 3),
                     "overhead_p50_ms": round(overhead, 3), "goal_ms": GOAL_OVERHEAD_MS,
                     "overhead_header_p50_ms": round(float(np.nanmedian(header)), 3) if header else None,
                     "met": bool(overhead <= GOAL_OVERHEAD_MS), "failed_requests": bad,
                     "gateway_cpu_ms_per_request": round(cpu_ms, 3),
                     "gateway_cpu_ms_per_request_beyond_routing": round(cpu_ms - routing["cpu_ms_mean"], 3)})
        print(f"delay {delay_ms:4.0f} ms, {concurrency:2d} clients: direct p50 {d['p50_ms']:.2f} ms, gateway p50 "
              f"{g['p50_ms']:.2f} ms, routing p50 {routing_p50:.2f} ms -> overhead {overhead:.2f} ms "
              f"(goal <= {GOAL_OVERHEAD_MS}); gateway CPU {cpu_ms:.2f} ms/request, "
              f"{cpu_ms - routing['cpu_ms_mean']:.2f} beyond routing", flush=True)
    set_delay(controls, 0.0)
    return rows


def bare_proxy(port: int, url: str) -> None:
    """A minimal FastAPI + httpx proxy to one URL (no parsing, routing, logging or fallback): the floor
    any FastAPI/httpx gateway pays, measured beside recroute's in the same run."""
    from contextlib import asynccontextmanager

    import httpx
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import Response

    state = {}

    @asynccontextmanager
    async def lifespan(app):
        state["client"] = httpx.AsyncClient()
        yield
        await state["client"].aclose()

    app = FastAPI(lifespan=lifespan)
    target = httpx.URL(url)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        r = await state["client"].post(target, content=await request.body(), headers={"content-type": "application/json"})
        return Response(r.content, r.status_code, headers={"content-type": "application/json"})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def cpu_breakdown(base: str, pid: int, prompts: list[str], direct_llm: str, direct_url: str, bare: str,
                  bare_pid: int, n: int = 400) -> dict:
    """CPU ms per request of the serving process and wall p50 (sequential, one client) for: the upstream
    directly, the bare FastAPI + httpx proxy, recroute's /healthz (the uvicorn + FastAPI floor), a chat
    request naming one LLM (forwarding + log, no routing) and a routed chat request."""
    import httpx

    out = {}
    with httpx.Client(timeout=30) as client:
        for label, proc, call in (
            ("direct_upstream", None, lambda t: client.post(direct_url, json=chat(t, "m"))),
            ("bare_proxy", bare_pid, lambda t: client.post(bare + "/v1/chat/completions", json=chat(t, "m"))),
            ("gateway_healthz", pid, lambda t: client.get(base + "/healthz")),
            ("gateway_named_llm", pid, lambda t: client.post(base + "/v1/chat/completions", json=chat(t, direct_llm))),
            ("gateway_routed", pid, lambda t: client.post(base + "/v1/chat/completions", json=chat(t))),
        ):
            for t in prompts[:20]:
                call(t)
            start, wall = cpu_seconds(proc) if proc else 0.0, []
            for t in prompts[:n]:
                t0 = time.perf_counter()
                r = call(t)
                wall.append(time.perf_counter() - t0)
                if r.status_code != 200:
                    raise RuntimeError(f"{label}: status {r.status_code}: {r.text[:200]}")
            out[label] = {"p50_ms": percentiles(wall)["p50_ms"]}
            if proc:
                out[label]["cpu_ms"] = round(1000 * (cpu_seconds(proc) - start) / n, 3)
    print(f"one client, sequential: {out}", flush=True)
    return out


def fault_run(gateway: str, control: str, victim: str, mode: str, prompts: list[str], log: Path, n: int) -> dict:
    """n requests from 16 clients; ``victim`` is in ``mode`` for requests n/4 .. 3n/4 - 1."""
    from recroute.feedback.logs import read_decision_log

    lo, hi = n // 4, 3 * n // 4

    import httpx

    async def switch(i):
        if i == lo:
            await asyncio.to_thread(httpx.post, control, json={"name": victim, "mode": mode})
        elif i == hi:
            await asyncio.to_thread(httpx.post, control, json={"name": victim, "mode": "ok"})

    start = time.perf_counter()
    got = asyncio.run(load(gateway, [chat(prompts[i % len(prompts)]) for i in range(n)], 16, on_index=switch))
    seconds = time.perf_counter() - start
    ids = [x["id"] for x in got if x.get("id")]
    logged = read_decision_log(log).set_index("decision_id")
    in_log = logged.loc[logged.index.intersection(ids)]
    row = {"mode": mode, "failing_llm": victim, "failing_for_requests": [lo, hi - 1], "requests": n,
           "failed_client_requests": sum(not x["ok"] for x in got),
           "statuses": {str(k): v for k, v in sorted(_count(x["status"] for x in got).items(), key=str)},
           "with_fallback": sum(x.get("fallbacks", 0) > 0 for x in got),
           "answered_by": _count(x.get("llm") for x in got),
           "decision_ids_returned": len(set(ids)), "in_decision_log": int(len(in_log)),
           "log_fallback_rows": int(sum(len(f) > 0 for f in in_log["fallbacks"])),
           "every_request_logged": bool(len(set(ids)) == n and len(in_log) == n and in_log.index.is_unique),
           "latency": percentiles([x["s"] for x in got]), "seconds": round(seconds, 2)}
    row["met"] = bool(row["failed_client_requests"] == 0 and row["every_request_logged"])
    print(f"fault {mode:8s} on {victim}: {row['failed_client_requests']} failed of {n}, {row['with_fallback']} fell "
          f"back, {row['in_decision_log']} in the log -> {'met' if row['met'] else 'NOT met'}", flush=True)
    return row


def _count(values) -> dict:
    out: dict = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out


BAD_INPUTS = [
    ("not JSON", b"{oops", "not valid JSON"),
    ("a JSON array", b"[1]", "must be a JSON object"),
    ("no messages", json.dumps({"model": "recroute"}).encode(), "'messages' must be a non-empty list"),
    ("a message without role", json.dumps({"model": "recroute", "messages": [{"content": "x"}]}).encode(), "messages[0]"),
    ("no user message", json.dumps({"model": "recroute", "messages": [{"role": "system", "content": "x"}]}).encode(),
     "no message with role 'user'"),
    ("stream not boolean", json.dumps({"model": "recroute", "stream": 1, "messages": [{"role": "user", "content": "x"}]}).encode(),
     "'stream' must be true or false"),
    ("max_tokens over the limit", json.dumps({"model": "recroute", "max_tokens": 10**6,
                                              "messages": [{"role": "user", "content": "x"}]}).encode(), "limit of"),
    ("unknown model", json.dumps({"model": "gpt-x", "messages": [{"role": "user", "content": "x"}]}).encode(), "unknown model"),
    ("unknown routing option", json.dumps({"model": "recroute:k=2", "messages": [{"role": "user", "content": "x"}]}).encode(),
     "unknown routing option"),
    ("unknown candidate", json.dumps({"model": "recroute:candidates=nope", "messages": [{"role": "user", "content": "x"}]}).encode(),
     "not configured LLMs"),
    ("oversized body", json.dumps({"model": "recroute", "messages": [{"role": "user", "content": "x" * 70000}]}).encode(),
     "request body over"),
]


def bad_inputs(gateway: str) -> list[dict]:
    import httpx

    rows = []
    for label, body, needle in BAD_INPUTS:
        r = httpx.post(gateway, content=body, headers={"content-type": "application/json"}, timeout=10)
        doc = r.json()
        message = doc["error"]["message"] if "error" in doc else str(doc.get("detail"))
        rows.append({"input": label, "status": r.status_code, "message": message,
                     "met": bool(400 <= r.status_code < 500 and needle in message)})
    return rows


# ---------------------------------------------------------------------- production conditions (--fleet)
ADMIN_KEY = "bench-admin-key"


def start_gateway(bundle_dir: Path, toml: Path, log: Path, workers: int, out: Path, *extra: str):
    """(process, base URL, worker pids) of ``recroute gateway --workers N`` once every worker is up."""
    port = free_port()
    gw = start([sys.executable, "-m", "recroute", "gateway", "--bundle", str(bundle_dir), "--upstreams", str(toml),
                "--port", str(port), "--log", str(log), "--max-tokens", "4096", "--max-body-bytes", "65536", "--quiet",
                "--workers", str(workers), "--admin-key-env", "BENCH_ADMIN", *extra],
               {"PYTHONPATH": str(REPO), "BENCH_ADMIN": ADMIN_KEY}, open(out, "wb"))
    base = f"http://127.0.0.1:{port}"
    wait_ready(base + "/healthz", gw, "the gateway")
    return gw, base, worker_pids(base, workers)


def worker_pids(base: str, workers: int) -> list[int]:
    """The pids of the gateway's workers (from /healthz), once all ``workers`` are up."""
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        found = [w["pid"] for w in httpx.get(base + "/healthz", timeout=10).json().get("workers", [])]
        if len(found) >= workers:
            return found
        time.sleep(0.3)
    raise RuntimeError(f"the gateway did not start {workers} workers")


def stop_process(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def throughput_row(url: str, pids: list[int], prompts: list[str], routing: dict, n: int, named: str,
                   concurrency: int = 16) -> dict:
    """Routed requests/s and CPU per request of the gateway's workers, instant upstreams; then the same
    requests naming one LLM (``named``: no decision), whose CPU is everything but the decision."""
    asyncio.run(load(url, [chat(t) for t in prompts[:64]], concurrency))
    row = {}
    for label, model in (("routed", "recroute"), ("named_llm", named)):
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        got = asyncio.run(load(url, [chat(prompts[i % len(prompts)], model) for i in range(n)], concurrency))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - cpu0
        ok = [x for x in got if x["ok"]]
        row[label] = {"requests": n, "clients": concurrency, "failed": n - len(ok), "requests_per_s": round(n / wall, 1),
                      "latency": percentiles([x["s"] for x in got]),
                      "overhead_header_p50_ms": round(float(np.nanmedian([x["overhead_ms"] for x in ok])), 3),
                      "cpu_ms_per_request": round(1000 * cpu / n, 3), "load_average": [round(x, 2) for x in os.getloadavg()]}
    row["cpu_ms_decision_in_gateway"] = round(row["routed"]["cpu_ms_per_request"] - row["named_llm"]["cpu_ms_per_request"], 3)
    row["cpu_ms_beyond_decision"] = row["named_llm"]["cpu_ms_per_request"]
    print(f"  throughput: {row['routed']['requests_per_s']} routed requests/s, CPU {row['routed']['cpu_ms_per_request']} "
          f"ms/request; named LLM {row['named_llm']['requests_per_s']}/s, CPU {row['named_llm']['cpu_ms_per_request']} "
          f"ms/request (= beyond the decision); load {row['routed']['load_average']}", flush=True)
    return row


def reload_under_load(base: str, bundles: list[Path], prompts: list[str], log: Path, seconds: float,
                      every_s: float = 5.0) -> dict:
    """16 clients for ``seconds`` while POST /admin/reload swaps bundles every ``every_s`` seconds."""
    import httpx

    from recroute.feedback.logs import read_decision_log

    reloads: list[dict] = []

    async def reload(k: int):
        t = time.perf_counter()
        r = await asyncio.to_thread(httpx.post, base + "/admin/reload", json={"bundle": str(bundles[k % 2])},
                                    headers={"authorization": f"Bearer {ADMIN_KEY}"}, timeout=120)
        reloads.append({"status": r.status_code, "seconds": round(time.perf_counter() - t, 3),
                        "checksum": r.json().get("checksum"), "workers_swapped": r.json().get("workers_swapped")})

    async def reloader(tasks: list):
        for k in range(1, int(seconds // every_s) + 1):  # at a fixed rate, whether the last one is done or not
            await asyncio.sleep(every_s if k == 1 else max(0.0, k * every_s - (time.perf_counter() - t0)))
            tasks.append(asyncio.get_running_loop().create_task(reload(k)))

    async def run():
        tasks: list = []
        ticker = asyncio.get_running_loop().create_task(reloader(tasks))
        got = await load(base + "/v1/chat/completions", lambda i: chat(prompts[i % len(prompts)]), 16, seconds=seconds)
        await ticker
        await asyncio.gather(*tasks)
        return got

    t0 = time.perf_counter()

    got = asyncio.run(run())
    ids = [x["id"] for x in got if x.get("id")]
    logged = read_decision_log(log).set_index("decision_id")
    in_log = logged.loc[logged.index.intersection(ids)]
    row = {"seconds": seconds, "reload_every_s": every_s, "requests": len(got), "failed": sum(not x["ok"] for x in got),
           "reloads": reloads, "reloads_ok": sum(r["status"] == 200 for r in reloads),
           "decisions_in_log": int(len(in_log)), "decisions_lost": len(set(ids)) - int(len(in_log)),
           "checksums_in_log": {str(k): int(v) for k, v in in_log["bundle_checksum"].value_counts().items()},
           "latency": percentiles([x["s"] for x in got]), "load_average": [round(x, 2) for x in os.getloadavg()]}
    row["met"] = bool(row["failed"] == 0 and row["decisions_lost"] == 0 and row["reloads_ok"] == len(reloads) > 0)
    print(f"  reload every {every_s:g} s under load: {row['failed']} failed of {row['requests']}, {row['reloads_ok']} "
          f"reloads, {row['decisions_lost']} decisions lost -> {'met' if row['met'] else 'NOT met'}", flush=True)
    return row


def sigkill_under_load(base: str, pids: list[int], prompts: list[str], log: Path, seconds: float, kill_at: float) -> dict:
    """16 clients for ``seconds``; one of the workers gets SIGKILL at ``kill_at`` seconds."""
    import signal
    import warnings

    from recroute.feedback.logs import read_decision_log

    victim = pids[0]

    async def run():
        async def kill():
            await asyncio.sleep(kill_at)
            os.kill(victim, signal.SIGKILL)
        task = asyncio.get_running_loop().create_task(kill())
        got = await load(base + "/v1/chat/completions", lambda i: chat(prompts[i % len(prompts)]), 16, seconds=seconds,
                         resend=False)  # a request cut off with its worker counts as failed
        await task
        return got

    got = asyncio.run(run())
    failed = [x for x in got if not x["ok"]]
    after = [x for x in got if x["t"] > kill_at + 1.0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logged = read_decision_log(log)
    restarted = worker_pids(base, len(pids))
    row = {"seconds": seconds, "killed_pid": victim, "killed_at_s": kill_at, "requests": len(got),
           "failed": len(failed), "failed_started_at_s": sorted(round(x["t"], 3) for x in failed),
           "failed_errors": sorted({x.get("error", str(x["status"]))[:80] for x in failed}),
           "ok_after_kill": sum(x["ok"] for x in after), "failed_after_kill_plus_1s": sum(not x["ok"] for x in after),
           "log_read_ok": True, "log_warnings": [str(w.message)[:160] for w in caught], "log_decisions": int(len(logged)),
           "workers_after": restarted, "latency": percentiles([x["s"] for x in got]),
           "load_average": [round(x, 2) for x in os.getloadavg()]}
    row["met"] = bool(row["failed_after_kill_plus_1s"] == 0 and row["failed"] <= 16 and victim not in restarted)
    print(f"  SIGKILL of worker {victim} at {kill_at} s: {row['failed']} failed of {row['requests']} "
          f"(at most the 16 in flight may), {row['ok_after_kill']} ok after -> {'met' if row['met'] else 'NOT met'}",
          flush=True)
    return row


def outage_run(base: str, controls: dict[str, str], victim: str, prompts: list[str], healthy_s: float, down_s: float,
               after_s: float, cooldown_s: float | None) -> dict:
    """16 clients, 50 ms upstreams; ``victim`` hangs (past its timeout) from ``healthy_s`` for ``down_s`` seconds."""
    import httpx

    set_delay(controls, DELAY_MS)

    async def run():
        async def outage():
            await asyncio.sleep(healthy_s)
            await asyncio.to_thread(httpx.post, controls[victim], json={"name": victim, "mode": "hang"})
            await asyncio.sleep(down_s)
            await asyncio.to_thread(httpx.post, controls[victim], json={"name": victim, "mode": "ok"})
        task = asyncio.get_running_loop().create_task(outage())
        got = await load(base + "/v1/chat/completions", lambda i: chat(prompts[i % len(prompts)]), 16,
                         seconds=healthy_s + down_s + after_s)
        await task
        return got

    got = asyncio.run(run())
    set_delay(controls, 0.0)
    down_at, up_at = healthy_s, healthy_s + down_s
    healthy = [x["s"] for x in got if x["t"] < down_at and x["ok"]]
    settle = 5.0  # the breaker opens within its first failures; the p50 is taken after this
    during = [x["s"] for x in got if down_at + settle <= x["t"] < up_at]
    back = [x["t"] for x in got if x["t"] >= up_at and x.get("llm") == victim]
    row = {"breaker": "off" if cooldown_s is None else f"on (cooldown {cooldown_s:g} s)", "victim": victim,
           "healthy_s": healthy_s, "down_s": down_s, "after_s": after_s, "requests": len(got),
           "failed": sum(not x["ok"] for x in got), "healthy_p50_ms": percentiles(healthy)["p50_ms"],
           "outage_p50_ms": percentiles(during)["p50_ms"], "outage_p99_ms": percentiles(during)["p99_ms"],
           "victim_tries_during_outage": sum(victim in x.get("failed", "") for x in got if down_at <= x["t"] < up_at),
           "back_in_routing_after_s": round(back[0] - up_at, 3) if back else None,
           "load_average": [round(x, 2) for x in os.getloadavg()]}
    row["p50_within_5ms_of_healthy"] = bool(row["outage_p50_ms"] - row["healthy_p50_ms"] <= 5.0)
    row["back_within_one_cooldown"] = (None if cooldown_s is None else
                                       bool(back and back[0] - up_at <= cooldown_s))
    print(f"  outage of {victim} for {down_s:g} s, breaker {row['breaker']}: p50 healthy {row['healthy_p50_ms']} ms, "
          f"during {row['outage_p50_ms']} ms, {row['victim_tries_during_outage']} tries of it, back after "
          f"{row['back_in_routing_after_s']} s, {row['failed']} failed", flush=True)
    return row


def rate_limit_run(base: str, controls: dict[str, str], victim: str, prompts: list[str], log: Path,
                   bursts=((3.0, 2.0), (8.0, 2.0), (13.0, 2.0)), seconds: float = 18.0, retry_after: int = 1) -> dict:
    """16 clients; ``victim`` answers 429 (Retry-After ``retry_after``) during each (start, length) burst."""
    import httpx

    async def run():
        async def switch():
            t0 = time.perf_counter()
            for start_s, length in bursts:
                await asyncio.sleep(max(0.0, start_s - (time.perf_counter() - t0)))
                await asyncio.to_thread(httpx.post, controls[victim],
                                        json={"name": victim, "mode": "error429", "retry_after": retry_after})
                await asyncio.sleep(length)
                await asyncio.to_thread(httpx.post, controls[victim], json={"name": victim, "mode": "ok"})
        task = asyncio.get_running_loop().create_task(switch())
        got = await load(base + "/v1/chat/completions", lambda i: chat(prompts[i % len(prompts)]), 16, seconds=seconds)
        await task
        return got

    got = asyncio.run(run())
    in_burst = [x for x in got if any(a <= x["t"] < a + b for a, b in bursts)]
    row = {"bursts": [list(b) for b in bursts], "retry_after_s": retry_after, "requests": len(got),
           "failed": sum(not x["ok"] for x in got), "requests_during_bursts": len(in_burst),
           "answered_429_then_fell_back": sum(f"{victim}:http_429" in x.get("failed", "") for x in got),
           "answered_by_victim_during_bursts": sum(x.get("llm") == victim for x in in_burst),
           "latency": percentiles([x["s"] for x in got]), "load_average": [round(x, 2) for x in os.getloadavg()]}
    row["met"] = row["failed"] == 0
    print(f"  429 bursts on {victim}: {row['failed']} failed of {row['requests']}, {row['answered_429_then_fell_back']} "
          f"429s fell back among {row['requests_during_bursts']} requests in the bursts", flush=True)
    return row


def fleet(args, tmp: Path, procs: list) -> dict:
    """Every production-condition run: workers 1 and 2, reload under load, SIGKILL, outage with the
    breaker on and off, 429 bursts."""
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    quick, parts = args.quick, set(args.parts.split(","))
    bundle_dir = Path(args.bundle_dir) if args.bundle_dir else tmp / "bundle"
    bundle, texts, pool = build_bundle(bundle_dir, args.encoder)
    rng = np.random.default_rng(1)
    prompts = [texts[i] for i in rng.permutation(len(texts))[:3000]]
    wall, routing_cpu = routing_decision_seconds(bundle, prompts[:300])
    routing = {**percentiles(wall), "cpu_ms_mean": round(routing_cpu * 1000, 3)}
    print(f"routing decision in-process: p50 {routing['p50_ms']} ms, CPU {routing['cpu_ms_mean']} ms", flush=True)
    other = tmp / "bundle-k3"  # a second bundle to reload to: same encoder, kNN with k=3
    if not other.exists():
        import recroute

        data = recroute.load_dataset("mmlu_pro")
        RoutingBundle.build(KNNRouter(k=3).fit(data, bundle.encode(data.texts)), bundle.encoder).save(other)
    idx, _ = bundle.route_arrays(bundle.encode(prompts[:1000]), 1, pool)
    picks = _count(bundle.llm_names[j] for j in idx[:, 0])
    victim = max(pool, key=lambda n: picks.get(n, 0))
    ports = {}
    for name in pool:
        proc, ports[name] = start_upstream(name)
        procs.append(proc)
    toml = tmp / "upstreams.toml"
    toml.write_text("".join(f'[upstreams."{n}"]\nbase_url = "http://127.0.0.1:{ports[n]}/{n}/v1"\ntimeout_s = 0.5\n\n'
                            for n in pool))
    controls = {n: f"http://127.0.0.1:{ports[n]}/_control" for n in pool}
    direct = f"http://127.0.0.1:{ports[pool[0]]}/{pool[0]}/v1/chat/completions"
    out: dict = {"routing_decision_in_process": routing, "victim": victim, "workers": {}}
    n_tp = 1000 if quick else 4000
    for workers in (1, 2):
        print(f"workers {workers}:", flush=True)
        log = tmp / f"log-w{workers}.jsonl"
        gw, base, pids = start_gateway(bundle_dir, toml, log, workers, tmp / f"gw{workers}.out")
        procs.append(gw)
        url = base + "/v1/chat/completions"
        row = {"throughput_instant_upstream": throughput_row(url, pids, prompts, routing, n_tp, pool[0])}
        row["overhead_50ms_upstream"] = overhead_rows(url, direct, prompts, routing, 400 if quick else 1600,
                                                      2 if quick else 4, pids, controls, modes=((DELAY_MS, 16),))[0]
        if workers == 2 and "scenarios" in parts:
            row["reload_under_load"] = reload_under_load(base, [bundle_dir, other], prompts, log,
                                                         12.0 if quick else 26.0)
            row["sigkill_under_load"] = sigkill_under_load(base, pids, prompts, log, 8.0 if quick else 12.0, 3.0)
            row["rate_limit_bursts"] = rate_limit_run(base, controls, victim, prompts, log)
        out["workers"][str(workers)] = row
        stop_process(gw)
    out["outage"] = []
    down = 20.0 if quick else 60.0
    settings = (("--breaker-failures", "5", "--breaker-cooldown-s", "5"), ("--breaker-failures", "0"))
    for breaker in settings if "outage" in parts else ():
        gw, base, _ = start_gateway(bundle_dir, toml, tmp / "log-outage.jsonl", 2, tmp / "gw-outage.out", *breaker)
        procs.append(gw)
        out["outage"].append(outage_run(base, controls, victim, prompts, 8.0, down, 12.0,
                                        5.0 if breaker[1] == "5" else None))
        stop_process(gw)
    return out


def fleet_markdown(r: dict) -> str:
    f = r["fleet"]
    lines = ["# Gateway under production conditions", "", f"{r['date']}; {r['machine']['cpu']}, {r['machine']['cores']} "
             f"cores. {r['note']}", "", f"Routing decision in-process: p50 {f['routing_decision_in_process']['p50_ms']} ms, "
             f"CPU {f['routing_decision_in_process']['cpu_ms_mean']} ms. Load average (1/5/15 min) is given beside each "
             "figure.", "", "## Workers (16 clients)", "",
             "Instant upstreams: routed requests, then the same requests naming one LLM (no decision: the CPU beyond "
             "the decision). 50 ms upstreams: overhead = gateway p50 - direct p50 - routing p50, direct and gateway "
             "runs interleaved; the header column is the p50 of `x-recroute-overhead-ms`.", "",
             "| workers | routed req/s | CPU ms/routed request | named-LLM req/s | CPU ms/request beyond the decision "
             "| overhead p50 ms, 50 ms upstream (header p50) | load |", "|---:|---:|---:|---:|---:|---:|---|"]
    for w, row in f["workers"].items():
        t, o = row["throughput_instant_upstream"], row["overhead_50ms_upstream"]
        lines.append(f"| {w} | {t['routed']['requests_per_s']} | {t['routed']['cpu_ms_per_request']} | "
                     f"{t['named_llm']['requests_per_s']} | {t['cpu_ms_beyond_decision']} | {o['overhead_p50_ms']} "
                     f"({o['overhead_header_p50_ms']}) | {t['routed']['load_average']} |")
    two = f["workers"].get("2", {})
    if "reload_under_load" in two:
        x = two["reload_under_load"]
        lines += ["", "## Reload every 5 s under 16 clients (2 workers)", "",
                  f"{x['requests']} requests in {x['seconds']} s, {x['failed']} failed; {x['reloads_ok']} of "
                  f"{len(x['reloads'])} reloads 200 (each {[r['seconds'] for r in x['reloads']]} s, workers swapped "
                  f"{[r['workers_swapped'] for r in x['reloads']]}); decisions lost from the log: {x['decisions_lost']}; "
                  f"decisions per bundle checksum: {x['checksums_in_log']}; load {x['load_average']}. "
                  f"Met: {'yes' if x['met'] else 'no'}."]
        k = two["sigkill_under_load"]
        lines += ["", "## SIGKILL of one of two workers under 16 clients", "",
                  f"{k['requests']} requests in {k['seconds']} s, worker killed at {k['killed_at_s']} s: {k['failed']} "
                  f"failed (started at {k['failed_started_at_s']} s; {k['failed_errors']}), {k['ok_after_kill']} ok and "
                  f"{k['failed_after_kill_plus_1s']} failed from 1 s after the kill; the log read with warnings "
                  f"{k['log_warnings']}; workers after: {k['workers_after']}; load {k['load_average']}. "
                  f"Met: {'yes' if k['met'] else 'no'}."]
        q = two["rate_limit_bursts"]
        lines += ["", "## 429 bursts (2 workers, 16 clients)", "",
                  f"Bursts {q['bursts']} (start s, length s) with Retry-After {q['retry_after_s']} s: {q['requests']} "
                  f"requests, {q['failed']} failed; {q['answered_429_then_fell_back']} answers were a 429 that fell "
                  f"back, among {q['requests_during_bursts']} requests during the bursts; load {q['load_average']}."]
    lines += ["", "## Upstream down (hanging past its 0.5 s timeout), 2 workers, 16 clients, 50 ms upstreams", "",
              "| breaker | down s | healthy p50 ms | p50 during the outage (from 5 s in) | p99 during | tries of the "
              "failing LLM during the outage | back in routing after recovery, s | failed | load |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for o in f["outage"]:
        lines.append(f"| {o['breaker']} | {o['down_s']} | {o['healthy_p50_ms']} | {o['outage_p50_ms']} | {o['outage_p99_ms']} "
                     f"| {o['victim_tries_during_outage']} | {o['back_in_routing_after_s']} | {o['failed']} | "
                     f"{o['load_average']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--out", default=str(HERE / "results" / "gateway.json"))
    parser.add_argument("--encoder", default="static", help="the bundle's encoder (static, tfidf, minilm-int8, ...)")
    parser.add_argument("--bundle-dir", default=None, help="build the bundle here once and reuse it")
    parser.add_argument("--bare-proxy", nargs=2, metavar=("PORT", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--fleet", action="store_true",
                        help="the production-condition runs (workers, reload, SIGKILL, outage, 429) -> gateway_fleet.json")
    parser.add_argument("--parts", default="workers,scenarios,outage",
                        help="with --fleet: workers (1 and 2: throughput, overhead), scenarios (reload, SIGKILL, 429 "
                             "with 2 workers), outage (breaker on / off)")
    args = parser.parse_args()
    if args.bare_proxy:
        bare_proxy(int(args.bare_proxy[0]), args.bare_proxy[1])
        return
    from recroute.serve.gateway import tokenizers_on_one_thread

    tokenizers_on_one_thread()  # the in-process decision measured as the gateway's workers make it
    if args.fleet:
        return main_fleet(args)
    n_overhead, rounds, n_fault = (200, 2, 400) if args.quick else (1600, 4, 2000)

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        try:
            t0 = time.perf_counter()
            bundle_dir = Path(args.bundle_dir) if args.bundle_dir else tmp / "bundle"
            bundle, texts, pool = build_bundle(bundle_dir, args.encoder)
            rng = np.random.default_rng(0)
            prompts = [texts[i] for i in rng.permutation(len(texts))[:max(n_overhead, 2000)]]
            print(f"bundle {bundle!r} built in {time.perf_counter() - t0:.1f} s; upstreams for {pool}", flush=True)
            wall, routing_cpu = routing_decision_seconds(bundle, prompts[:500])
            routing = {**percentiles(wall), "cpu_ms_mean": round(routing_cpu * 1000, 3)}
            print(f"routing decision in-process: p50 {routing['p50_ms']:.2f} ms, p99 {routing['p99_ms']:.2f} ms, "
                  f"CPU {routing['cpu_ms_mean']:.2f} ms", flush=True)
            # the LLM the router picks most often among the pool is the one that fails
            idx, _ = bundle.route_arrays(bundle.encode(prompts[:n_fault]), 1, pool)
            picks = _count(bundle.llm_names[j] for j in idx[:, 0])
            victim = max(pool, key=lambda n: picks.get(n, 0))

            ports = {}
            for name in pool:
                proc, ports[name] = start_upstream(name)
                procs.append(proc)
            toml = "".join(f'[upstreams."{name}"]\nbase_url = "http://127.0.0.1:{ports[name]}/{name}/v1"\n'
                           f"timeout_s = 0.5\ninput_price_per_mtok = 1.0\noutput_price_per_mtok = 2.0\n\n"
                           for name in pool)
            (tmp / "upstreams.toml").write_text(toml)
            port, log = free_port(), tmp / "decisions.jsonl"
            gw = start([sys.executable, "-m", "recroute", "gateway", "--bundle", str(bundle_dir), "--upstreams",
                        str(tmp / "upstreams.toml"), "--port", str(port), "--log", str(log), "--max-tokens", "4096",
                        "--max-body-bytes", "65536", "--quiet", "--workers", "1"], {"PYTHONPATH": str(REPO)},
                       open(tmp / "gateway.out", "wb"))
            procs.append(gw)
            base = f"http://127.0.0.1:{port}"
            wait_ready(base + "/healthz", gw, "the gateway")
            pids = worker_pids(base, 1)
            gateway_url = base + "/v1/chat/completions"
            direct_url = f"http://127.0.0.1:{ports[pool[0]]}/{pool[0]}/v1/chat/completions"

            controls = {name: f"http://127.0.0.1:{ports[name]}/_control" for name in pool}
            overhead = overhead_rows(gateway_url, direct_url, prompts, routing, n_overhead, rounds, pids, controls)
            bare_port = free_port()
            bare = start([sys.executable, str(Path(__file__).resolve()), "--bare-proxy", str(bare_port), direct_url])
            procs.append(bare)
            wait_ready(f"http://127.0.0.1:{bare_port}/healthz", bare, "the bare proxy")
            cpu = cpu_breakdown(base, pids, prompts, pool[0], direct_url, f"http://127.0.0.1:{bare_port}", bare.pid)
            control = f"http://127.0.0.1:{ports[victim]}/_control"
            faults = [fault_run(gateway_url, control, victim, mode, prompts, log, n_fault) for mode in ("error500", "hang")]
            bad = bad_inputs(gateway_url)
            print(f"bad inputs: {sum(r['met'] for r in bad)} of {len(bad)} answered with a 4xx naming the problem", flush=True)
            client_5xx = sum(v for k, v in STATUSES.items() if k.startswith("5")) + sum(
                b["status"] >= 500 for b in bad)
            gateway_out = (tmp / "gateway.out").read_text()
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()

    result = {
        "benchmark": "gateway",
        "note": ("2-core machine shared with other engineers' jobs during the run; one gateway worker (--workers 1); "
                 "the client, the gateway and three upstream processes share those cores, so absolute latencies are "
                 "noisy (direct and gateway runs are interleaved in rounds to share the noise)"),
        "bundle": {"dataset": "mmlu_pro", "encoder": bundle.encoder_name, "router": "knn:k=5",
                   "n_llms": len(bundle.llm_names), "upstreams": pool},
        "routing_decision_in_process": routing,
        "overhead": overhead,
        "gateway_cpu_per_request": cpu,
        "faults": faults,
        "bad_inputs": bad,
        "client_statuses": STATUSES,
        "client_5xx": client_5xx,
        "gateway_stderr_tail": gateway_out[-2000:],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "quick": bool(args.quick),
        "machine": describe_machine(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def main_fleet(args) -> None:
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            result = {"benchmark": "gateway_fleet", "fleet": fleet(args, Path(tmp), procs)}
        finally:
            for proc in procs:
                if proc.poll() is None:
                    stop_process(proc)
    result.update({"note": ("2-core machine shared with other engineers' jobs; the load client, the gateway workers and "
                            "three fake upstreams share those cores (load averages beside each figure)"),
                   "quick": bool(args.quick), "machine": describe_machine(),
                   "date": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    out = Path(args.out).with_name(Path(args.out).stem + "_fleet.json") if args.out.endswith("gateway.json") else Path(args.out)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(fleet_markdown(result))
    print(f"wrote {out} and {out.with_suffix('.md')}")


def markdown(r: dict) -> str:
    lines = ["# Gateway benchmark", "", f"{r['date']}; {r['machine']['cpu']}, {r['machine']['cores']} cores. {r['note']}; "
             f"load average at the end (1/5/15 min): {r.get('load_average_at_end')}.",
             "", f"Bundle: {r['bundle']['encoder']} + {r['bundle']['router']} on MMLU-Pro "
             f"({r['bundle']['n_llms']} LLMs); upstreams (fake, loopback) for {', '.join(r['bundle']['upstreams'])}.",
             f"Routing decision in-process (encode + score one prompt): p50 {r['routing_decision_in_process']['p50_ms']} ms,"
             f" p99 {r['routing_decision_in_process']['p99_ms']} ms, CPU {r['routing_decision_in_process']['cpu_ms_mean']} ms "
             "per decision.", "",
             "## Overhead (goal: gateway p50 - direct p50 - routing p50 <= 3 ms)", "",
             "| upstream delay ms | clients | requests | direct p50 / p99 ms | gateway p50 / p99 ms | overhead p50 ms "
             "| met | gateway CPU ms/request (beyond routing) |", "|---:|---:|---:|---:|---:|---:|:--|---:|"]
    for o in r["overhead"]:
        lines.append(f"| {o['upstream_delay_ms']:g} | {o['concurrency']} | {o['requests_each']} | {o['direct']['p50_ms']} / "
                     f"{o['direct']['p99_ms']} | {o['gateway']['p50_ms']} / {o['gateway']['p99_ms']} | "
                     f"{o['overhead_p50_ms']} | {'yes' if o['met'] else 'no'} | {o['gateway_cpu_ms_per_request']} "
                     f"({o['gateway_cpu_ms_per_request_beyond_routing']}) |")
    c = r["gateway_cpu_per_request"]
    lines += ["", "One client, sequential requests (upstream delay 0): wall p50 and CPU per request of the serving "
              "process. The bare proxy is a minimal FastAPI + httpx pass-through (no parsing, routing, log or "
              "fallback), the floor of any gateway built on this stack.", "",
              "| path | wall p50 ms | CPU ms/request |", "|---|---:|---:|"]
    labels = {"direct_upstream": "upstream directly", "bare_proxy": "bare FastAPI + httpx proxy",
              "gateway_healthz": "recroute gateway /healthz", "gateway_named_llm": "recroute gateway, one LLM named (no routing)",
              "gateway_routed": "recroute gateway, routed"}
    for key, label in labels.items():
        lines.append(f"| {label} | {c[key]['p50_ms']} | {c[key].get('cpu_ms', '-')} |")
    lines += ["", "## Faults (goal: 0 failed client requests, every request in the decision log)", "",
              "| failure | failing LLM | requests | failed | fell back | in the log | met |", "|---|---|---:|---:|---:|---:|:--|"]
    for f in r["faults"]:
        lines.append(f"| {f['mode']} for requests {f['failing_for_requests'][0]}-{f['failing_for_requests'][1]} | "
                     f"{f['failing_llm']} | {f['requests']} | {f['failed_client_requests']} | {f['with_fallback']} | "
                     f"{f['in_decision_log']} | {'yes' if f['met'] else 'no'} |")
    lines += ["", "## Bad input (goal: each a 4xx naming the problem)", "", "| input | status | message | met |",
              "|---|---:|---|:--|"]
    for b in r["bad_inputs"]:
        lines.append(f"| {b['input']} | {b['status']} | {b['message'][:90].replace('|', '/')} | {'yes' if b['met'] else 'no'} |")
    lines += ["", f"Client-side statuses over every run: {r['client_statuses']}; 5xx answers (the gateway's own or "
              f"passed through): {r['client_5xx']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
