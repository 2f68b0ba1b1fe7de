"""Load RouterEval's scale into a RoutingDataset: 8,500 LLMs × 24,000 prompts (≈200M records).

Writes a synthetic long Parquet (streamed), then loads it in a fresh spawned process and records
wall time and peak memory (ru_maxrss). Baseline in the same run: pyarrow's bare ``read_table`` of
the same file (the I/O floor), so the result is also a ratio. Targets: < 2 minutes, < 6 GB peak.

    python benchmarks/scale_load.py                 # full scale
    python benchmarks/scale_load.py --scale 0.1     # 10× smaller, for a quick look
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _load(path: str, queue) -> None:
    from recroute import RoutingDataset

    start = time.perf_counter()
    data = RoutingDataset.from_long(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"seconds": seconds, "peak_bytes": peak, "shape": list(data.shape), "n_observed": data.n_observed,
               "csr_bytes": int(data.scores.data.nbytes + data.scores.indices.nbytes + data.scores.indptr.nbytes)})


def _read_table(path: str, queue) -> None:
    import pyarrow.parquet as pq

    start = time.perf_counter()
    table = pq.read_table(path, read_dictionary=["prompt_id", "llm"])
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    queue.put({"seconds": seconds, "peak_bytes": peak, "rows": table.num_rows})


def run_in_fresh_process(target, path: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(str(path), queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llms", type=int, default=8500)
    parser.add_argument("--prompts", type=int, default=24000)
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the prompt count (0.1 = 10× smaller)")
    parser.add_argument("--workdir", type=Path, default=HERE / "_scratch")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "scale_load.json")
    args = parser.parse_args()

    from machine import describe_machine
    from recroute.data.synthetic import write_synthetic_parquet

    n_prompts = int(args.prompts * args.scale)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / f"synthetic_{args.llms}x{n_prompts}.parquet"
    start = time.perf_counter()
    if not path.exists():
        records = write_synthetic_parquet(path.with_suffix(".tmp"), n_prompts, args.llms)
        path.with_suffix(".tmp").rename(path)
    else:
        records = args.llms * n_prompts
    write_seconds = time.perf_counter() - start
    baseline = run_in_fresh_process(_read_table, path)
    load = run_in_fresh_process(_load, path)
    result = {
        "benchmark": "scale_load",
        "n_llms": args.llms,
        "n_prompts": n_prompts,
        "records": records,
        "file_bytes": path.stat().st_size,
        "write_seconds": round(write_seconds, 1),
        "load_seconds": round(load["seconds"], 1),
        "load_peak_gb": round(load["peak_bytes"] / 1e9, 2),
        "csr_gb": round(load["csr_bytes"] / 1e9, 2),
        "baseline_read_table_seconds": round(baseline["seconds"], 1),
        "baseline_read_table_peak_gb": round(baseline["peak_bytes"] / 1e9, 2),
        "ratio_load_vs_read_table": round(load["seconds"] / baseline["seconds"], 2),
        "targets": {"load_seconds": 120, "load_peak_gb": 6.0},
        "met": load["seconds"] < 120 and load["peak_bytes"] / 1e9 < 6.0,
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out = args.out if args.scale == 1.0 else args.out.with_name(f"scale_load_x{args.scale:g}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
