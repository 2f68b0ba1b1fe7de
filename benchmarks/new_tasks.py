"""New tasks: in-distribution vs leave-one-task-out (LOTO) routing quality on real datasets.

For each dataset and router: RouterEval's seed-42 split and candidate groups (m = 5), the router fitted
on the whole train split (in-distribution) and, for each task t, on the train split without task t
(LOTO), both measured on task t's test prompts (:func:`recroute.coldstart.new_tasks.leave_one_task_out`).
Records every tidy row, a summary (group means, tasks pooled) and the machine.

    python benchmarks/new_tasks.py                                   # mmlu_pro and ../shared/data/llmrouter_nim
    python benchmarks/new_tasks.py --datasets mmlu_pro --routers knn,cluster --budget 300

Writes benchmarks/results/new_tasks.json and new_tasks.md. Routers run cheapest first; once the
time budget is spent the remaining ones are skipped and the reason is recorded.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

ROUTERS = ["best_single", "knn", "cluster", "als", "two_tower", "soft_cluster", "mlp"]
DETAIL = ("knn", "two_tower")  # routers shown per task


def run_dataset(name: str, specs: list[str], m: int, deadline: float) -> tuple[pd.DataFrame, dict, list[dict]]:
    """(rows, info, skipped) for one dataset; routers past the deadline are skipped."""
    from bench_data import resolve

    from recroute.coldstart.new_tasks import leave_one_task_out
    from recroute.eval.protocol import DEFAULT_ENCODER, dataset_embeddings

    data = resolve(name)
    data.name = name
    encoder = None if data.embeddings is not None else DEFAULT_ENCODER
    X = dataset_embeddings(data, None, encoder)  # once per dataset (MiniLM through the on-disk cache)
    info = {"n_prompts": data.n_prompts, "n_llms": data.n_llms, "score_type": data.score_type,
            "n_tasks": int(data.prompts["task"].nunique()),
            "embeddings": data.embedding_name if encoder is None else f"{encoder} (cached encoding)"}
    frames, skipped = [], []
    for spec in specs:
        if time.perf_counter() > deadline:
            skipped.append({"dataset": name, "router": spec, "reason": "time budget spent before this router"})
            print(f"  {name}: {spec} skipped (time budget)", flush=True)
            continue
        start = time.perf_counter()
        df = leave_one_task_out(data, [spec], ms=(m,), X=X, quiet=True)
        pooled = df[(df.task == "all") & (df.group == "mean")].set_index("regime")["mu_o"]
        print(f"  {name}: {spec}: mu_o in-dist {pooled['in_distribution']:.4f}, LOTO {pooled['leave_task_out']:.4f}"
              f" ({time.perf_counter() - start:.0f} s)", flush=True)
        frames.append(df)
    rows = pd.concat(frames, ignore_index=True)
    rows.insert(0, "dataset", name)
    return rows, info, skipped


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, router, m, task): compare() of the group means, plus the total fit seconds."""
    from recroute.coldstart.new_tasks import compare

    parts = []
    for dataset, part in rows.groupby("dataset", sort=False):
        cmp = compare(part.drop(columns="dataset"), ("mu_o", "v_b", "auc"))
        cmp.insert(0, "dataset", dataset)
        parts.append(cmp)
    out = pd.concat(parts, ignore_index=True)
    fit = rows[(rows.group != "mean") & (rows.task == "all")].groupby(["dataset", "router"])["fit_seconds"].sum()
    out["fit_seconds_total"] = [fit.get((d, r), float("nan")) if t == "all" else float("nan")
                                for d, r, t in zip(out.dataset, out.router, out.task)]
    return out


def markdown(summary: pd.DataFrame, infos: dict, skipped: list[dict], m: int) -> str:
    lines = ["# New tasks: in-distribution vs leave-one-task-out", "",
             (f"RouterEval's seed-42 split and candidate groups, m = {m}, group means (the plain mean over "
              "all_strong, all_weak, strong_to_weak). *In-dist*: router fitted on the whole train split; "
              "*LOTO*: for each task, router fitted without that task's train prompts; both measured on the "
              "same test prompts of the task. *All tasks*: every task's test prompts pooled (mu_o weighted by "
              "n_test). Δ = LOTO − in-dist. See docs/new-tasks.md."), ""]
    for dataset, part in summary.groupby("dataset", sort=False):
        info = infos[dataset]
        pooled = part[part.task == "all"]
        lines += [f"## {dataset}", "",
                  (f"{info['n_prompts']} prompts × {info['n_llms']} LLMs, {info['n_tasks']} tasks, "
                   f"{info['score_type']} scores, embeddings: {info['embeddings']}; {int(pooled.n_test.iloc[0])} "
                   "test prompts."), "",
                  ("| router | mu_o in-dist | mu_o LOTO | Δ mu_o | V_B in-dist | V_B LOTO | Δ V_B | AUC in-dist "
                   "| AUC LOTO | fit s (all fits) |"), "|---" * 10 + "|"]
        for r in pooled.itertuples():
            lines.append(f"| {r.router} | {r.mu_o_in_dist:.4f} | {r.mu_o_loto:.4f} | {r.mu_o_delta:+.4f} "
                         f"| {r.v_b_in_dist:.4f} | {r.v_b_loto:.4f} | {r.v_b_delta:+.4f} | {_num(r.auc_in_dist, 3)} "
                         f"| {_num(r.auc_loto, 3)} | {r.fit_seconds_total:.0f} |")
        lines.append("")
        for router in DETAIL:
            detail = part[(part.router == router) & (part.task != "all")]
            if detail.empty:
                continue
            lines += [f"### {dataset}: {router} per held-out task", "",
                      "| task | n_test | train without it | mu_o in-dist | mu_o LOTO | Δ mu_o | V_B LOTO |",
                      "|---" * 7 + "|"]
            for r in detail.sort_values("mu_o_delta").itertuples():
                lines.append(f"| {r.task} | {r.n_test} | {r.n_train_loto:.0f} | {r.mu_o_in_dist:.4f} "
                             f"| {r.mu_o_loto:.4f} | {r.mu_o_delta:+.4f} | {r.v_b_loto:.4f} |")
            lines.append("")
    if skipped:
        lines += ["## Skipped", ""] + [f"- {s['dataset']}: {s['router']}: {s['reason']}" for s in skipped] + [""]
    return "\n".join(lines)


def _num(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="mmlu_pro,llmrouter_nim")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--m", type=int, default=5)
    parser.add_argument("--budget", type=float, default=1100.0, help="seconds; later routers are skipped")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "new_tasks")
    parser.add_argument("--render", action="store_true", help="only re-render OUT.md from OUT.json")
    args = parser.parse_args()
    if args.render:
        payload = json.loads(args.out.with_suffix(".json").read_text())
        summary = pd.DataFrame(payload["summary"])
        text = markdown(summary, payload["datasets"], payload["skipped"], payload["m"])
        args.out.with_suffix(".md").write_text(text + "\n")
        return

    from machine import describe_machine

    specs = [s for s in args.routers.split(",") if s]
    start = time.perf_counter()
    deadline = start + args.budget
    frames, infos, skipped = [], {}, []
    for name in args.datasets.split(","):
        rows, infos[name], skip = run_dataset(name, specs, args.m, deadline)
        frames.append(rows)
        skipped += skip
    rows = pd.concat(frames, ignore_index=True)
    summary = summarise(rows)
    payload = {
        "benchmark": "new_tasks",
        "protocol": "leave-one-task-out beside in-distribution on RouterEval's seed-42 split and candidate groups; "
                    "group means; task 'all' pools every task's test prompts",
        "m": args.m,
        "datasets": infos,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
        "summary": json.loads(summary.to_json(orient="records")),
        "rows": json.loads(rows.to_json(orient="records")),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    text = markdown(summary, infos, skipped, args.m)
    args.out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
