"""The fine-tuned static encoder: kNN's V_B against MiniLM's and the plain static encoder's, at static speed.

For each dataset the static encoder is fine-tuned with RouterDC's losses
(``recroute.encoders.finetune.finetune_for_dataset``, default options) on the training part of
RouterEval's seed-42 split only, the part ``recroute eval`` trains on, so no test prompt is seen;
then kNN (k=5) runs under RouterEval's protocol (``evaluate_dataset``, easy + hard: m = 3, 5, 10)
with three embeddings of the same prompts: MiniLM (the dataset's stored set, else minilm-onnx
through the embedding cache), the plain static encoder and the fine-tuned one. Recorded: mean V_B
per m and over m, the gap to MiniLM, fine-tuning seconds.

Speed: a kNN bundle over the 12,032 MMLU-Pro questions per encoder (plain static, tuned), in one
process: batched short prompts/s end to end (text -> encode -> kNN -> decision) and single-prompt
p50, with the prompts and timing helpers of ``benchmarks/encoders.py``; the ratio tuned / plain
is the figure to read on a shared machine.

    python benchmarks/finetune_static.py                      # both sets, quality + speed
    python benchmarks/finetune_static.py --datasets mmlu_pro --part quality

Writes benchmarks/results/finetune_static.json and .md (machine and load averages beside the figures).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import resolve  # noqa: E402

GAP_GOAL = 0.005  # tuned static within this mean V_B of MiniLM's (kNN, MMLU-Pro)
SPEED_GOAL = 5000.0  # short prompts/s end to end


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def minilm_embeddings(data) -> np.ndarray:
    from recroute.encoders import embed_dataset

    return np.asarray(embed_dataset(data, "minilm-onnx"), dtype=np.float32)


def knn_v_b(data, X: np.ndarray) -> dict:
    from recroute.eval.protocol import evaluate_dataset

    df = evaluate_dataset(data, ["knn"], settings="all", X=X)
    per_m = df[df.group == "mean"].groupby("m").v_b.mean()
    return {"v_b_per_m": {int(m): float(v) for m, v in per_m.items()}, "mean_v_b": float(per_m.mean())}


def quality(name: str) -> dict:
    from recroute.encoders import encode_cached, get_encoder
    from recroute.encoders.finetune import DEFAULTS, finetune_for_dataset, training_prompts

    data = resolve(name)
    base = get_encoder("static")
    load_before = load()
    start = time.perf_counter()
    tuned = finetune_for_dataset(data, base)
    seconds = time.perf_counter() - start
    texts = data.texts
    rows = {"minilm": knn_v_b(data, minilm_embeddings(data)),
            "static": knn_v_b(data, encode_cached(base, texts)),
            "static-ft": knn_v_b(data, tuned.encode(texts))}
    for row in rows.values():
        row["gap_to_minilm"] = row["mean_v_b"] - rows["minilm"]["mean_v_b"]
    out = {"dataset": name, "n_train_prompts": int(len(training_prompts(data))), "finetune_options": DEFAULTS,
           "tuned_encoder": tuned.name, "finetune_seconds_or_cached": seconds, "load_before": load_before,
           "load_after": load(), "knn": rows}
    print(json.dumps({name: {k: round(v["mean_v_b"], 4) for k, v in rows.items()}}), flush=True)
    return out


def speed(n: int, n_minilm: int = 256, n_singles: int = 200) -> dict:
    """End-to-end routing speed (text -> encode -> kNN/FAISS -> decision) of kNN bundles over MMLU-Pro with
    the plain static, the tuned static and the MiniLM (ONNX fp32, the default) encoder, in one process;
    for the static encoders also where the time goes (tokenizer, pooling, FAISS search, the rest)."""
    import faiss
    from encoders import batched, pick_prompts, singles

    from recroute.encoders import encode_cached, get_encoder
    from recroute.encoders.finetune import finetune_for_dataset
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data = resolve("mmlu_pro")
    prompts = pick_prompts(data.texts, n, np.random.default_rng(0))["short"]
    encoders = {"static": get_encoder("static")}
    encoders["static-ft"] = finetune_for_dataset(data, encoders["static"])
    encoders["minilm-onnx"] = get_encoder("minilm-onnx")
    encoders["static-ft hnsw"] = encoders["static-ft"]  # the same tuned encoder over an HNSW index
    out: dict = {"n_short_prompts": len(prompts), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                 "faiss_threads": faiss.omp_get_max_threads(), "load_before": load()}
    for label, enc in encoders.items():
        X = data.embeddings if label == "minilm-onnx" else encode_cached(enc, data.texts)
        router = KNNRouter(k=5, index="hnsw" if label.endswith("hnsw") else "flat").fit(data, X)
        with tempfile.TemporaryDirectory() as tmp:
            RoutingBundle.build(router, enc).save(Path(tmp) / "bundle")
            bundle = RoutingBundle.load(Path(tmp) / "bundle")
        group = prompts if label != "minilm-onnx" else prompts[:n_minilm]
        route = lambda b: bundle.route_texts(b)  # noqa: E731
        Xq = bundle.encode(group)
        row = {"encoder": bundle.encoder.name, "n_batch": len(group),
               "batch_route_prompts_per_s": batched(route, group, repeat=3),
               "batch_encode_prompts_per_s": batched(bundle.encode, group, repeat=3),
               "batch_routing_step_prompts_per_s": batched(lambda b: bundle.route_embeddings(Xq[: len(b)]),
                                                           list(range(len(group))), repeat=3),
               "single": singles(route, group[:n_singles])}
        if label != "minilm-onnx":
            row["breakdown_s_per_1000"] = breakdown(bundle, router, group)
            row["faiss_search_prompts_per_s_by_threads"] = search_by_threads(router, Xq)
        out[label] = row
        print(f"{label}: {row['batch_route_prompts_per_s']:,.0f} short prompts/s end to end "
              f"(encode {row['batch_encode_prompts_per_s']:,.0f}/s, routing step {row['batch_routing_step_prompts_per_s']:,.0f}/s), "
              f"single p50 {row['single']['p50_ms']:.2f} ms", flush=True)
    base = out["static"]["batch_route_prompts_per_s"]
    out["ratios_vs_plain_static"] = {k: out[k]["batch_route_prompts_per_s"] / base for k in encoders}
    out["load_after"] = load()
    return out


def search_by_threads(router, Q: np.ndarray, repeat: int = 5) -> dict:
    """FAISS search rate (queries/s, best of ``repeat``) with 1 thread and with every core, this process's
    OpenMP wait policy fixed (compare a run under OMP_WAIT_POLICY=ACTIVE with one under PASSIVE)."""
    import faiss

    old, out = faiss.omp_get_max_threads(), {}
    k = min(int(router.k) + 1, router.index_.ntotal)
    for threads in sorted({1, os.cpu_count() or 1}):
        faiss.omp_set_num_threads(threads)
        best = min(timed(lambda: router.index_.search(Q, k)) for _ in range(repeat))
        out[str(threads)] = len(Q) / best
    faiss.omp_set_num_threads(old)
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def breakdown(bundle, router, texts: list[str], repeat: int = 3) -> dict:
    """Seconds per 1,000 prompts of each step of ``route_texts`` (best of ``repeat``): the tokenizer, the
    pooling of token vectors, FAISS's search, the rest of routing (tie check, mean scores, decisions)."""
    from recroute.encoders.static import pool_tokens

    enc = bundle.encoder

    def best(fn) -> float:
        seconds = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        return min(seconds) * 1000 / len(texts)

    ids = enc.token_ids(texts)
    Q = enc.encode(texts)
    k = min(int(router.k) + 1, router.index_.ntotal)
    parts = {"tokenize": best(lambda: enc.token_ids(texts)),
             "pool": best(lambda: pool_tokens(ids, enc.vectors)),
             "faiss_search": best(lambda: router.index_.search(Q, k)),
             "route_texts": best(lambda: bundle.route_texts(texts))}
    parts["rest"] = parts["route_texts"] - parts["tokenize"] - parts["pool"] - parts["faiss_search"]
    return parts


def markdown(payload: dict) -> str:
    lines = ["# Fine-tuned static encoder (RouterDC's losses on the token vectors)", "",
             f"Machine: {payload['machine'].get('cpu')}, {payload['machine'].get('cores')} cores, shared with other "
             f"engineers' jobs (load averages beside each figure). {payload['date']}.", ""]
    if payload.get("quality"):
        lines += ["## kNN (k=5) mean V_B under RouterEval's protocol (m = 3, 5, 10; seed-42 split)", "",
                  "| dataset | encoder | V_B m=3 | V_B m=5 | V_B m=10 | mean | vs MiniLM | load (1/5/15 min) |",
                  "|---|---|---|---|---|---|---|---|"]
    for q in payload.get("quality", []):
        for label, row in q["knn"].items():
            per_m = row["v_b_per_m"]
            cells = [f"{per_m.get(m, float('nan')):.4f}" for m in (3, 5, 10)]
            lines.append(f"| {q['dataset']} | {label} | {' | '.join(cells)} | {row['mean_v_b']:.4f} | "
                         f"{row['gap_to_minilm']:+.4f} | {q['load_after']} |")
    if payload.get("quality"):
        lines += ["", "Fine-tuned on the training part of the seed-42 split only "
                  f"({', '.join(str(q['n_train_prompts']) + ' prompts of ' + q['dataset'] for q in payload['quality'])}).",
                  f"Options: `{json.dumps(payload['quality'][0].get('finetune_options', {}))}`.", ""]
    sp = payload.get("speed")
    if sp:
        lines += ["## Speed: kNN bundle over MMLU-Pro, short prompts, text -> route (one process)", "",
                  f"OMP_WAIT_POLICY={sp.get('omp_wait_policy')}, FAISS threads {sp.get('faiss_threads')}; "
                  f"load {sp['load_before']} -> {sp['load_after']} (shared machine).", "",
                  "| encoder | prompts | end to end /s | encode /s | routing step /s | single p50 ms | single p99 ms | vs plain static |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, ratio in sp["ratios_vs_plain_static"].items():
            r = sp[label]
            lines.append(f"| {label} | {r['n_batch']} | {r['batch_route_prompts_per_s']:,.0f} | "
                         f"{r['batch_encode_prompts_per_s']:,.0f} | {r['batch_routing_step_prompts_per_s']:,.0f} | "
                         f"{r['single']['p50_ms']:.2f} | {r['single']['p99_ms']:.2f} | {ratio:.2f}x |")
        lines += ["", "Where the time goes (seconds per 1,000 prompts, i.e. ms per prompt, each step best of 3 on its own, so "
                  "'rest' = route_texts minus the others is noisy), and FAISS's search alone by threads (queries/s):", "",
                  "| encoder | tokenize | pool | FAISS search | rest | route_texts | search /s, 1 thread | all cores |",
                  "|---|---|---|---|---|---|---|---|"]
        for label, r in sp.items():
            if not isinstance(r, dict) or "breakdown_s_per_1000" not in r:
                continue
            b, th = r["breakdown_s_per_1000"], r["faiss_search_prompts_per_s_by_threads"]
            lines.append(f"| {label} | {b['tokenize']:.3f} | {b['pool']:.3f} | {b['faiss_search']:.3f} | "
                         f"{b['rest']:.3f} | {b['route_texts']:.3f} | {th.get('1', float('nan')):,.0f} | "
                         f"{list(th.values())[-1]:,.0f} |")
        lines.append("")
    lines += ["## Goals", "", "```json", json.dumps(payload["goals"], indent=1), "```", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mmlu_pro,llmrouter_nim")
    parser.add_argument("--part", choices=["quality", "speed", "all"], default="all")
    parser.add_argument("--short", type=int, default=2048, help="short prompts for the speed part")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "finetune_static")
    args = parser.parse_args()
    from machine import describe_machine

    from recroute.atomic import atomic_file

    payload: dict = {"benchmark": "finetune_static", "machine": describe_machine(), "date": time.strftime("%Y-%m-%d")}
    if args.part in ("quality", "all"):
        payload["quality"] = [quality(name.strip()) for name in args.datasets.split(",") if name.strip()]
    if args.part in ("speed", "all"):
        payload["speed"] = speed(args.short)
    goals: dict = {}
    for q in payload.get("quality", []):
        if q["dataset"] == "mmlu_pro":
            gap = q["knn"]["static-ft"]["gap_to_minilm"]
            goals["knn_mmlu_pro_gap_to_minilm"] = {"goal": -GAP_GOAL, "value": gap, "met": gap >= -GAP_GOAL,
                                                   "plain_static_gap": q["knn"]["static"]["gap_to_minilm"]}
    if payload.get("speed"):
        for label in ("static-ft", "static-ft hnsw"):
            rate = payload["speed"][label]["batch_route_prompts_per_s"]
            goals[f"short_prompts_per_s ({label})"] = {"goal": SPEED_GOAL, "value": rate, "met": rate >= SPEED_GOAL,
                                                       "load": payload["speed"]["load_after"]}
    payload["goals"] = goals
    for suffix, text in ((".json", json.dumps(payload, indent=1) + "\n"), (".md", markdown(payload))):
        with atomic_file(args.out.with_suffix(suffix)) as tmp:
            tmp.write_text(text)
    print(f"written to {args.out}.json/.md")


if __name__ == "__main__":
    main()
