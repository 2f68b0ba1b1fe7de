"""Off-policy evaluation and learning from simulated decision logs (recroute.feedback).

For each dataset and pool (the full pool and RouterEval's easy m = 5 groups, seed-42 split):

- OPE: a logging policy (kNN fitted with full information on the train part, epsilon = 0.2 greedy) meets
  prompts drawn with replacement from the test part; n logged decisions (1k .. 50k) x seeds. Each target
  router (fitted once with full information on the train part) is evaluated by DM, IPS, SNIPS, DR and
  Switch-DR; truth = the target's exact mu_o on the test prompts. To bound compute, the targets and the
  reward model (linear) are fitted once per pool (the reward model once per log size, on an independent
  log of the same policy, which keeps DR unbiased); each evaluated log adds its own repeated prompts'
  revealed cells to the reward model leave-one-out (``repeat_means``).
- Learning: the logging kNN is fitted on the validation part (a small earlier deployment) and logs 20,000
  decisions on train prompts; each router is trained on the log (naive = observed cells only, DR
  completion with pseudo-outcomes clipped to [0, 1] (the default), unclipped for the torch routers,
  IPS-weighted for torch routers) and with full information on the train part; V_B on the
  test part (unobserved cells count 0, as in RouterEval).

    python benchmarks/feedback.py                 # both datasets, 20 seeds (about 30 min on 2 shared cores)
    python benchmarks/feedback.py --quick         # mmlu_pro, full pool and one group, 3 seeds

Writes benchmarks/results/feedback.json, feedback.md and feedback_<dataset>.png.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_data import resolve  # noqa: E402  (benchmarks/bench_data.py)

MLP = "mlp:epochs=20,lr=0.001"  # 20 epochs at a larger step: bounded compute on 2 shared cores
TARGETS = ["knn:k=20", "linear", MLP, "cluster", "best_single", "random", "linear@softmax:temperature=0.05"]
LEARNERS = ["linear", MLP, "knn:k=20"]
SIZES = [1000, 2000, 5000, 10000, 20000, 50000]
CURVE_SEEDS = 5  # seeds at the sizes other than GOAL_N (which gets --seeds)
GOAL_N, GOAL_ERR, GOAL_COVER = 20000, 0.01, 0.9
REWARD = "linear"


def embeddings(data) -> np.ndarray:
    if data.embeddings is not None:
        return data.embeddings
    from recroute.encoders import encode_cached, get_encoder

    return np.asarray(encode_cached(get_encoder("minilm"), [str(t) for t in data.texts]), dtype=np.float32)


def pools(data) -> dict[str, np.ndarray | None]:
    from recroute.data.routereval import build_router_dataset

    rd = build_router_dataset(data, {"easy": (5,)})
    out: dict = {"full": None}
    for group, entry in (rd.get("easy", {}).get(5) or {}).items():
        out[f"m5_{group}"] = np.asarray(entry["model"]).astype(str)
    return out


def fit_on(spec: str, data, X, rows):
    from recroute.routers.registry import make_router

    router = make_router(spec)
    router.fit(data.dense(np.nan)[rows], X[rows] if router.needs_features else None)
    return router


def ope_study(data, X, seeds: int, sizes: list[int]) -> tuple[list[dict], list[dict]]:
    from recroute.feedback.ope import ESTIMATORS, decision_terms, estimate, fit_predict_log, parse_target, \
        repeat_means, target_probabilities, true_value
    from recroute.feedback.simulate import fit_logging_policy, population, simulate_bandit, split_positions

    rows, truths = [], []
    train = split_positions(data, "train")
    logging = fit_logging_policy(data, "knn", "epsilon_greedy:epsilon=0.2", split="train", X=X)
    pos, allowed, truth = population(data, "test")
    P_log = logging.probabilities(X[pos], allowed)
    where = np.full(data.n_prompts, -1)
    where[pos] = np.arange(len(pos))
    names, P_t = [], []
    for spec in TARGETS:
        router_spec, policy = parse_target(spec)
        router = fit_on(router_spec, data, X, train)
        probs = target_probabilities(router, X[pos], allowed, policy)
        names.append(spec)
        P_t.append(probs)
        truths.append({"target": spec, "true_mu_o": true_value(probs, truth)})
    P_t = np.stack(P_t)  # (T, N, m)
    true_v = np.array([t["true_mu_o"] for t in truths])
    for n in sizes:
        # the reward model: fitted once per size on an independent log of the same policy and size, predicting
        # every test prompt; each evaluated log then adds its own repeated prompts' revealed cells (leave-one-out)
        reward_log = simulate_bandit(P_log, truth, pos, n, np.random.default_rng([10_000, n]), data.llm_names)
        q_pop = fit_predict_log(REWARD, reward_log, X, pos)
        for seed in range(seeds if n == GOAL_N else min(seeds, CURVE_SEEDS)):
            bandit = simulate_bandit(P_log, truth, pos, n, np.random.default_rng([seed, n]), data.llm_names)
            pick = where[bandit.rows]
            q = repeat_means(bandit, q_pop[pick])
            terms = [decision_terms(bandit, P_t[t][pick], q) for t in range(len(names))]
            for est in ESTIMATORS:
                for t, term in enumerate(terms):
                    out = estimate(term, est, clusters=bandit.rows)
                    rows.append({"target": names[t], "n": n, "seed": seed, "estimator": est,
                                 **{k: float(v) for k, v in out.items()}, "true_mu_o": float(true_v[t])})
    return rows, truths


def learning_study(data, X, seeds: int) -> list[dict]:
    from recroute.eval.metrics import mu_o, v_b
    from recroute.feedback.learn import fit_from_log
    from recroute.feedback.ope import reward_model
    from recroute.feedback.simulate import fit_logging_policy, simulate_arrays, split_positions

    train, test = split_positions(data, "train"), split_positions(data, "test")
    Y_test = data.dense(0.0)[test]
    logging = fit_logging_policy(data, "knn", "epsilon_greedy:epsilon=0.2", split="val", X=X)
    rows = []

    def measure(router, spec, method, seed, seconds):
        choice = np.argmax(router.score(X[test] if router.needs_features else None, n=len(test)), axis=1)
        mu = mu_o(Y_test, choice)
        rows.append({"router": spec, "method": method, "seed": seed, "mu_o": mu, "v_b": v_b(mu, Y_test),
                     "seconds": seconds})

    for spec in LEARNERS:
        t0 = time.perf_counter()
        measure(fit_on(spec, data, X, train), spec, "full_information", -1, time.perf_counter() - t0)
    for seed in range(seeds):
        bandit, _ = simulate_arrays(data, logging, GOAL_N, seed=seed, split="train", X=X)
        t0 = time.perf_counter()
        q = reward_model(bandit, X, REWARD, folds=2, seed=seed)  # shared by the DR fits of this log
        q_seconds = time.perf_counter() - t0
        for spec in LEARNERS:
            torch_router = spec.split(":")[0] in ("linear", "mlp")
            methods = ["naive", "dr"] + (["dr_unclipped", "ips"] if torch_router else [])
            for method in methods:
                t0 = time.perf_counter()
                clip = None if method == "dr_unclipped" else (0.0, 1.0)
                router = fit_from_log(spec, bandit, X, method.replace("_unclipped", ""), q_hat=q, clip=clip, seed=seed)
                measure(router, spec, method, seed, time.perf_counter() - t0 + (q_seconds if "dr" in method else 0))
    return rows


def summarise(ope: pd.DataFrame, learn: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ope = ope.assign(err=ope.value - ope.true_mu_o, covered=(ope.lower <= ope.true_mu_o) & (ope.upper >= ope.true_mu_o))
    curve = (ope.groupby(["dataset", "estimator", "n"])
             .agg(bias=("err", "mean"), rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
                  coverage=("covered", "mean")).reset_index())
    at = ope[(ope.n == GOAL_N) & (ope.estimator == "dr")]
    goal = (at.groupby(["dataset", "pool", "target"])
            .agg(true_mu_o=("true_mu_o", "first"), bias=("err", "mean"),
                 rmse=("err", lambda e: float(np.sqrt(np.mean(e ** 2)))),
                 within=("err", lambda e: float(np.mean(np.abs(e) <= GOAL_ERR))),
                 coverage=("covered", "mean"), seeds=("seed", "nunique")).reset_index())
    goal["met"] = (goal.rmse <= GOAL_ERR) & (goal.coverage >= GOAL_COVER)
    full = learn[learn.method == "full_information"].set_index(["dataset", "pool", "router"]).v_b
    agg = learn[learn.method != "full_information"].groupby(["dataset", "pool", "router", "method"]).v_b.mean().reset_index()
    agg["v_b_full"] = [full[(r.dataset, r.pool, r.router)] for r in agg.itertuples()]
    agg["ratio"] = agg.v_b / agg.v_b_full
    naive = agg[agg.method == "naive"].set_index(["dataset", "pool", "router"]).v_b
    agg["beats_naive"] = [r.v_b > naive[(r.dataset, r.pool, r.router)] if r.method != "naive" else False
                          for r in agg.itertuples()]
    agg["met"] = (agg.ratio >= 0.97) & agg.beats_naive
    return curve, goal, agg


def plot(curve: pd.DataFrame, path: Path, dataset: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    part = curve[curve.dataset == dataset]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for est, g in part.groupby("estimator"):
        axes[0].plot(g.n, g.bias, marker="o", label=est)
        axes[1].plot(g.n, g.rmse, marker="o", label=est)
    for ax, title in zip(axes, ("bias", "RMSE")):
        ax.set_xscale("log")
        ax.set_xlabel("logged decisions")
        ax.set_title(f"{dataset}: {title} of the mu_o estimate")
        ax.axhline(0 if title == "bias" else GOAL_ERR, color="grey", lw=0.8, ls="--")
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(curve, goal, learn, meta) -> str:
    lines = [f"# Off-policy evaluation and learning from logs ({meta['date']})", "",
             f"Shared machine ({meta['machine'].get('cpu')}, {meta['machine'].get('cores')} cores shared with other "
             f"engineers). Logging policy: kNN, epsilon = 0.2 greedy. Reward model: {REWARD}, fitted once per pool and "
             "log size on an independent log of the same policy, plus each log's repeated prompts' revealed cells "
             f"(leave-one-out). Seeds at the other sizes: {CURVE_SEEDS}. "
             f"Seeds: {meta['seeds']}. Seconds: {meta['seconds']:.0f}.", "",
             f"## OPE goal: DR at n = {GOAL_N}, RMSE over seeds <= {GOAL_ERR} and 95 % interval coverage >= {GOAL_COVER:.0%}", "",
             "| dataset | pool | target | true mu_o | bias | RMSE | share within 0.01 | coverage | met |", "|---" * 9 + "|"]
    for r in goal.itertuples():
        lines.append(f"| {r.dataset} | {r.pool} | {r.target} | {r.true_mu_o:.4f} | {r.bias:+.4f} | {r.rmse:.4f} | "
                     f"{r.within:.2f} | {r.coverage:.2f} | {'**yes**' if r.met else 'no'} |")
    lines += ["", "Targets meeting the goal per pool (the goal needs at least 5):", ""]
    for (ds, pool), g in goal.groupby(["dataset", "pool"], sort=False):
        lines.append(f"- {ds} / {pool}: {int(g.met.sum())} of {len(g)}")
    lines += ["", "## Bias and RMSE against the number of logged decisions (all targets and pools)", "",
              "| dataset | estimator | n | bias | RMSE | coverage |", "|---" * 6 + "|"]
    for r in curve.itertuples():
        lines.append(f"| {r.dataset} | {r.estimator} | {r.n} | {r.bias:+.4f} | {r.rmse:.4f} | {r.coverage:.2f} |")
    lines += ["", f"## Learning goal: trained only on {GOAL_N} logged decisions, V_B >= 97 % of full information and "
              "above the naive fit", "", "| dataset | pool | router | method | V_B | V_B full info | ratio | beats naive | met |",
              "|---" * 9 + "|"]
    for r in learn.itertuples():
        lines.append(f"| {r.dataset} | {r.pool} | {r.router} | {r.method} | {r.v_b:.4f} | {r.v_b_full:.4f} | "
                     f"{r.ratio:.3f} | {'yes' if r.beats_naive else 'no'} | {'**yes**' if r.met else 'no'} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="mmlu_pro,llmrouter_nim")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--learn-seeds", type=int, default=2)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "feedback.json")
    args = parser.parse_args()
    from machine import describe_machine
    from recroute.atomic import atomic_file

    start = time.perf_counter()
    datasets = ["mmlu_pro"] if args.quick else args.datasets.split(",")
    seeds = 3 if args.quick else args.seeds
    ope_rows, truth_rows, learn_rows = [], [], []
    for name in datasets:
        data = resolve(name)
        X = embeddings(data)
        groups = pools(data)
        if args.quick:
            groups = dict(list(groups.items())[:2])
        for pool, llms in groups.items():
            sub = data if llms is None else data.subset(llms=list(llms))
            t0 = time.perf_counter()
            ope, truths = ope_study(sub, X, seeds, [GOAL_N] if args.quick else SIZES)
            print(f"{name} {pool}: OPE {time.perf_counter() - t0:.0f} s", flush=True)
            ope_rows += [{"dataset": name, "pool": pool, **r} for r in ope]
            truth_rows += [{"dataset": name, "pool": pool, **r} for r in truths]
            learn = learning_study(sub, X, 1 if args.quick else args.learn_seeds)
            learn_rows += [{"dataset": name, "pool": pool, **r} for r in learn]
            print(f"{name} {pool}: {time.perf_counter() - t0:.0f} s", flush=True)
    ope_df, learn_df = pd.DataFrame(ope_rows), pd.DataFrame(learn_rows)
    curve, goal, learn_sum = summarise(ope_df, learn_df)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": describe_machine(), "seeds": seeds,
            "seconds": time.perf_counter() - start, "sizes": [GOAL_N] if args.quick else SIZES, "targets": TARGETS,
            "learners": LEARNERS, "reward_router": REWARD, "logging": "knn epsilon_greedy:epsilon=0.2",
            "shared_machine": True}
    payload = {"meta": meta, "goal_ope": goal.to_dict("records"), "goal_learning": learn_sum.to_dict("records"),
               "curve": curve.to_dict("records"), "truths": truth_rows, "learning_rows": learn_rows,
               "ope_rows": ope_df.to_dict("records")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(args.out) as tmp:
        tmp.write_text(json.dumps(payload, default=float))
    with atomic_file(args.out.with_suffix(".md")) as tmp:
        tmp.write_text(markdown(curve, goal, learn_sum, meta))
    for name in datasets:
        plot(curve, args.out.parent / f"{args.out.stem}_{name}.png", name)
    print(goal.to_string())
    print(learn_sum.to_string())


if __name__ == "__main__":
    main()
