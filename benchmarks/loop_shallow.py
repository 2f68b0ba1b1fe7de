"""Live policy depth before vs after the fixed-sequence promotion (issue 21; recroute.loop.shadow.shallow_promotion).

Reads two ``benchmarks/loop.py --mode fast`` JSONs on the same seeds and settings: ``--before`` (the code
before this change, or ``--no-shallow``: every passing conservative shadow promoted, one level deeper)
and ``--after`` (the plain refit gated second and promoted when it passes too), and writes per seed the
live policy's depth at the end, the promotions (by stage), the ratio mu_o_live / mu_o_full (goal 1: >= 0.95)
and the promotions lowering the true mu_o (goal 2: 0), with the plain stage's gate numbers (tested,
passed, its lower bound and its unsupported decisions: where the plain refit leaves live but the
conservative shadow did not, pi0 = 0 and the gate takes the worst case).

    python benchmarks/loop_shallow.py --before before.json --after after.json --out benchmarks/results/loop_shallow
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def depth_of(row: dict) -> int:
    """The live policy's depth at the end: recorded by the simulator (``live_depth``), else (the code
    before, tau > 0, no onboarding) 1 + the refit promotions, each nesting one level."""
    if "live_depth" in row:
        return int(row["live_depth"])
    return 1 + sum(1 for p in row["promotions"] if p["kind"] == "refit")


def summarize(row: dict) -> dict:
    plain = [g for g in row["gated"] if g.get("stage") == "plain"]
    return {"seed": row["seed"], "depth": depth_of(row), "promotions": len(row["promotions"]),
            "plain_promotions": sum(1 for p in row["promotions"] if p.get("stage") == "plain"),
            "ratio": row["ratio"], "lowering": sum(1 for p in row["promotions"] if p["true_delta"] < 0),
            "min_true_delta": min((p["true_delta"] for p in row["promotions"]), default=None),
            "plain_tested": len(plain), "plain_passed": sum(1 for g in plain if g["passed"]),
            "plain_lower": [round(g["lower"], 4) for g in plain], "plain_unsupported": [g["unsupported"] for g in plain],
            "plain_n": [g["n"] for g in plain], "plain_true_delta": [round(g["true_delta"], 4) for g in plain],
            "load": row.get("load")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", nargs="+", required=True)
    ap.add_argument("--after", nargs="+", required=True)
    ap.add_argument("--retune", nargs="*", default=[],
                    help="optional: runs with the simulator's retune (the after code), compared with --after on their seeds")
    ap.add_argument("--out", required=True, help="path without extension: writes .md and .json")
    args = ap.parse_args()
    docs = {k: [json.loads(Path(f).read_text()) for f in files] for k, files in (("before", args.before), ("after", args.after))}
    rows = {k: sorted((summarize(r) for d in ds for r in d["rows"]), key=lambda r: r["seed"]) for k, ds in docs.items()}
    seeds = sorted({r["seed"] for r in rows["before"]} & {r["seed"] for r in rows["after"]})
    rows = {k: [r for r in v if r["seed"] in seeds] for k, v in rows.items()}
    total = {k: {"seeds": len(v), "depth_mean": float(np.mean([r["depth"] for r in v])),
                 "depth_max": max(r["depth"] for r in v), "promotions": sum(r["promotions"] for r in v),
                 "plain_promotions": sum(r["plain_promotions"] for r in v),
                 "plain_tested": sum(r["plain_tested"] for r in v), "plain_passed": sum(r["plain_passed"] for r in v),
                 "ratio_mean": float(np.mean([r["ratio"] for r in v])),
                 "ratio_ge_095": sum(r["ratio"] >= 0.95 for r in v), "lowering": sum(r["lowering"] for r in v)}
             for k, v in rows.items()}
    retune = sorted((r for f in args.retune for r in json.loads(Path(f).read_text())["rows"]), key=lambda r: r["seed"])
    after_by_seed = {r["seed"]: r for d in docs["after"] for r in d["rows"]}
    retune_rows = [{"seed": r["seed"], "ratio_no_retune": after_by_seed[r["seed"]]["ratio"], "ratio_retune": r["ratio"],
                    "promotions_no_retune": len(after_by_seed[r["seed"]]["promotions"]), "promotions_retune": len(r["promotions"]),
                    "lowering_retune": sum(1 for p in r["promotions"] if p["true_delta"] < 0),
                    "depth_retune": depth_of(r),
                    "off_greedy_no_retune": after_by_seed[r["seed"]]["off_greedy_share"], "off_greedy_retune": r["off_greedy_share"]}
                   for r in retune if r["seed"] in after_by_seed]
    out = Path(args.out)
    out.with_suffix(".json").write_text(json.dumps({"args": {k: v for k, v in docs["after"][0]["args"].items()},
                                                    "before_files": args.before, "after_files": args.after,
                                                    "total": total, "rows": rows, "retune_files": args.retune,
                                                    "retune": retune_rows}, indent=1, default=float))
    a = docs["after"][0]["args"]
    lines = ["# Live policy depth: conservative promotion vs the fixed-sequence (plain refit second)\n",
             f"`benchmarks/loop.py --mode fast --dataset {a['dataset']} --explore {a['explore']} --shadow-tau "
             f"{a['shadow_tau']} --budget {a['budget']} --every {a['every']}` (full pass), seeds {seeds[0]}-{seeds[-1]} "
             f"(fresh); before: every passing conservative shadow promoted; after: `shallow_promotion`.\n",
             "| | seeds | mean depth | max depth | promotions | plain promoted | plain tested / passed | "
             "ratio mean | ratio >= 0.95 | lowering |", "|---|---|---|---|---|---|---|---|---|---|"]
    for k in ("before", "after"):
        t = total[k]
        lines.append(f"| {k} | {t['seeds']} | {t['depth_mean']:.2f} | {t['depth_max']} | {t['promotions']} | "
                     f"{t['plain_promotions']} | {t['plain_tested']} / {t['plain_passed']} | {t['ratio_mean']:.3f} | "
                     f"{t['ratio_ge_095']} / {t['seeds']} | {t['lowering']} |")
    lines += ["", "| seed | depth before | depth after | promotions before | after (plain) | ratio before | ratio after | "
              "plain gates: lower (unsupported / n, true delta vs live) |", "|---|---|---|---|---|---|---|---|"]
    for b, f in zip(rows["before"], rows["after"]):
        gates = ", ".join(f"{lo:+.3f} ({u}/{n}, true {td:+.3f})" for lo, u, n, td in
                          zip(f["plain_lower"], f["plain_unsupported"], f["plain_n"], f["plain_true_delta"]))
        lines.append(f"| {b['seed']} | {b['depth']} | {f['depth']} | {b['promotions']} | {f['promotions']} "
                     f"({f['plain_promotions']}) | {b['ratio']:.3f} | {f['ratio']:.3f} | {gates or '-'} |")
    if retune_rows:
        lines += ["", "With the simulator's retune of a kept shadow's ε (the runner's rule; the after code without "
                  "`--no-retune`) against the after run (which kept the first ε), same seeds:", "",
                  "| seed | ratio no retune | ratio retune | promotions | promotions retune (lowering) | depth retune | "
                  "off-greedy no retune | off-greedy retune |", "|---|---|---|---|---|---|---|---|"]
        for r in retune_rows:
            lines.append(f"| {r['seed']} | {r['ratio_no_retune']:.3f} | {r['ratio_retune']:.3f} | {r['promotions_no_retune']} | "
                         f"{r['promotions_retune']} ({r['lowering_retune']}) | {r['depth_retune']} | "
                         f"{r['off_greedy_no_retune']:.4f} | {r['off_greedy_retune']:.4f} |")
    loads = [r["load"][0] for r in rows["after"] if r.get("load")]
    lines.append(f"\nLoad average (1 min) during the after run: {min(loads):.1f}-{max(loads):.1f} (depth, ratio and "
                 "promotions do not depend on load).")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
