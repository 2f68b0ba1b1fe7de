"""Offline: how a new LLM's column is filled from its probes (estimator) and which anchor prompts are probed
(order), on the stream simulator's own split (issue 21, goal 3; benchmarks/results/loop_onboard.md).

The start router (kNN fitted on the anchor) gets the new LLM's column from 200 probes: the probed results,
and at the other anchor prompts one estimator's prediction from the existing LLMs' results there:
``ridge`` (ResultRegression, the loop's; its penalty by efficient leave-one-out, RidgeCV), ``irt_map`` /
``irt_eap`` (2PL IRT of the anchor, the new LLM's MAP / EAP ability, its item curves), ``neigh5`` (the mean
of the 5 existing LLMs agreeing most with its probes), ``neigh5cal`` (that mean calibrated by a regression on
the probes), ``logistic`` (L2 logistic regression, penalty by 5-fold CV; binary results only, else ridge),
``ridge_irt`` (ridge with the IRT curve as one more input); ``oracle``: its true results everywhere. Orders:
``uniform`` (the loop's), ``disagree`` (the 200 prompts where the existing LLMs' results spread most:
deterministic, not a probability sample, so no unbiased gate; an upper reference for
``recroute.coldstart.design.contested_design``), ``top_wrong`` (where the best existing result is lowest).
Per variant: the share ratio (ties split) over the window of goal 3 and the true mu_o gain on the stream after
the arrival; RMSE of the prediction at the unprobed anchor prompts.

    python benchmarks/loop_placement.py --dataset ../shared/data/llmrouter_nim --new-llm llama-3.1-nemotron-51b-instruct --json placement.json
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np  # noqa: E402
from loop import load_features  # noqa: E402
from loop_diagnose import onboarding_case  # noqa: E402
from recroute.coldstart.estimators import ResultRegression  # noqa: E402
from recroute.coldstart.irt import fit_irt, map_ability, predict_results, sigmoid  # noqa: E402
from recroute.data.catalog import load_dataset  # noqa: E402
from recroute.feedback.policies import greedy_matrix  # noqa: E402
from recroute.loop.onboard import placement_prompts  # noqa: E402
from recroute.loop.refit import Anchor  # noqa: E402
from recroute.loop.simulate import tie_split_share  # noqa: E402


# each estimator: (F (n, m) the existing LLMs' anchor results, probed int (k,), yp (k,) probe results) -> (n,)
def col_ridge(F, probed, yp, **kw):
    return ResultRegression(F[probed], yp).predict(F)

def col_irt_map(F, probed, yp, irt=None, **kw):
    th = map_ability(irt, probed[None], yp[None])[0]
    return sigmoid(irt.a * th + irt.b)

def col_irt_eap(F, probed, yp, irt=None, **kw):
    return predict_results(irt, probed[None], yp[None])[:, 0]

def col_neigh(F, probed, yp, K=5, **kw):
    agree = 1 - np.abs(F[probed] - yp[:, None]).mean(0)
    top = np.argsort(-agree)[:K]
    return F[:, top].mean(1)

def col_neigh_cal(F, probed, yp, K=5, **kw):
    agree = 1 - np.abs(F[probed] - yp[:, None]).mean(0)
    top = np.argsort(-agree)[:K]
    z = F[:, top].mean(1)
    return ResultRegression(z[probed, None], yp).predict(z[:, None])

def col_logistic(F, probed, yp, **kw):
    from sklearn.linear_model import LogisticRegressionCV
    if np.ptp(yp) == 0 or not np.isin(yp, [0, 1]).all():
        return ResultRegression(F[probed], yp).predict(F)
    m = LogisticRegressionCV(Cs=np.logspace(-3, 2, 12), cv=5, max_iter=2000).fit(F[probed], yp.astype(int))
    return m.predict_proba(F)[:, 1]

def col_ridge_irt(F, probed, yp, irt=None, **kw):
    th = map_ability(irt, probed[None], yp[None])[0]
    c = sigmoid(irt.a * th + irt.b)
    G = np.column_stack([F, c])
    return ResultRegression(G[probed], yp).predict(G)

COLS = {"ridge": col_ridge, "irt_map": col_irt_map, "irt_eap": col_irt_eap, "neigh5": col_neigh,
        "neigh5cal": col_neigh_cal, "logistic": col_logistic, "ridge_irt": col_ridge_irt}

def order_for(kind: str, F: np.ndarray, n: int, seed: int, budget: int) -> np.ndarray:
    """The first ``budget`` anchor positions of the order ``kind`` (module docstring)."""
    perm = np.random.default_rng(seed).permutation(n)
    if kind == "uniform":
        return perm[:budget]
    if kind == "disagree":  # incumbents' spread, ties in the random order
        v = F.std(1)
        rank = np.lexsort((np.argsort(perm), -v))
        return rank[:budget]
    if kind == "top_wrong":  # prompts where the best incumbents are not all right
        v = -F.max(1) + 0.001 * F.std(1)
        return np.lexsort((np.argsort(perm), v))[:budget]
    raise ValueError(kind)

def run(dataset: str, new: str, seeds: list[int], family: str = "knn", decisions: int | None = None,
        orders=("uniform",), cols=tuple(COLS)) -> list[dict]:
    """Per seed: {variant: (share ratio, true gain, rmse)} and the oracle's (share ratio, true gain)."""
    data = load_dataset(dataset)
    X = load_features(data, None)
    out = []
    for seed in seeds:
        c = onboarding_case(data, X, new, seed, family, decisions)
        names, col, T, obs, pool, last, cl = c.names, c.col, c.T, c.obs, c.pool, c.last, c.cl
        start, window, rest, share_full, live = c.start, c.window, c.rest, c.share_full, c.live
        known = Anchor(X[start], T[start], names).with_llms(pool)
        y = np.nan_to_num(T[:, col[new]])[start]
        F = placement_prompts(live, known).F
        irt = fit_irt(known.Y)
        A_rest, t_rest = obs[rest][:, cl], np.nan_to_num(T[rest][:, cl])
        idx = np.arange(len(rest))
        mu_live = t_rest[idx, greedy_matrix(live.score(X[rest]), A_rest[:, :-1]).argmax(1)].mean()
        def measure(colvals):
            r = live.partial_fit_llms(X[start], colvals, [new])
            share = float(tie_split_share(r.score(X[window]), obs[window][:, cl], len(last) - 1).mean())
            gain = float(t_rest[idx, greedy_matrix(r.score(X[rest]), A_rest).argmax(1)].mean() - mu_live)
            return share / share_full, gain
        row = {"seed": seed, "share_full": share_full}
        row["oracle"] = measure(y)
        for o in orders:
            probed = order_for(o, F, len(start), seed, 200)
            un = np.setdiff1d(np.arange(len(start)), probed)
            for c in cols:
                p = COLS[c](F, probed, y[probed], irt=irt)
                rmse = float(np.sqrt(np.mean((p[un] - y[un]) ** 2)))
                p = p.copy(); p[probed] = y[probed]
                row[f"{o}/{c}"] = measure(p) + (rmse,)
        out.append(row)
        print(seed, " ".join(f"{k}:{v[0]:.2f}/{v[1]:+.4f}" for k, v in row.items() if isinstance(v, tuple)), flush=True)
    return out

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--new-llm", required=True)
    parser.add_argument("--seeds", default="0-9,40-59", help="seed ranges, e.g. 0-9,40-59")
    parser.add_argument("--decisions", type=int, default=None)
    parser.add_argument("--orders", default="uniform,disagree,top_wrong")
    parser.add_argument("--estimators", default=",".join(COLS))
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    seeds = [s for part in args.seeds.split(",") for s in range(int(part.split("-")[0]), int(part.split("-")[-1]) + 1)]
    rows = run(args.dataset, args.new_llm, seeds, decisions=args.decisions, orders=args.orders.split(","),
               cols=tuple(args.estimators.split(",")))
    keys = [k for k in rows[0] if isinstance(rows[0][k], tuple)]
    full = np.array([row["share_full"] for row in rows])
    summ = {}
    for k in keys:
        r, g = np.array([row[k][0] for row in rows]), np.array([row[k][1] for row in rows])
        summ[k] = {"ratio_of_means": float((r * full).mean() / full.mean()), "ge_0.8": int((r >= 0.8).sum()),
                   "gain": float(g.mean()), "rmse": float(np.mean([row[k][2] for row in rows])) if len(rows[0][k]) > 2 else None}
        print(f"{k:22s} ratio of the means {summ[k]['ratio_of_means']:.3f} >=0.8 {summ[k]['ge_0.8']}/{len(rows)} gain {summ[k]['gain']:+.4f}")
    Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summ, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
