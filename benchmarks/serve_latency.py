"""End-to-end routing latency and throughput: text → MiniLM → kNN bundle → decision.

A kNN routing bundle (all-MiniLM-L6-v2 + KNNRouter over the 12,032 MMLU-Pro questions) routes
short prompts (≤ 64 word pieces: the shortest MMLU-Pro questions) and long ones (random MMLU-Pro
questions, truncated by the model at 256 word pieces):

- single prompts one at a time: p50 / p99 latency of ``route_texts([text])``;
- batches: prompts per second of ``route_texts(texts)`` on ``--batch`` prompts;
- the routing step alone (kNN + decisions on precomputed embeddings), to separate it from the encoder.

Baseline in the same run: the encoder alone on the same prompts (the routing overhead is the
ratio). Goals: p50 ≤ 20 ms for one short prompt; ≥ 300 short prompts/s batched.

    python benchmarks/serve_latency.py                 # about 2 minutes on 2 cores
    python benchmarks/serve_latency.py --singles 100   # quicker

Writes benchmarks/results/serve_latency.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def build_bundle(folder: Path):
    """(saved-and-reloaded MiniLM + kNN bundle of MMLU-Pro, seconds to load it)."""
    import recroute
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data = recroute.load_dataset("mmlu_pro")
    router = KNNRouter(k=5).fit(data, data.embeddings)  # MiniLM embeddings shipped with the dataset
    RoutingBundle.build(router, "minilm").save(folder)
    start = time.perf_counter()
    bundle = RoutingBundle.load(folder, encoder="minilm")
    return bundle, time.perf_counter() - start, data.texts


def pick_prompts(texts: list[str], tokenizer, n: int, rng) -> dict[str, list[str]]:
    """{"short": n prompts of ≤ 64 word pieces, "long": n random questions}."""
    order = rng.permutation(len(texts))
    short = []
    for i in order:
        if len(tokenizer(texts[i])["input_ids"]) <= 64:
            short.append(texts[i])
            if len(short) == n:
                break
    return {"short": short, "long": [texts[i] for i in order[:n]]}


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def singles(fn, texts: list[str]) -> dict:
    for text in texts[:5]:  # warm-up
        fn([text])
    seconds = []
    for text in texts:
        start = time.perf_counter()
        fn([text])
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def batched(fn, texts: list[str], repeat: int = 2) -> float:
    """Prompts per second (best of ``repeat``)."""
    fn(texts[:64])  # warm-up
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--singles", type=int, default=200, help="single-prompt calls per kind")
    parser.add_argument("--batch", type=int, default=512, help="short prompts per batched call")
    parser.add_argument("--long-batch", type=int, default=128, help="long prompts per batched call")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve_latency.json")
    args = parser.parse_args()

    import torch
    from machine import describe_machine

    from recroute.atomic import atomic_file

    with tempfile.TemporaryDirectory() as tmp:
        bundle, load_s, texts = build_bundle(Path(tmp) / "bundle")
    encoder = bundle.encoder
    encoder.prepare()
    prompts = pick_prompts(texts, encoder.model.tokenizer, max(args.singles, args.batch), np.random.default_rng(0))
    encode = lambda batch: encoder.encode(batch)  # noqa: E731 - the baseline: the encoder alone
    route = lambda batch: bundle.route_texts(batch)  # noqa: E731
    results = {"bundle_load_s": load_s, "torch_threads": torch.get_num_threads()}
    for kind, group in prompts.items():
        lengths = [min(256, len(encoder.model.tokenizer(t)["input_ids"])) for t in group]
        results[f"{kind}_word_pieces_mean"] = float(np.mean(lengths))
        print(f"{kind} prompts: {np.mean(lengths):.0f} word pieces on average (the model reads at most 256)")
    print(f"bundle loaded in {load_s:.2f} s (MiniLM + kNN over 12,032 prompts); torch threads "
          f"{results['torch_threads']}")
    for kind in ("short", "long"):
        group = prompts[kind]
        n_batch = args.batch if kind == "short" else args.long_batch
        n_single = args.singles if kind == "short" else max(20, args.singles // 4)
        single_route = singles(route, group[:n_single])
        single_encode = singles(encode, group[:n_single])
        batch_route = batched(route, group[:n_batch], repeat=2 if kind == "short" else 1)
        batch_encode = batched(encode, group[:n_batch], repeat=2 if kind == "short" else 1)
        X = encoder.encode(group[:n_batch])  # the routing step alone, on precomputed embeddings
        single_knn = singles(lambda batch: bundle.route_embeddings(X[: len(batch)]), group[:n_single])
        batch_knn = batched(lambda batch: bundle.route_embeddings(X[: len(batch)]), group[:n_batch])
        results[kind] = {
            "single_routing_step_only": single_knn, "batch_routing_step_only_prompts_per_s": batch_knn,
            "n_single": min(n_single, len(group)), "n_batch": min(n_batch, len(group)),
            "single_route": single_route, "single_encoder_only": single_encode,
            "single_p50_ratio_route_vs_encoder": single_route["p50_ms"] / single_encode["p50_ms"],
            "batch_route_prompts_per_s": batch_route, "batch_encoder_only_prompts_per_s": batch_encode,
            "batch_ratio_route_vs_encoder": batch_route / batch_encode,
        }
        print(f"{kind:5s} single: route p50 {single_route['p50_ms']:.1f} ms, p99 {single_route['p99_ms']:.1f} ms "
              f"(encoder alone p50 {single_encode['p50_ms']:.1f} ms, ratio "
              f"{results[kind]['single_p50_ratio_route_vs_encoder']:.2f}×)")
        print(f"{kind:5s} batch of {results[kind]['n_batch']}: route {batch_route:.0f} prompts/s "
              f"(encoder alone {batch_encode:.0f}/s, ratio {results[kind]['batch_ratio_route_vs_encoder']:.2f}×)",
              flush=True)
        print(f"{kind:5s} routing step alone (kNN + decisions, embeddings given): p50 {single_knn['p50_ms']:.2f} ms "
              f"single, {batch_knn:,.0f} prompts/s batched", flush=True)
    goals = {
        "short_single_p50_ms": {"goal": 20.0, "value": results["short"]["single_route"]["p50_ms"]},
        "short_batch_prompts_per_s": {"goal": 300.0, "value": results["short"]["batch_route_prompts_per_s"]},
    }
    goals["short_single_p50_ms"]["met"] = goals["short_single_p50_ms"]["value"] <= 20.0
    goals["short_batch_prompts_per_s"]["met"] = goals["short_batch_prompts_per_s"]["value"] >= 300.0
    payload = {"benchmark": "serve_latency", "results": results, "goals": goals, "machine": describe_machine(),
               "date": time.strftime("%Y-%m-%d")}
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"goals: {json.dumps(goals)}\nwritten to {args.out}")


if __name__ == "__main__":
    main()
