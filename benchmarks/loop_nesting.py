"""Route time of a promoted conservative router against its nesting depth.

Each promotion of a conservative shadow wraps the previous live router in another ConservativeRouter
level (ConservativeRouter(refit_k, ConservativeRouter(refit_{k-1}, ... start))), so a decision scores
depth + 1 routers. This measures the route time per prompt of depth 1, 2, 4 and 8 as the gateway routes
(``Decider._both``: every level's scores once per batch with ``parts``, then ``combine`` among the
request's candidates), for a single request (batch 1) and a batch, as a ratio against depth 1 in the
same run; beside it the time of the static encoder on the same prompts (the rest of a decision's work).

Levels: kNN routers (``--family``) fitted with full information on growing prefixes of a random order of
the dataset's prompts (as the loop's refits grow with the log), the start on the first 5 %; depth d is
the newest d + 1 of them (every depth has the same outermost refit, so the ratio is the cost of the
levels below it); queries: ``--queries`` other prompts, each with the LLMs with a stored result as its
candidates.

    python benchmarks/loop_nesting.py --dataset /work/shared/data/mmlu_pro --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def nested(levels: list, tau: float):
    """ConservativeRouter(levels[-1], ... ConservativeRouter(levels[1], levels[0]) ...): depth len(levels) - 1."""
    from recroute.routers.conservative import ConservativeRouter

    router = levels[0]
    for refit in levels[1:]:
        router = ConservativeRouter(refit, router, tau)
    return router


def route(router, X: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The gateway's conservative routing of a batch: every level's scores once, combined among the candidates."""
    from recroute.routers.conservative import combine

    parts, taus = router.parts(X, len(X))
    return combine(parts, taus, allowed)


def per_prompt(fn, n_prompts: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / n_prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--family", default="knn")
    parser.add_argument("--depths", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--queries", type=int, default=256)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tau", type=float, default=0.2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    from loop import load_features
    from machine import describe_machine

    from recroute.data.catalog import load_dataset
    from recroute.encoders import get_encoder
    from recroute.routers.registry import make_router

    data = load_dataset(args.dataset)
    X = np.asarray(load_features(data, None), dtype=np.float32)
    truth = data.dense(np.nan)
    rng = np.random.default_rng(0)
    perm = rng.permutation(np.flatnonzero((~np.isnan(truth)).any(axis=1)))
    queries, pool = perm[: args.queries], perm[args.queries:]
    top = max(args.depths)
    sizes = np.linspace(0.05, 1.0, top + 1)  # the start on 5 %, each refit on a longer prefix
    levels = []
    for share in sizes:
        rows = pool[: max(10, int(share * len(pool)))]
        router = make_router(args.family).fit(truth[rows].astype(np.float32), X[rows])
        router.llm_names_ = np.asarray([str(n) for n in data.llm_names], dtype=object)
        levels.append(router)
    Xq, allowed = X[queries], ~np.isnan(truth[queries])
    texts = list(np.asarray(data.texts, dtype=object)[queries]) if data.texts is not None else None
    rows = []
    for depth in args.depths:
        router = nested(levels[top - depth:], args.tau)  # the newest depth + 1 levels: the same outermost refit

        def singles(r=router):
            return [route(r, Xq[i:i + 1], allowed[i:i + 1]) for i in range(64)]

        def batches(r=router):
            return [route(r, Xq[a:a + args.batch], allowed[a:a + args.batch]) for a in range(0, len(Xq), args.batch)]

        single, batched = per_prompt(singles, 64, args.repeat), per_prompt(batches, len(Xq), args.repeat)
        rows.append({"depth": depth, "routers_scored": depth + 1, "s_per_prompt_single": single,
                     "s_per_prompt_batch": batched, "load": os.getloadavg()})
        print(rows[-1], flush=True)
    for r in rows:
        r["ratio_single"] = r["s_per_prompt_single"] / rows[0]["s_per_prompt_single"]
        r["ratio_batch"] = r["s_per_prompt_batch"] / rows[0]["s_per_prompt_batch"]
    encode = None
    if texts is not None:
        enc = get_encoder("static")
        enc.encode(texts[:8])
        encode = per_prompt(lambda: [enc.encode([t]) for t in texts[:64]], 64, args.repeat)
    doc = {"machine": describe_machine(), "args": vars(args), "rows": rows, "static_encode_s_per_prompt_single": encode,
           "level_sizes": [int(max(10, int(s * len(pool)))) for s in sizes]}
    Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    print(json.dumps({k: v for k, v in doc.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
