"""New-LLM cold start on real results: held-out LLMs placed into routers from k probes.

For each dataset, :func:`recroute.coldstart.experiment.run_coldstart` (see its docstring for the
protocol) with the routers and strategies below; records the tidy rows, the MAE-vs-k figure and the
goal table with the machine:

- the four Open LLM Leaderboard v1 sets (100-240 items × 4,278-5,041 LLMs, no text for two of them:
  prompt features are each item's results over the base LLMs; one fold of 20 % held-out LLMs);
- ``mmlu_pro`` (31 LLMs, MiniLM text embeddings; 5 folds, every LLM held out once), and leave-one-out
  (``mmlu_pro_loo``) with the three routers fast enough for 31 folds;
- ``llmrouter_nim`` (9 LLMs with size and price metadata; leave-one-out).

Goal (issue 5, on the OLLB v1 sets): MAE of the estimated mean result <= 0.02 at k = 30, and at every
k in 5..50 at most half the MAE of the plain mean of k random probes.

    python benchmarks/coldstart.py                          # everything (about an hour on 2 cores)
    python benchmarks/coldstart.py --datasets open_llm_leaderboard_v1_mmlu

Writes benchmarks/results/coldstart.json, coldstart.md and coldstart_<dataset>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import resolve  # noqa: E402  (benchmarks/bench_data.py)
OLLB = [f"open_llm_leaderboard_v1_{name}" for name in ("arc", "gsm8k", "mmlu", "truthfulqa")]
STRATS = ["random", "anchor_correctness", "informative", "adaptive", "adaptive_irt"]
ESTIMATORS = ["llm_mixture", "llm_mixture:eps=0.1,irt_share=0.0", "irt", "gp_irt"]
# Bounded on 2 shared cores: one router (knn:k=1, round 1's best on every OLLB set; the other routers'
# curves are in coldstart_round1.md), anchor_embedding dropped on the sets without text (on response
# features it is anchor_correctness again).
PLANS = {
    **{name: dict(routers=["knn:k=1"], strategies=STRATS, estimators=ESTIMATORS,
                  holdout=0.2, max_folds=1, features="responses") for name in OLLB},
    # recipe selection: the same run on the reported fold's base LLMs only (an inner fold of 20 % of them)
    **{f"{name}_select": dict(dataset=name, select=True, routers=["knn:k=1"], strategies=STRATS,
                              estimators=ESTIMATORS, holdout=0.2, max_folds=1, features="responses") for name in OLLB},
    "mmlu_pro": dict(routers=["knn:k=1", "als"], strategies=["random", "stratified", "anchor_correctness", "informative",
                                                          "adaptive", "adaptive_irt"],
                     estimators=ESTIMATORS, holdout=0.2, max_folds=None, features="text"),
    "llmrouter_nim": dict(routers=["knn:k=1", "als"], strategies=["random", "stratified", "anchor_correctness",
                                                               "informative", "adaptive", "adaptive_irt"],
                          estimators=ESTIMATORS, holdout="loo", max_folds=None, features="text"),
}
FEATURE_NAMES = {"text": "MiniLM text embeddings",
                 "responses": "each item's results over the fold's base LLMs (SVD, 32 d)"}
KS = (0, 5, 10, 15, 20, 30, 50)
GOAL_MAE, GOAL_KS = 0.02, (5, 10, 20, 30, 50)


def adaptive_goal(rows: pd.DataFrame) -> dict:
    """The best non-adaptive MAE at k = 30 (any router/estimator/strategy, plain and probe means too) and
    the fewest adaptive probes (any router or estimator) whose MAE is at most that."""
    at30 = rows[(rows.k == 30) & ~rows.strategy.isin(["adaptive", "adaptive_irt"])]
    best = at30.loc[at30["mae"].idxmin()]
    ad = rows[rows.strategy.isin(["adaptive", "adaptive_irt"]) & (rows.k > 0) & (rows["mae"] <= best["mae"])]
    first = ad.sort_values(["k", "mae"]).iloc[0] if len(ad) else None
    return {"best_non_adaptive_k30": float(best["mae"]), "by": f"{best['router']} / {best['strategy']}",
            "adaptive_k": int(first["k"]) if first is not None else None,
            "adaptive_by": f"{first['router']} / {first['strategy']}" if first is not None else None,
            "met": bool(first is not None and first["k"] <= 20)}


HEADER = ("# New-LLM cold start (benchmarks/coldstart.py)\n\n"
          "Protocol: recroute/coldstart/experiment.py. Each held-out LLM is placed into routers fitted without it "
          "from k probe results; MAE of its estimated mean result over the whole set, AUC / log-loss of the "
          "per-prompt predictions on the unprobed prompts, mu_o of a 5-LLM pool (it + the 4 base LLMs closest "
          "in mean) vs a router that saw it fully. Machine: see coldstart.json.\n\n")


def goal_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (router, strategy): MAE at k = 30, the plain-mean ratio at each k in 5..50, and the goal."""
    plain = rows[rows.router == "plain_mean"].set_index("k")["mae"]
    out = []
    for (router, strategy), part in rows[rows.router != "plain_mean"].groupby(["router", "strategy"], sort=False):
        mae = part.set_index("k")["mae"]
        ratios = {k: mae[k] / plain[k] for k in GOAL_KS if k in mae.index and k in plain.index}
        at30 = float(mae.get(30, np.nan))
        out.append({
            "router": router, "strategy": strategy, "mae_k30": at30,
            **{f"ratio_k{k}": r for k, r in ratios.items()},
            "mae_goal": bool(at30 <= GOAL_MAE), "half_goal": bool(ratios) and all(r <= 0.5 for r in ratios.values()),
        })
    return pd.DataFrame(out)


def md_table(df: pd.DataFrame, digits: int = 4) -> str:
    """A GitHub markdown table; floats rounded, NaN as a dash."""
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "-" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(str(c) for c in df.columns) + " |"
    rule = "|" + "---|" * len(df.columns)
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])


def markdown(results: dict) -> str:
    lines = []
    for dataset, entry in results.items():
        rows, goal = pd.DataFrame(entry["rows"]), pd.DataFrame(entry["goal"])
        lines += [f"### {dataset}", "",
                  f"{entry['n_prompts']} prompts × {entry['n_llms']} LLMs; features: {entry['features']}; "
                  f"folds: {entry['folds']} ({entry['held_out']} held-out LLMs in all); {entry['seconds']:.0f} s.", "",
                  "MAE of the estimated mean result (plain_mean: k random probes; probe_mean: the strategy's own "
                  "weighted probes):", "",
                  md_table(rows.pivot_table(index=["router", "strategy"], columns="k", values="mae", sort=False)
                           .reset_index()), "",
                  "AUC of the per-prompt predictions on the unprobed prompts / mu_o ratio vs a router that saw the "
                  "LLM fully, at k = 30:", ""]
        at = rows[(rows.k == 30) & ~rows.router.isin(["plain_mean", "probe_mean"])]
        lines += [md_table(at[["router", "strategy", "auc", "log_loss", "mu_o_ratio"]]), ""]
        if not goal.empty:
            lines += [f"Goal: MAE <= {GOAL_MAE} at k = 30 and MAE / plain-mean MAE <= 0.5 at every k in 5..50:", "",
                      md_table(goal, digits=3), ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join([*[f"{n}_select" for n in OLLB], *OLLB, "mmlu_pro", "llmrouter_nim"]))
    parser.add_argument("--out", default=str(HERE / "results"))
    parser.add_argument("--render", action="store_true", help="Only rebuild coldstart.md from coldstart.json.")
    args = parser.parse_args()
    from machine import describe_machine

    from recroute.coldstart.experiment import llm_folds, plot_coldstart, run_coldstart

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "coldstart.json"
    doc = json.loads(path.read_text()) if path.exists() else {"results": {}}
    if args.render:
        (out / "coldstart.md").write_text(HEADER + markdown(doc["results"]))
        return
    doc["machine"] = describe_machine()
    for name in args.datasets.split(","):
        plan = PLANS[name]
        data = resolve(plan.get("dataset", name))
        if plan.get("select"):  # only the base LLMs of the reported fold (seed 0, first fold)
            held = llm_folds(data.n_llms, plan["holdout"], 0)[0]
            data = data.subset(llms=np.setdiff1d(np.arange(data.n_llms), held))
        start = time.perf_counter()
        result = run_coldstart(data, plan["routers"], plan["strategies"], KS, estimators=plan["estimators"],
                               holdout=plan["holdout"], max_folds=plan["max_folds"], features=plan["features"],
                               quiet=False)
        seconds = time.perf_counter() - start
        rows = result.rows
        plot_coldstart(rows, out / f"coldstart_{name}.png", title=f"{name}: new-LLM cold start")
        doc["results"][name] = {
            "n_prompts": data.n_prompts, "n_llms": data.n_llms, "seconds": seconds,
            "features": FEATURE_NAMES[plan["features"]],
            "folds": int(rows["folds"].max()), "held_out": int(rows["n_llms"].max()),
            "plan": {k: v for k, v in plan.items()}, "rows": result.records(),
            "goal": goal_table(rows).to_dict("records") if name in OLLB or plan.get("select") else [],
            "adaptive_goal": adaptive_goal(rows) if name in OLLB else None,
        }
        path.write_text(json.dumps(doc, indent=1, default=float))
        (out / "coldstart.md").write_text(HEADER + markdown(doc["results"]))
        print(f"{name}: {seconds:.0f} s", flush=True)


if __name__ == "__main__":
    main()
