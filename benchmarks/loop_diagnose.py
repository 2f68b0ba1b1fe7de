"""Goal-3 diagnosis of the routing loop's onboarding, offline (benchmarks/results/loop_onboard.md).

On the stream simulator's own split (``recroute.loop.simulate.stream_order``), the start router (the family
fitted with full information on the anchor) gets the new LLM placed several ways, each from the simulator's
200 uniform anchor probes: ``ridge`` (recroute.loop.onboard.place, what the loop does), ``probes`` (the
probed results only, NaN elsewhere), ``local`` (ridge with the new LLM's mean probe result among the 10
nearest probed prompts as one more input) and ``oracle`` (the new LLM's true results on every anchor
prompt: no budget). For each: its share with ties split (recroute.loop.simulate.tie_split_share) over the
500 decisions ending 2,000 after the arrival, against the full-information router's (fitted on every other
prompt), and its true mu_o gain over the start router on the stream after the arrival.

``--targeted K1``: the power of a two-phase design: K1 uniform anchor probes place the LLM, the other
200 - K1 probe logged prompts (before the arrival) where the candidate picks it, where live's outcome is
known; the standard error of that paired estimate and how often (50 draws) its lower bound passes 0.

``--designs uniform,contested``: instead, each probe design of ``recroute.loop.onboard.onboard_llm`` (the
loop's own onboarding, 200 probes, its gate) on the start router: the gate's estimate, standard error and
lower bound, promoted or not at the default margin and at 0, the placed candidate's true mu_o gain on the
stream after the arrival and its share ratio (ties split).

    python benchmarks/loop_diagnose.py --dataset ../shared/data/llmrouter_nim --new-llm llama-3.1-nemotron-51b-instruct --seeds 10 --json diag.json
    python benchmarks/loop_diagnose.py --dataset ../shared/data/llmrouter_nim --new-llm gemma-2-9b-it --seeds 10 --designs uniform,contested --json designs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loop import load_features  # noqa: E402


@dataclass
class OnboardingCase:
    """One seed's onboarding experiment, as the stream simulator lays it out: the stream (``stream_order``),
    the new LLM added half-way, the share window (the last 500 of the 2,000 decisions after it), the
    full-information router's tie-split share there, and the 5 % start router over the other LLMs."""

    names: list[str]
    col: dict[str, int]
    T: np.ndarray  # float64 (n_prompts, n_llms), NaN unobserved
    obs: np.ndarray
    pool: list[str]  # the LLMs before the new one
    last: list[str]  # pool + [new]
    cl: list[int]  # columns of ``last``
    start: np.ndarray
    stream: np.ndarray
    add_at: int
    window: np.ndarray
    rest: np.ndarray  # the stream from the new LLM's arrival on
    share_full: float
    live: object


def onboarding_case(data, X, new: str, seed: int, family: str, decisions: int | None) -> OnboardingCase:
    """The shared set-up of this module's and loop_placement.py's offline onboarding studies."""
    from recroute.loop.simulate import StreamConfig, _full_router, stream_order, tie_split_share
    from recroute.routers.registry import make_router

    names = [str(n) for n in data.llm_names]
    col = {n: j for j, n in enumerate(names)}
    T = data.dense(np.nan).astype(np.float64)
    obs = ~np.isnan(T)
    pool = [n for n in names if n != new]
    last = pool + [new]
    cl = [col[n] for n in last]
    start, stream = stream_order(obs, StreamConfig(decisions=decisions), np.random.default_rng(seed))
    add_at = int(0.5 * len(stream))
    b = min(len(stream), add_at + 2000)
    window, rest = stream[b - 500:b], stream[add_at:]
    full = _full_router(family, T, obs, np.setdiff1d(np.concatenate([start, stream]), window), last, col, X.__getitem__)
    share_full = float(tie_split_share(full.score(X[window]), obs[window][:, cl], len(last) - 1).mean())
    live = make_router(family).fit(T[start][:, [col[n] for n in pool]].astype(np.float32), X[start])
    live.llm_names_ = np.asarray(pool, dtype=object)
    return OnboardingCase(names, col, T, obs, pool, last, cl, start, stream, add_at, window, rest, share_full, live)


def diagnose_seed(data, X, new: str, seed: int, family: str, decisions: int | None, targeted: int | None) -> dict:
    from scipy.stats import norm

    from recroute.coldstart.estimators import ResultRegression
    from recroute.feedback.policies import greedy_matrix
    from recroute.loop.onboard import place, placement_prompts
    from recroute.loop.refit import Anchor
    from recroute.loop.simulate import tie_split_share

    c = onboarding_case(data, X, new, seed, family, decisions)
    names, col, T, obs, pool, last, cl = c.names, c.col, c.T, c.obs, c.pool, c.last, c.cl
    start, stream, add_at, window, rest, share_full, live = c.start, c.stream, c.add_at, c.window, c.rest, c.share_full, c.live
    logged = stream[:add_at]
    known = Anchor(X[start], T[start], names).with_llms(pool)
    y = np.nan_to_num(T[:, col[new]])
    order = np.random.default_rng(seed).permutation(len(start))  # the simulator's probe order
    probed = order[:200]
    prompts = placement_prompts(live, known)
    A_rest, t_rest = obs[rest][:, cl], np.nan_to_num(T[rest][:, cl])
    idx = np.arange(len(rest))
    mu_live = t_rest[idx, greedy_matrix(live.score(X[rest]), A_rest[:, :-1]).argmax(1)].mean()

    variants = {"ridge": place(live, prompts, probed, y[start][probed], new)}
    only = np.full(len(start), np.nan)
    only[probed] = y[start][probed]
    variants["probes"] = live.partial_fit_llms(X[start], only, [new])
    unit = X[start] / np.linalg.norm(X[start], axis=1, keepdims=True)
    sim = unit @ unit[probed].T
    sim[probed, np.arange(len(probed))] = -np.inf  # a probe never sees itself
    local = y[start][probed][np.argsort(-sim, axis=1)[:, :10]].mean(axis=1)
    F2 = np.column_stack([prompts.F, local])
    pred = ResultRegression(F2[probed], y[start][probed]).predict(F2)
    pred[probed] = y[start][probed]
    variants["local"] = live.partial_fit_llms(X[start], pred, [new])
    variants["oracle"] = live.partial_fit_llms(X[start], y[start], [new])
    out = {"seed": seed, "n_anchor": int(len(start)), "share_full_split": share_full}
    for key, router in variants.items():
        share = float(tie_split_share(router.score(X[window]), obs[window][:, cl], len(last) - 1).mean())
        gain = float(t_rest[idx, greedy_matrix(router.score(X[rest]), A_rest).argmax(1)].mean() - mu_live)
        out[key] = {"share_split": share, "share_ratio_split": share / share_full, "true_gain": gain}
    if targeted:
        k1, k2 = int(targeted), 200 - int(targeted)
        cand = place(live, prompts, order[:k1], y[start][order[:k1]], new)
        A_log = obs[logged][:, cl]
        pick_live = greedy_matrix(live.score(X[logged]), A_log[:, :-1]).argmax(1)
        r_live = np.nan_to_num(T[logged][:, [col[n] for n in pool]][np.arange(len(logged)), pick_live])
        S = np.flatnonzero(greedy_matrix(cand.score(X[logged]), A_log).argmax(1) == len(pool))
        p, z, rng, passes, ses = len(S) / len(logged), float(norm.ppf(0.975)), np.random.default_rng(seed + 1000), 0, []
        for _ in range(50):
            j = rng.choice(S, size=min(k2, len(S)), replace=False)
            d = y[logged][j] - r_live[j]
            se = p * d.std(ddof=1) / np.sqrt(len(j)) * np.sqrt(1 - len(j) / len(S))
            passes += int(p * d.mean() - z * se > 0)
            ses.append(se)
        share = float(tie_split_share(cand.score(X[window]), obs[window][:, cl], len(last) - 1).mean())
        out["targeted"] = {"k1": k1, "k2": k2, "share_picked": p, "se": float(np.mean(ses)), "pass_rate": passes / 50,
                           "share_ratio_split": share / share_full}
    return out


def design_seed(data, X, new: str, seed: int, family: str, decisions: int | None, designs: list[str],
                margin: float = -0.03) -> dict:
    """Per probe design: onboard_llm's gate and the placed candidate's true gain and share (module docstring)."""
    from recroute.feedback.policies import greedy_matrix
    from recroute.loop.onboard import onboard_llm
    from recroute.loop.refit import Anchor
    from recroute.loop.simulate import tie_split_share

    c = onboarding_case(data, X, new, seed, family, decisions)
    names, col, T, obs, last, cl = c.names, c.col, c.T, c.obs, c.last, c.cl
    start, window, rest, share_full, live = c.start, c.window, c.rest, c.share_full, c.live
    anchor = Anchor(X[start], T[start], names)
    truth = np.nan_to_num(T[start][:, col[new]])
    A_rest, t_rest = obs[rest][:, cl], np.nan_to_num(T[rest][:, cl])
    idx = np.arange(len(rest))
    mu_live = t_rest[idx, greedy_matrix(live.score(X[rest]), A_rest[:, :-1]).argmax(1)].mean()
    out = {"seed": seed, "n_anchor": int(len(start)), "share_full_split": share_full}
    for design in designs:
        got = onboard_llm(live, anchor, new, lambda row: float(truth[row]), 200, margin=margin, seed=seed, design=design)
        cand, g = got.candidate, got.gate
        share = float(tie_split_share(cand.score(X[window]), obs[window][:, cl], len(last) - 1).mean())
        gain = float(t_rest[idx, greedy_matrix(cand.score(X[rest]), A_rest).argmax(1)].mean() - mu_live)
        out[design] = {"probes": got.probes, "estimate": g.delta, "se": g.se, "lower": g.lower, "support": g.support,
                       "promote": bool(got.promote), "promote_margin0": bool(g.lower > 0 and g.support >= 10),
                       "true_gain": gain, "share_split": share, "share_ratio_split": share / share_full}
    return out


def design_summary(rows: list[dict], designs: list[str]) -> dict:
    """Per design: share ratio of the means and per seed (all seeds, and promoted ones count as placed,
    refused as 0), promotions, and those lowering the true mu_o, at the default margin and at 0."""
    full = np.array([r["share_full_split"] for r in rows])
    out = {}
    for d in designs:
        g = [r[d] for r in rows]
        gain = np.array([x["true_gain"] for x in g])
        share = np.array([x["share_split"] for x in g])
        res = {"se_mean": float(np.mean([x["se"] for x in g])), "estimate_bias": float(np.mean([x["estimate"] for x in g]) - gain.mean()),
               "gain_mean": float(gain.mean()), "placed_ratio_of_means": float(share.mean() / full.mean()),
               "placed_ge_0.8": int(sum(x["share_ratio_split"] >= 0.8 for x in g))}
        for key in ("promote", "promote_margin0"):
            on = np.array([x[key] for x in g])
            served = np.where(on, share, 0.0)
            res[key] = {"promoted": int(on.sum()), "lowering": int(np.sum(on & (gain < 0))),
                        "ratio_of_means": float(served.mean() / full.mean()),
                        "ge_0.8": int(np.sum(served / full >= 0.8))}
        out[d] = res
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--new-llm", required=True)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--family", default="knn")
    parser.add_argument("--decisions", type=int, default=None)
    parser.add_argument("--targeted", type=int, default=None, help="K1 uniform probes, 200 - K1 targeted")
    parser.add_argument("--designs", default=None, help="comma-separated probe designs of onboard_llm to compare")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    from recroute.data.catalog import load_dataset

    data = load_dataset(args.dataset)
    X = load_features(data, None)
    rows = []
    if args.designs:
        designs = args.designs.split(",")
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows.append(design_seed(data, X, args.new_llm, seed, args.family, args.decisions, designs))
            print(seed, " ".join(f"{d}: est {rows[-1][d]['estimate']:+.4f} se {rows[-1][d]['se']:.4f} lower {rows[-1][d]['lower']:+.4f} "
                                 f"true {rows[-1][d]['true_gain']:+.4f} ratio {rows[-1][d]['share_ratio_split']:.2f}" for d in designs), flush=True)
        summary = design_summary(rows, designs)
        Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "rows": rows}, indent=1))
        print(json.dumps(summary, indent=1))
        return
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        rows.append(diagnose_seed(data, X, args.new_llm, seed, args.family, args.decisions, args.targeted))
        r = rows[-1]
        print(seed, " ".join(f"{k} {r[k]['share_ratio_split']:.2f}/{r[k]['true_gain']:+.4f}" for k in ("ridge", "probes", "local", "oracle")),
              "" if "targeted" not in r else f"targeted se {r['targeted']['se']:.4f} pass {r['targeted']['pass_rate']:.2f}", flush=True)
    summary = {k: {"ratio_mean": float(np.mean([r[k]["share_ratio_split"] for r in rows])),
                   "ratio_min": float(np.min([r[k]["share_ratio_split"] for r in rows])),
                   "ratio_ge_0.8": int(sum(r[k]["share_ratio_split"] >= 0.8 for r in rows)),
                   "gain_mean": float(np.mean([r[k]["true_gain"] for r in rows]))} for k in ("ridge", "probes", "local", "oracle")}
    Path(args.json).write_text(json.dumps({"args": vars(args), "summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
