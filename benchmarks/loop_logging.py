"""runner.shadow_logging (the gate's logging probabilities rebuilt from the log), vectorized, against
the per-decision loop it replaced (``per_decision_logging``, kept here verbatim as the baseline and as
the reference tests/loop/test_loop_budget.py pins the new one to).

The log: ``--decisions`` decisions on a dataset's prompts (stored embeddings), the first
``--stochastic`` share served by a kNN live router under ``epsilon_greedy:epsilon=0.02,top_k=3`` (a
stochastic policy: rebuilt by rescoring), then greedy decisions (one-hot), then decisions served with a
shadow (from the logged live / shadow choices and ε); each decision's candidates the LLMs with a stored
result. Both functions run on the same log in one process; the ratio is their median times'.

    python benchmarks/loop_logging.py --dataset /work/shared/data/mmlu_pro --decisions 12000 --json out.json
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


def per_decision_logging(log, data, since: int, routers: dict) -> np.ndarray:
    """runner.shadow_logging as it was before vectorizing (one scoring and one policy parse per decision)."""
    from recroute.errors import DataError
    from recroute.feedback.policies import parse_policy
    from recroute.loop.shadow import logged_shadow_probabilities
    from recroute.routers.base import scores_among

    bandit = data.bandit
    n, m = len(bandit), bandit.n_llms
    col = {str(name): j for j, name in enumerate(bandit.llm_names)}
    P0 = np.full((n, m), np.nan)
    at = np.arange(since, n)
    frame = log.iloc[since:]
    shadowed = frame["shadow_checksum"].notna().to_numpy() if "shadow_checksum" in frame.columns \
        else np.zeros(len(at), dtype=bool)
    if shadowed.any():
        rows = at[shadowed]
        try:
            live_j = np.array([col[str(v)] for v in frame.loc[shadowed, "live_choice"]])
            shadow_j = np.array([col[str(v)] for v in frame.loc[shadowed, "shadow_choice"]])
        except KeyError as exc:
            raise DataError(f"a logged live or shadow choice {exc} is not an LLM of the live bundle") from None
        P0[rows] = logged_shadow_probabilities(live_j, shadow_j, bandit.allowed[rows],
                                               frame.loc[shadowed, "shadow_epsilon"].to_numpy(dtype=np.float64))
    checksums = frame["bundle_checksum"].to_numpy(dtype=object) if "bundle_checksum" in frame.columns else None
    for i in np.flatnonzero(~shadowed):
        pos, spec = at[i], frame["policy"].iloc[i] if "policy" in frame.columns else None
        try:
            policy = parse_policy(None if spec is None or (isinstance(spec, float) and np.isnan(spec)) else str(spec))
        except ValueError as exc:
            raise DataError(f"decision {pos}: {exc}") from None
        if policy.deterministic:
            P0[pos] = 0.0
            P0[pos, bandit.chosen[pos]] = 1.0
            continue
        router = routers.get(None if checksums is None else str(checksums[i]))
        if router is None:
            raise DataError(f"decision {pos}: made by a bundle the loop does not know, under the stochastic policy {spec}")
        x = None if data.X is None or not router.needs_features else data.X[bandit.rows[pos:pos + 1]]
        P0[pos] = policy.probabilities(scores_among(router, x, bandit.allowed[pos:pos + 1], 1), bandit.allowed[pos:pos + 1])[0]
    return P0


def make_log(truth: np.ndarray, X: np.ndarray, names: list[str], n: int, stochastic: float, greedy: float,
             seed: int = 0, family: str = "knn"):
    """(log DataFrame, LogData, routers {checksum: router}): ``n`` decisions on random prompts of ``truth``
    (n_prompts, m; NaN = no result) with features ``X``, a ``stochastic`` share under ε-greedy by a live
    router of ``family`` fitted on 5 % of the prompts (checksum "live"), a ``greedy`` share greedy, the
    rest served with a shadow (the same router's choice against a second one's, ε 0.05)."""
    import pandas as pd

    from recroute.feedback.bandit import Bandit
    from recroute.feedback.policies import greedy_matrix, parse_policy, sample_rows
    from recroute.loop.refit import LogData
    from recroute.loop.shadow import shadow_probabilities
    from recroute.routers.registry import make_router

    rng = np.random.default_rng(seed)
    has = np.flatnonzero((~np.isnan(truth)).any(axis=1))
    fit_rows = rng.choice(has, max(10, len(has) // 20), replace=False)
    live = make_router(family).fit(truth[fit_rows].astype(np.float32), X[fit_rows])
    other = make_router(family).fit(truth[fit_rows[::-1][: len(fit_rows) // 2]].astype(np.float32),
                                    X[fit_rows[::-1][: len(fit_rows) // 2]])
    for r in (live, other):
        r.llm_names_ = np.asarray(names, dtype=object)
    rows = rng.choice(has, n, replace=len(has) < n)
    allowed = ~np.isnan(truth[rows])
    n_sto, n_greedy = int(stochastic * n), int(greedy * n)
    kind = np.array(["stochastic"] * n_sto + ["greedy"] * n_greedy + ["shadow"] * (n - n_sto - n_greedy))
    spec = "epsilon_greedy:epsilon=0.02,top_k=3"
    S, T = live.score(X[rows], n=n), other.score(X[rows], n=n)
    P = np.where((kind == "stochastic")[:, None], parse_policy(spec).probabilities(S, allowed), greedy_matrix(S, allowed))
    sh = kind == "shadow"
    P[sh] = shadow_probabilities(S[sh], T[sh], allowed[sh], 0.05)
    chosen = sample_rows(P, rng)
    live_j, shadow_j = greedy_matrix(S, allowed).argmax(axis=1), greedy_matrix(T, allowed).argmax(axis=1)
    nm = np.asarray(names, dtype=object)
    log = pd.DataFrame({
        "decision_id": [f"d{i}" for i in range(n)], "chosen": nm[chosen], "propensity": P[np.arange(n), chosen],
        "policy": np.where(kind == "stochastic", spec, np.where(kind == "greedy", "greedy", None)),
        "bundle_checksum": "live", "live_choice": np.where(sh, nm[live_j], None),
        "shadow_choice": np.where(sh, nm[shadow_j], None), "shadow_checksum": np.where(sh, "shadow", None),
        "shadow_epsilon": np.where(sh, 0.05, np.nan), "outcome": np.nan_to_num(truth[rows, chosen])})
    bandit = Bandit(np.arange(n), allowed, chosen, log["propensity"].to_numpy(), log["outcome"].to_numpy(), nm)
    return log, LogData(bandit, X[rows], [], np.arange(n)), {"live": live}


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--decisions", type=int, default=12000)
    parser.add_argument("--stochastic", type=float, default=0.4)
    parser.add_argument("--greedy", type=float, default=0.1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    from loop import load_features
    from machine import describe_machine

    from recroute.data.catalog import load_dataset
    from recroute.loop.runner import shadow_logging

    data = load_dataset(args.dataset)
    X = load_features(data, None)
    log, logdata, routers = make_log(data.dense(np.nan).astype(np.float64), X, [str(n) for n in data.llm_names],
                                     args.decisions, args.stochastic, args.greedy)
    new, old = shadow_logging(log, logdata, 1, routers), per_decision_logging(log, logdata, 1, routers)
    equal = bool(np.array_equal(new, old, equal_nan=True))
    t_new = best_of(lambda: shadow_logging(log, logdata, 1, routers), args.repeat)
    t_old = best_of(lambda: per_decision_logging(log, logdata, 1, routers), max(1, args.repeat // 3))
    doc = {"machine": describe_machine(), "args": vars(args), "load": os.getloadavg(), "equal": equal,
           "max_abs_diff": float(np.nanmax(np.abs(new - old))), "seconds_per_decision": t_old,
           "seconds_vectorized": t_new, "ratio": t_old / t_new}
    Path(args.json).write_text(json.dumps(doc, indent=1, default=float))
    print(json.dumps({k: v for k, v in doc.items() if k != "machine"}, indent=1))


if __name__ == "__main__":
    main()
