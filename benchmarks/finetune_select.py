"""Selection on validation, never on test: RouterDC's temperature and the fine-tuned static encoder's settings.

RouterEval's protocol splits each set 80/10/10 (seed 42) and leaves the validation part unused. Here
every candidate setting is scored by mean V_B over m = 3, 5, 10 (easy + hard groups) **on that
validation part** (each group's router trains on the training part, exactly as under ``recroute
eval``, and is measured on the validation prompts instead of the test prompts: V_B's best single
LLM is then the validation part's); the setting with the best validation mean is chosen, and only
then is test V_B computed, once, for the chosen setting (and for the previous default, for the record).

- RouterDC (``routerdc:temperature=t``) on MiniLM embeddings, every shared set with text (MMLU-Pro,
  llmrouter_nim, Open LLM Leaderboard v1 ARC and GSM8K); one default for all: the best mean over the
  sets of the validation means (the v1 sets' validation parts hold only 14 and 24 prompts).
- Fine-tuned static encoder (``finetune_for_dataset``, trained on RouterEval's training part only),
  scored by kNN (k=5) on MMLU-Pro: a coordinate grid around the recorded defaults.

    python benchmarks/finetune_select.py                  # both parts
    python benchmarks/finetune_select.py --part routerdc

Writes benchmarks/results/finetune_select.json and .md after every candidate (machine and load beside).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import resolve  # noqa: E402

ROUTERDC_TEMPERATURES = (0.05, 0.1, 0.3, 1.0)
ROUTERDC_SETS = ("mmlu_pro", "llmrouter_nim", "open_llm_leaderboard_v1_arc", "open_llm_leaderboard_v1_gsm8k")
# one option changed at a time from the recorded defaults (encoders/finetune.py DEFAULTS)
STATIC_GRID = ({}, {"temperature": 0.1}, {"anchor": 0.3}, {"anchor": 3.0}, {"n_clusters": 5}, {"epochs": 2})


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def validation_as_test(router_dataset: dict) -> dict:
    """A copy of a RouterEval router_dataset whose test part is its validation part (scores and
    embeddings), so the protocol measures on validation; the training part is unchanged."""
    out = copy.copy(router_dataset)
    for setting in ("easy", "hard"):
        out[setting] = {}
        for m, groups in (router_dataset.get(setting) or {}).items():
            out[setting][m] = {}
            for group, entry in (groups or {}).items():
                data = dict(entry["data"], test_score=entry["data"]["val_score"])
                out[setting][m][group] = {**entry, "data": data}
    emb = router_dataset.get("embedding")
    if emb is not None:
        out["embedding"] = {**emb, "test_embed": emb["val_embed"]}
    return out


def mean_v_b(router_dataset: dict, spec: str) -> dict:
    """{"per_m": {m: mean V_B over the groups}, "mean": over m = 3, 5, 10} of one router spec."""
    from recroute.eval.protocol import evaluate_router_dataset

    present = [s for s in ("easy", "hard") if router_dataset.get(s)]
    df = evaluate_router_dataset(router_dataset, [spec], None, present)
    per_m = df[(df.group == "mean") & df.m.isin([3, 5, 10])].groupby("m").v_b.mean()
    return {"per_m": {int(m): round(float(v), 4) for m, v in per_m.items()}, "mean": round(float(per_m.mean()), 4)}


def router_datasets(data, X: np.ndarray) -> tuple[dict, dict]:
    """(validation-as-test, test) router_datasets of RouterEval's seed-42 split with embeddings X."""
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.protocol import build_settings

    rd = build_router_dataset(data, build_settings(("easy", "hard")), seed=42, embeddings=X)
    return validation_as_test(rd), rd


def minilm(data) -> np.ndarray:
    from recroute.encoders import embed_dataset

    return np.asarray(embed_dataset(data, "minilm-onnx"), dtype=np.float32)


def select_routerdc(payload: dict, save) -> None:
    """Every temperature on every shared set with text; a set already recorded is kept (resume)."""
    for name in ROUTERDC_SETS:
        if "chosen_temperature" in payload["routerdc"].get(name, {}):
            continue
        data = resolve(name)
        val, test = router_datasets(data, minilm(data))
        rows = []
        for t in ROUTERDC_TEMPERATURES:
            start = time.perf_counter()
            rows.append({"temperature": t, "validation": mean_v_b(val, f"routerdc:temperature={t}"),
                         "seconds": round(time.perf_counter() - start, 1), "load": load()})
            print(name, rows[-1], flush=True)
            payload["routerdc"][name] = {"grid": rows}
            save()
        best = max(rows, key=lambda r: r["validation"]["mean"])
        chosen = best["temperature"]
        payload["routerdc"][name].update({"chosen_temperature": chosen,
                                          "test_chosen": mean_v_b(test, f"routerdc:temperature={chosen}"),
                                          "load_test": load()})
        save()


def choose_routerdc_default(payload: dict, save) -> None:
    """One default temperature for every set: the best mean over the sets of the validation means; its
    test V_B on each set (computed once here where the per-set choice was another temperature)."""
    blocks = payload["routerdc"]
    temperatures = [r["temperature"] for r in next(iter(blocks.values()))["grid"]]
    means = {t: float(np.mean([next(r["validation"]["mean"] for r in b["grid"] if r["temperature"] == t)
                               for b in blocks.values()])) for t in temperatures}
    chosen = max(temperatures, key=lambda t: means[t])
    tests = {}
    for name, block in blocks.items():
        if block["chosen_temperature"] == chosen:
            tests[name] = block["test_chosen"]
        else:
            data = resolve(name)
            tests[name] = mean_v_b(router_datasets(data, minilm(data))[1], f"routerdc:temperature={chosen}")
    payload["routerdc_default"] = {"validation_mean_over_sets": {str(t): round(v, 4) for t, v in means.items()},
                                   "chosen_temperature": chosen, "test": tests, "load": load()}
    save()


def select_static(payload: dict, save, name: str = "mmlu_pro") -> None:
    from recroute.encoders import get_encoder
    from recroute.encoders.finetune import DEFAULTS, finetune_for_dataset

    data = resolve(name)
    base = get_encoder("static")
    X_minilm = minilm(data)
    val_minilm, test_minilm = router_datasets(data, X_minilm)
    out = payload["static_finetune"] = {"dataset": name, "defaults": DEFAULTS,
                                        "minilm_validation": mean_v_b(val_minilm, "knn"), "grid": []}
    save()
    tuned_test = {}
    for change in STATIC_GRID:
        start = time.perf_counter()
        tuned = finetune_for_dataset(data, base, **change)
        seconds = time.perf_counter() - start
        val, test = router_datasets(data, tuned.encode(data.texts))
        tuned_test[json.dumps(change, sort_keys=True)] = test
        out["grid"].append({"change": change, "encoder": tuned.name, "finetune_seconds_or_cached": round(seconds, 1),
                            "validation": mean_v_b(val, "knn"), "load": load()})
        print(name, out["grid"][-1], flush=True)
        save()
    best = max(out["grid"], key=lambda r: r["validation"]["mean"])
    out["chosen"] = best["change"]
    out["test_chosen"] = mean_v_b(tuned_test[json.dumps(best["change"], sort_keys=True)], "knn")
    out["test_minilm"] = mean_v_b(test_minilm, "knn")
    out["test_gap_chosen_vs_minilm"] = round(out["test_chosen"]["mean"] - out["test_minilm"]["mean"], 4)
    out["load_test"] = load()
    save()


def at_m(per_m: dict, m: int):
    """A per-m value whether the keys are ints (fresh) or strings (read back from JSON)."""
    return per_m.get(m, per_m.get(str(m), float("nan")))


def markdown(payload: dict) -> str:
    lines = ["# Selection on RouterEval's validation part (never test)", "",
             f"Machine: {payload['machine'].get('cpu')}, {payload['machine'].get('cores')} cores, shared with other "
             f"engineers' jobs (load averages 1/5/15 min beside each row). {payload['date']}.", "",
             "Each candidate: mean V_B over m = 3, 5, 10 (easy + hard, the three groups each) with the routers trained "
             "on the training part of RouterEval's seed-42 split and measured on its validation part. The best "
             "validation mean is chosen; test V_B is then computed once for the chosen setting.", ""]
    for name, block in payload.get("routerdc", {}).items():
        lines += [f"## RouterDC temperature, {name} (MiniLM embeddings)", "",
                  "| temperature | val V_B m=3 | m=5 | m=10 | val mean | load |", "|---|---|---|---|---|---|"]
        for r in block["grid"]:
            pm = r["validation"]["per_m"]
            lines.append(f"| {r['temperature']} | {at_m(pm, 3)} | {at_m(pm, 5)} | {at_m(pm, 10)} | "
                         f"{r['validation']['mean']} | {r['load']} |")
        if "chosen_temperature" in block:
            lines += ["", f"Chosen: temperature = {block['chosen_temperature']}; test mean V_B "
                      f"{block['test_chosen']['mean']} (per m {block['test_chosen']['per_m']}; load {block['load_test']}).", ""]
    default = payload.get("routerdc_default")
    if default:
        lines += ["## RouterDC's default temperature (one for every set)", "",
                  f"Validation mean V_B averaged over the sets, per temperature: {default['validation_mean_over_sets']}. "
                  f"Chosen: **{default['chosen_temperature']}**. Test mean V_B with it (once): "
                  + ", ".join(f"{k} {v['mean']} (per m {v['per_m']})" for k, v in default["test"].items())
                  + f" (load {default['load']}).", ""]
    st = payload.get("static_finetune")
    if st:
        lines += [f"## Fine-tuned static encoder, kNN (k=5) on {st['dataset']}", "",
                  f"Defaults changed one at a time: `{json.dumps(st['defaults'])}`. MiniLM's kNN validation mean V_B: "
                  f"{st['minilm_validation']['mean']}.", "",
                  "| change | val V_B m=3 | m=5 | m=10 | val mean | vs MiniLM (val) | fine-tune s | load |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in st["grid"]:
            pm = r["validation"]["per_m"]
            gap = r["validation"]["mean"] - st["minilm_validation"]["mean"]
            lines.append(f"| `{json.dumps(r['change'])}` | {at_m(pm, 3)} | {at_m(pm, 5)} | {at_m(pm, 10)} | "
                         f"{r['validation']['mean']} | {gap:+.4f} | {r['finetune_seconds_or_cached']} | {r['load']} |")
        if "chosen" in st:
            lines += ["", f"Chosen: `{json.dumps(st['chosen'])}`. Test (once): tuned static kNN mean V_B "
                      f"{st['test_chosen']['mean']} (per m {st['test_chosen']['per_m']}), MiniLM "
                      f"{st['test_minilm']['mean']}: gap {st['test_gap_chosen_vs_minilm']:+.4f} "
                      f"(goal: within 0.005; load {st['load_test']}).", ""]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["routerdc", "static", "all", "merge"], default="all",
                        help="merge: read --merge-from's RouterDC part into --out and choose one default temperature")
    parser.add_argument("--merge-from", type=Path, default=HERE / "results" / "finetune_select_routerdc")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "finetune_select")
    args = parser.parse_args()
    from machine import describe_machine

    from recroute.atomic import atomic_file

    payload: dict = {"benchmark": "finetune_select", "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
                     "routerdc": {}}
    if args.out.with_suffix(".json").exists():  # keep the other part's results
        payload.update({k: v for k, v in json.loads(args.out.with_suffix(".json").read_text()).items()
                        if k in ("routerdc", "static_finetune")})

    def save() -> None:
        for suffix, text in ((".json", json.dumps(payload, indent=1) + "\n"), (".md", markdown(payload))):
            with atomic_file(args.out.with_suffix(suffix)) as tmp:
                tmp.write_text(text)

    if args.part == "merge":
        payload["routerdc"] = json.loads(args.merge_from.with_suffix(".json").read_text())["routerdc"]
        choose_routerdc_default(payload, save)
    if args.part in ("routerdc", "all"):
        select_routerdc(payload, save)
        choose_routerdc_default(payload, save)
    if args.part in ("static", "all"):
        select_static(payload, save)
    print(f"written to {args.out}.json/.md")


if __name__ == "__main__":
    main()
