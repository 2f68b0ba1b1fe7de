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
    python benchmarks/zoo.py --render --checkpoints a.jsonl,b.jsonl   # from the union of checkpoints

Runs are checkpointed (benchmarks/_scratch/zoo_runs.jsonl, or the first of ``--checkpoints``) and
skipped when already in any of them, so an interrupted leaderboard resumes, and several zoo processes
may work on different sets at once; every finished run rewrites benchmarks/results/zoo.json and zoo.md
from the checkpoints. A run appears once however many checkpoints hold it: the last copy (a later line,
a later file of ``--checkpoints``) wins.
A family that refuses a pool by its declared fit limit (``FitTooLargeError``: sw_ranking above 300
LLMs, a cell limit) is recorded as refused for that (family, set, m), with the message naming the size
it takes, and its other pools are measured; any other failure is recorded as an error of the whole
run (retried with ``--retry-errors``). ``--tradeoff`` rows are checkpointed too.
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
    """Every registered router fitted from data ("all") or the given comma-separated specs."""
    from recroute.routers.registry import fittable_routers

    return fittable_routers() if names == "all" else [s.strip() for s in names.split(",") if s.strip()]


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
    df = evaluate_dataset(data, [run_spec], settings="all", quiet=True, backend=backend, encoder=encoder,
                          refusals="record")
    seconds = time.perf_counter() - start
    means = df[df.group == "mean"]
    return [{"dataset": data.name, "router": spec if encoder is None else f"{spec} [{encoder}]", "seed": seed, "setting": r.setting, "m": int(r.m),
             **{c: float(getattr(r, c)) for c in METRIC_COLUMNS},
             **({"refused": r.refused} if r.refused is not None else {}),
             "run_seconds": seconds, "load_start": load_start, "load_end": os.getloadavg()[0]}
            for r in means.itertuples()]


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (dataset, router, m): metrics averaged over seeds, V_B's std over seeds, the load range."""
    keys = ["dataset", "router", "setting", "m"]
    if "refused" not in rows:
        rows = rows.assign(refused=None)
    out = rows.groupby(keys, sort=False).agg(
        v_b=("v_b", "mean"), v_b_std=("v_b", "std"), v_r=("v_r", "mean"), e_p=("e_p", "mean"), auc=("auc", "mean"),
        fit_seconds=("fit_seconds", "mean"), route_seconds=("route_seconds", "mean"), seeds=("seed", "nunique"),
        load_min=("load_start", "min"), load_max=("load_end", "max"), source=("source", "first"),
        refused=("refused", "first"),
    ).reset_index()
    out["v_b_std"] = out["v_b_std"].fillna(0.0)
    return out


BOARD_M = (3, 5, 10)  # the leaderboard's m; larger hard pools (100, 1000) stay in the per-set tables


def leaderboard(summary: pd.DataFrame) -> pd.DataFrame:
    """Family × set: mean V_B over m = 3, 5, 10 (the m the set has), the README's table."""
    part = summary[summary.m.isin(BOARD_M)]  # a refused m (NaN) makes the cell NaN, never a mean of the rest
    table = part.groupby(["router", "dataset"], sort=False)["v_b"].agg(lambda v: v.mean(skipna=False)).unstack("dataset")
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


def _is_refused(value) -> bool:
    return isinstance(value, str) and bool(value)


def refused_lines(summary: pd.DataFrame) -> list[str]:
    """The (family, set, m) pools a family refused by its declared fit limit, with its message."""
    refused = summary[summary.refused.map(_is_refused)]
    if refused.empty:
        return []
    lines = ["## Refused pools (the family's declared fit limit: `FitTooLargeError`)", "",
             "The family refused these pools before any work and the rest of its run went on; "
             "its message names the size it takes.", "", "| family | set | m | refused: reason |", "|---|---|---|---|"]
    for r in refused.itertuples():
        lines.append(f"| {r.router} | {r.dataset} | {r.m} | {r.refused} |")
    return lines + [""]


def error_lines(errors: list[dict]) -> list[str]:
    """Whole runs that failed (not a declared refusal), one line each."""
    if not errors:
        return []
    lines = ["## Failed runs", "", "| family | set | seed | error |", "|---|---|---|---|"]
    lines += [f"| {e['router']} | {e['dataset']} | {e['seed']} | {e['error']} |" for e in errors]
    return lines + [""]


def _is_seeded(spec: str) -> bool:
    """Whether a family's results depend on its seed here: it takes a random_state and is not measured by
    the protocol's exact expectation (random, oracle, r_o); an unknown name: no."""
    from recroute.eval.protocol import is_expected_router
    from recroute.routers.registry import make_router

    try:
        return seeded(spec, 0) is not None and not is_expected_router(make_router(spec))
    except Exception:
        return False


README_SETS = {"mmlu_pro": "MMLU-Pro", "llmrouter_nim": "llmrouter_nim", "open_llm_leaderboard_v1_arc": "v1 ARC",
               "open_llm_leaderboard_v1_gsm8k": "v1 GSM8K", "open_llm_leaderboard_v2": "OLLB v2"}


def board_lines(summary: pd.DataFrame, names: dict[str, str] | None = None) -> list[str]:
    """The leaderboard as a markdown table: family × set (``names``: the sets to show, as column titles)."""
    board = leaderboard(summary)
    names = names or {d: d for d in board.columns}
    board = board[[d for d in names if d in board.columns]]
    recorded = {(r.router, r.dataset) for r in summary.itertuples() if r.source != "this run"}
    refused = {(r.router, r.dataset) for r in summary.itertuples() if r.m in BOARD_M and _is_refused(r.refused)}
    seeds = summary[summary.m.isin(BOARD_M)].groupby(["router", "dataset"]).seeds.min().to_dict()
    few = {1: " ¹", 2: " ²"}

    def cell(router: str, dataset: str, value: float) -> str:
        if pd.isna(value):
            return "refused" if (router, dataset) in refused else "-"
        mark = "†" if (router, dataset) in recorded else ""
        if _is_seeded(router):
            mark += few.get(int(seeds.get((router, dataset), 3)), "")
        return f"{value:.4f}{mark}"

    lines = ["| family | " + " | ".join(names[d] for d in board.columns) + " |", "|---" * (len(board.columns) + 1) + "|"]
    return lines + [f"| {router} | " + " | ".join(cell(router, d, v) for d, v in row.items()) + " |"
                    for router, row in board.iterrows()]


def markdown(summary: pd.DataFrame, tradeoff: list[dict], meta: dict, errors: list[dict] = ()) -> str:
    lines = ["# Leaderboard: every family in RouterEval's protocol", "",
             f"{meta.get('date', '')}, {meta.get('machine', {}).get('cores', '?')} cores "
             f"({meta.get('machine', {}).get('cpu', '')}), shared machine: load average "
             f"{summary.load_min.min():.1f} to {summary.load_max.max():.1f} during this run's fits (times are inflated by it). "
             f"Seeds: {meta.get('seeds')}; {meta.get('note', '')}", "",
             "## Mean V_B over m = 3, 5, 10 (easy m = 3, 5 and hard m = 10 where the pool has them)", ""]
    board = leaderboard(summary)
    lines += board_lines(summary) + [
        "", "† recorded earlier under the same protocol (quality.py, zoo_a.py; source column below), "
        "not rerun in this run; ¹ ² = the seeds of a seeded family where fewer than three ran; - = not run; "
        "refused = the family refused one of the pools by its declared fit limit (listed below).", ""]
    lines += stack_lines(board)
    lines += refused_lines(summary)
    lines += error_lines(list(errors))
    for dataset, part in summary.groupby("dataset", sort=False):
        ms = sorted(part.m.unique())
        lines += [f"## {dataset}", "", "| family | " + " | ".join(f"V_B m={m}" for m in ms)
                  + " | " + " | ".join(f"E_p m={m}" for m in ms) + " | " + " | ".join(f"AUC m={m}" for m in ms)
                  + " | fit s / group | route s / group | seeds | load | source |", "|---" * (3 * len(ms) + 6) + "|"]
        for router, r in part.groupby("router", sort=False):
            by_m = r.set_index("m")
            vb = ["-" if m not in by_m.index else "refused" if _is_refused(by_m.refused[m])
                  else f"{by_m.v_b[m]:.4f}" + (f" ±{by_m.v_b_std[m]:.3f}" if by_m.seeds[m] > 1 else "") for m in ms]
            ep = [f"{by_m.e_p[m]:.3f}" if m in by_m.index and np.isfinite(by_m.e_p[m]) else "-" for m in ms]
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
    """Per (dataset, family): this run's rows, or the recorded ones where this run has none, or one seed
    against the record's several (a family rerun with one seed so far keeps showing its recorded
    three-seed mean; from two seeds on, this code's runs are shown)."""
    recorded = pd.DataFrame(recorded_rows())
    if recorded.empty:
        return frame.assign(source="this run")
    ran = frame.groupby(["dataset", "router"]).seed.nunique().to_dict()
    kept = recorded.groupby(["dataset", "router"]).seed.nunique().to_dict()
    use_recorded = {key for key, n in kept.items() if n > ran.get(key, 0) and ran.get(key, 0) < 2}
    frame = frame[[(d, r) not in use_recorded for d, r in zip(frame.dataset, frame.router)]]
    recorded = recorded[[(d, r) in use_recorded for d, r in zip(recorded.dataset, recorded.router)]]
    return pd.concat([frame.assign(source="this run"), recorded], ignore_index=True)


def read_checkpoint(paths: list[Path] | None = None) -> list[dict]:
    """Every checkpointed line of ``paths`` (default: this branch's checkpoint), in file order."""
    out = []
    for path in paths or [CHECKPOINT]:
        if path.exists():
            out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def is_tradeoff(row: dict) -> bool:
    return row.get("kind") == "tradeoff"


def run_key(row: dict) -> tuple:
    return row["dataset"], row["router"], row["seed"]


def split_rows(rows: list[dict]) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """(group-mean rows, each run once; failed runs no other checkpoint line has measured; tradeoff rows,
    the last per family: a rerun replaces it) from the checkpoint lines of one or several files."""
    runs = [r for r in rows if not is_tradeoff(r)]
    frame = pd.DataFrame([r for r in runs if "error" not in r])
    if not frame.empty:  # a run made twice counts once: the later line (a rerun, a later checkpoint file) wins
        frame = frame.drop_duplicates(subset=["dataset", "router", "seed", "setting", "m"], keep="last")
        if "refused" not in frame:
            frame["refused"] = None
    measured = {run_key(r) for r in runs if "error" not in r}
    errors = [r for r in runs if "error" in r and run_key(r) not in measured]  # superseded by a later run
    errors = list({run_key(e): e for e in errors}.values())
    tradeoff = list({r["router"]: r for r in rows if is_tradeoff(r)}.values())
    return frame, errors, tradeoff


def write_results(rows: list[dict], tradeoff: list[dict] | None, out: Path, meta: dict) -> None:
    """zoo.json and zoo.md from every checkpointed line so far; the tradeoff study from the checkpoint's
    tradeoff lines, ``tradeoff`` (a run's), and the families OUT.json recorded that neither has."""
    from recroute.atomic import atomic_file

    frame, errors, checkpointed = split_rows(rows)
    previous = json.loads(out.with_suffix(".json").read_text()).get("tradeoff", []) if out.with_suffix(".json").exists() else []
    study = checkpointed + [r for r in tradeoff or [] if r["router"] not in {c["router"] for c in checkpointed}]
    study += [r for r in previous if r["router"] not in {c["router"] for c in study}]
    if frame.empty:
        return
    summary = summarise(with_recorded(frame))
    payload = {**meta, "summary": json.loads(summary.to_json(orient="records")),
               "errors": errors, "tradeoff": study, "rows": json.loads(frame.to_json(orient="records"))}
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_file(out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(summary, study, meta, errors))


def render(checkpoints: list[Path], out: Path) -> None:
    """OUT.json / OUT.md again from the union of ``checkpoints`` (else OUT.json's rows) and the recorded rows."""
    doc = json.loads(out.with_suffix(".json").read_text()) if out.with_suffix(".json").exists() else {}
    meta = {k: v for k, v in doc.items() if k not in ("summary", "errors", "tradeoff", "rows")}
    rows = read_checkpoint(checkpoints) or doc.get("rows", []) + doc.get("errors", [])
    if not rows:
        raise SystemExit(f"error: nothing to render: no line in {', '.join(map(str, checkpoints))} and no {out.with_suffix('.json')}")
    loads = [r[k] for r in rows if not is_tradeoff(r) for k in ("load_start", "load_end") if r.get(k) is not None]
    from machine import describe_machine

    runs = [r for r in rows if not is_tradeoff(r) and "seed" in r]
    meta.setdefault("benchmark", "zoo")
    meta.setdefault("machine", describe_machine())
    meta.setdefault("date", time.strftime("%Y-%m-%d"))
    meta["seeds"] = sorted({int(r["seed"]) for r in runs})
    meta["checkpoints"] = [str(c) for c in checkpoints]
    if loads:
        meta["load_range"] = [min(loads), max(loads)]
    write_results(rows, None, out, meta)


def append(checkpoint: Path, rows: list[dict]) -> None:
    with checkpoint.open("a") as handle:
        handle.write("".join(json.dumps(r) + "\n" for r in rows))


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
    parser.add_argument("--checkpoints", default=str(CHECKPOINT),
                        help="comma-separated checkpoint files: runs append to the first and skip what any holds; "
                             "--render reads their union")
    parser.add_argument("--retry-errors", action="store_true", help="run again the runs checkpointed as failed")
    parser.add_argument("--render", action="store_true", help="only re-render OUT.md / OUT.json from the checkpoints")
    parser.add_argument("--readme", action="store_true", help="with --render: also print the README's table")
    parser.add_argument("--encoder", default=None, help="prompt features for every run (e.g. minilm-onnx+lexical)")
    args = parser.parse_args()
    checkpoints = [Path(c.strip()) for c in args.checkpoints.split(",") if c.strip()]
    if args.render:
        render(checkpoints, args.out)
        print(f"written to {args.out.with_suffix('.md')}")
        if args.readme:
            summary = pd.DataFrame(json.loads(args.out.with_suffix(".json").read_text())["summary"])
            print("\n".join(board_lines(summary, README_SETS)))
        return

    from machine import describe_machine

    specs = families(args.families)
    seeds = [int(s) for s in args.seeds.split(",")]
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    meta = {"benchmark": "zoo", "protocol": "RouterEval: seed-42 split and groups, easy + hard, group means",
            "seeds": seeds, "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"), "note": args.note}
    checkpoints[0].parent.mkdir(parents=True, exist_ok=True)

    def done() -> set[tuple]:  # runs any checkpoint holds (another zoo process may be adding to them)
        return {run_key(r) for r in read_checkpoint(checkpoints)
                if not is_tradeoff(r) and not (args.retry_errors and "error" in r)}

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
                if seed != seeds[0] and not _is_seeded(spec):
                    continue  # deterministic (or an exact expectation): one run is every seed's run
                if (name, label, seed) in done():
                    continue  # done here or by another zoo process
                if args.budget_min is not None and time.perf_counter() - started > 60 * args.budget_min:
                    out_of_time = True
                    break
                try:
                    new = run_one(data, spec, seed, args.backend, args.encoder)
                except Exception as exc:  # recorded: one family's failure does not end the board
                    new = [{"dataset": name, "router": label, "seed": seed, "error": f"{type(exc).__name__}: {exc}"}]
                append(checkpoints[0], new)
                print(f"{name} {spec} seed {seed}: " + ", ".join(
                    (f"m={r['m']} refused" if "refused" in r else f"m={r['m']} V_B {r['v_b']:.4f}") if "m" in r
                    else r["error"] for r in new), flush=True)
                write_results(read_checkpoint(checkpoints), None, args.out, meta)
            if out_of_time:
                break
        if out_of_time:
            break
    if args.tradeoff and not out_of_time:  # this run's families replace their earlier rows, the others stay
        append(checkpoints[0], [{"kind": "tradeoff", "dataset": TRADEOFF_SET, "seed": None, **r}
                                for r in run_tradeoffs(specs)])
    if args.tradeoff and out_of_time:
        print("out of time: the tradeoff study was not run", flush=True)
    write_results(read_checkpoint(checkpoints), None, args.out, meta)
    print(f"written to {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
