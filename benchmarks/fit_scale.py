"""Fit time and peak memory of every registered router at RouterEval's scale and 10× smaller.

Data: the synthetic binary results of ``recroute.data.synthetic.write_synthetic_parquet`` (8,500
LLMs × 24,000 prompts ≈ 204M records, RouterEval's scale; and 2,400 prompts, 10× smaller), with
384-d prompt embeddings made from the same latent skills (noisy skill centroids). Both are cached
in benchmarks/_scratch as the dense float32 (n_prompts, n_llms) matrix every router trains on.

Each fit runs in a fresh spawned process that loads the arrays, then fits the router with its
default parameters; recorded: fit seconds, peak RSS of the process (ru_maxrss) and of the fit alone
(VmHWM reset after loading), the fit's CPU seconds (all threads; steadier than wall seconds on a
shared machine), and the growth ratios large / small. The small size runs first: a
router whose small fit times ``--growth`` would exceed ``--timeout`` is skipped at the large size
with that reason recorded, and a fit still running at ``--timeout`` is stopped and recorded too.
A family whose declared size limit (``Router.max_fit_cells``, the shared size check) is below a
size is not run there: its FitTooLargeError message is recorded as ``refused``, which is what a
user gets. ``--sizes small`` runs only the small size (the large one is predicted from it). The
load average at the start and end of every fit is recorded beside it (the machine is shared).

    python benchmarks/fit_scale.py                               # every router; up to ~5 min a fit
    python benchmarks/fit_scale.py --routers knn,als --timeout 120
    python benchmarks/fit_scale.py --limits                     # no fit: each family's declared limit

``--limits`` writes benchmarks/results/fit_limits.json / .md: every registered family's declared
limit (``Router.fit_cell_limit()``), whether it accepts RouterEval's size, its FitTooLargeError
message where it refuses, and the fit seconds recorded for it in fit_scale.json.

Writes benchmarks/results/fit_scale.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SCRATCH = HERE / "_scratch"
N_LLMS, N_SKILLS, DIM = 8500, 20, 384
FULL_RERUN = "fit_scale_full.json"  # RouterEval's size alone, rerun for every family that accepts it (--sizes large)


def prepare(n_prompts: int, n_llms: int = N_LLMS) -> tuple[Path, Path]:
    """(dense scores .npy, embeddings .npy) of the synthetic dataset, written once into _scratch."""
    from recroute.data.synthetic import _latent, write_synthetic_parquet

    y_path = SCRATCH / f"fit_scale_Y_{n_llms}x{n_prompts}.npy"
    x_path = SCRATCH / f"fit_scale_X_{n_prompts}.npy"
    if y_path.exists() and x_path.exists():
        return y_path, x_path
    from recroute.atomic import atomic_file
    from recroute.data.dataset import RoutingDataset

    SCRATCH.mkdir(exist_ok=True)
    parquet = SCRATCH / f"synthetic_{n_llms}x{n_prompts}.parquet"
    if not parquet.exists():
        print(f"writing {parquet.name} ...", flush=True)
        with atomic_file(parquet) as tmp:
            write_synthetic_parquet(tmp, n_prompts, n_llms, n_skills=N_SKILLS, random_state=0)
    print(f"caching {parquet.name} as dense arrays ...", flush=True)
    data = RoutingDataset.from_long(parquet)
    order = np.argsort([int(p[1:]) for p in data.prompt_ids])  # prompt rows in generation order (p0, p1, ...)
    llm_order = np.argsort([int(n.split("_")[1]) for n in data.llm_names])
    Y = data.dense(np.nan)[order][:, llm_order]
    del data
    skill = _latent(n_prompts, n_llms, N_SKILLS, 1.0, np.random.default_rng(0))[0]  # the parquet's own draw
    rng = np.random.default_rng(1)
    X = (rng.normal(0, 1, (N_SKILLS, DIM))[skill] + 0.5 * rng.normal(0, 1, (n_prompts, DIM))).astype(np.float32)
    with atomic_file(y_path) as tmp:
        np.save(tmp, Y.astype(np.float32))
    with atomic_file(x_path) as tmp:
        np.save(tmp, X)
    return y_path, x_path


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _fit_child(spec: str, y_path: str, x_path: str, queue) -> None:
    """In a fresh process: load the arrays, reset the peak-RSS mark, fit, report."""
    from recroute.errors import FitTooLargeError
    from recroute.routers.registry import make_router

    Y = np.load(y_path)
    X = np.load(x_path)
    router = make_router(spec)
    rss_loaded = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # reset VmHWM: the next peak is the fit's own
        reset = True
    except OSError:
        reset = False
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        router.fit(Y, X if router.needs_features else None)
    except FitTooLargeError as exc:  # a limit checked inside the fit (sw_ranking's LLM count): what a user gets
        queue.put({"refused": str(exc)})
        return
    except Exception as exc:  # recorded, not raised: one router's failure does not end the run
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        return
    seconds = time.perf_counter() - start
    queue.put({"fit_s": seconds, "fit_cpu_s": time.process_time() - cpu_start, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
               "fit_peak_gb": _status_kib("VmHWM") / 2**20 if reset else None,
               "rss_after_load_gb": rss_loaded / 2**20})


def refusal(spec: str, n_prompts: int, n_llms: int = N_LLMS) -> str | None:
    """The FitTooLargeError message ``spec`` gives at this size, or None when it accepts it."""
    from recroute.errors import FitTooLargeError
    from recroute.routers.base import check_fit_size
    from recroute.routers.registry import make_router

    try:
        check_fit_size(make_router(spec), n_prompts, n_llms)
    except FitTooLargeError as exc:
        return str(exc)
    return None


def run_fit(spec: str, paths: tuple[Path, Path], timeout: float) -> dict:
    """One fit in a spawned process, stopped at ``timeout`` seconds; the load average around it."""
    import os

    load_start = os.getloadavg()[0]
    result = _run_fit(spec, paths, timeout)
    return {**result, "load_start": load_start, "load_end": os.getloadavg()[0]}


def _run_fit(spec: str, paths: tuple[Path, Path], timeout: float) -> dict:
    context = mp.get_context("spawn")
    queue = context.Queue()
    proc = context.Process(target=_fit_child, args=(spec, str(paths[0]), str(paths[1]), queue))
    started = time.perf_counter()
    proc.start()
    deadline = started + timeout + 60  # + loading the arrays and imports
    result = None
    while time.perf_counter() < deadline:
        try:
            result = queue.get(timeout=1.0)
            break
        except Exception:
            if not proc.is_alive():
                break
    cpu_s = _cpu_seconds(proc.pid)  # what a stopped fit used: on a shared machine, far less than its wall time
    proc.join(timeout=10)
    if proc.is_alive():
        proc.kill()
        proc.join()
    if result is None:
        if proc.exitcode not in (0, None) and time.perf_counter() < deadline:
            return {"skipped": f"the fit process died (exit code {proc.exitcode}; out of memory?)"}
        used = {} if cpu_s is None else {"cpu_s_when_stopped": cpu_s}
        return {"skipped": f"stopped after {timeout:.0f} s (too slow at this size)", **used}
    return result


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a running process (all its threads), from /proc; None if gone."""
    import os

    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_limits(specs: list[str], n_prompts: int, measured_path: Path, out: Path) -> None:
    """fit_limits.json / .md: each family's declared cell limit and what it does at RouterEval's size."""
    from machine import describe_machine

    from recroute.atomic import atomic_file
    from recroute.routers.registry import make_router

    measured = {}  # every recorded fit_scale*.json run (other branches record theirs beside this one's)
    for path in sorted(measured_path.parent.glob("fit_scale*.json")):
        if path.name != FULL_RERUN:
            for r in json.loads(path.read_text()).get("rows", []):
                measured.setdefault(r["router"], {**r, "source": path.name})
    full_path = measured_path.parent / FULL_RERUN
    full = {r["router"]: r["large"] for r in json.loads(full_path.read_text())["rows"]} if full_path.exists() else {}
    rows = []
    for spec in specs:
        limit = make_router(spec).fit_cell_limit()
        message = refusal(spec, n_prompts)
        seen = measured.get(spec, {})
        fits = {size: _outcome(seen[size]) for size in ("small", "large") if size in seen}
        rows.append({"router": spec, "max_fit_cells": limit, "max_fit_llms": type(make_router(spec)).max_fit_llms,
                     "accepts_routereval_size": message is None, "refusal": message, "measured": fits,
                     "measured_in": seen.get("source"), "full_rerun": _full_outcome(full.get(spec))})
    payload = {"benchmark": "fit_limits", "size": [n_prompts, N_LLMS], "rows": rows, "machine": describe_machine(),
               "date": time.strftime("%Y-%m-%d")}
    with atomic_file(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    lines = [f"# Fit size limits at RouterEval's size ({n_prompts:,} prompts × {N_LLMS:,} LLMs = {n_prompts * N_LLMS:,} cells)",
             "", "| family | declared limit (cells, 5 min on 2 cores) | the size check at RouterEval's size "
             "| recorded fit (2,400 / 24,000 prompts × 8,500 LLMs) | recorded in "
             f"| rerun at 24,000 × 8,500 ({FULL_RERUN}: wall s, CPU s, load) |", "|---|---|---|---|---|---|"]
    for r in rows:
        limit = "none" if r["max_fit_cells"] is None else f"{r['max_fit_cells']:.3g}"
        if r.get("max_fit_llms"):
            limit += f"; {r['max_fit_llms']:,} LLMs"
        verdict = "accepts" if r["accepts_routereval_size"] else "refuses (FitTooLargeError)"
        fit = " / ".join(r["measured"].get(k, "-") for k in ("small", "large"))
        lines.append(f"| {r['router']} | {limit} | {verdict} | {fit} | {r['measured_in'] or '-'} | {r['full_rerun']} |")
    with atomic_file(out.with_suffix(".md")) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _full_outcome(run: dict | None) -> str:
    """'426 s wall, 52 CPU-s, load 17-18', 'refused' or the reason it did not finish, for a full-size rerun."""
    if run is None:
        return "-"
    load = f"load {run['load_start']:.0f}-{run['load_end']:.0f}" if "load_start" in run else ""
    if "fit_s" in run:
        return f"{run['fit_s']:.0f} s wall, {run['fit_cpu_s']:.0f} CPU-s, {load}"
    if "cpu_s_when_stopped" in run:
        return f"{_outcome(run)} wall, {run['cpu_s_when_stopped']:.0f} CPU-s used by then, {load}"
    return _outcome(run)


def _outcome(run: dict) -> str:
    """'12.3 s', 'refused', 'stopped', 'skipped' or 'error' for one recorded fit."""
    if "fit_s" in run:
        return f"{run['fit_s']:.1f} s"
    if run.get("refused"):
        return "refused"
    text = str(run.get("error") or run.get("skipped") or "?")
    return "error (" + text.split(":")[0] + ")" if run.get("error") else text.split("(")[0].strip()


def main() -> None:
    from recroute.routers.registry import fittable_routers

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routers", default=",".join(fittable_routers()), help="comma-separated router specs")
    parser.add_argument("--prompts", type=int, default=24_000, help="prompts at the large size (RouterEval: 24,000)")
    parser.add_argument("--timeout", type=float, default=300.0, help="longest fit allowed, seconds")
    parser.add_argument("--growth", type=float, default=10.0, help="assumed fit-time growth small -> large")
    parser.add_argument("--sizes", default="small,large",
                        help="small,large; small (predict the large size); or large (RouterEval's size alone)")
    parser.add_argument("--limits", action="store_true", help="fit nothing: write each family's declared limit")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fit_scale.json")
    args = parser.parse_args()
    specs = [s.strip() for s in args.routers.split(",") if s.strip()]
    if args.limits:
        write_limits(specs, args.prompts, args.out, args.out.with_name("fit_limits"))
        return

    from machine import describe_machine

    sizes = {"small": args.prompts // 10, "large": args.prompts}
    run_large = "large" in args.sizes.split(",")
    run_small = "small" in args.sizes.split(",")
    # prepared in a spawned process: this one stays small, since a child's ru_maxrss starts from
    # its parent's resident size at fork time
    with mp.get_context("spawn").Pool(1) as pool:
        paths = {name: pool.apply(prepare, (n,)) for name, n in sizes.items()
                 if (run_large and name == "large") or (run_small and name == "small")}
    rows = []
    for spec in specs:
        row = {"router": spec, "date": time.strftime("%Y-%m-%d")}
        refused = {name: refusal(spec, n) for name, n in sizes.items()}
        if not run_small:
            small = {"skipped": "not run (--sizes large)"}
        else:
            small = {"refused": refused["small"]} if refused["small"] else run_fit(spec, paths["small"], args.timeout)
        row["small"] = {"n_prompts": sizes["small"], "n_llms": N_LLMS, **small}
        if refused["large"]:
            large = {"refused": refused["large"]}
        elif not run_large:
            large = {"skipped": "not run (--sizes small)"}
            if "fit_s" in small:
                large["predicted_fit_s"] = small["fit_s"] * args.growth
        elif "fit_s" in small and small["fit_s"] * args.growth > args.timeout:
            large = {"skipped": f"predicted {small['fit_s'] * args.growth:.0f} s (small fit {small['fit_s']:.1f} s "
                                f"× {args.growth:g}) exceeds the {args.timeout:.0f} s limit"}
        elif "fit_s" not in small and run_small:
            large = {"skipped": "the small size did not finish: " + small.get("skipped", small.get("error", ""))}
        else:
            large = run_fit(spec, paths["large"], args.timeout)
        row["large"] = {"n_prompts": sizes["large"], "n_llms": N_LLMS, **large}
        if "fit_s" in small and "fit_s" in large:
            row["time_growth"] = large["fit_s"] / max(small["fit_s"], 1e-9)
            row["peak_growth"] = large["peak_gb"] / small["peak_gb"]
            if small.get("fit_peak_gb") and large.get("fit_peak_gb"):
                row["fit_peak_growth"] = large["fit_peak_gb"] / small["fit_peak_gb"]
        rows.append(row)
        print(_line(row), flush=True)
        _write(args, sizes, rows, describe_machine())
    print(f"written to {args.out}")


def _write(args, sizes: dict, rows: list[dict], machine: dict) -> None:
    """The JSON with these rows, replacing earlier rows of the same routers (the others are kept)."""
    from recroute.atomic import atomic_file

    kept = []
    if args.out.exists():
        names = {r["router"] for r in rows}
        kept = [r for r in json.loads(args.out.read_text()).get("rows", []) if r["router"] not in names]
    payload = {"benchmark": "fit_scale", "sizes": {k: [v, N_LLMS] for k, v in sizes.items()},
               "timeout_s": args.timeout, "rows": kept + rows, "machine": machine,
               "date": time.strftime("%Y-%m-%d")}
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_file(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(payload))


def markdown(payload: dict) -> str:
    """One line per (router, size) of a fit_scale JSON: the outcome, seconds, CPU seconds, peak and load."""
    machine = payload.get("machine", {})
    lines = [f"# Fit time at RouterEval's scale ({payload['date']}, {machine.get('cores', '?')} cores "
             f"{machine.get('cpu', '')}, {machine.get('memory_gib', '?')} GiB, shared: the load average is beside each fit)",
             "", f"Wall-clock limit: {payload['timeout_s']:.0f} s a fit. Synthetic binary low-rank results "
             "(benchmarks/fit_scale.py). On a shared machine the wall seconds grow with the load average; the fit's "
             "CPU seconds (all its threads) do much less, and a fit of at most 300 CPU seconds takes at most "
             "5 minutes on 2 idle cores.", "",
             "| router | prompts × LLMs | outcome | fit s (wall) | fit CPU s | fit peak GB | load start-end |",
             "|---|---|---|---|---|---|---|"]
    for row in payload["rows"]:
        for size in ("small", "large"):
            r = row.get(size, {})
            if str(r.get("skipped", "")).startswith("not run"):
                continue
            outcome = "fitted" if "fit_s" in r else _outcome(r) if not r.get("refused") else "refused: " + r["refused"]
            if "cpu_s_when_stopped" in r:
                outcome += f" wall, {r['cpu_s_when_stopped']:.0f} CPU-s used by then"
            if "fit_s" in r:
                outcome += (" within 5 min" if r["fit_s"] <= 300 else " within 5 CPU-min" if r["fit_cpu_s"] <= 300
                            else " over 5 min")
            load = f"{r['load_start']:.1f}-{r['load_end']:.1f}" if "load_start" in r else "-"
            peak = r.get("fit_peak_gb") or r.get("peak_gb")
            lines.append(f"| {row['router']} | {r.get('n_prompts', 0):,} × {r.get('n_llms', 0):,} | {outcome} "
                         f"| {r['fit_s']:.1f} | {r['fit_cpu_s']:.1f} | {peak:.2f} | {load} |" if "fit_s" in r else
                         f"| {row['router']} | {r.get('n_prompts', 0):,} × {r.get('n_llms', 0):,} | {outcome} | - | - | - | {load} |")
    return "\n".join(lines) + "\n"


def _line(row: dict) -> str:
    def part(r: dict) -> str:
        if "fit_s" in r:
            fit_peak = f", fit peak {r['fit_peak_gb']:.2f} GB" if r.get("fit_peak_gb") else ""
            return f"{r['fit_s']:8.2f} s, peak {r['peak_gb']:.2f} GB{fit_peak}"
        if r.get("refused"):
            return "refused (FitTooLargeError)"
        predicted = f", predicted {r['predicted_fit_s']:.0f} s" if "predicted_fit_s" in r else ""
        return (r.get("skipped") or r.get("error", "?")) + predicted

    growth = f"  growth ×{row['time_growth']:.1f} time, ×{row['peak_growth']:.2f} peak" if "time_growth" in row else ""
    return f"{row['router']:12s} small: {part(row['small'])} | large: {part(row['large'])}{growth}"


if __name__ == "__main__":
    main()
