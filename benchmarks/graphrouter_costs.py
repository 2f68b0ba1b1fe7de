"""GraphRouter's LLM text and cost edges on llmrouter_nim (the shared set with descriptions and prices).

Trained on the dataset's ``split == "train"`` prompts (5,608), measured on its 500 test prompts, with
MiniLM (ONNX) prompt embeddings (a measurement, not a selection: nothing here sets a default). Three
variants, seeds 0-2, one process: the quality graph alone (a bare score
matrix), + metadata, text and cost edges (the default on a RoutingDataset), and the same with
``llm_text="off"``. Recorded: mu_o / best single LLM's test mean (V_B over the whole pool), AUC, the
cost edges' median relative error against the price-based costs, and Avengers-Pro's trade-off through
the shared cost step (``alpha_utility``) swept over alpha with the router's *predicted* costs against
the *price-based* ones: realised mean test cost and quality per alpha.

    python benchmarks/graphrouter_costs.py

Writes benchmarks/results/graphrouter_costs.json and .md (load averages beside the figures).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import resolve  # noqa: E402

SEEDS = (0, 1, 2)
ALPHAS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.0)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    from machine import describe_machine
    from sklearn.metrics import roc_auc_score

    from recroute.atomic import atomic_file
    from recroute.cost.decide import alpha_utility
    from recroute.encoders import embed_dataset
    from recroute.routers.registry import make_router

    data = resolve("llmrouter_nim")
    embed_dataset(data, "minilm-onnx")
    split = data.prompts["split"].to_numpy()
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    Y = data.dense(np.nan)
    Y_test = np.nan_to_num(Y[test])  # unobserved test cells count 0, as RouterEval
    C = data.costs()
    best_single = float(Y_test.mean(axis=0).max())
    part = data.subset(prompts=train)
    X_test = data.embeddings[test]
    fits = {"quality graph (bare matrix)": lambda seed: make_router("graphrouter", random_state=seed).fit(
                Y[train], data.embeddings[train]),
            "+ metadata, text, cost edges": lambda seed: make_router("graphrouter", random_state=seed).fit(part),
            "+ metadata, cost edges (text off)": lambda seed: make_router("graphrouter", llm_text="off",
                                                                          random_state=seed).fit(part)}
    rows = []
    observed = ~np.isnan(Y[test])
    for label, fit in fits.items():
        start, before = time.perf_counter(), load()
        v_b, auc = [], []
        for seed in SEEDS:
            router = fit(seed)
            S = router.score(X_test)
            v_b.append(float(Y_test[np.arange(len(test)), S.argmax(axis=1)].mean() / best_single))
            auc.append(float(roc_auc_score((Y[test][observed] >= 0.5).astype(int), S[observed])))
            if seed == SEEDS[0]:
                first, S_first = router, S
        router, S = first, S_first
        seconds = (time.perf_counter() - start) / len(SEEDS)
        row = {"router": label, "n_text": int(router.n_text_), "n_cost": int(router.n_cost_), "n_meta": int(router.n_meta_),
               "v_b_pool": float(np.mean(v_b)), "v_b_pool_std": float(np.std(v_b)), "v_b_pool_per_seed": v_b,
               "auc": float(np.mean(auc)), "seeds": list(SEEDS), "fit_seconds": round(seconds, 1), "load": [before, load()]}
        if router.predicts_costs:
            P = router.predict_costs(X_test)
            row["cost_median_relative_error"] = float(np.median(np.abs(P - C[test]) / C[test]))
            sweep = []
            for alpha in ALPHAS:
                point = {"alpha": alpha}
                for source, costs in (("predicted", P), ("prices", C[test])):
                    choice = alpha_utility(S, costs, alpha).argmax(axis=1)
                    point[source] = {"quality": float(Y_test[np.arange(len(test)), choice].mean()),
                                     "mean_cost": float(C[test][np.arange(len(test)), choice].mean())}
                sweep.append(point)
            row["alpha_sweep"] = sweep
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "alpha_sweep"}), flush=True)
    payload = {"benchmark": "graphrouter_costs", "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
               "best_single_test_mean": best_single, "rows": rows}
    lines = ["# GraphRouter: LLM text and cost edges on llmrouter_nim", "",
             f"Machine: {payload['machine'].get('cpu')}, {payload['machine'].get('cores')} cores, shared (load averages "
             f"beside each row). {payload['date']}. Train: the 5,608 `split == train` prompts; test: the 500 others; "
             "MiniLM (ONNX) embeddings; V_B over the whole pool of 9 LLMs (best single LLM's test mean "
             f"{best_single:.4f}).", "",
             "Seeds 0-2 (mean, std); the cost columns and the sweep are seed 0's.", "",
             "| router | V_B (pool) | std | AUC | cost edges: median rel. error | fit s | load |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        err = r.get("cost_median_relative_error")
        lines.append(f"| {r['router']} | {r['v_b_pool']:.4f} | {r['v_b_pool_std']:.4f} | {r['auc']:.4f} | {'-' if err is None else f'{err:.3f}'} | "
                     f"{r['fit_seconds']} | {r['load']} |")
    full = next(r for r in rows if "alpha_sweep" in r)
    lines += ["", f"Avengers-Pro's trade-off through the shared cost step, `{full['router']}`: quality / mean test cost "
              "($ per prompt) when the decision uses the router's predicted costs or the price-based ones:", "",
              "| alpha | predicted: quality | predicted: cost | prices: quality | prices: cost |", "|---|---|---|---|---|"]
    for p in full["alpha_sweep"]:
        lines.append(f"| {p['alpha']} | {p['predicted']['quality']:.4f} | {p['predicted']['mean_cost']:.3e} | "
                     f"{p['prices']['quality']:.4f} | {p['prices']['mean_cost']:.3e} |")
    out = HERE / "results" / "graphrouter_costs"
    for suffix, text in ((".json", json.dumps(payload, indent=1) + "\n"), (".md", "\n".join(lines) + "\n")):
        with atomic_file(out.with_suffix(suffix)) as tmp:
            tmp.write_text(text)
    print(f"written to {out}.json/.md")


if __name__ == "__main__":
    main()
