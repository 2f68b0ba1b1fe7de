"""kNN routing speed on 384-d clustered synthetic embeddings: recroute's FAISS indexes vs RouterEval.

For each training size (10k, 100k, 1M prompts; 1,000 queries, 10 LLMs, k = 5) it times routing the
queries (neighbours + the mean of their scores) with:

- RouterEval's method: scikit-learn ``NearestNeighbors(metric="cosine")`` (brute force), then the
  neighbours' mean scores (the baseline every ratio is against);
- the bare numpy bound: Q·Xᵀ on normalised vectors + argpartition top-k (no index at all);
- recroute's ``KNNRouter`` with index "flat" (exact), "ivf" (nprobe swept) and "hnsw" (efSearch swept);

plus index build times and recall@5 against exact search. Goals: ≥ 20× faster than scikit-learn at
1M with recall@5 ≥ 0.95; exact (flat) search within 1.5× of the numpy product.

    python benchmarks/knn_speed.py                        # 10k, 100k, 1M (about 10 minutes, 3 GB)
    python benchmarks/knn_speed.py --sizes 10000,100000   # quicker
    python benchmarks/knn_speed.py --hnsw-max 100000      # skip HNSW's slow build above 100k

Writes benchmarks/results/knn_speed.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

D, N_LLMS, K = 384, 10, 5


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray, noise: float = 1.0) -> np.ndarray:
    """float32 (n, D): a random centre plus Gaussian noise per row (within-cluster cosine ≈ 0.5)."""
    out = np.empty((n, D), dtype=np.float32)
    step = 100_000
    for start in range(0, n, step):
        m = min(step, n - start)
        out[start : start + m] = centres[rng.integers(0, len(centres), m)]
        out[start : start + m] += noise * rng.standard_normal((m, D), dtype=np.float32)
    return out


def timed(fn, repeat: int):
    """(best seconds over ``repeat`` runs, last result)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def normalise(X: np.ndarray) -> np.ndarray:
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def numpy_topk(Xn: np.ndarray, Qn: np.ndarray, k: int, chunk: int = 100) -> np.ndarray:
    """int64 (n_q, k): top-k inner products by a chunked matrix product and argpartition."""
    out = np.empty((len(Qn), k), dtype=np.int64)
    for start in range(0, len(Qn), chunk):
        sims = Qn[start : start + chunk] @ Xn.T
        out[start : start + chunk] = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    return out


def sklearn_route(X, Y, Q, k):
    """RouterEval's knn.py: cosine brute-force NearestNeighbors, then the neighbours' mean scores."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric="cosine").fit(X)
    idx = nn.kneighbors(Q, return_distance=False)
    return idx, Y[idx].mean(axis=1)


def run_size(n: int, n_queries: int, args, rng) -> dict:
    from recroute.routers.knn import KNNRouter, auto_nlist, recall_at_k

    centres = rng.standard_normal((max(100, n // 500), D), dtype=np.float32)
    X = clustered(n, rng, centres)
    Q = clustered(n_queries, rng, centres)
    Y = (rng.random((n, N_LLMS)) < 0.5).astype(np.float32)
    repeat = 3 if n <= 100_000 else 1
    row: dict = {"n_train": n, "n_queries": n_queries, "dim": D, "k": K, "n_llms": N_LLMS, "repeat": repeat}
    print(f"\n== n = {n:,} ({X.nbytes / 2**30:.2f} GiB of float32 vectors)", flush=True)

    # RouterEval's method (the baseline)
    if n <= args.sklearn_max:
        row["sklearn_s"], (sk_idx, _) = timed(lambda: sklearn_route(X, Y, Q, K), repeat)
        print(f"  scikit-learn (RouterEval)   {row['sklearn_s']:8.3f} s", flush=True)
    # numpy bound (vectors normalised beforehand, not timed)
    Xn, Qn = normalise(X), normalise(Q)
    row["numpy_s"], np_idx = timed(lambda: numpy_topk(Xn, Qn, K), repeat)
    Xn = None  # free the copy before the next method
    print(f"  numpy Q·Xᵀ + top-k           {row['numpy_s']:8.3f} s", flush=True)

    # recroute flat (exact): the reference neighbours for recall
    row["flat_build_s"], flat = timed(lambda: KNNRouter(k=K).fit(Y, X), 1)
    row["flat_s"], _ = timed(lambda: flat.score(Q), repeat)
    exact = flat.kneighbors(Q)
    row["flat_recall"] = recall_at_k(exact, exact)
    row["numpy_recall"] = recall_at_k(np_idx, exact)
    if "sklearn_s" in row:
        row["sklearn_recall"] = recall_at_k(sk_idx, exact)
    flat = None
    print(f"  recroute flat (exact)       {row['flat_s']:8.3f} s   build {row['flat_build_s']:.2f} s", flush=True)

    # IVF: one build, nprobe swept
    nlist = args.nlist or auto_nlist(n)
    row["ivf_nlist"] = nlist
    row["ivf_build_s"], ivf = timed(lambda: KNNRouter(k=K, index="ivf", nlist=nlist).fit(Y, X), 1)
    row["ivf"] = []
    for nprobe in args.nprobes:
        if nprobe > nlist:
            continue
        ivf.set_params(nprobe=nprobe)
        seconds, _ = timed(lambda: ivf.score(Q), repeat)
        recall = recall_at_k(ivf.kneighbors(Q), exact)
        row["ivf"].append({"nprobe": nprobe, "seconds": seconds, "recall": recall})
        print(f"  recroute ivf nlist={nlist} nprobe={nprobe:<4d} {seconds:8.3f} s   recall@5 {recall:.4f}", flush=True)
    print(f"    (ivf build {row['ivf_build_s']:.1f} s)", flush=True)
    ivf = None

    # HNSW: one build, efSearch swept
    if n <= args.hnsw_max:
        row["hnsw_m"], row["hnsw_ef_construction"] = args.hnsw_m, 40
        row["hnsw_build_s"], hnsw = timed(lambda: KNNRouter(k=K, index="hnsw", hnsw_m=args.hnsw_m).fit(Y, X), 1)
        row["hnsw"] = []
        for ef in args.ef_search:
            hnsw.set_params(ef_search=ef)
            seconds, _ = timed(lambda: hnsw.score(Q), repeat)
            recall = recall_at_k(hnsw.kneighbors(Q), exact)
            row["hnsw"].append({"ef_search": ef, "seconds": seconds, "recall": recall})
            print(f"  recroute hnsw M={args.hnsw_m} ef={ef:<4d}     {seconds:8.3f} s   recall@5 {recall:.4f}", flush=True)
        print(f"    (hnsw build {row['hnsw_build_s']:.1f} s)", flush=True)
        hnsw = None
    else:
        row["hnsw_skipped"] = f"HNSW build skipped above --hnsw-max {args.hnsw_max:,} (its build is minutes at 1M)"
    summarise(row)
    return row


def summarise(row: dict) -> None:
    """Add ratios and the goals' verdicts to a size's row."""
    ok = [v for v in row["ivf"] if v["recall"] >= 0.95]
    best_ivf = min(ok, key=lambda v: v["seconds"]) if ok else None
    row["best_ivf_at_recall_0.95"] = best_ivf
    row["flat_vs_numpy"] = row["flat_s"] / row["numpy_s"]
    if "sklearn_s" in row:
        row["speedup_flat_vs_sklearn"] = row["sklearn_s"] / row["flat_s"]
        if best_ivf:
            row["speedup_ivf_vs_sklearn"] = row["sklearn_s"] / best_ivf["seconds"]
        hnsw_ok = [v for v in row.get("hnsw", []) if v["recall"] >= 0.95]
        if hnsw_ok:
            row["speedup_hnsw_vs_sklearn"] = row["sklearn_s"] / min(v["seconds"] for v in hnsw_ok)
    print(f"  ratios: flat/numpy {row['flat_vs_numpy']:.2f}×"
          + (f", sklearn/flat {row['speedup_flat_vs_sklearn']:.1f}×" if "speedup_flat_vs_sklearn" in row else "")
          + (f", sklearn/ivf(recall≥0.95, nprobe={best_ivf['nprobe']}) {row['speedup_ivf_vs_sklearn']:.1f}×"
             if "speedup_ivf_vs_sklearn" in row else ""), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated training sizes")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--nlist", type=int, default=None, help="IVF cells (default: recroute's automatic nlist)")
    parser.add_argument("--nprobes", default="4,8,16,32,64", help="IVF nprobe values to sweep")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-search", default="64,128,256", help="HNSW efSearch values to sweep")
    parser.add_argument("--hnsw-max", type=int, default=1_000_000, help="largest size to build HNSW for")
    parser.add_argument("--sklearn-max", type=int, default=1_000_000, help="largest size to run scikit-learn on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "knn_speed.json")
    args = parser.parse_args()
    args.nprobes = [int(v) for v in args.nprobes.split(",")]
    args.ef_search = [int(v) for v in args.ef_search.split(",")]
    sizes = [int(v) for v in args.sizes.split(",")]

    from machine import describe_machine

    from recroute.atomic import atomic_file

    rng = np.random.default_rng(args.seed)
    rows = [run_size(n, args.queries, args, rng) for n in sizes]
    largest = rows[-1]
    goals = {
        "speedup_vs_sklearn_at_largest": {"goal": 20.0, "value": largest.get("speedup_ivf_vs_sklearn"),
                                          "recall_goal": 0.95,
                                          "recall": (largest["best_ivf_at_recall_0.95"] or {}).get("recall")},
        "flat_vs_numpy": {"goal": 1.5, "value": {r["n_train"]: round(r["flat_vs_numpy"], 3) for r in rows}},
    }
    goals["speedup_vs_sklearn_at_largest"]["met"] = bool((goals["speedup_vs_sklearn_at_largest"]["value"] or 0) >= 20)
    goals["flat_vs_numpy"]["met"] = all(r["flat_vs_numpy"] <= 1.5 for r in rows)
    payload = {"benchmark": "knn_speed", "sizes": sizes, "rows": rows, "goals": goals,
               "machine": describe_machine(), "date": time.strftime("%Y-%m-%d")}
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\ngoals: {json.dumps(goals)}\nwritten to {args.out}")


if __name__ == "__main__":
    main()
