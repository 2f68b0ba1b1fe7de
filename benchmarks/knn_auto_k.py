"""kNN's opt-in k="auto" (leave-one-out on the training data, recroute.routers.knn) against RouterEval's
k = 5, on MMLU-Pro's stored MiniLM embeddings under RouterEval's protocol (seed-42 split, easy + hard
groups): test V_B per group, mean over the three groups per m, then over m = 3, 5, 10.

Two training sizes: RouterEval's whole training part (what ``recroute eval --dataset mmlu_pro --routers
knn,knn:k=auto`` runs) and 5 % of the prompts (602 of 12,032, drawn without replacement from the
training part; subsample seeds 0-4, the same rows for every group), the size the routing loop's first
kNN is fitted on. The grid K_GRID is fixed in the router and was not chosen on these numbers; the
test parts are those of the protocol, read once per (size, seed, group, router).

    python benchmarks/knn_auto_k.py          # writes benchmarks/results/knn_auto_k.json and .md
"""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
SPECS = ("knn", "knn:k=auto")
FRACTION = 0.05
SEEDS = (0, 1, 2, 3, 4)


def subsample(router_dataset: dict, rows: np.ndarray) -> dict:
    """A copy of a router_dataset whose training part holds only ``rows`` (scores, labels, embeddings)."""
    out = copy.copy(router_dataset)
    out["embedding"] = dict(router_dataset["embedding"], train_embed=np.asarray(router_dataset["embedding"]["train_embed"])[rows])
    for setting in ("easy", "hard"):
        out[setting] = {}
        for m, groups in (router_dataset.get(setting) or {}).items():
            out[setting][m] = {}
            for group, entry in (groups or {}).items():
                if not entry or entry.get("data") is None:
                    out[setting][m][group] = entry
                    continue
                data = dict(entry["data"])
                for key in ("train_score", "train_label"):
                    if data.get(key) is not None:
                        data[key] = np.asarray(data[key])[rows]
                out[setting][m][group] = {**entry, "data": data}
    return out


def run(router_dataset: dict, reference) -> list[dict]:
    """One row per (group, router): V_B, mu_o and the k used."""
    from recroute.eval.protocol import evaluate_group, iter_group_data
    from recroute.routers.registry import make_router

    rows = []
    for gd in iter_group_data(router_dataset, ("easy", "hard")):
        for spec in SPECS:
            router = make_router(spec)
            res = evaluate_group(router, gd, reference)
            rows.append({"router": spec, "setting": gd.setting, "m": gd.m, "group": gd.group,
                         "n_train": int(len(gd.Y_train)), "v_b": res["v_b"], "mu_o": res["mu_o"],
                         "k": router.n_neighbours(), "loo": {str(k): v for k, v in getattr(router, "k_loo_", {}).items()},
                         "fit_seconds": round(res["fit_seconds"], 3)})
    return rows


def means(rows: list[dict]) -> dict:
    """{router: {"m=3": mean V_B over its groups, ..., "mean": mean over m}}."""
    out = {}
    for spec in SPECS:
        per_m = {}
        for m in sorted({r["m"] for r in rows}):
            per_m[f"m={m}"] = float(np.mean([r["v_b"] for r in rows if r["router"] == spec and r["m"] == m]))
        per_m["mean"] = float(np.mean(list(per_m.values())))
        out[spec] = per_m
    return out


def main() -> None:
    import recroute
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.metrics import reference_score
    from recroute.eval.protocol import build_settings

    load0, t0 = [round(x, 2) for x in os.getloadavg()], time.perf_counter()
    data = recroute.load_dataset("mmlu_pro")
    rd = build_router_dataset(data, build_settings(("easy", "hard")), seed=42, embeddings=data.embeddings)
    reference = reference_score("mmlu_pro")
    n_train = len(rd["embedding"]["train_embed"])
    payload = {"dataset": "mmlu_pro", "embeddings": data.embedding_name, "specs": list(SPECS),
               "full": {"n_train": n_train}, "subsets": []}
    full = run(rd, reference)
    payload["full"].update(rows=full, means=means(full))
    print("full", payload["full"]["means"], flush=True)
    size = int(round(FRACTION * data.n_prompts))
    for seed in SEEDS:
        pick = np.sort(np.random.default_rng(seed).choice(n_train, size=size, replace=False))
        rows = run(subsample(rd, pick), reference)
        payload["subsets"].append({"seed": seed, "n_train": size, "rows": rows, "means": means(rows)})
        print("seed", seed, payload["subsets"][-1]["means"], flush=True)
    sub = {spec: float(np.mean([s["means"][spec]["mean"] for s in payload["subsets"]])) for spec in SPECS}
    payload["subset_mean_over_seeds"] = sub
    payload["subset_gain_per_seed"] = [s["means"]["knn:k=auto"]["mean"] - s["means"]["knn"]["mean"]
                                       for s in payload["subsets"]]
    payload["seconds"] = round(time.perf_counter() - t0, 1)
    payload["load"] = [load0, [round(x, 2) for x in os.getloadavg()]]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "knn_auto_k.json").write_text(json.dumps(payload, indent=1))
    (RESULTS / "knn_auto_k.md").write_text(report(payload))
    print(report(payload))


def report(p: dict) -> str:
    lines = ["# kNN k=\"auto\" vs k = 5 on MMLU-Pro (benchmarks/knn_auto_k.py)", "",
             f"Stored {p['embeddings']} embeddings, RouterEval's seed-42 split and groups; test V_B, mean over the "
             "three groups per m, `mean` over m. k=\"auto\": leave-one-out routed mean training target over "
             "K_GRID, chosen on the training rows only.", "",
             "| training prompts | router | m=3 | m=5 | m=10 | mean | k chosen (per group) |", "|---|---|---|---|---|---|---|"]

    def row(label, block):
        for spec in p["specs"]:
            m = block["means"][spec]
            ks = ",".join(str(r["k"]) for r in block["rows"] if r["router"] == spec)
            lines.append(f"| {label} | `{spec}` | {m.get('m=3', float('nan')):.4f} | {m.get('m=5', float('nan')):.4f} | "
                         f"{m.get('m=10', float('nan')):.4f} | {m['mean']:.4f} | {ks} |")

    row(f"{p['full']['n_train']} (all of the training part)", p["full"])
    for s in p["subsets"]:
        row(f"{s['n_train']} (5 %, seed {s['seed']})", s)
    sub = p["subset_mean_over_seeds"]
    gains = ", ".join(f"{g:+.4f}" for g in p["subset_gain_per_seed"])
    lines += ["", f"5 % subsets, mean over seeds {[s['seed'] for s in p['subsets']]}: knn {sub['knn']:.4f}, "
              f"knn:k=auto {sub['knn:k=auto']:.4f} (gain per seed: {gains}).",
              f"Run time {p['seconds']} s, load average {p['load'][0]} at the start, {p['load'][1]} at the end."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
