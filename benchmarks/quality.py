"""Routing quality under RouterEval's protocol, every router, averaged over router seeds.

For each dataset: RouterEval's seed-42 split and candidate groups (easy m = 3, 5; hard m = 10 where
the pool allows), every router fitted per group; routers with a ``random_state`` run once per seed
(0, 1, 2 by default) and are averaged, deterministic ones run once. Records mu_o, V_R, V_B, E_p and
per-cell AUC (group means), fit time per group and routing throughput, with the machine.

    python benchmarks/quality.py                          # mmlu_pro and ../shared/data/llmrouter_nim
    python benchmarks/quality.py --datasets mmlu_pro --routers knn,two_tower --seeds 0

Writes benchmarks/results/quality.json (all rows + summary) and quality.md (tables).
"""

from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

BASELINES = ["random", "best_single", "oracle", "r_o:p=0.5", "knn", "linear", "mlp", "cluster", "mlc"]
RECOMMENDERS = ["als", "bpr", "lightfm", "two_tower", "text_mf", "soft_cluster", "ensemble"]
from bench_data import resolve  # noqa: E402  (benchmarks/bench_data.py)


def seeded(spec: str, seed: int) -> str | None:
    """The spec with ``random_state=seed`` when the router takes one; None if it has no seed."""
    from recroute.routers.registry import parse_router_spec, router_class

    name, params = parse_router_spec(spec)
    if "random_state" not in inspect.signature(router_class(name).__init__).parameters:
        return None
    params["random_state"] = seed
    return name + ":" + ",".join(f"{k}={v}" for k, v in params.items())


def run_dataset(data, specs: list[str], seeds: list[int], settings: tuple[str, ...]) -> pd.DataFrame:
    from recroute.eval.protocol import evaluate_dataset

    frames = []
    for spec in specs:
        runs = [(seed, seeded(spec, seed)) for seed in seeds]
        runs = [(seeds[0], spec)] if runs[0][1] is None else runs
        for seed, run_spec in runs:
            df = evaluate_dataset(data, [run_spec], settings=settings, quiet=True)
            df["router"] = spec
            df["seed"] = seed
            frames.append(df.drop(columns=["share", "llms"]))
            print(f"  {data.name}: {spec} seed {seed}: "
                  + ", ".join(f"m={r.m} V_B {r.v_b:.4f}" for r in df[df.group == "mean"].itertuples()), flush=True)
    return pd.concat(frames, ignore_index=True)


def summarise(rows: pd.DataFrame, n_test: dict[str, int]) -> pd.DataFrame:
    """Per (dataset, router, m): metrics averaged over seeds, V_B's std over seeds, timings."""
    means = rows[rows.group == "mean"]
    keys = ["dataset", "router", "setting", "m"]
    out = means.groupby(keys, sort=False).agg(
        mu_o=("mu_o", "mean"), v_r=("v_r", "mean"), v_b=("v_b", "mean"), v_b_std=("v_b", "std"),
        e_p=("e_p", "mean"), auc=("auc", "mean"), fit_seconds=("fit_seconds", "mean"),
        route_seconds=("route_seconds", "mean"), seeds=("seed", "nunique"),
    ).reset_index()
    out["v_b_std"] = out["v_b_std"].fillna(0.0)
    out["prompts_per_second"] = [n_test[d] / s if s > 0 else np.nan for d, s in zip(out.dataset, out.route_seconds)]
    return out


def markdown(summary: pd.DataFrame, full: bool = True) -> str:
    """Per dataset: a wide V_B / E_p table (the README's), then every metric per router × m."""
    lines = []
    for dataset, part in summary.groupby("dataset", sort=False):
        ms = sorted(part.m.unique())
        lines += [f"### {dataset}", "", "| router | " + " | ".join(f"V_B m={m}" for m in ms)
                  + " | " + " | ".join(f"E_p m={m}" for m in ms) + f" | AUC m={ms[-1]} | fit s (m={ms[-1]}) |",
                  "|---" * (2 * len(ms) + 3) + "|"]
        for router, r in part.groupby("router", sort=False):
            by_m = r.set_index("m")
            vb = [_vb(by_m, m) for m in ms]
            ep = [f"{by_m.e_p[m]:.3f}" if m in by_m.index else "-" for m in ms]
            last = by_m.loc[ms[-1]] if ms[-1] in by_m.index else None
            auc = "-" if last is None or np.isnan(last.auc) else f"{last.auc:.3f}"
            fit = "-" if last is None else f"{last.fit_seconds:.2f}"
            lines.append(f"| {router} | " + " | ".join(vb) + " | " + " | ".join(ep) + f" | {auc} | {fit} |")
        lines.append("")
        if not full:
            continue
        lines += [f"#### {dataset}: every metric (group means; ± = std over router seeds)", "",
                  "| router | m | mu_o | V_R | V_B | E_p | AUC | fit s | routed prompts/s |", "|---" * 9 + "|"]
        for row in part.itertuples():
            lines.append(
                f"| {row.router} | {row.m} | {row.mu_o:.4f} | {_num(row.v_r)} | {_vb(part[part.router == row.router].set_index('m'), row.m)}"
                f" | {row.e_p:.3f} | {_num(row.auc, 3)} | {row.fit_seconds:.2f}"
                f" | {_num(row.prompts_per_second if np.isfinite(row.auc) else np.nan, 0)} |"  # truth routers score nothing
            )
        lines.append("")
    return "\n".join(lines)


def _vb(by_m: pd.DataFrame, m: int) -> str:
    if m not in by_m.index:
        return "-"
    spread = f" ±{by_m.v_b_std[m]:.3f}" if by_m.seeds[m] > 1 and by_m.v_b_std[m] > 0 else ""
    return f"{by_m.v_b[m]:.4f}{spread}"


def _num(value: float, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mmlu_pro,llmrouter_nim")
    parser.add_argument("--routers", default=",".join(BASELINES + RECOMMENDERS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--settings", default="easy,hard")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "quality")
    parser.add_argument("--render", action="store_true", help="only re-render OUT.md from OUT.json")
    args = parser.parse_args()
    if args.render:
        summary = pd.DataFrame(json.loads(args.out.with_suffix(".json").read_text())["summary"])
        args.out.with_suffix(".md").write_text(markdown(summary))
        return

    from machine import describe_machine

    from recroute.data.splits import routereval_split

    specs = [s for s in args.routers.split(",") if s]
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = tuple(args.settings.split(","))
    frames, n_test = [], {}
    start = time.perf_counter()
    for name in args.datasets.split(","):
        data = resolve(name)
        data.name = name
        n_test[name] = len(routereval_split(data.prompts["task"], data.n_prompts).test)
        rows = run_dataset(data, specs, seeds, settings)
        rows.insert(0, "dataset", name)
        frames.append(rows)
    rows = pd.concat(frames, ignore_index=True)
    summary = summarise(rows, n_test)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": "quality",
        "protocol": "RouterEval: seed-42 split, candidate groups all_strong/all_weak/strong_to_weak, group means",
        "seeds": seeds,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "summary": json.loads(summary.to_json(orient="records")),
        "rows": json.loads(rows.to_json(orient="records")),
    }
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(summary))
    print(markdown(summary, full=False))


if __name__ == "__main__":
    main()
