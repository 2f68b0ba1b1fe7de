"""How long README's main job (`recroute eval --dataset mmlu_pro`) takes, in parts, on this machine.

These machines are shared: wall time depends on what else runs. So each part is timed by wall clock
and by the CPU time of this process (user + system); the CPU time of a part that runs on one core is
about what it takes on an idle machine (parts that use both cores finish sooner). The load average is
recorded before and after.

Parts: importing recroute and loading the bundled data, building RouterEval's router dataset (split and
candidate groups), then each router of the run over every candidate group (fit + routing + metrics).
With ``--cli`` the command itself also runs end to end in a subprocess (wall, and the child's CPU).

    python benchmarks/main_job.py                       # the main job's routers (preset main), in parts
    python benchmarks/main_job.py --routers baselines   # RouterEval's baselines, official settings
    python benchmarks/main_job.py --cli                 # and the command end to end
    python benchmarks/main_job.py --cli-only --backend process --out benchmarks/results/main_job_process.json

Writes benchmarks/results/main_job.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


class Clock:
    """Wall and CPU (user + system, this process) seconds since creation."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"wall_s": round(time.perf_counter() - self.wall, 2), "cpu_s": round(time.process_time() - self.cpu, 2)}


def timed_parts(routers: str, dataset: str, settings: tuple[str, ...]) -> list[dict]:
    """[{part, wall_s, cpu_s, ...}] for loading, building the groups and each router."""
    parts = []
    clock = Clock()
    from recroute.cli.eval_cmd import split_router_list, with_references
    from recroute.data.catalog import load_dataset
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.protocol import build_settings, dataset_benchmark, evaluate_router_dataset

    data = load_dataset(dataset)
    parts.append({"part": "load the bundled data (recroute already imported)", **clock.read()})
    clock = Clock()
    rd = build_router_dataset(data, build_settings(settings), seed=42, prompt_order="sorted",
                              embeddings=data.embeddings)
    present = [s for s in settings if rd.get(s)]
    parts.append({"part": "build RouterEval's split and candidate groups", **clock.read()})
    for spec in with_references(split_router_list(routers)):
        clock = Clock()
        df = evaluate_router_dataset(rd, [spec], dataset_benchmark(data), present)
        means = df[df["group"] == "mean"]
        parts.append({"part": spec, **clock.read(), "load_avg_1min": round(os.getloadavg()[0], 2),
                      "v_b": {int(r.m): round(float(r.v_b), 4) for r in means.itertuples()},
                      "e_p": {int(r.m): round(float(r.e_p), 4) for r in means.itertuples()}})
        print(f"  {parts[-1]}", flush=True)
    return parts


def end_to_end(dataset: str, routers: str | None, backend: str = "serial") -> dict:
    """The command itself in a subprocess: wall seconds and the child's CPU seconds (its workers' too)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "recroute", "eval", "--dataset", dataset, "--quiet",
                   "--json", str(Path(tmp) / "rows.json"), *(["--routers", routers] if routers else []),
                   *(["--backend", backend] if backend != "serial" else [])]
        start = time.perf_counter()
        subprocess.run(command, check=True)
        wall = time.perf_counter() - start
        n_rows = len(json.loads((Path(tmp) / "rows.json").read_text()))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    shown = [c if not c.endswith("rows.json") else "rows.json" for c in command[3:]]
    return {"command": " ".join(["recroute", *shown]), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
            "rows": n_rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mmlu_pro")
    parser.add_argument("--routers", default="main", help="router specs or a preset (main, baselines)")
    parser.add_argument("--setting", default="all")
    parser.add_argument("--cli", action="store_true", help="also run the command end to end in a subprocess")
    parser.add_argument("--cli-only", action="store_true", help="only the command end to end (no parts)")
    parser.add_argument("--backend", default="serial", help="--backend of the end-to-end command")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "main_job.json")
    args = parser.parse_args()

    from machine import describe_machine

    from recroute.eval.protocol import check_settings

    load_before = [round(x, 2) for x in os.getloadavg()]
    parts = [] if args.cli_only else timed_parts(args.routers, args.dataset, check_settings(args.setting))
    total = {"wall_s": round(sum(p["wall_s"] for p in parts), 1), "cpu_s": round(sum(p["cpu_s"] for p in parts), 1)}
    print(f"parts total: {total}", flush=True)
    routers = None if args.routers == "main" else args.routers
    cli = end_to_end(args.dataset, routers, args.backend) if args.cli or args.cli_only else None
    if cli:
        print(f"end to end: {cli}", flush=True)
    payload = {
        "benchmark": "main_job",
        "dataset": args.dataset,
        "routers": args.routers,
        "setting": args.setting,
        "parts": parts,
        "parts_total": total,
        "end_to_end": cli,
        "load_avg_before": load_before,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "note": "shared machine: wall time depends on the other work running (see the load averages); "
                "CPU seconds of this process approximate an idle machine's wall time",
        "machine": describe_machine(),
        "date": str(date.today()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
