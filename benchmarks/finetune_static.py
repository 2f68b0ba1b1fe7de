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


def speed(n: int) -> dict:
    from encoders import batched, pick_prompts, singles

    from recroute.encoders import encode_cached, get_encoder
    from recroute.encoders.finetune import finetune_for_dataset
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data = resolve("mmlu_pro")
    prompts = pick_prompts(data.texts, n, np.random.default_rng(0))["short"]
    encoders = {"static": get_encoder("static")}
    encoders["static-ft"] = finetune_for_dataset(data, encoders["static"])
    out: dict = {"n_short_prompts": len(prompts), "load_before": load()}
    for label, enc in encoders.items():
        router = KNNRouter(k=5).fit(data, encode_cached(enc, data.texts))
        with tempfile.TemporaryDirectory() as tmp:
            RoutingBundle.build(router, enc).save(Path(tmp) / "bundle")
            bundle = RoutingBundle.load(Path(tmp) / "bundle")
        route = lambda b: bundle.route_texts(b)  # noqa: E731
        out[label] = {"encoder": bundle.encoder.name, "batch_route_prompts_per_s": batched(route, prompts, repeat=3),
                      "single": singles(route, prompts[:200])}
        print(f"{label}: {out[label]['batch_route_prompts_per_s']:,.0f} short prompts/s end to end", flush=True)
    out["ratio_tuned_vs_plain"] = out["static-ft"]["batch_route_prompts_per_s"] / out["static"]["batch_route_prompts_per_s"]
    out["load_after"] = load()
    return out


def markdown(payload: dict) -> str:
    lines = ["# Fine-tuned static encoder (RouterDC's losses on the token vectors)", "",
             f"Machine: {payload['machine'].get('cpu')}, {payload['machine'].get('cores')} cores, shared with other "
             f"engineers' jobs (load averages beside each figure). {payload['date']}.", "",
             "## kNN (k=5) mean V_B under RouterEval's protocol (m = 3, 5, 10; seed-42 split)", "",
             "| dataset | encoder | V_B m=3 | V_B m=5 | V_B m=10 | mean | vs MiniLM | load (1/5/15 min) |",
             "|---|---|---|---|---|---|---|---|"]
    for q in payload.get("quality", []):
        for label, row in q["knn"].items():
            per_m = row["v_b_per_m"]
            cells = [f"{per_m.get(m, float('nan')):.4f}" for m in (3, 5, 10)]
            lines.append(f"| {q['dataset']} | {label} | {' | '.join(cells)} | {row['mean_v_b']:.4f} | "
                         f"{row['gap_to_minilm']:+.4f} | {q['load_after']} |")
    lines += ["", "Fine-tuned on the training part of the seed-42 split only "
              f"({', '.join(str(q['n_train_prompts']) + ' prompts of ' + q['dataset'] for q in payload.get('quality', []))}).",
              f"Options: `{json.dumps(payload.get('quality', [{}])[0].get('finetune_options', {}))}`.", ""]
    sp = payload.get("speed")
    if sp:
        lines += ["## Speed: kNN bundle over MMLU-Pro, short prompts, text -> route", "",
                  "| encoder | batched prompts/s | single p50 ms | single p99 ms |", "|---|---|---|---|"]
        for label in ("static", "static-ft"):
            r = sp[label]
            lines.append(f"| {label} | {r['batch_route_prompts_per_s']:,.0f} | {r['single']['p50_ms']:.2f} | "
                         f"{r['single']['p99_ms']:.2f} |")
        lines += ["", f"tuned / plain: {sp['ratio_tuned_vs_plain']:.2f}x (load {sp['load_before']} -> {sp['load_after']}).", ""]
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
        rate = payload["speed"]["static-ft"]["batch_route_prompts_per_s"]
        goals["short_prompts_per_s"] = {"goal": SPEED_GOAL, "value": rate, "met": rate >= SPEED_GOAL,
                                        "load": payload["speed"]["load_after"]}
    payload["goals"] = goals
    for suffix, text in ((".json", json.dumps(payload, indent=1) + "\n"), (".md", markdown(payload))):
        with atomic_file(args.out.with_suffix(suffix)) as tmp:
            tmp.write_text(text)
    print(f"written to {args.out}.json/.md")


if __name__ == "__main__":
    main()
