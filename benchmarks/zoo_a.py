"""Issue 23's irt, avengers, sw_ranking and hybrid against RouterEval's best baseline, under RouterEval's protocol.

For each dataset: RouterEval's seed-42 split and candidate groups (easy m = 3, 5; hard m = 10 where the
pool allows), every router fitted per group (default parameters, one seed), through
:func:`recroute.eval.protocol.evaluate_dataset`. RouterEval's best baseline is, per m, the best mean
V_B among its learned baselines (knn, linear, mlp, cluster, mlc) run in the same process; the table
gives each family's mean V_B per m, its mean over m, and the margin over the best baseline.

    python benchmarks/zoo_a.py                                   # mmlu_pro and ../shared/data/llmrouter_nim
    python benchmarks/zoo_a.py --datasets mmlu_pro --rows mmlu_pro=eval.json   # summarise `recroute eval --json`
                                                                 # (repeatable: later files replace routers)

Writes benchmarks/results/zoo_a.json (rows + summary, machine, load) and zoo_a.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

FAMILIES = ["irt", "avengers", "sw_ranking", "hybrid"]
BASELINES = ["knn", "linear", "mlp", "cluster", "mlc"]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per router: mean V_B per m (group means) and their mean; against RouterEval's best baseline
    (the learned baseline with the highest mean V_B over m) and against the per-m envelope of the baselines."""
    means = rows[rows["group"] == "mean"].pivot_table(index="router", columns="m", values="v_b")
    means.columns = [f"m={m}" for m in means.columns]
    base = means.loc[[b for b in BASELINES if b in means.index]]
    best_name = str(base.mean(axis=1).idxmax())
    envelope = base.max(axis=0)
    out = means.copy()
    out["mean"] = means.mean(axis=1)
    out.loc["per-m best baseline"] = [*envelope.tolist(), envelope.mean()]
    out[f"vs {best_name} (best baseline)"] = out["mean"] - out.loc[best_name, "mean"]
    out["vs per-m best"] = out["mean"] - envelope.mean()
    out["beats best baseline at some m"] = [
        bool((means.loc[r] > means.loc[best_name] + 1e-12).any()) if r in means.index else False for r in out.index]
    return out


def seed_means(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count of each router's mean V_B over its ``random_state`` variants (label without the seed)."""
    rows = table.drop(index=[r for r in table.index if r == "per-m best baseline"])
    label = rows.index.str.replace(r"[:,]?random_state=\d+", "", regex=True)
    out = rows["mean"].groupby(label).agg(["mean", "std", "count"])
    return out[out["count"] > 1]


def markdown(name: str, table: pd.DataFrame, load: str, seconds: float | None) -> str:
    cols = list(table.columns)
    when = f"load average before the run: {load}; {seconds:.0f} s" if seconds else "rows of earlier runs (their load: see the note)"
    lines = [f"### {name}", "", when, "",
             "| router | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for router, row in table.iterrows():
        cells = [f"{v:+.4f}" if c.startswith("vs ") else (str(bool(v)) if c.startswith("beats") else f"{v:.4f}")
                 for c, v in row.items()]
        lines.append(f"| {router} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mmlu_pro,llmrouter_nim")
    parser.add_argument("--routers", default=",".join(FAMILIES + BASELINES))
    parser.add_argument("--rows", action="append", default=[],
                        help="NAME=FILE: rows of `recroute eval --json` to summarise (repeatable)")
    parser.add_argument("--note", default="", help="a line for the report (e.g. the load while --rows were made)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "zoo_a")
    args = parser.parse_args()
    from bench_data import resolve
    from machine import describe_machine

    from recroute.atomic import atomic_file
    from recroute.eval.protocol import evaluate_dataset

    given: dict[str, list[str]] = {}
    for item in args.rows:  # NAME=FILE, repeatable: a later file's routers replace an earlier one's
        name, _, path = item.partition("=")
        given.setdefault(name, []).append(path)
    payload = {"benchmark": "zoo_a", "machine": describe_machine(), "date": time.strftime("%Y-%m-%d %H:%M"),
               "note": args.note, "datasets": {}}
    parts = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
        start = time.perf_counter()
        if name in given:
            parts_in = [pd.DataFrame(json.loads(Path(p).read_text())) for p in given[name]]
            rows = pd.concat(parts_in).drop_duplicates(["router", "setting", "m", "group"], keep="last")
            seconds = None
        else:
            rows = evaluate_dataset(resolve(name), args.routers.split(","), settings="all")
            seconds = time.perf_counter() - start
        table = summarise(rows)
        parts.append(markdown(name, table, load, seconds))
        seeds = seed_means(table)
        if len(seeds):
            parts.append("Over router seeds (random_state 0, 1, 2: mean V_B over m):\n\n| router | mean | std | seeds |\n|---|---|---|---|\n"
                         + "".join(f"| {r} | {v['mean']:.4f} | {v['std']:.4f} | {int(v['count'])} |\n" for r, v in seeds.iterrows()))
        keep = rows[rows["group"] == "mean"][["router", "setting", "m", "mu_o", "v_b", "e_p", "auc"]]
        payload["datasets"][name] = {"load_before": load, "seconds": seconds, "rows": keep.to_dict("records"),
                                     "summary": table.reset_index(names="router").to_dict("records"),
                                     "seed_means": seeds.reset_index(names="router").to_dict("records")}
        print(parts[-1], flush=True)
    with atomic_file(args.out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
    header = "# Issue 23 families vs RouterEval's best baseline (mean V_B, RouterEval's protocol)\n\n"
    with atomic_file(args.out.with_suffix(".md")) as tmp:
        note = f"{args.note}\n\n" if args.note else ""
        tmp.write_text(header + note + f"machine: {payload['machine']}\n\n" + "\n".join(parts))


if __name__ == "__main__":
    main()
