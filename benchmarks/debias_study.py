"""Popularity debiasing under RouterEval's protocol: every remedy's strength swept per router.

For each dataset: RouterEval's seed-42 split and candidate groups (easy m = 3, 5; hard m = 10 where
the pool allows), each router fitted per group, each remedy applied at each strength
(:mod:`recroute.debias.study`). Records the tidy rows, the goal table (selection entropy +25 %
relative at a mu_o loss of at most 0.005, and the long-tail mu_o change) and a Pareto figure per
dataset, with the machine.

    python benchmarks/debias_study.py                                   # mmlu_pro and llmrouter_nim
    python benchmarks/debias_study.py --datasets mmlu_pro --routers knn,two_tower --settings easy

Writes benchmarks/results/debias_study.json, debias_study.md and debias_<dataset>.png.
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

ROUTERS = ["knn", "als", "bpr", "lightfm", "two_tower"]
from bench_data import resolve  # noqa: E402  (benchmarks/bench_data.py)
GOAL_GAIN, GOAL_LOSS = 0.25, 0.005


def markdown(rows: pd.DataFrame, goal: pd.DataFrame, seconds: dict) -> str:
    """Per dataset: the undebiased routers, then the goal table of every (router, m, remedy)."""
    lines = []
    for dataset, part in rows.groupby("dataset", sort=False):
        base = part[(part.group == "mean") & (part.remedy == "none")]
        lines += [f"### {dataset}", "", "Undebiased routers (group means):", "",
                  "| router | m | mu_o | selection entropy | E_p | tail mu_o | Gini | coverage | ECE | s |",
                  "|---" * 10 + "|"]
        for r in base.itertuples():
            lines.append(f"| {r.router} | {r.m} | {r.mu_o:.4f} | {r.selection_entropy:.3f} | {r.e_p:.3f} | "
                         f"{r.tail_mu_o:.4f} | {r.gini:.3f} | {r.coverage:.2f} | {_num(r.ece, 3)} | "
                         f"{seconds.get(f'{dataset}/{r.router}', float('nan')):.0f} |")
        g = goal[goal.dataset == dataset]
        lines += ["", f"Per remedy, the strength with the largest selection-entropy gain among those losing at most "
                  f"{GOAL_LOSS} mu_o, **chosen on RouterEval's validation part**; the gains are the test split's "
                  f"at that strength. Goal: selection entropy +{GOAL_GAIN:.0%} relative at a test mu_o loss "
                  f"<= {GOAL_LOSS}. The last column applies the same rule on the test split itself (the best "
                  "point of the test front: optimistic).", "",
                  "| router | m | remedy | strength | entropy gain | mu_o change | tail mu_o change | goal | "
                  "goal on the test front (strength) |", "|---" * 9 + "|"]
        for r in g.itertuples():
            front = f"{'yes' if r.reached_test else 'no'} ({_num(r.best_strength_test, 2)})"
            lines.append(f"| {r.router} | {r.m} | {r.remedy} | {_num(r.best_strength, 2)} | {_pct(r.entropy_gain)} | "
                         f"{_signed(r.mu_change)} | {_signed(r.tail_change)} | {'**yes**' if r.reached else 'no'} | "
                         f"{front} |")
        lines.append("")
    return "\n".join(lines)


def _dumps(payload: dict) -> str:
    """JSON with one compact line per row (the rows are most of the file), indented elsewhere."""
    head = {k: v for k, v in payload.items() if k not in ("rows", "goal_summary")}
    text = json.dumps(head, indent=1)[: -len("\n}")]
    for key in ("goal_summary", "rows"):
        text += f',\n "{key}": [\n' + ",\n".join("  " + json.dumps(r) for r in payload[key]) + "\n ]"
    return text + "\n}\n"


def _goal(rows: pd.DataFrame) -> pd.DataFrame:
    """The goal table with strengths chosen on the validation part, plus the test-front columns."""
    from recroute.debias import study

    keys = ["router", "m", "remedy"]
    val = study.goal_summary(rows, GOAL_GAIN, GOAL_LOSS, select_on="val")
    test = study.goal_summary(rows, GOAL_GAIN, GOAL_LOSS, select_on="test")
    test = test[keys + ["best_strength", "entropy_gain", "mu_change", "reached"]]
    return val.merge(test, on=keys, suffixes=("", "_test"))


def _num(v, d=4):
    return "-" if v is None or not np.isfinite(v) else f"{v:.{d}f}"


def _signed(v):
    return "-" if v is None or not np.isfinite(v) else f"{v:+.4f}"


def _pct(v):
    return "-" if v is None or not np.isfinite(v) else f"{100 * v:+.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mmlu_pro,llmrouter_nim")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--settings", default="easy,hard")
    parser.add_argument("--remedies", default="logit_adjust,calibrate,capacity,ipw")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "debias_study")
    parser.add_argument("--render", action="store_true", help="only re-render OUT.md and the figures from OUT.json")
    args = parser.parse_args()

    from recroute.debias import study

    out_json = args.out.with_suffix(".json")
    if args.render:
        payload = json.loads(out_json.read_text())
    else:
        from machine import describe_machine

        from recroute.eval.protocol import check_settings

        specs = [s for s in args.routers.split(",") if s]
        grids = study.parse_remedies(args.remedies)
        frames, seconds = [], {}
        start = time.perf_counter()
        for name in args.datasets.split(","):
            data = resolve(name)
            for spec in specs:
                t0 = time.perf_counter()
                df = study.study_dataset(data, [spec], grids, check_settings(args.settings.split(",")), quiet=False)
                seconds[f"{data.name}/{spec}"] = round(time.perf_counter() - t0, 1)
                df.insert(0, "dataset", data.name)
                frames.append(df)
                print(f"  {data.name}: {spec} in {seconds[f'{data.name}/{spec}']:.0f} s", flush=True)
        rows = pd.concat(frames, ignore_index=True)
        payload = {
            "benchmark": "debias_study",
            "protocol": "RouterEval: seed-42 split, candidate groups all_strong/all_weak/strong_to_weak, group means",
            "goal": {"selection_entropy_gain": GOAL_GAIN, "max_mu_o_loss": GOAL_LOSS},
            "grids": {k: list(v) for k, v in grids.items()},
            "options": study.StudyOptions().__dict__,
            "seconds": round(time.perf_counter() - start, 1),
            "seconds_per_router": seconds,
            "machine": describe_machine(),
            "date": time.strftime("%Y-%m-%d"),
            "rows": json.loads(rows.to_json(orient="records")),
        }
    rows = pd.DataFrame(payload["rows"])
    payload["rows"] = json.loads(rows.round(6).to_json(orient="records"))  # keeps the file small
    goal = pd.concat([_goal(part).assign(dataset=d) for d, part in rows.groupby("dataset", sort=False)],
                     ignore_index=True)
    payload["goal_summary"] = json.loads(goal.to_json(orient="records"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(_dumps(payload))
    args.out.with_suffix(".md").write_text(markdown(rows, goal, payload["seconds_per_router"]))
    for dataset, part in rows.groupby("dataset", sort=False):
        study.plot_pareto(part, args.out.parent / f"debias_{dataset}.png",
                          title=f"{dataset}: mu_o vs selection entropy (group means; filled: Pareto front)")
    reached = goal[goal.reached]
    print(f"goal reached (strength chosen on validation) for {len(reached)} of {len(goal)} (dataset, router, m, "
          f"remedy) cells; on the test front for {int(goal.reached_test.sum())}")
    print(reached[["dataset", "router", "m", "remedy", "best_strength", "entropy_gain", "mu_change"]].to_string())


if __name__ == "__main__":
    main()
