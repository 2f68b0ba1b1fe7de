"""Goal 2 and 3 numbers of onboarding runs of benchmarks/loop.py (issue 21), as markdown.

Per run (a JSON of benchmarks/loop.py with --new-llm): the new LLM's share with ties split, live against the
full-information router, over the 500 decisions ending 2,000 after its arrival (a refused LLM has share 0):
the ratio of the means and the seeds with a ratio >= 0.8 (goal 3); probes; onboardings promoted and those
whose true mu_o delta is below 0, refit promotions and those lowering it (goal 2); the live router's mu_o ratio.

    python benchmarks/loop_onboard_summary.py nim_uniform.json nim_contested.json
"""

from __future__ import annotations

import json
import sys

import numpy as np


def summary(rows: list[dict]) -> dict:
    """The goal numbers of one run's rows (module docstring)."""
    new = [r["new_llm"] for r in rows]
    live = np.array([n["share_live_split"] if n["placed"] else 0.0 for n in new])
    full = np.array([n["share_full_split"] for n in new])
    ratio = live / full
    placed = [n for n in new if n["placed"]]
    refits = [p for r in rows for p in r["promotions"] if p["kind"] != "onboard"]
    return {"seeds": [r["seed"] for r in rows], "share_live": float(live.mean()), "share_full": float(full.mean()),
            "ratio_of_means": float(live.mean() / full.mean()), "ratio_median": float(np.median(ratio)),
            "ratio_ge_0.8": int(np.sum(ratio >= 0.8)), "probes_max": int(max(n["probes"] for n in new)),
            "onboarded": len(placed), "onboard_lowering": [round(n["true_delta"], 4) for n in placed if n["true_delta"] < 0],
            "onboard_true_delta": [round(n["true_delta"], 4) for n in new],
            "refused_true_delta": [round(n["true_delta"], 4) for n in new if not n["placed"]],
            "refit_promotions": len(refits), "refit_lowering": int(sum(p["true_delta"] < 0 for p in refits)),
            "mu_o_ratio_mean": float(np.mean([r["ratio"] for r in rows])),
            "load": [round(float(min(r["load"][0] for r in rows)), 1), round(float(max(r["load"][0] for r in rows)), 1)]}


def per_seed(rows: list[dict]) -> str:
    """A markdown table, one line per seed."""
    out = ["| seed | onboarded (lower bound, support) | true delta | share live / full (ties split) | ratio | refit promotions |",
           "|---|---|---|---|---|---|"]
    for r in rows:
        n, g = r["new_llm"], r["new_llm"].get("gate") or {}
        live = n["share_live_split"] if n["placed"] else 0.0
        refit = ", ".join(f"{p['at']}: {p['true_delta']:+.4f}" for p in r["promotions"] if p["kind"] != "onboard") or "none"
        out.append(f"| {r['seed']} | {'yes' if n['placed'] else 'no'} ({g.get('lower', float('nan')):+.4f}, {g.get('support', 0)}) "
                   f"| {n['true_delta']:+.4f} | {live:.3f} / {n['share_full_split']:.3f} | {live / n['share_full_split']:.2f} | {refit} |")
    return "\n".join(out)


def main() -> None:
    for path in sys.argv[1:]:
        rows = json.load(open(path))["rows"]
        s = summary(rows)
        print(f"## {path}\n\n{json.dumps(s)}\n\n{per_seed(rows)}\n")


if __name__ == "__main__":
    main()
