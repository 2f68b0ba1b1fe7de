"""HTTP routing throughput and latency on loopback: every encoder, 1 and 16 concurrent single-prompt
clients, micro-batching on and off, against the load generator's own ceiling.

For each encoder a kNN bundle (k = 5) over the 12,032 MMLU-Pro questions is fitted on that encoder's
vectors (the embedding cache makes reruns quick; MiniLM uses the dataset's bundled vectors) and
served by ``python -m recroute serve`` on 127.0.0.1 (one process, default thread settings unless
``--threads``), once with micro-batching on and once off. Clients send short single prompts (≤ 64
MiniLM word pieces, the shortest MMLU-Pro questions) from a separate process
(``benchmarks/loadgen.py``: asyncio raw HTTP/1.1, keep-alive, closed loop) for ``--seconds`` after a
warm-up; rows record requests/s, p50 / p99 latency, every status and the mean micro-batch size.
In the same run:

- the generator's ceiling: the same load against a trivial server (fixed 200 answer), so each
  row's share of what the client could drive is a ratio;
- the service's framework floor: GET /healthz under the same load;
- the in-process baseline: one prompt at a time through ``bundle.route_texts`` (no HTTP).

Goals (issue 11): with 16 clients, the int8 encoder with micro-batching ≥ 250 requests/s and
p99 ≤ 150 ms; the static encoder ≥ 1,000 requests/s; 0 non-200 answers.

    python benchmarks/http_load.py                              # every available encoder, ~1 min each
    python benchmarks/http_load.py --encoders tfidf,minilm --seconds 4

Writes benchmarks/results/http_load.json and .md.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from serve_latency import percentiles, pick_prompts  # noqa: E402

ALL_ENCODERS = ["tfidf", "minilm", "minilm-onnx", "minilm-int8", "static"]
LEVELS = (1, 16)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def available_encoders(names: list[str]) -> list[str]:
    """The names ``get_encoder`` accepts (encoders of later versions are skipped with a note)."""
    from recroute.encoders import get_encoder

    out = []
    for name in names:
        try:
            get_encoder(name)
        except (ValueError, ImportError) as exc:
            print(f"skipping encoder {name!r}: {exc}", flush=True)
            continue
        out.append(name)
    return out


def cached_vectors(encoder, texts: list[str]) -> np.ndarray | None:
    """The encoder's vectors of every text from the shared embedding cache, else None."""
    from recroute.encoders.cache import EmbeddingCache, text_key

    X, found = EmbeddingCache.for_encoder(encoder).lookup([text_key(t) for t in texts])
    return X if found.all() else None


def build_bundle(data, encoder_name: str, folder: Path, minilm_X: np.ndarray | None) -> dict:
    """Fit kNN (k = 5) on the encoder's vectors of every prompt; save the bundle; timings.

    The ONNX MiniLM encoders (the same network as MiniLM) use their own cached vectors when every
    MMLU-Pro prompt is cached, else the dataset's bundled MiniLM vectors (encoding 12,032 long
    prompts takes many minutes on 2 cores; serving speed does not depend on which of the two
    near-identical vector sets the index holds). The row records which.
    """
    from recroute.encoders import embed_dataset, get_encoder
    from recroute.encoders.base import canonical_name
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    start = time.perf_counter()
    encoder = get_encoder(encoder_name)
    kind = canonical_name(encoder_name)
    if kind == "minilm" and minilm_X is not None:
        X, source = minilm_X, "bundled MiniLM vectors (its own)"
    elif kind in ("minilm-onnx", "minilm-int8"):
        X = cached_vectors(encoder, data.texts)
        source = "its own vectors (cached)"
        if X is None and minilm_X is not None:
            X, source = minilm_X, "bundled torch MiniLM vectors (its own not cached)"
        elif X is None:
            X, source = embed_dataset(data, encoder, show_progress=True), "its own vectors"
    else:
        X, source = embed_dataset(data, encoder, show_progress=True), "its own vectors"
    embed_s = time.perf_counter() - start
    router = KNNRouter(k=5).fit(data, X)
    RoutingBundle.build(router, encoder).save(folder)
    return {"encoder": encoder.name, "dim": int(X.shape[1]), "embed_s": embed_s, "index_vectors": source}


def in_process_baseline(folder: Path, texts: list[str]) -> dict:
    """p50 / p99 of one prompt at a time through bundle.route_texts (no HTTP)."""
    from recroute.serve.bundle import RoutingBundle

    bundle = RoutingBundle.load(folder)
    for text in texts[:5]:
        bundle.route_texts([text])
    seconds = []
    for text in texts:
        start = time.perf_counter()
        bundle.route_texts([text])
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def wait_healthy(proc: subprocess.Popen, port: int, what: str, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{what} did not answer within {timeout:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_load(url: str, payloads: Path | None, concurrency: int, args) -> dict:
    """One loadgen run in its own process; its JSON result plus the load average around it."""
    command = [sys.executable, str(HERE / "loadgen.py"), "load", "--url", url, "--concurrency", str(concurrency),
               "--seconds", str(args.seconds), "--warmup", str(args.warmup)]
    if payloads is not None:
        command += ["--payloads", str(payloads)]
    before = os.getloadavg()[0]
    out = subprocess.run(command, capture_output=True, text=True, timeout=args.seconds + args.warmup + 120)
    if out.returncode != 0:
        raise RuntimeError(f"the load generator failed: {out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load_average_1min"] = [round(before, 2), round(os.getloadavg()[0], 2)]
    return result


def show(label: str, r: dict) -> None:
    batch = f"  batch {r['mean_batch_prompts']:.1f}" if r.get("mean_batch_prompts") else ""
    print(f"  {label:34s} c={r['concurrency']:<3d} {r['requests_per_s']:9.1f} req/s  p50 {r['p50_ms']:7.2f} ms  "
          f"p99 {r['p99_ms']:7.2f} ms  {r['statuses']}{batch}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default=",".join(ALL_ENCODERS), help="comma-separated encoder names")
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per level")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each level")
    parser.add_argument("--prompts", type=int, default=300, help="distinct short prompts sent")
    parser.add_argument("--micro-batch-size", type=int, default=64)
    parser.add_argument("--micro-batch-wait-ms", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=None, help="recroute serve --threads (default: its own)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "http_load.json")
    args = parser.parse_args()

    import recroute
    from machine import describe_machine

    from recroute.atomic import atomic_file
    from recroute.encoders.minilm import load_model

    from recroute.threads import apply_threads, resolve_threads

    # the in-process baseline runs with the server's thread settings (serving defaults or --threads)
    payload_threads = apply_threads(resolve_threads(args.threads, serving=True))
    encoders = available_encoders(args.encoders.split(","))
    data = recroute.load_dataset("mmlu_pro")
    minilm_X = data.embeddings if data.embedding_name == "all-MiniLM-L6-v2" else None  # before any re-encoding
    short = pick_prompts(data.texts, load_model().tokenizer, args.prompts, np.random.default_rng(0))["short"]
    rows: list[dict] = []
    payload = {"benchmark": "http_load", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "machine": describe_machine(), "shared_machine_note": "2 cores shared with other engineers' jobs: "
               "see load_average_1min per row (before, after); ratios within a run are the fair comparison",
               "settings": {"seconds": args.seconds, "warmup": args.warmup, "prompts": len(short),
                            "micro_batch_size": args.micro_batch_size,
                            "micro_batch_wait_ms": args.micro_batch_wait_ms,
                            "threads": payload_threads.as_dict()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        singles = tmp / "singles.jsonl"
        singles.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in short))

        # the generator's ceiling against a trivial server
        port = free_port()
        trivial = subprocess.Popen([sys.executable, str(HERE / "loadgen.py"), "trivial", "--port", str(port)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_healthy(trivial, port, "the trivial server")
            ceiling = {c: run_load(f"http://127.0.0.1:{port}/route", singles, c, args) for c in LEVELS}
        finally:
            stop(trivial)
        for c in LEVELS:
            show("generator ceiling (trivial server)", ceiling[c])
        payload["generator_ceiling"] = list(ceiling.values())

        for name in encoders:
            folder = tmp / f"bundle-{name}"
            print(f"\n== {name}: fitting kNN over {data.n_prompts:,} MMLU-Pro prompts", flush=True)
            built = build_bundle(data, name, folder, minilm_X)
            baseline = in_process_baseline(folder, short[:100])
            print(f"  in-process route_texts, one prompt: p50 {baseline['p50_ms']:.2f} ms, "
                  f"p99 {baseline['p99_ms']:.2f} ms", flush=True)
            for batching in (True, False):
                port = free_port()
                command = [sys.executable, "-m", "recroute", "serve", "--bundle", str(folder), "--host", "127.0.0.1",
                           "--port", str(port), "--quiet", "--micro-batch-size", str(args.micro_batch_size),
                           "--micro-batch-wait-ms", str(args.micro_batch_wait_ms),
                           "--micro-batch" if batching else "--no-micro-batch"]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
                try:
                    wait_healthy(server, port, f"recroute serve ({name})")
                    url = f"http://127.0.0.1:{port}"
                    if not any(r["kind"] == "healthz" for r in rows):
                        row = {"kind": "healthz", "encoder": None, "micro_batching": batching,
                               **run_load(url + "/healthz", None, 16, args)}
                        show("GET /healthz (framework floor)", row)
                        rows.append(row)
                    for c in LEVELS:
                        row = {"kind": "single", "encoder": name, "encoder_name": built["encoder"],
                               "index_vectors": built["index_vectors"], "micro_batching": batching, **run_load(url + "/route", singles, c, args)}
                        row["share_of_generator_ceiling"] = row["requests_per_s"] / ceiling[c]["requests_per_s"]
                        row["in_process_p50_ms"] = baseline["p50_ms"]
                        row["in_process_p99_ms"] = baseline["p99_ms"]
                        show(f"{name} batching {'on' if batching else 'off'}", row)
                        rows.append(row)
                finally:
                    stop(server)

    payload["rows"] = rows
    payload["non_200"] = sum(n for r in rows for s, n in r["statuses"].items() if s != "200")
    payload["goals"] = goals(rows, payload["non_200"])
    with atomic_file(args.out) as out:
        out.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_file(args.out.with_suffix(".md")) as out:
        out.write_text(markdown(payload))
    print(f"\ngoals: {json.dumps(payload['goals'], indent=1)}\nwritten to {args.out} and .md")


def _row(rows, encoder, batching, c):
    return next((r for r in rows if r["encoder"] == encoder and r["micro_batching"] == batching
                 and r["concurrency"] == c and r["kind"] == "single"), None)


def goals(rows: list[dict], non_200: int) -> dict:
    """The issue's HTTP goals, met or not (None where that encoder was not measured)."""
    int8, static = _row(rows, "minilm-int8", True, 16), _row(rows, "static", True, 16)
    return {
        "int8_batched_16_clients": {
            "goal": "≥ 250 requests/s and p99 ≤ 150 ms",
            "requests_per_s": int8 and int8["requests_per_s"], "p99_ms": int8 and int8["p99_ms"],
            "met": None if int8 is None else bool(int8["requests_per_s"] >= 250 and int8["p99_ms"] <= 150)},
        "static_batched_16_clients": {
            "goal": "≥ 1,000 requests/s", "requests_per_s": static and static["requests_per_s"],
            "met": None if static is None else bool(static["requests_per_s"] >= 1000)},
        "non_200": {"goal": 0, "value": non_200, "met": non_200 == 0},
    }


def markdown(payload: dict) -> str:
    lines = [f"# HTTP load ({payload['date']})", "",
             f"Machine: {payload['machine']['cpu']}, {payload['machine']['cores']} cores. "
             f"{payload['shared_machine_note']}.", "",
             "Generator ceiling (trivial server): "
             + ", ".join(f"{r['requests_per_s']:,.0f} req/s at c={r['concurrency']}"
                         for r in payload["generator_ceiling"]) + ".", "",
             "| encoder | micro-batching | clients | requests/s | p50 ms | p99 ms | mean batch | non-200 | "
             "in-process p50 ms | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        bad = sum(n for s, n in r["statuses"].items() if s != "200")
        batch = f"{r['mean_batch_prompts']:.1f}" if r.get("mean_batch_prompts") else "—"
        name = r["encoder"] or "GET /healthz"
        lines.append(f"| {name} | {'on' if r['micro_batching'] else 'off'} | {r['concurrency']} | "
                     f"{r['requests_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {batch} | {bad} | "
                     f"{r.get('in_process_p50_ms', float('nan')):.1f} | {r['load_average_1min'][0]:.1f} |")
    lines += ["", "Goals:", ""]
    for key, g in payload["goals"].items():
        met = {True: "met", False: "NOT met", None: "not measured"}[g["met"]]
        lines.append(f"- {key}: {g['goal']}: {met} ({ {k: v for k, v in g.items() if k not in ('goal', 'met')} })")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
