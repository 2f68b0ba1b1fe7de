"""A fresh shadow's first ε against the exploration budget (recroute.loop.shadow.first_epsilon_probe).

Each seed runs the in-process stream simulator (recroute.loop.simulate, ``--explore shadow``) twice on the
same stream, the first ε of every fresh shadow set two ways:

- ``trained`` (before): from the shadow's disagreement with live on the recent prompts it was fitted on;
- ``heldout``: from the disagreement of the same form refitted without the most recent ``holdout``
  decisions, on those decisions (each among its own logged candidates);
- ``max`` (now): the larger of the two, plus one standard error.

Per shadow and first look (its window: the decisions from its install to its first gate) it records ε,
the served share where the shadow's choice differs from live's (d) and the off-greedy share: expected
(the mean of 1 - P(live's choice), i.e. ε·d, free of the draw's noise) and served (drawn). ``max`` is the
rule now (the larger estimate plus one standard error, recroute.loop.shadow.first_epsilon); ``trained`` the
rule before (z = 0).

    python benchmarks/loop_budget.py --dataset /work/shared/data/llmrouter_nim --decisions 4000 --seeds 0 1 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine

KEYS = ("at", "since", "n_recent", "epsilon", "d_trained", "d_heldout", "differ_served", "off_greedy_expected",
        "off_greedy_served")


def first_looks(row: dict) -> list[dict]:
    """The look-1 gates of one simulator run (one per shadow that reached its first look)."""
    return [{k: g.get(k) for k in KEYS} for g in row["gated"] if g.get("look") == 1]


def summary(looks: list[dict], budget: float) -> dict:
    exp = np.array([g["off_greedy_expected"] for g in looks])
    served = np.array([g["off_greedy_served"] for g in looks])
    w = np.array([g["at"] - g["since"] for g in looks], dtype=float)  # decisions in each first window
    return {"shadows": len(looks), "expected_mean": float(exp.mean()), "expected_max": float(exp.max()),
            "expected_over_budget": float(np.average(exp, weights=w) / budget),
            "served_pooled": float(np.average(served, weights=w)), "served_over_budget": float(np.average(served, weights=w) / budget),
            "within_budget": int((exp <= budget).sum())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--decisions", type=int, default=4000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--budget", type=float, default=0.02)
    parser.add_argument("--shadow-tau", type=float, default=0.2)
    parser.add_argument("--holdout", type=float, default=0.3)
    parser.add_argument("--methods", nargs="+", default=["trained", "max"], choices=("trained", "heldout", "max"))
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    from loop import load_features  # benchmarks/loop.py

    from recroute.data.catalog import load_dataset
    from recroute.loop.runner import LoopSettings
    from recroute.loop.schedule import Schedule
    from recroute.loop.simulate import StreamConfig, simulate_stream

    data = load_dataset(args.dataset)
    X = load_features(data, None)
    rows, looks = [], {m: [] for m in args.methods}
    for seed in args.seeds:
        for method in args.methods:
            settings = LoopSettings(schedule=Schedule(args.every), holdout=args.holdout, min_outcomes=args.every)
            config = StreamConfig(decisions=args.decisions, explore="shadow", shadow_tau=args.shadow_tau,
                                  explore_budget=args.budget, first_epsilon=method, settings=settings)
            start = time.perf_counter()
            out = simulate_stream(data, X, config, seed=seed)
            got = first_looks(out)
            looks[method] += got
            rows.append({"seed": seed, "method": method, "first_looks": got, "ratio": out["ratio"],
                         "off_greedy_share": out["off_greedy_share"], "seconds": round(time.perf_counter() - start, 1),
                         "load": os.getloadavg(),
                         "promotions": [round(p["true_delta"], 4) for p in out["promotions"]]})
            print(f"seed {seed} {method}: " + ", ".join(f"ε {g['epsilon']:.4f} d {g['differ_served']:.3f} "
                                                      f"exp {g['off_greedy_expected']:.4f}" for g in got)
                  + f" ({rows[-1]['seconds']} s, load {rows[-1]['load'][0]:.1f})", flush=True)
            doc = {"machine": describe_machine(), "args": vars(args), "rows": rows,
                   "summary": {m: summary(v, args.budget) for m, v in looks.items() if v}}
            Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    print(json.dumps(doc["summary"], indent=1))


if __name__ == "__main__":
    main()
