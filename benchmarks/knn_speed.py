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

``--real`` runs the recall sweep on real prompt embeddings instead: every distinct text prompt of the
shared sets (MMLU-Pro, llmrouter_nim, Open LLM Leaderboard v1 ARC and GSM8K), each encoder's own
vectors (through the shared embedding cache), 2,000 held-out prompts as queries, the rest indexed
(IVF with the automatic nlist, nprobe swept; HNSW M = 32, efSearch swept); recall@5 against exact
search. The smallest nprobe / efSearch reaching recall@5 ≥ 0.95 for every encoder are KNNRouter's
defaults (tests/routers check that they match the record).

    python benchmarks/knn_speed.py --real                          # every available encoder
    python benchmarks/knn_speed.py --real --encoders minilm,tfidf

Writes benchmarks/results/knn_recall_real.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
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


# ---------------------------------------------------------------------- real prompt embeddings
REAL_SETS = ["mmlu_pro", "llmrouter_nim", "open_llm_leaderboard_v1_arc", "open_llm_leaderboard_v1_gsm8k"]
REAL_ENCODERS = ["minilm", "minilm-onnx", "minilm-int8", "static", "tfidf"]
RECALL_GOAL = 0.95
REAL_NPROBES = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64]
REAL_EF_SEARCH = [8, 12, 16, 24, 32, 48, 64, 96, 128, 256]


def shared_set(name: str):
    """A data set by name: the bundled one where recroute ships it (MMLU-Pro, with its MiniLM vectors),
    else the shared folder (``$RECROUTE_SHARED_DATA`` or /work/shared/data)."""
    import recroute
    from recroute.data.catalog import list_datasets

    if name in list_datasets():
        return recroute.load_dataset(name)
    return recroute.load_dataset(str(Path(os.environ.get("RECROUTE_SHARED_DATA", "/work/shared/data")) / name))


def real_vectors(encoder_name: str, sets: list) -> tuple[np.ndarray, str]:
    """float32 (n_unique_texts, d): the encoder's vectors of every distinct prompt text of ``sets``
    (first occurrence kept), through the shared embedding cache; and the encoder's name."""
    from recroute.encoders import get_encoder
    from recroute.encoders.cache import cache_key, encode_cached
    from recroute.encoders.embed import dataset_texts

    encoder = get_encoder(encoder_name)
    texts, seen, keep = [], set(), []
    for data in sets:
        for t in data.texts:
            keep.append(t is not None and t not in seen)
            if t is not None and t not in seen:
                seen.add(t)
                texts.append(t)
    if getattr(encoder, "is_fitted", True) is False:  # TF-IDF: fitted on every text (unsupervised)
        encoder.fit(texts)
        return encode_cached(encoder, texts, show_progress=True), encoder.name
    parts = []
    for data in sets:  # a set's own vectors when this encoder made them (bundled MiniLM), else the cache
        own = data.embeddings is not None and data.embedding_name == encoder.name == cache_key(encoder)
        parts.append(data.embeddings if own else encode_cached(encoder, dataset_texts(data), show_progress=True))
    return np.concatenate(parts)[np.asarray(keep)], encoder.name


def recall_sweep(X: np.ndarray, n_queries: int, args, rng) -> dict:
    """Held-out prompts as queries: recall@5 of IVF (nprobe swept) and HNSW (efSearch swept) vs exact."""
    from recroute.routers.knn import KNNRouter, auto_nlist, exact_neighbours, recall_at_k

    order = rng.permutation(len(X))
    Q, T = X[order[:n_queries]], X[order[n_queries:]]
    Y = np.zeros((len(T), 2), dtype=np.float32)  # scores play no part in neighbour search
    exact = exact_neighbours(T, Q, K)
    row: dict = {"n_train": len(T), "n_queries": len(Q), "dim": int(X.shape[1]), "k": K}
    nlist = auto_nlist(len(T))
    row["ivf_nlist"] = nlist
    ivf = KNNRouter(k=K, index="ivf").fit(Y, T)
    row["ivf"] = []
    for nprobe in args.nprobes:
        if nprobe > nlist:
            continue
        ivf.set_params(nprobe=nprobe)
        seconds, found = timed(lambda: ivf.kneighbors(Q), 1)
        row["ivf"].append({"nprobe": nprobe, "recall": recall_at_k(found, exact), "seconds": seconds})
        print(f"    ivf nlist={nlist} nprobe={nprobe:<4d} recall@5 {row['ivf'][-1]['recall']:.4f}", flush=True)
    hnsw = KNNRouter(k=K, index="hnsw", hnsw_m=args.hnsw_m).fit(Y, T)
    row["hnsw_m"] = args.hnsw_m
    row["hnsw"] = []
    for ef in args.ef_search:
        hnsw.set_params(ef_search=ef)
        seconds, found = timed(lambda: hnsw.kneighbors(Q), 1)
        row["hnsw"].append({"ef_search": ef, "recall": recall_at_k(found, exact), "seconds": seconds})
        print(f"    hnsw M={args.hnsw_m} ef={ef:<4d}     recall@5 {row['hnsw'][-1]['recall']:.4f}", flush=True)
    row["smallest_nprobe"] = next((v["nprobe"] for v in row["ivf"] if v["recall"] >= RECALL_GOAL), None)
    row["smallest_ef_search"] = next((v["ef_search"] for v in row["hnsw"] if v["recall"] >= RECALL_GOAL), None)
    return row


def run_real(args) -> None:
    """The sweep on real prompt embeddings of every text prompt of the shared sets, per encoder."""
    from machine import describe_machine

    from recroute.atomic import atomic_file
    from recroute.encoders import get_encoder

    sets = [shared_set(name) for name in REAL_SETS]
    rows = []
    for name in args.encoders.split(","):
        try:
            get_encoder(name)
        except (ValueError, ImportError) as exc:
            print(f"skipping encoder {name!r}: {exc}", flush=True)
            continue
        print(f"\n== {name}", flush=True)
        X, encoder_name = real_vectors(name, sets)
        rng = np.random.default_rng(args.seed)
        n_queries = min(args.queries, len(X) // 5)
        rows.append({"encoder": name, "encoder_name": encoder_name, **recall_sweep(X, n_queries, args, rng)})
    out = args.out if args.out.name != "knn_speed.json" else HERE / "results" / "knn_recall_real.json"
    if args.append and out.exists():  # keep the other encoders' rows of an earlier run
        done = {r["encoder"] for r in rows}
        rows = [r for r in json.loads(out.read_text())["rows"] if r["encoder"] not in done] + rows
    missing = [r["encoder"] for r in rows if r["smallest_nprobe"] is None or r["smallest_ef_search"] is None]
    choice = {
        "recall_goal": RECALL_GOAL,
        "nprobe": max(r["smallest_nprobe"] for r in rows) if rows and not missing else None,
        "ef_search": max(r["smallest_ef_search"] for r in rows) if rows and not missing else None,
        "rule": "the smallest swept value whose recall@5 reaches the goal for every encoder measured",
        "unreached_by": missing,
    }
    payload = {"benchmark": "knn_recall_real", "sets": REAL_SETS, "rows": rows, "choice": choice,
               "machine": describe_machine(), "date": time.strftime("%Y-%m-%d")}
    with atomic_file(out) as tmp:
        tmp.write_text(json.dumps(payload, indent=1) + "\n")
    with atomic_file(out.with_suffix(".md")) as tmp:
        tmp.write_text(real_markdown(payload))
    print(f"\nchoice: {json.dumps(choice)}\nwritten to {out} and .md")


def real_markdown(payload: dict) -> str:
    rows = payload["rows"]
    lines = [f"# kNN index recall on real prompt embeddings ({payload['date']})", "",
             f"Every distinct text prompt of {', '.join(payload['sets'])}; held-out prompts as queries, "
             f"the rest indexed; recall@{K} against exact search. Machine: {payload['machine']['cpu']}, "
             f"{payload['machine']['cores']} cores (shared with other jobs: times are indicative only).", ""]
    if rows:
        head = "| encoder | prompts indexed / queries | dim | " + " | ".join(
            f"IVF nprobe {v['nprobe']}" for v in rows[0]["ivf"]) + " |"
        lines += [head, "|" + "---|" * (3 + len(rows[0]["ivf"]))]
        for r in rows:
            lines.append(f"| {r['encoder']} | {r['n_train']:,} / {r['n_queries']:,} (nlist {r['ivf_nlist']}) | "
                         f"{r['dim']} | " + " | ".join(f"{v['recall']:.4f}" for v in r["ivf"]) + " |")
        lines += ["", "| encoder | " + " | ".join(f"HNSW ef {v['ef_search']}" for v in rows[0]["hnsw"]) + " |",
                  "|" + "---|" * (1 + len(rows[0]["hnsw"]))]
        for r in rows:
            lines.append(f"| {r['encoder']} (M {r['hnsw_m']}) | " + " | ".join(f"{v['recall']:.4f}" for v in r["hnsw"])
                         + " |")
    c = payload["choice"]
    lines += ["", f"Choice ({c['rule']}, recall@{K} ≥ {c['recall_goal']}): nprobe = {c['nprobe']}, "
              f"efSearch = {c['ef_search']}" + (f"; not reached by {c['unreached_by']}" if c["unreached_by"] else "")
              + ". These are `KNNRouter`'s defaults."]
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--real", action="store_true",
                        help="instead: the recall sweep on real prompt embeddings of the shared sets, per encoder "
                             "(writes results/knn_recall_real.json and .md)")
    parser.add_argument("--encoders", default=",".join(REAL_ENCODERS), help="with --real: encoders to sweep")
    parser.add_argument("--append", action="store_true",
                        help="with --real: keep the other encoders' rows already in the output file")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "knn_speed.json")
    args = parser.parse_args()
    args.nprobes = [int(v) for v in args.nprobes.split(",")]
    args.ef_search = [int(v) for v in args.ef_search.split(",")]
    if args.real:  # finer grids near the small end, more queries (unless given)
        args.queries = 2000 if args.queries == 1000 else args.queries
        args.nprobes = REAL_NPROBES if args.nprobes == [4, 8, 16, 32, 64] else args.nprobes
        args.ef_search = REAL_EF_SEARCH if args.ef_search == [64, 128, 256] else args.ef_search
        run_real(args)
        return
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
