"""MiniLM's top layers fine-tuned with RouterDC's losses, measured in RouterEval's protocol on MMLU-Pro.

Issue 23: "stronger encoders and end-to-end fine-tuning are what helps". The fine-tune
(``recroute.encoders.minilm_finetune``) trains MiniLM's top N layers on RouterEval's training part
only (seed-42 split). It is affordable on 2 shared cores because the frozen bottom layers run once per
prompt (``recroute.encoders.minilm_states``: float16 hidden states after 6 − N layers), so each
fine-tuning step and the final encoding of every prompt run only the top N layers.

Steps (each resumable; results in benchmarks/results/minilm_finetune.json and .md after every step):

    python benchmarks/minilm_finetune.py select   # states once; each candidate: fine-tune, encode the
                                                  # training + validation prompts, kNN's validation V_B
    python benchmarks/minilm_finetune.py final    # the candidate with the best validation mean: encode
                                                  # the test prompts too (the embedding cache), record it
    python benchmarks/minilm_finetune.py eval --families knn,two_tower,stack --seeds 0,1,2
                                                  # benchmarks/zoo.py's run_one per (family, features, seed)

Selection is on RouterEval's validation part (``finetune_select.validation_as_test``: each group's
router trains on the training part and is measured on the validation prompts), never on test; the
test part of every prompt is encoded only after the choice. Every timing is recorded with the load
average beside it (``os.getloadavg``) and the CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

OUT = HERE / "results" / "minilm_finetune"
SCRATCH = HERE / "_scratch" / "minilm_ft"
# candidates: the options finetune_minilm takes (n_layers beside them); chosen by kNN's validation mean V_B
CANDIDATES = [
    {"n_layers": 1, "lr": 5e-5, "max_steps": 150},
    {"n_layers": 1, "lr": 5e-4, "max_steps": 150},
    {"n_layers": 2, "lr": 2e-4, "max_steps": 150},
]
DEPTHS = (3, 4, 5)  # cached states: enough for n_layers 1 to 3


def load() -> float:
    return round(os.getloadavg()[0], 2)


def read() -> dict:
    path = OUT.with_suffix(".json")
    return json.loads(path.read_text()) if path.exists() else {"candidates": [], "eval": []}


def write(payload: dict) -> None:
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    OUT.with_suffix(".md").write_text(markdown(payload))


def dataset():
    import recroute

    return recroute.load_dataset("mmlu_pro")


def parts(data) -> dict[str, np.ndarray]:
    """Dataset positions of RouterEval's seed-42 train / val / test parts (as build_router_dataset draws them)."""
    from recroute.data.routereval import sorted_prompt_order
    from recroute.data.splits import routereval_split

    order = sorted_prompt_order(data)
    tasks = data.prompts["task"].to_numpy()[order] if "task" in data.prompts else None
    split = routereval_split(tasks, data.n_prompts, rng=np.random.RandomState(42))
    return {name: np.sort(order[getattr(split, name)]) for name in ("train", "val", "test")}


def states(data, payload: dict):
    """The frozen states of every prompt (computed once, in benchmarks/_scratch or the encoder store)."""
    from recroute.encoders.embed import dataset_texts
    from recroute.encoders.minilm_states import FrozenStates, states_for_texts

    folder = SCRATCH / "states"
    start, cpu, l0 = time.perf_counter(), time.process_time(), load()
    if (folder / "index.json").exists():
        S = FrozenStates.load(folder)
    else:
        S = states_for_texts(dataset_texts(data), DEPTHS, n_threads=2, show_progress=True)
    timing = SCRATCH / "states_time.json"  # written by the first (background) run that computed them
    if "states" not in payload:
        payload["states"] = json.loads(timing.read_text()) if timing.exists() else {
            "seconds": round(time.perf_counter() - start, 1), "cpu_seconds": round(time.process_time() - cpu, 1),
            "load_start": l0, "load_end": load(), "n_texts": len(S), "n_tokens": int(S.offsets[-1]),
            "depths": list(DEPTHS)}
    return S


def knn_validation(data, X: np.ndarray) -> dict:
    from finetune_select import mean_v_b, router_datasets

    return mean_v_b(router_datasets(data, X)[0], "knn")


def select(args) -> None:
    from recroute.encoders.embed import dataset_texts
    from recroute.encoders.minilm_finetune import finetune_minilm_for_dataset
    from recroute.encoders.minilm_states import cache_tuned_embeddings

    payload = read()
    data = dataset()
    texts = dataset_texts(data)
    S = states(data, payload)
    p = parts(data)
    base = np.asarray(data.embeddings, dtype=np.float32)  # the stored torch MiniLM set
    if "minilm_validation" not in payload:
        payload["minilm_validation"] = knn_validation(data, base)
        write(payload)
    done = {json.dumps(c["options"], sort_keys=True) for c in payload["candidates"]}
    for i, cand in enumerate(CANDIDATES):
        if json.dumps(cand, sort_keys=True) in done or (args.only is not None and i != args.only):
            continue
        options = {k: v for k, v in cand.items() if k != "n_layers"}
        l0, t0, c0 = load(), time.perf_counter(), time.process_time()
        tuned = finetune_minilm_for_dataset(data, n_layers=cand["n_layers"], states=S, root=SCRATCH / "encoders",
                                            n_threads=args.threads, **options)
        fit_s, fit_cpu, l1 = time.perf_counter() - t0, time.process_time() - c0, load()
        rows = np.concatenate([p["train"], p["val"]])
        t0, c0 = time.perf_counter(), time.process_time()
        X = base.copy()  # test rows keep MiniLM's vectors: the validation measurement never reads them
        X[rows] = cache_tuned_embeddings(tuned, S, [texts[i] for i in rows], n_threads=args.threads)
        enc_s, enc_cpu = time.perf_counter() - t0, time.process_time() - c0
        record = ({
            "options": cand, "encoder": tuned.name, "folder": str(tuned.path), "final_loss": tuned.finetune["final_loss"],
            "steps": tuned.finetune["steps"], "finetune_seconds": round(fit_s, 1), "finetune_cpu_seconds": round(fit_cpu, 1),
            "load_finetune": [l0, l1], "encode_seconds": round(enc_s, 1), "encode_cpu_seconds": round(enc_cpu, 1),
            "n_encoded": int(len(rows)), "load_encode_end": load(), "validation": knn_validation(data, X)})
        kept = {k: payload[k] for k in ("states", "minilm_validation") if k in payload}
        payload = read()  # another select process (--only) may have recorded its candidate meanwhile
        payload = {**kept, **payload}
        payload["candidates"].append(record)
        print(record, flush=True)
        write(payload)


def final(args) -> None:
    from recroute.encoders import load_encoder
    from recroute.encoders.embed import dataset_texts
    from recroute.encoders.minilm_states import cache_tuned_embeddings

    payload = read()
    data = dataset()
    S = states(data, payload)
    best = max(payload["candidates"], key=lambda c: c["validation"]["mean"])
    tuned = load_encoder(best["folder"])
    t0, c0, l0 = time.perf_counter(), time.process_time(), load()
    X = cache_tuned_embeddings(tuned, S, dataset_texts(data), n_threads=2)  # only the test prompts are new
    payload["chosen"] = {"options": best["options"], "encoder": tuned.name, "folder": best["folder"],
                         "test_encode_seconds": round(time.perf_counter() - t0, 1),
                         "test_encode_cpu_seconds": round(time.process_time() - c0, 1), "load": [l0, load()],
                         "norms": [float(np.linalg.norm(X, axis=1).min()), float(np.linalg.norm(X, axis=1).max())]}
    write(payload)
    print(payload["chosen"], flush=True)


def evaluate(args) -> None:
    """zoo.py's run_one per (family, features, seed), appended to the json (skipped when recorded)."""
    from zoo import run_one

    payload = read()
    data = dataset()
    wanted = [f.strip() for f in args.features.split(",")]
    features = {"minilm": None, "minilm-onnx+lexical": "minilm-onnx+lexical"}
    if any(f.startswith("tuned") for f in wanted):
        folder = payload["chosen"]["folder"]  # `final` first
        features.update({"tuned": folder, "tuned+lexical": f"{folder}+lexical"})
    for family in [f.strip() for f in args.families.split(",")]:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for feat in wanted:
                if any(r["family"] == family and r["seed"] == seed and r["features"] == feat for r in payload["eval"]):
                    continue
                c0 = time.process_time()
                rows = run_one(data, family, seed, "serial", features[feat])
                for r in rows:
                    r.update({"family": family, "features": feat, "cpu_seconds": round(time.process_time() - c0, 1)})
                payload = read()  # another eval process may have appended meanwhile
                payload["eval"].extend(rows)
                write(payload)
                print(family, feat, seed, [(r["m"], round(r["v_b"], 4)) for r in rows], flush=True)


def speed(args) -> None:
    """Routing-time cost per prompt: the tuned encoder (torch, all six layers: a new prompt has no cached
    states) against torch MiniLM and ONNX MiniLM, on the same 128 MMLU-Pro questions, alternated 3 times
    in one process (the ratio is what counts on a shared machine)."""
    from recroute.encoders import get_encoder, load_encoder
    from recroute.encoders.embed import dataset_texts

    payload = read()
    data = dataset()
    texts = dataset_texts(data)[-128:]  # test-part or not does not matter for speed
    encoders = {"minilm (torch)": get_encoder("minilm", n_threads=args.threads),
                "minilm-onnx": get_encoder("minilm-onnx", n_threads=args.threads),
                "tuned (torch)": load_encoder(payload["chosen"]["folder"])}
    encoders["tuned (torch)"].n_threads = args.threads
    for enc in encoders.values():
        enc.encode(texts[:8])  # load / warm up
    times: dict[str, list[float]] = {k: [] for k in encoders}
    l0 = load()
    for _ in range(3):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            enc.encode(texts)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    payload["speed"] = {"n_prompts": len(texts), "threads": args.threads, "load": [l0, load()],
                        "ms_per_prompt": {k: round(1000 * v / len(texts), 2) for k, v in best.items()},
                        "ratio_to_torch_minilm": {k: round(v / best["minilm (torch)"], 3) for k, v in best.items()}}
    write(payload)
    print(payload["speed"], flush=True)


def markdown(payload: dict) -> str:
    lines = ["# MiniLM's top layers fine-tuned (RouterDC's losses), RouterEval's protocol on MMLU-Pro", "",
             "`python benchmarks/minilm_finetune.py select | final | eval` (module docstring). 2 shared cores; "
             "load averages (1 min) beside each time.", ""]
    st = payload.get("states")
    if st:
        lines += [f"Frozen states (depths {st.get('depths')}, float16): {st.get('n_texts')} prompts, {st.get('n_tokens')} "
                  f"word pieces, {st.get('seconds', 0):.0f} s wall, {st.get('cpu_seconds', 0):.0f} CPU-s, load "
                  f"{st.get('load_start', 0):.1f} to {st.get('load_end', 0):.1f}; computed once for every candidate.", ""]
    mv = payload.get("minilm_validation")
    if payload.get("candidates"):
        lines += ["## Selection: kNN (k=5), mean V_B on RouterEval's validation part", "",
                  f"Untuned MiniLM: {mv['mean'] if mv else '-'} (per m {mv['per_m'] if mv else '-'}).", "",
                  "| candidate | val V_B m=3 | m=5 | m=10 | val mean | steps | final loss | fine-tune s (CPU s) | "
                  "encode s (CPU s), prompts | load |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in payload["candidates"]:
            pm = c["validation"]["per_m"]
            g = lambda m: pm.get(str(m), pm.get(m, "-"))  # noqa: E731
            lines.append(f"| `{json.dumps(c['options'])}` | {g(3)} | {g(5)} | {g(10)} | {c['validation']['mean']} | "
                         f"{c['steps']} | {c['final_loss']:.4f} | {c['finetune_seconds']} ({c['finetune_cpu_seconds']}) | "
                         f"{c['encode_seconds']} ({c['encode_cpu_seconds']}), {c['n_encoded']} | "
                         f"{c['load_finetune'][0]}-{c['load_encode_end']} |")
        lines.append("")
    ch = payload.get("chosen")
    if ch:
        lines += [f"Chosen on validation: `{json.dumps(ch['options'])}` ({ch['encoder']}); the test prompts encoded "
                  f"after the choice in {ch['test_encode_seconds']} s.", ""]
    sp = payload.get("speed")
    if sp:
        lines += [f"Routing-time encoding cost ({sp['n_prompts']} MMLU-Pro questions, {sp['threads']} threads, best of 3, "
                  f"load {sp['load'][0]} to {sp['load'][1]}): "
                  + ", ".join(f"{k} {v} ms/prompt ({sp['ratio_to_torch_minilm'][k]}× torch MiniLM)"
                              for k, v in sp["ms_per_prompt"].items()) + ".", ""]
    ev = payload.get("eval") or []
    if ev:
        import pandas as pd

        df = pd.DataFrame(ev)
        df = df[df.m.isin([3, 5, 10])]
        g = df.groupby(["family", "features", "m"]).agg(v_b=("v_b", "mean"), std=("v_b", "std"), seeds=("seed", "nunique"),
                                                         lo=("load_start", "min"), hi=("load_end", "max"),
                                                         run_s=("run_seconds", "mean")).reset_index()
        lines += ["## Test: mean V_B in RouterEval's protocol (test read once per setting)", "",
                  "| family | features | V_B m=3 | m=5 | m=10 | mean | seeds | run s (mean) | load |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for (family, feat), block in g.groupby(["family", "features"], sort=False):
            by_m = {int(r.m): r for r in block.itertuples()}
            cells = [f"{by_m[m].v_b:.4f}" + (f" ±{by_m[m].std:.3f}" if by_m[m].seeds > 1 else "") if m in by_m else "-"
                     for m in (3, 5, 10)]
            mean = np.mean([by_m[m].v_b for m in by_m])
            lines.append(f"| {family} | {feat} | {' | '.join(cells)} | {mean:.4f} | {int(block.seeds.max())} | "
                         f"{block.run_s.mean():.0f} | {block.lo.min():.0f}-{block.hi.max():.0f} |")
        lines.append("")
    for note in payload.get("notes") or []:
        lines += [f"- {note}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["select", "final", "eval", "speed", "render"])
    ap.add_argument("--families", default="knn,two_tower,stack")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--features", default="minilm,minilm-onnx+lexical,tuned,tuned+lexical")
    ap.add_argument("--only", type=int, default=None, help="select: only this candidate (an index of CANDIDATES)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of this process")
    args = ap.parse_args()
    if args.step == "render":
        write(read())
        return
    {"select": select, "final": final, "eval": evaluate, "speed": speed}[args.step](args)


if __name__ == "__main__":
    main()
