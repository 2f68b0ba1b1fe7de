"""HTTP routing under bounded concurrent load on loopback: latency percentiles and throughput.

Starts ``python -m recroute serve`` on a MiniLM + kNN bundle of MMLU-Pro (127.0.0.1, a free port),
then for each concurrency level sends a fixed number of requests from that many client threads
(single short prompts, then batches of ``--batch`` prompts) and records p50 / p99 latency, requests/s
and prompts/s, and any non-200 answer. Baseline in the same run: the same single prompts routed
in-process with ``bundle.route_texts`` (no HTTP), so the HTTP overhead is a ratio. The load is
bounded (``--requests`` per level, 60 s client timeout) and stops by itself.

    python benchmarks/http_load.py                       # concurrency 1, 4, 16; about 2 minutes
    python benchmarks/http_load.py --concurrency 1,16 --requests 200

Writes benchmarks/results/http_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_latency import build_bundle, percentiles, pick_prompts  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(bundle_dir: Path, port: int, max_batch: int) -> subprocess.Popen:
    import httpx

    proc = subprocess.Popen(
        [sys.executable, "-m", "recroute", "serve", "--bundle", str(bundle_dir), "--host", "127.0.0.1",
         "--port", str(port), "--max-batch", str(max_batch), "--quiet"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not start within 120 s")


def load(url: str, payloads: list[dict], concurrency: int) -> dict:
    """Send every payload once from ``concurrency`` threads; latency, throughput and status counts."""
    import httpx

    with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_connections=concurrency)) as client:
        client.post("/route", json=payloads[0])  # warm-up (model loaded, connection open)

        def one(payload):
            start = time.perf_counter()
            try:
                status = client.post("/route", json=payload).status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            return time.perf_counter() - start, status

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(one, payloads))
        wall = time.perf_counter() - start
    statuses: dict[str, int] = {}
    for _, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    n_prompts = sum(len(p.get("prompts", [0])) for p in payloads)
    return {"concurrency": concurrency, "requests": len(payloads), **percentiles([s for s, _ in results]),
            "requests_per_s": len(payloads) / wall, "prompts_per_s": n_prompts / wall, "statuses": statuses}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,16", help="client threads per level")
    parser.add_argument("--requests", type=int, default=200, help="single-prompt requests per level")
    parser.add_argument("--batch", type=int, default=16, help="prompts per batch request")
    parser.add_argument("--batch-requests", type=int, default=24, help="batch requests per level")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "http_load.json")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    from machine import describe_machine

    from recroute.atomic import atomic_file

    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle, _, texts = build_bundle(Path(tmp) / "bundle")
        bundle.encoder.prepare()
        short = pick_prompts(texts, bundle.encoder.model.tokenizer, args.requests, rng)["short"]
        # baseline: in-process routing of the same single prompts
        for text in short[:5]:
            bundle.route_texts([text])
        seconds = []
        for text in short[:100]:
            start = time.perf_counter()
            bundle.route_texts([text])
            seconds.append(time.perf_counter() - start)
        baseline = percentiles(seconds)
        print(f"in-process route_texts (baseline): p50 {baseline['p50_ms']:.1f} ms, p99 {baseline['p99_ms']:.1f} ms")
        port = free_port()
        server = start_server(Path(tmp) / "bundle", port, max(args.batch, 256))
        url = f"http://127.0.0.1:{port}"
        try:
            for level in levels:
                singles = [{"prompt": short[i % len(short)]} for i in range(args.requests)]
                row = {"kind": "single", **load(url, singles, level)}
                row["p50_ratio_vs_in_process"] = row["p50_ms"] / baseline["p50_ms"]
                rows.append(row)
                batches = [{"prompts": [short[(i * args.batch + j) % len(short)] for j in range(args.batch)]}
                           for i in range(args.batch_requests)]
                rows.append({"kind": f"batch of {args.batch}", **load(url, batches, level)})
                for r in rows[-2:]:
                    print(f"c={level:<3d} {r['kind']:12s} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                          f"{r['requests_per_s']:7.1f} req/s  {r['prompts_per_s']:7.1f} prompts/s  {r['statuses']}",
                          flush=True)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
    non_200 = sum(n for r in rows for s, n in r["statuses"].items() if s != "200")
    payload = {"benchmark": "http_load", "baseline_in_process": baseline, "rows": rows, "non_200": non_200,
               "machine": describe_machine(), "date": time.strftime("%Y-%m-%d")}
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"non-200 answers: {non_200}\nwritten to {args.out}")


if __name__ == "__main__":
    main()
