"""RouterDC and GraphRouter against RouterEval's baselines under RouterEval's protocol (mean V_B per m).

The rows come from ``recroute eval`` (easy + hard, seed-42 split; the stored MiniLM embeddings on
MMLU-Pro, minilm-onnx on llmrouter_nim), run as

    recroute eval --dataset mmlu_pro --routers routerdc,graphrouter,knn,linear,mlp,cluster --setting all --json A.json
    recroute eval --dataset ../shared/data/llmrouter_nim --routers routerdc,graphrouter,knn,linear,mlp,cluster \
        --setting all --json B.json

and this script turns them into a table: each family's mean V_B per m beside RouterEval's best
baseline (the best of knn, linear, mlp, cluster at that m, and of their means). Later files
override earlier rows of the same router (a rerun with changed defaults).

    python benchmarks/routerdc_graphrouter.py --set mmlu_pro=A.json,A2.json --set llmrouter_nim=B.json,B2.json

Writes benchmarks/results/routerdc_graphrouter.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BASELINES = ["knn", "linear", "mlp", "cluster"]
FAMILIES = ["routerdc", "graphrouter"]


def table(files: list[Path]) -> pd.DataFrame:
    """(router x m) mean V_B, plus a ``mean`` column over m; later files win per router."""
    frames: dict[str, pd.DataFrame] = {}
    for file in files:
        df = pd.read_json(file)
        for router, rows in df[df.group == "mean"].groupby("router"):
            frames[router] = rows
    means = pd.concat(frames.values()).pivot_table(index="router", columns="m", values="v_b")
    means["mean"] = means.mean(axis=1)
    return means


def compare(means: pd.DataFrame) -> dict:
    best = {col: (means.loc[BASELINES, col].idxmax(), float(means.loc[BASELINES, col].max())) for col in means.columns}
    out = {"best_baseline": {str(c): {"router": r, "v_b": v} for c, (r, v) in best.items()}, "families": {}}
    for fam in FAMILIES:
        if fam in means.index:
            diffs = {str(c): float(means.loc[fam, c] - best[c][1]) for c in means.columns}
            out["families"][fam] = {"v_b": {str(c): float(means.loc[fam, c]) for c in means.columns},
                                    "minus_best_baseline": diffs, "beats_best_somewhere": any(d > 0 for d in diffs.values())}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", action="append", required=True, help="NAME=rows.json[,more.json]")
    parser.add_argument("--load", default="", help="load averages while the runs ran (recorded as given)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "routerdc_graphrouter")
    args = parser.parse_args()
    from machine import describe_machine

    from recroute.atomic import atomic_file

    payload: dict = {"benchmark": "routerdc_graphrouter", "machine": describe_machine(),
                     "date": time.strftime("%Y-%m-%d"), "load": args.load, "sets": {}}
    lines = ["# RouterDC and GraphRouter vs RouterEval's baselines (mean V_B, RouterEval's protocol)", "",
             f"Machine: {payload['machine'].get('cpu')}, {payload['machine'].get('cores')} cores, shared "
             f"(load {args.load}). {payload['date']}. Rows: `recroute eval ... --setting all` (see the script).", ""]
    for item in args.set:
        name, _, files = item.partition("=")
        means = table([Path(f) for f in files.split(",")])
        result = compare(means)
        payload["sets"][name] = {"v_b": {r: {str(c): float(v) for c, v in row.items()} for r, row in means.iterrows()},
                                 **result}
        cols = list(means.columns)
        lines += [f"## {name}", "", "| router | " + " | ".join(f"m={c}" if c != "mean" else "mean" for c in cols) + " |",
                  "|---|" + "---|" * len(cols)]
        for router in [*FAMILIES, *BASELINES]:
            if router in means.index:
                lines.append(f"| {router} | " + " | ".join(f"{means.loc[router, c]:.4f}" for c in cols) + " |")
        lines.append("| best baseline | " + " | ".join(f"{result['best_baseline'][str(c)]['v_b']:.4f} "
                                                     f"({result['best_baseline'][str(c)]['router']})" for c in cols) + " |")
        for fam, res in result["families"].items():
            lines.append(f"| {fam} − best | " + " | ".join(f"{res['minus_best_baseline'][str(c)]:+.4f}" for c in cols) + " |")
        lines.append("")
    for suffix, text in ((".json", json.dumps(payload, indent=1) + "\n"), (".md", "\n".join(lines) + "\n")):
        with atomic_file(args.out.with_suffix(suffix)) as tmp:
            tmp.write_text(text)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
