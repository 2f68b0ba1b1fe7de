"""The leaderboard: every registered router family on every shared set, in RouterEval's protocol.

Families: every name in ``recroute.routers.registry.ROUTERS`` (so a family merged later joins by
itself), RouterEval's baselines included. Sets: the bundled MMLU-Pro and the shared sets with prompt
text (llmrouter_nim, Open LLM Leaderboard v1 ARC and GSM8K) run every family; the sets without
text (Open LLM Leaderboard v2, v1 MMLU and TruthfulQA) run the families that need no prompt
features. Each (family, set, seed) is one ``evaluate_dataset`` run: RouterEval's seed-42 split and
candidate groups, easy (m = 3, 5) and hard (m = 10) where the pool allows; families with a
``random_state`` run once per seed, the others once. A router that chooses on validation (the
stack) gets RouterEval's validation part; no router sees the test prompts before it is measured.

Recorded per (family, set, m): mean V_B, V_R, E_p, AUC over the group means and seeds, V_B's std over
seeds, fit and route seconds per group, with the load average (``os.getloadavg``) at the start and end
of every run, since the machine is shared. ``--tradeoff`` also runs the families through the
quality–cost study (``recroute tradeoff``) on llmrouter_nim: AIQ and its ratio to the zero router.

    python benchmarks/zoo.py                                    # everything, 3 seeds
    python benchmarks/zoo.py --sets mmlu_pro --families knn,two_tower,stack --seeds 0
    python benchmarks/zoo.py --budget-min 60 --backend ray      # stop starting runs after an hour
    python benchmarks/zoo.py --render                           # only re-render zoo.md from zoo.json

Runs are checkpointed (benchmarks/_scratch/zoo_runs.jsonl) and skipped when already there, so an
interrupted leaderboard resumes, and several zoo processes may work on different sets at once; every
finished run rewrites benchmarks/results/zoo.json and zoo.md from the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_data import resolve  # noqa: E402
from quality import seeded  # noqa: E402

TEXT_SETS = ["mmlu_pro", "llmrouter_nim", "open_llm_leaderboard_v1_arc", "open_llm_leaderboard_v1_gsm8k"]
OTHER_SETS = ["open_llm_leaderboard_v2", "open_llm_leaderboard_v1_mmlu", "open_llm_leaderboard_v1_truthfulqa"]
TRADEOFF_SET = "llmrouter_nim"
CHECKPOINT = HERE / "_scratch" / "zoo_runs.jsonl"
METRIC_COLUMNS = ["mu_o", "v_r", "v_b", "e_p", "auc", "fit_seconds", "route_seconds"]


def families(names: str) -> list[str]:
    """Every registered router ("all") or the given comma-separated specs."""
    from recroute.routers.registry import available_routers

    return available_routers() if names == "all" else [s.strip() for s in names.split(",") if s.strip()]


def runnable(spec: str, has_text: bool) -> bool:
    """Whether a family runs on a set: feature families only where prompts have text (or embeddings)."""
    from recroute.routers.registry import make_router

    return has_text or not make_router(spec).needs_features


def run_one(data, spec: str, seed: int, backend: str, encoder: str | None = None) -> list[dict]:
    """One family × set × seed: the group-mean rows of ``evaluate_dataset`` (easy and hard); ``encoder``:
    the prompts' features (None: the dataset's MiniLM), recorded in the row's router label as "spec [encoder]"."""
    from recroute.eval.protocol import evaluate_dataset

    run_spec = seeded(spec, seed) or spec
    load_start = os.getloadavg()[0]
    start = time.perf_counter()
    df = evaluate_dataset(data, [run_spec], settings="all", quiet=True, backend=backend, encoder=encoder)
    seconds = time.perf_counter() - start
    means = df[df.group == "mean"]
    return [{"dataset": data.name, "router": spec if encoder is None else f"{spec} [{encoder}]", "seed": seed, "setting": r.setting, "m": int(r.m),
             **{c: float(getattr(r, c)) for c in METRIC_COLUMNS},
             "run_seconds": seconds, "load_start": load_start, "load_end": os.getloadavg()[0]}
            for r in means.itertuples()]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, router, m): metrics averaged over seeds, V_B's std over seeds, the load range."""
    keys = ["dataset", "router", "setting", "m"]
    out = rows.groupby(keys, sort=False).agg(
        v_b=("v_b", "mean"), v_b_std=("v_b", "std"), v_r=("v_r", "mean"), e_p=("e_p", "mean"), auc=("auc", "mean"),
        fit_seconds=("fit_seconds", "mean"), route_seconds=("route_seconds", "mean"), seeds=("seed", "nunique"),
        load_min=("load_start", "min"), load_max=("load_end", "max"), source=("source", "first"),
    ).reset_index()
    out["v_b_std"] = out["v_b_std"].fillna(0.0)
    return out


BOARD_M = (3, 5, 10)  # the leaderboard's m; larger hard pools (100, 1000) stay in the per-set tables


def leaderboard(summary: pd.DataFrame) -> pd.DataFrame:
    """Family × set: mean V_B over m = 3, 5, 10 (the m the set has), the README's table."""
    part = summary[summary.m.isin(BOARD_M)]
    table = part.groupby(["router", "dataset"], sort=False)["v_b"].mean().unstack("dataset")
    return table[[d for d in part["dataset"].unique() if d in table.columns]]


def stack_lines(board: pd.DataFrame) -> list[str]:
    """The stack against the best other learning family per set (mean V_B over BOARD_M)."""
    from recroute.routers.stack import learning_families

    if "stack" not in board.index:
        return []
    others = board.loc[[r for r in board.index if r in set(learning_families()) | {"ensemble", "debiased"}]]
    lines = ["## The stack against the best other family per set", "",
             "| set | stack | best other family | its V_B | stack − best |", "|---|---|---|---|---|"]
    for dataset in board.columns:
        if pd.isna(board.at["stack", dataset]) or others[dataset].isna().all():
            continue
        best = others[dataset].idxmax()
        gap = board.at["stack", dataset] - others.at[best, dataset]
        lines.append(f"| {dataset} | {board.at['stack', dataset]:.4f} | {best} | {others.at[best, dataset]:.4f} | {gap:+.4f} |")
    return lines + [""]


def _num(value: float, digits: int) -> str:
    return "-" if not np.isfinite(value) else f"{value:.{digits}f}"


def _load(rows: pd.DataFrame) -> str:
    return "-" if rows.load_min.isna().all() else f"{rows.load_min.min():.0f}-{rows.load_max.max():.0f}"


def markdown(summary: pd.DataFrame, tradeoff: list[dict], meta: dict) -> str:
    lines = ["# Leaderboard: every family in RouterEval's protocol", "",
             f"{meta.get('date', '')}, {meta.get('machine', {}).get('cores', '?')} cores "
             f"({meta.get('machine', {}).get('cpu', '')}), shared machine: load average "
             f"{summary.load_min.min():.1f} to {summary.load_max.max():.1f} during this run's fits (times are inflated by it). "
             f"Seeds: {meta.get('seeds')}; {meta.get('note', '')}", "",
             "## Mean V_B over m = 3, 5, 10 (easy m = 3, 5 and hard m = 10 where the pool has them)", ""]
    board = leaderboard(summary)
    recorded = {(r.router, r.dataset) for r in summary.itertuples() if r.source != "this run"}
    lines += ["| family | " + " | ".join(board.columns) + " |", "|---" * (len(board.columns) + 1) + "|"]
    for router, row in board.iterrows():
        lines.append(f"| {router} | " + " | ".join("-" if pd.isna(v) else f"{v:.4f}" + ("†" if (router, d) in recorded else "")
                                                  for d, v in row.items()) + " |")
    lines += ["", "† recorded earlier under the same protocol (quality.py, zoo_a.py; source column below), "
              "not rerun in this run; - = not run.", ""]
    lines += stack_lines(board)
    for dataset, part in summary.groupby("dataset", sort=False):
        ms = sorted(part.m.unique())
        lines += [f"## {dataset}", "", "| family | " + " | ".join(f"V_B m={m}" for m in ms)
                  + " | " + " | ".join(f"E_p m={m}" for m in ms) + " | " + " | ".join(f"AUC m={m}" for m in ms)
                  + " | fit s / group | route s / group | seeds | load | source |", "|---" * (3 * len(ms) + 6) + "|"]
        for router, r in part.groupby("router", sort=False):
            by_m = r.set_index("m")
            vb = [(f"{by_m.v_b[m]:.4f}" + (f" ±{by_m.v_b_std[m]:.3f}" if by_m.seeds[m] > 1 else "")) if m in by_m.index
                  else "-" for m in ms]
            ep = [f"{by_m.e_p[m]:.3f}" if m in by_m.index else "-" for m in ms]
            auc = [f"{by_m.auc[m]:.3f}" if m in by_m.index and np.isfinite(by_m.auc[m]) else "-" for m in ms]
            lines.append(f"| {router} | " + " | ".join(vb + ep + auc)
                         + f" | {_num(r.fit_seconds.mean(), 2)} | {_num(r.route_seconds.mean(), 3)} | {int(r.seeds.max())}"
                         + f" | {_load(r)} | {r.source.iloc[0]} |")
        lines.append("")
    if tradeoff:
        lines += [f"## Quality–cost on {TRADEOFF_SET} (`recroute tradeoff`, token pricing)", "",
                  "| family | AIQ | zero router AIQ | ratio | cost to best single (fraction) |", "|---" * 5 + "|"]
        for row in tradeoff:
            if "error" in row:
                lines.append(f"| {row['router']} | {row['error']} | | | |")
                continue
            lines.append(f"| {row['router']} | {row['aiq']:.4f} | {row['zero_aiq']:.4f} | {row['aiq_ratio']:.3f}× "
                         f"| {row['cost_to_best_fraction']:.1%} |")
        lines.append("")
    return "\n".join(lines)


def run_tradeoffs(specs: list[str]) -> list[dict]:
    """Each learning family through the quality–cost study on llmrouter_nim (one row each)."""
    from recroute.cost.tradeoff import run_tradeoff
    from recroute.routers.registry import make_router

    data = resolve(TRADEOFF_SET)
    rows = []
    for spec in specs:
        router = make_router(spec)
        if router.requires_truth or router.stochastic:
            continue
        load_start, start = os.getloadavg()[0], time.perf_counter()
        try:
            summary = run_tradeoff(data, [spec]).summary[0]
        except Exception as exc:  # recorded, not raised: one family's failure does not end the board
            rows.append({"router": spec, "error": f"{type(exc).__name__}: {exc}"})
            continue
        keep = ("aiq", "zero_aiq", "aiq_ratio", "cost_to_best", "cost_to_best_fraction", "max_quality")
        rows.append({"router": spec, **{k: summary[k] for k in keep}, "seconds": time.perf_counter() - start,
                     "load_start": load_start, "load_end": os.getloadavg()[0]})
        print(f"  tradeoff {spec}: AIQ {summary['aiq']:.4f} = {summary['aiq_ratio']:.3f}× the zero router", flush=True)
    return rows


RECORDED = ("quality_baselines", "quality_recommenders", "quality_ensemble", "quality_lightfm", "zoo_a")


def recorded_rows(results: Path = HERE / "results") -> list[dict]:
    """Group-mean rows recorded earlier under the same protocol (quality.py's, issue 23's zoo_a.py),
    each with its ``source``: the leaderboard shows them, marked, where this run has no (family, set).

    A spec whose only parameter is ``random_state`` counts as that family's seed; other specs
    (``r_o:p=0.5``, ``ensemble:members=...``) are not a registered family's default and are left out.
    """
    from recroute.routers.registry import parse_router_spec

    out = []
    for stem in RECORDED:
        path = results / f"{stem}.json"
        if not path.exists():
            continue
        doc = json.loads(path.read_text())
        if "datasets" in doc:  # zoo_a.json: {dataset: {"rows": [...]}}
            rows = [{**r, "dataset": d} for d, block in doc["datasets"].items() for r in block.get("rows", [])]
        else:
            rows = [r for r in doc.get("rows", []) if r.get("group") == "mean"]
        for r in rows:
            name, params = parse_router_spec(str(r["router"]))
            if set(params) - {"random_state"}:
                continue
            seed = int(params.get("random_state", r.get("seed", 0)) or 0)
            out.append({"dataset": r["dataset"], "router": name, "seed": seed, "setting": r["setting"], "m": int(r["m"]),
                        **{c: float(r.get(c, np.nan)) if r.get(c) is not None else np.nan for c in METRIC_COLUMNS},
                        "load_start": np.nan, "load_end": np.nan, "source": f"{stem}.json ({doc.get('date', '')})"})
    return out


def with_recorded(frame: pd.DataFrame) -> pd.DataFrame:
    """This run's rows plus the recorded rows of the (dataset, family) pairs it has not run."""
    recorded = pd.DataFrame(recorded_rows())
    if recorded.empty:
        return frame.assign(source="this run")
    ran = set(zip(frame.dataset, frame.router))
    recorded = recorded[[(d, r) not in ran for d, r in zip(recorded.dataset, recorded.router)]]
    return pd.concat([frame.assign(source="this run"), recorded], ignore_index=True)


def read_checkpoint() -> list[dict]:
    if not CHECKPOINT.exists():
        return []
    return [json.loads(line) for line in CHECKPOINT.read_text().splitlines() if line.strip()]


def write_results(rows: list[dict], tradeoff: list[dict] | None, out: Path, meta: dict) -> None:
    """zoo.json and zoo.md from every run so far; ``tradeoff`` None keeps the recorded study."""
    from recroute.atomic import atomic_file

    if tradeoff is None:
        tradeoff = json.loads(out.with_suffix(".json").read_text()).get("tradeoff", []) if out.with_suffix(".json").exists() else []

    frame = pd.DataFrame([r for r in rows if "error" not in r])
    if not frame.empty:  # a run two zoo processes both made counts once
        frame = frame.drop_duplicates(subset=["dataset", "router", "seed", "setting", "m"], keep="first")
    if frame.empty:
        return
    summary = summarise(with_recorded(frame))
    payload = {**meta, "summary": json.loads(summary.to_json(orient="records")),
               "errors": [r for r in rows if "error" in r], "tradeoff": tradeoff,
               "rows": json.loads(frame.to_json(orient="records"))}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_file(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(summary, tradeoff, meta))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(TEXT_SETS + OTHER_SETS))
    parser.add_argument("--families", default="all", help="comma-separated router specs, or all (the registry)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--backend", default="serial", help="serial | process | ray: where each run's groups fit")
    parser.add_argument("--budget-min", type=float, default=None, help="start no run after this many minutes")
    parser.add_argument("--tradeoff", action="store_true", help="also the quality–cost study on llmrouter_nim")
    parser.add_argument("--note", default="", help="a sentence recorded with the results (what was left out)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "zoo")
    parser.add_argument("--render", action="store_true", help="only re-render OUT.md from OUT.json")
    parser.add_argument("--encoder", default=None, help="prompt features for every run (e.g. minilm-onnx+lexical)")
    args = parser.parse_args()
    if args.render:  # zoo.json / zoo.md again from the checkpoint (else zoo.json's rows) and the recorded rows
        doc = json.loads(args.out.with_suffix(".json").read_text())
        meta = {k: v for k, v in doc.items() if k not in ("summary", "errors", "tradeoff", "rows")}
        write_results(read_checkpoint() or doc["rows"] + doc.get("errors", []), None, args.out, meta)
        return

    from machine import describe_machine

    specs = families(args.families)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    meta = {"benchmark": "zoo", "protocol": "RouterEval: seed-42 split and groups, easy + hard, group means",
            "seeds": seeds, "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"), "note": args.note}
    rows = read_checkpoint()
    done = {(r["dataset"], r["router"], r["seed"]) for r in rows}
    CHECKPOINT.parent.mkdir(exist_ok=True)
    started = time.perf_counter()
    out_of_time = False
    for seed in seeds:  # the first seed covers every family and set before any second seed
        for name in sets:
            data = resolve(name)
            has_text = data.has_text or data.embeddings is not None
            for spec in specs:
                label = spec if args.encoder is None else f"{spec} [{args.encoder}]"
                if not runnable(spec, has_text):
                    continue
                if seed != seeds[0] and seeded(spec, seed) is None:
                    continue  # deterministic: one run is every seed's run
                if (name, label, seed) in done or (name, label, seed) in {(r["dataset"], r["router"], r["seed"])
                                                                      for r in read_checkpoint()}:
                    continue  # done here or by another zoo process
                if args.budget_min is not None and time.perf_counter() - started > 60 * args.budget_min:
                    out_of_time = True
                    break
                try:
                    new = run_one(data, spec, seed, args.backend, args.encoder)
                except Exception as exc:  # recorded: e.g. a family that refuses a set's size
                    new = [{"dataset": name, "router": label, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}]
                with CHECKPOINT.open("a") as handle:
                    handle.write("".join(json.dumps(r) + "\n" for r in new))
                rows = read_checkpoint()  # with the runs of other zoo processes on other sets
                print(f"{name} {spec} seed {seed}: " + ", ".join(
                    f"m={r['m']} V_B {r['v_b']:.4f}" if "v_b" in r else r["error"] for r in new), flush=True)
                write_results(rows, None, args.out, meta)
            if out_of_time:
                break
        if out_of_time:
            break
    previous = args.out.with_suffix(".json")
    tradeoff = json.loads(previous.read_text()).get("tradeoff", []) if previous.exists() else []  # kept unless rerun
    if args.tradeoff and not out_of_time:  # this run's families replace their earlier rows, the others stay
        new = run_tradeoffs(specs)
        tradeoff = [r for r in tradeoff if r["router"] not in {n["router"] for n in new}] + new
    if args.tradeoff and out_of_time:
        print("out of time: the tradeoff study was not run", flush=True)
    write_results(read_checkpoint(), tradeoff, args.out, meta)
    print(f"written to {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
