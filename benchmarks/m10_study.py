"""Why routers stay at V_B ≈ 1.00 on MMLU-Pro's hard pools (m = 10), and what the unused information adds.

RouterEval's protocol on MMLU-Pro (seed-42 split 80/10/10, candidate groups easy m = 3, 5 and hard
m = 10; V_B = mu_o / best single LLM of the pool on test). The per-LLM routers below are fitted once
on all 31 LLMs' training columns (a per-LLM model of LLM j sees only column j, so it equals a fit on
any pool holding j); the models that use the *other* LLMs' results (the full training matrix that
RouterEval leaves unused) say so. Every choice (a regulariser, a margin, which model) is read off the
validation part; the test part only reports.

What it measures:
  diagnose   per m = 10 pool: the best single's lead, per-LLM calibration (log loss, Brier, ECE,
             AUC, discordant-pair AUC against the best single) of each model, where routed choices
             win and lose against the best single, and the signal a router would need for V_B = 1.05
             (a noisy-truth router swept until it reaches it)
  models     per-LLM logistic (the `logistic` family), + category one-hot, + kNN means of all 31
             LLMs' results, a low-rank IRT of the full training matrix (factors predicted from the
             features), gradient-boosted trees (HistGradientBoosting), pairwise "j beats the pool's
             best single" models, per-category and k-means priors, the two-tower per pool (and with
             the category one-hot), blends, a margin for the best single chosen on validation, and a
             ceiling that is not a router (the other LLMs' true results on the prompt)
  --cv       the m = 10 pools by 5-fold cross-validation over training + validation (no test prompt)
  --protocol a router spec through RouterEval's protocol with the category one-hot among its features
  --render   benchmarks/results/m10_study.md / .json from a run's JSON and the CV's

    python benchmarks/m10_study.py --seeds 0,1,2 --out benchmarks/_scratch/m10_study_raw.json
    python benchmarks/m10_study.py --cv --out benchmarks/_scratch/m10_cv.json
    python benchmarks/m10_study.py --protocol stack --seeds 0,1,2      # appends m10_protocol_runs.jsonl
    python benchmarks/m10_study.py --render benchmarks/_scratch/m10_study_raw.json benchmarks/_scratch/m10_cv.json

Predictions are cached in benchmarks/_scratch/m10/ (one .npz per model and seed), so a rerun only
evaluates. Run it niced on the shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
SCRATCH = HERE / "_scratch" / "m10"
RESULTS = HERE / "results"
ENCODER = "minilm-onnx+lexical"
MINILM_DIM = 384


# ---------------------------------------------------------------------- the setup
@dataclass
class Setup:
    """MMLU-Pro in RouterEval's sorted order: Y (n, 31) 0/1, X (n, d) MiniLM+lexical, tasks (n,),
    names (31,), split index arrays, and the groups [(setting, m, group, cols (m,))]."""

    Y: np.ndarray
    X: np.ndarray
    tasks: np.ndarray
    names: np.ndarray
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    groups: list


def load_setup() -> Setup:
    from bench_data import resolve
    from recroute.data.routereval import build_router_dataset, sorted_prompt_order
    from recroute.eval.protocol import build_settings, dataset_embeddings

    data = resolve("mmlu_pro")
    SCRATCH.mkdir(parents=True, exist_ok=True)
    feats = SCRATCH / "features.npz"
    if feats.exists():
        X = np.load(feats)["X"]
    else:
        X = dataset_embeddings(data, encoder=ENCODER, fit_seed=42)  # lexical part fitted on training prompts
        np.savez(feats, X=X)
    rd = build_router_dataset(data, build_settings(("easy", "hard")), seed=42)
    order = sorted_prompt_order(data)
    llm_order = np.argsort(data.llm_names.astype(str), kind="stable")
    d = data.subset(prompts=order, llms=llm_order)
    names = d.llm_names.astype(str)
    index = {n: i for i, n in enumerate(names)}
    groups = []
    for setting in ("easy", "hard"):
        for m in sorted(rd.get(setting) or {}):
            for g in ("all_strong", "all_weak", "strong_to_weak"):
                entry = rd[setting][m][g]
                groups.append((setting, int(m), g, np.array([index[str(n)] for n in entry["model"]])))
    si = rd["split_index"]
    return Setup(d.dense(fill=0.0).astype(np.float64), np.asarray(X, dtype=np.float32)[order],
                 d.prompts["task"].astype(str).to_numpy(), names,
                 si["train_indices"], si["val_indices"], si["test_indices"], groups)


# ---------------------------------------------------------------------- metrics
def v_b(Y: np.ndarray, choice: np.ndarray) -> float:
    """mu_o / best column mean (RouterEval's V_B) for Y (n, m) and choice (n,)."""
    return float(Y[np.arange(len(Y)), choice].mean() / Y.mean(axis=0).max())


def log_loss(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Per-column mean log loss of P (n, m) against 0/1 Y (n, m): (m,)."""
    P = np.clip(P, 1e-6, 1 - 1e-6)
    return -(Y * np.log(P) + (1 - Y) * np.log(1 - P)).mean(axis=0)


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of p (n,) against y (n,)."""
    order = np.argsort(p)
    return float(sum(abs(p[i].mean() - y[i].mean()) * len(i) for i in np.array_split(order, bins)) / len(p))


def auc(s: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.mean() < 1 else float("nan")


def pair_auc(s_j: np.ndarray, s_b: np.ndarray, y_j: np.ndarray, y_b: np.ndarray) -> float:
    """Among prompts where exactly one of j and b is right: AUC of s_j - s_b for "j right"."""
    disc = y_j != y_b
    return auc((s_j - s_b)[disc], y_j[disc]) if disc.sum() > 1 else float("nan")


# ---------------------------------------------------------------------- per-LLM models (all 31 columns)
def cached(name: str, seed: int, make) -> dict:
    """{"val": (n_val, 31), "test": (n_test, 31)[, ...]} from the cache, else ``make()`` saved there."""
    path = SCRATCH / f"{name}_s{seed}.npz"
    if path.exists():
        return dict(np.load(path))
    start = time.perf_counter()
    out = make()
    out["fit_seconds"] = np.array(time.perf_counter() - start)
    out["load"] = np.array(os.getloadavg()[0])
    np.savez(path, **out)
    return out


def fit_logistic(F_tr: np.ndarray, Y_tr: np.ndarray, parts: list[np.ndarray], C: float) -> list[np.ndarray]:
    """Per-column L2 logistic regression (the `logistic` family): P for each array of ``parts``."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    outs = [np.zeros((len(p), Y_tr.shape[1])) for p in parts]
    with threadpool_limits(1):
        for j in range(Y_tr.shape[1]):
            fit = LogisticRegression(C=C, max_iter=1000).fit(F_tr, Y_tr[:, j].astype(int))
            for o, p in zip(outs, parts):
                o[:, j] = fit.predict_proba(p)[:, 1]
    return outs


def fit_hgb(F_tr: np.ndarray, Y_tr: np.ndarray, parts: list[np.ndarray], seed: int, **kw) -> list[np.ndarray]:
    """Per-column HistGradientBoostingClassifier (early stopping on 10 % of the training prompts)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    outs = [np.zeros((len(p), Y_tr.shape[1])) for p in parts]
    params = dict(learning_rate=0.05, max_iter=400, max_leaf_nodes=15, min_samples_leaf=40, l2_regularization=1.0,
                  early_stopping=True, validation_fraction=0.1, n_iter_no_change=20, random_state=seed)
    params.update(kw)
    for j in range(Y_tr.shape[1]):
        fit = HistGradientBoostingClassifier(**params).fit(F_tr, Y_tr[:, j].astype(int))
        for o, p in zip(outs, parts):
            o[:, j] = fit.predict_proba(p)[:, 1]
    return outs


def knn_means(E: np.ndarray, train: np.ndarray, Y: np.ndarray, k: int = 50) -> np.ndarray:
    """(n, 31): each prompt's similarity-weighted mean of all LLMs' results over its k nearest
    training prompts (cosine on MiniLM; a training prompt never counts itself)."""
    Etr = E[train]
    out = np.zeros((len(E), Y.shape[1]))
    pos = np.full(len(E), -1)
    pos[train] = np.arange(len(train))
    for a in range(0, len(E), 1024):
        S = E[a:a + 1024] @ Etr.T
        rows = np.arange(a, min(a + 1024, len(E)))
        own = pos[rows] >= 0
        S[np.flatnonzero(own), pos[rows][own]] = -np.inf
        idx = np.argpartition(-S, k, axis=1)[:, :k]
        w = np.maximum(np.take_along_axis(S, idx, 1), 0) + 1e-6
        out[rows] = np.einsum("nk,nkl->nl", w, Y[train][idx]) / w.sum(1, keepdims=True)
    return out


def fit_irt_full(Y_tr: np.ndarray, rank: int, seed: int, l2: float = 1e-3, steps: int = 400):
    """Low-rank logistic IRT of the full training matrix: P_ij = σ(θ_i·a_j + b_j).

    Returns (theta (n_train, rank), a (31, rank), b (31,)); full-batch Adam, L2 on θ and a."""
    import torch

    torch.manual_seed(seed)
    Yt = torch.tensor(Y_tr, dtype=torch.float32)
    theta = torch.nn.Parameter(0.1 * torch.randn(Y_tr.shape[0], rank))
    a = torch.nn.Parameter(0.1 * torch.randn(Y_tr.shape[1], rank))
    p = Y_tr.mean(0).clip(1e-3, 1 - 1e-3)
    b = torch.nn.Parameter(torch.tensor(np.log(p / (1 - p)), dtype=torch.float32))
    opt = torch.optim.Adam([theta, a, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        z = theta @ a.T + b
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z, Yt) + l2 * (theta.pow(2).sum(1).mean() + a.pow(2).sum(1).mean())
        loss.backward()
        opt.step()
    return theta.detach().numpy().astype(np.float64), a.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


def crossfit_ridge(F: np.ndarray, train: np.ndarray, T: np.ndarray, alpha: float, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n, r) ridge predictions of the training targets T (n_train, r) for every prompt; a training prompt's
    prediction comes from the folds that do not hold it (so downstream fits see test-like noise)."""
    from sklearn.linear_model import Ridge

    out = np.zeros((len(F), T.shape[1]))
    rest = np.setdiff1d(np.arange(len(F)), train)
    out[rest] = Ridge(alpha=alpha).fit(F[train], T).predict(F[rest]).reshape(len(rest), -1)
    fold = np.random.RandomState(seed).randint(folds, size=len(train))
    for f in range(folds):
        out[train[fold == f]] = Ridge(alpha=alpha).fit(F[train[fold != f]], T[fold != f]).predict(F[train[fold == f]]).reshape(-1, T.shape[1])
    return out


def task_onehot(tasks: np.ndarray) -> np.ndarray:
    names = np.unique(tasks)
    return (tasks[:, None] == names[None, :]).astype(np.float32)


def task_prior(S: Setup, shrink: float = 20.0) -> np.ndarray:
    """(n, 31): per-task training mean of each LLM, shrunk toward its overall mean by ``shrink`` prompts.
    A dataset without a task field (one task) gives the overall means: the best single."""
    Ytr, ttr = S.Y[S.train], S.tasks[S.train]
    overall = Ytr.mean(0)
    out = np.tile(overall, (len(S.Y), 1))
    for t in np.unique(S.tasks):
        rows = ttr == t
        out[S.tasks == t] = (Ytr[rows].sum(0) + shrink * overall) / (rows.sum() + shrink)
    return out


def per_llm_models(S: Setup, seeds: list[int], quick: bool = False) -> dict[str, dict[int, dict]]:
    """Every per-LLM model's P (val, test) over the 31 LLMs, per seed (deterministic ones: seed 0 only)."""
    tr, va, te = S.train, S.val, S.test
    Y_tr = S.Y[tr]
    X = S.X
    E = X[:, :MINILM_DIM]
    T1 = task_onehot(S.tasks)
    parts = lambda F: [F[va], F[te]]  # noqa: E731
    models: dict[str, dict[int, dict]] = {}

    def add(name, seed, fn):
        models.setdefault(name, {})[seed] = cached(name, seed, fn)

    for C in (0.3, 1.0, 3.0):
        add(f"logistic_C{C}", 0, lambda C=C: dict(zip(("val", "test"), fit_logistic(X[tr], Y_tr, parts(X), C))))
    add("task_prior", 0, lambda: dict(zip(("val", "test"), parts(task_prior(S)))))

    def kmeans_prior(k: int = 30) -> dict:  # the same prior on k-means clusters of MiniLM: no task field needed
        from sklearn.cluster import KMeans
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            labels = KMeans(k, random_state=0, n_init="auto").fit(E[tr]).predict(E)
        return dict(zip(("val", "test"), parts(task_prior(Setup(S.Y, S.X, labels.astype(str), S.names, tr, va, te, [])))))
    add("kmeans30_prior", 0, kmeans_prior)
    XT = np.hstack([X, T1])
    add("logistic+task", 0, lambda: dict(zip(("val", "test"), fit_logistic(XT[tr], Y_tr, parts(XT), 1.0))))
    K = cached("knn31_features", 0, lambda: {"K": knn_means(E, tr, S.Y)})["K"]
    XK = np.hstack([X, K])
    add("logistic+knn31", 0, lambda: dict(zip(("val", "test"), fit_logistic(XK[tr], Y_tr, parts(XK), 1.0))))
    # the full training matrix: low-rank IRT factors, predicted from the features (cross-fitted)
    for rank in (1, 4):
        def irt(rank=rank):
            theta, a, b = fit_irt_full(Y_tr, rank, 0)
            th = crossfit_ridge(XT, tr, theta, alpha=1.0)
            direct = 1 / (1 + np.exp(-(th @ a.T + b)))
            F = np.hstack([XT, th, K])
            lv, lt = fit_logistic(F[tr], Y_tr, parts(F), 1.0)
            return {"val": direct[va], "test": direct[te], "feat_val": lv, "feat_test": lt, "theta_hat": th}
        out = cached(f"irt_full_r{rank}", 0, irt)
        models.setdefault(f"irt_full_r{rank}", {})[0] = {"val": out["val"], "test": out["test"]}
        models.setdefault(f"logistic+irt_r{rank}+knn31", {})[0] = {"val": out["feat_val"], "test": out["feat_test"]}
    # gradient-boosted trees on compact features (PCA of MiniLM, the lexical block, task, kNN means)
    from sklearn.decomposition import PCA

    pca = PCA(32, random_state=0).fit(E[tr])
    H = np.hstack([pca.transform(E), X[:, MINILM_DIM:], T1, K])
    for seed in (seeds[:1] if quick else seeds):
        add("hgb", seed, lambda seed=seed: dict(zip(("val", "test"), fit_hgb(H[tr], Y_tr, parts(H), seed))))
    return models


# ---------------------------------------------------------------------- group models
def two_tower_group(S: Setup, cols: np.ndarray, key: str, seed: int, with_task: bool = False) -> dict:
    """The `two_tower` family (the stack's usual choice) fitted on one pool: P (val, test).
    ``with_task``: the features carry the category one-hot too (what an encoder could append)."""
    from recroute.routers.registry import make_router

    F = np.hstack([S.X, task_onehot(S.tasks)]) if with_task else S.X

    def make():
        r = make_router(f"two_tower:random_state={seed}").fit(S.Y[S.train][:, cols], X=F[S.train])
        return {"val": r.score(F[S.val]), "test": r.score(F[S.test])}
    return cached(f"two_tower{'_task' if with_task else ''}_{key}", seed, make)


def pairwise_group(S: Setup, cols: np.ndarray, b: int, key: str, F: np.ndarray, C: float = 1.0) -> dict:
    """Per non-best LLM j of the pool: a 3-class logistic model of sign(Y_j − Y_b) (b: the pool's
    best single on training); gain_j = P(j right, b wrong) − P(j wrong, b right), gain_b = 0."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    def make():
        out = {"val": np.zeros((len(S.val), len(cols))), "test": np.zeros((len(S.test), len(cols)))}
        with threadpool_limits(1):
            for jj, j in enumerate(cols):
                if j == cols[b]:
                    continue
                d = (S.Y[S.train, j] - S.Y[S.train, cols[b]]).astype(int)
                fit = LogisticRegression(C=C, max_iter=1000).fit(F[S.train], d)
                cls = list(fit.classes_)
                for part, rows in (("val", S.val), ("test", S.test)):
                    pr = fit.predict_proba(F[rows])
                    out[part][:, jj] = (pr[:, cls.index(1)] if 1 in cls else 0) - (pr[:, cls.index(-1)] if -1 in cls else 0)
        return out
    return cached(f"pairwise_{key}", 0, make)


def ceiling_group(S: Setup, cols: np.ndarray, key: str, C: float = 1.0) -> dict:
    """NOT a router (a ceiling): per pool LLM, a logistic model on the prompt features plus the true
    results of every LLM outside the pool on the same prompt, test prompts included. It bounds what
    any prompt-difficulty / latent-factor model of the full matrix could add: the factors it would
    predict from the features are here observed exactly, from 31 − m other LLMs."""
    others = np.setdiff1d(np.arange(S.Y.shape[1]), cols)
    F = np.hstack([S.X, S.Y[:, others]])

    def make():
        v, t = fit_logistic(F[S.train], S.Y[S.train][:, cols], [F[S.val], F[S.test]], C)
        return {"val": v, "test": t}
    return cached(f"ceiling_others_{key}", 0, make)


# ---------------------------------------------------------------------- evaluation
def choose(P: np.ndarray, b: int, margin: float = 0.0) -> np.ndarray:
    """argmax of P (n, m) with ``margin`` added to the best single's column b (ties: first)."""
    Q = P.copy()
    Q[:, b] += margin
    return np.argmax(Q, axis=1)


BLEND_WEIGHTS = (0.25, 0.5, 0.75)
MARGINS = (-0.02, 0.0, 0.01, 0.02, 0.03, 0.05, 0.08)


def evaluate(S: Setup, P_val: np.ndarray, P_test: np.ndarray, cols: np.ndarray, b: int, pairwise: bool = False) -> dict:
    """One model on one pool: val/test V_B of the argmax, the margin for b chosen on val and its test V_B,
    per-LLM calibration on test, and where the choices differ from b (wins/losses per LLM)."""
    Yv, Yt = S.Y[S.val][:, cols], S.Y[S.test][:, cols]
    out = {"val_v_b": v_b(Yv, choose(P_val, b)), "test_v_b": v_b(Yt, choose(P_test, b))}
    vals = [v_b(Yv, choose(P_val, b, mg)) for mg in MARGINS]
    best = MARGINS[int(np.argmax(vals))]
    out.update(margin=best, val_v_b_margin=max(vals), test_v_b_margin=v_b(Yt, choose(P_test, b, best)))
    c = choose(P_test, b)
    moved = c != b
    yc, yb = Yt[np.arange(len(Yt)), c], Yt[:, b]
    out.update(moved_share=float(moved.mean()), wins=int(((yc == 1) & (yb == 0)).sum()), losses=int(((yc == 0) & (yb == 1)).sum()),
               test_v_b_se=float(np.std(yc - yb) / np.sqrt(len(yc)) / Yt.mean(axis=0).max()))  # paired SE of V_B − V_B(b)
    out["per_llm"] = [{"llm": str(S.names[j]), "chosen": int((c == jj).sum()),
                       "wins": int(((c == jj) & (Yt[:, jj] == 1) & (yb == 0)).sum()),
                       "losses": int(((c == jj) & (Yt[:, jj] == 0) & (yb == 1)).sum())} for jj, j in enumerate(cols)]
    if not pairwise:
        ll = log_loss(P_val, Yv)
        out["val_log_loss"] = float(ll.mean())
        out["calibration"] = [{"llm": str(S.names[j]), "test_mean": float(Yt[:, jj].mean()),
                               "log_loss": float(log_loss(P_test[:, [jj]], Yt[:, [jj]])[0]),
                               "brier": float(np.mean((P_test[:, jj] - Yt[:, jj]) ** 2)),
                               "ece": ece(P_test[:, jj], Yt[:, jj]), "auc": auc(P_test[:, jj], Yt[:, jj]),
                               "pair_auc_vs_best": pair_auc(P_test[:, jj], P_test[:, b], Yt[:, jj], yb) if jj != b else float("nan")}
                              for jj, j in enumerate(cols)]
        out["cell_auc"] = auc(P_test.ravel(), Yt.ravel())
    return out


def needed_signal(S: Setup, cols: np.ndarray, b: int, draws: int = 10) -> list[dict]:
    """A noisy-truth router s_ij = logit(p̄_j) + d·Y_ij + N(0, 1) (p̄: the training means) on the test
    prompts, as d grows: its V_B (argmax), its V_B with the best margin for b in logit units (the best
    of a grid, chosen on test: a bound on what a decision rule adds), its per-LLM AUC (Φ(d/√2)) and its
    discordant-pair AUC against b (mean over the pool's other LLMs)."""
    from scipy.stats import norm

    Yt = S.Y[S.test][:, cols]
    p = S.Y[S.train][:, cols].mean(0).clip(1e-3, 1 - 1e-3)
    base = np.log(p / (1 - p))
    rng = np.random.RandomState(0)
    rows = []
    for d in np.round(np.arange(0.0, 2.01, 0.1), 2):
        vbs, vbm, paucs = [], [], []
        for _ in range(draws):
            s = base + d * Yt + rng.randn(*Yt.shape)
            vbs.append(v_b(Yt, np.argmax(s, 1)))
            vbm.append(max(v_b(Yt, choose(s, b, mg)) for mg in np.arange(0.0, 3.01, 0.25)))
            paucs.append(np.nanmean([pair_auc(s[:, j], s[:, b], Yt[:, j], Yt[:, b]) for j in range(len(cols)) if j != b]))
        rows.append({"d": float(d), "v_b": float(np.mean(vbs)), "v_b_best_margin": float(np.mean(vbm)),
                     "llm_auc": float(norm.cdf(d / np.sqrt(2))), "pair_auc": float(np.mean(paucs))})
    return rows


def needed_at(curves: list[list[dict]], target: float, field: str) -> dict | None:
    """The signal at which the mean over groups of ``field`` first reaches ``target`` (linear
    interpolation between grid points of d): {d, llm_auc, pair_auc (means over groups)}."""
    d = np.array([r["d"] for r in curves[0]])
    mean = np.mean([[r[field] for r in c] for c in curves], axis=0)
    hit = np.flatnonzero(mean >= target)
    if not hit.size:
        return None
    i = int(hit[0])
    t = 0.0 if i == 0 else (target - mean[i - 1]) / (mean[i] - mean[i - 1])
    lerp = lambda key: float(np.mean([c[max(i - 1, 0)][key] + t * (c[i][key] - c[max(i - 1, 0)][key]) for c in curves]))  # noqa: E731
    return {"d": float(d[max(i - 1, 0)] + t * (d[i] - d[max(i - 1, 0)])), "llm_auc": lerp("llm_auc"), "pair_auc": lerp("pair_auc")}


def group_key(g) -> str:
    return f"{g[0]}_m{g[1]}_{g[2]}"


def run(S: Setup, seeds: list[int], quick: bool, families: list[str]) -> dict:
    models = per_llm_models(S, seeds, quick)
    results: dict = {"groups": {}, "models": sorted(models) + ["two_tower", "pairwise_logistic", "pairwise_logistic+knn31"]}
    K = np.load(SCRATCH / "knn31_features_s0.npz")["K"]
    for g in S.groups:
        key = group_key(g)
        cols = g[3]
        Ytr = S.Y[S.train][:, cols]
        b = int(np.argmax(Ytr.mean(0)))
        Yt = S.Y[S.test][:, cols]
        entry = {"llms": [str(S.names[j]) for j in cols], "best_single": str(S.names[cols[b]]),
                 "test_means": Yt.mean(0).round(4).tolist(), "oracle_v_b": float(Yt.max(1).mean() / Yt.mean(0).max()),
                 "lead_over_second": float(np.sort(Yt.mean(0))[-1] - np.sort(Yt.mean(0))[-2]),
                 "train_best_is_test_best": bool(b == int(np.argmax(Yt.mean(0)))), "models": {}}
        if g[1] == 10:
            entry["needed_signal"] = needed_signal(S, cols, b)
        for name, per_seed in models.items():
            entry["models"][name] = {s: evaluate(S, o["val"][:, cols], o["test"][:, cols], cols, b) for s, o in per_seed.items()}
        if "two_tower" in families:
            entry["models"]["two_tower"] = {}
            for s in (seeds[:1] if quick else seeds):
                o = two_tower_group(S, cols, key, s)
                entry["models"]["two_tower"][s] = evaluate(S, o["val"], o["test"], cols, b)
        if "two_tower" in families:  # the two-tower blended with the category prior: (1 − w)·P_tt + w·P_task
            prior = models["task_prior"][0]
            for w in BLEND_WEIGHTS:
                entry["models"][f"blend_two_tower+task_prior_w{w}"] = {
                    s: evaluate(S, (1 - w) * o["val"] + w * prior["val"][:, cols], (1 - w) * o["test"] + w * prior["test"][:, cols], cols, b)
                    for s in entry["models"]["two_tower"] for o in [two_tower_group(S, cols, key, s)]}
        if "two_tower_task" in families:
            o = two_tower_group(S, cols, key, 0, with_task=True)
            entry["models"]["two_tower+task"] = {0: evaluate(S, o["val"], o["test"], cols, b)}
        if "ceiling" in families:
            o = ceiling_group(S, cols, key)
            entry["models"]["ceiling_other_llms_true"] = {0: evaluate(S, o["val"], o["test"], cols, b)}
        if "pairwise" in families:
            for label, F in (("pairwise_logistic", S.X), ("pairwise_logistic+knn31", np.hstack([S.X, K]))):
                o = pairwise_group(S, cols, b, f"{label}_{key}", F)
                entry["models"][label] = {0: evaluate(S, o["val"], o["test"], cols, b, pairwise=True)}
        results["groups"][key] = entry
        print(key, "done", flush=True)
    return results


# ---------------------------------------------------------------------- cross-validation (no test prompt)
def cv_m10(S: Setup, folds: int = 5, families: tuple[str, ...] = ("logistic", "task_prior", "kmeans30_prior", "hgb",
                                                                 "two_tower", "two_tower_task", "ceiling")) -> dict:
    """m = 10 pools measured by ``folds``-fold cross-validation over the training + validation prompts
    (10,823; the test part is never touched): out-of-fold P per model, then per pool the V_B of its
    argmax over every prompt, with the paired SE against the pool's best single (best training mean).
    About 9 × the prompts of the validation part, so a third of its noise."""
    rows_all = np.concatenate([S.train, S.val])
    fold = np.random.RandomState(0).randint(folds, size=len(rows_all))
    K = np.load(SCRATCH / "knn31_features_s0.npz")["K"]  # noqa: F841  (kept for symmetry with the models)
    E = S.X[:, :MINILM_DIM]
    out: dict = {}
    hard = [g for g in S.groups if g[1] == 10]

    def oof_all(name, fit):  # fit(train_rows, test_rows) -> (len(test_rows), 31)
        def make():
            P = np.zeros((len(rows_all), S.Y.shape[1]))
            for f in range(folds):
                P[fold == f] = fit(rows_all[fold != f], rows_all[fold == f])
            return {"P": P}
        return cached(f"cv_{name}", 0, make)["P"]

    def prior_fit(labels):
        def fit(a, t, shrink=20.0):
            Ya, ov = S.Y[a], S.Y[a].mean(0)
            P = np.tile(ov, (len(t), 1))
            for c in np.unique(labels):
                r = labels[a] == c
                P[labels[t] == c] = (Ya[r].sum(0) + shrink * ov) / (r.sum() + shrink)
            return P
        return fit

    preds: dict[str, dict] = {}
    if "logistic" in families:
        P = oof_all("logistic_C0.3", lambda a, t: fit_logistic(S.X[a], S.Y[a], [S.X[t]], 0.3)[0])
        preds["logistic_C0.3"] = {ms: P[:, g[3]] for ms, g in ((group_key(g), g) for g in hard)}
    if "task_prior" in families:
        P = oof_all("task_prior", prior_fit(np.unique(S.tasks, return_inverse=True)[1]))
        preds["task_prior"] = {group_key(g): P[:, g[3]] for g in hard}
    if "kmeans30_prior" in families:
        def km(a, t):
            from sklearn.cluster import KMeans
            from threadpoolctl import threadpool_limits
            with threadpool_limits(1):
                lab = KMeans(30, random_state=0, n_init="auto").fit(E[a]).predict(E)
            return prior_fit(lab)(a, t)
        P = oof_all("kmeans30_prior", km)
        preds["kmeans30_prior"] = {group_key(g): P[:, g[3]] for g in hard}
    if "hgb" in families:
        from sklearn.decomposition import PCA

        def hgb(a, t):
            pca = PCA(32, random_state=0).fit(E[a])
            H = np.hstack([pca.transform(E), S.X[:, MINILM_DIM:], task_onehot(S.tasks)])
            return fit_hgb(H[a], S.Y[a], [H[t]], 0)[0]
        P = oof_all("hgb", hgb)
        preds["hgb"] = {group_key(g): P[:, g[3]] for g in hard}
    for fam in ("two_tower", "two_tower_task", "ceiling"):
        if fam not in families:
            continue
        preds[fam] = {}
        for g in hard:
            cols = g[3]
            others = np.setdiff1d(np.arange(S.Y.shape[1]), cols)

            def fit(a, t, cols=cols, others=others, fam=fam):
                if fam == "ceiling":
                    F = np.hstack([S.X, S.Y[:, others]])
                    return fit_logistic(F[a], S.Y[a][:, cols], [F[t]], 1.0)[0]
                from recroute.routers.registry import make_router
                F = np.hstack([S.X, task_onehot(S.tasks)]) if fam == "two_tower_task" else S.X
                r = make_router("two_tower:random_state=0").fit(S.Y[a][:, cols], X=F[a])
                return r.score(F[t])

            def make(fit=fit):
                P = np.zeros((len(rows_all), len(cols)))
                for f in range(folds):
                    P[fold == f] = fit(rows_all[fold != f], rows_all[fold == f])
                return {"P": P}
            preds[fam][group_key(g)] = cached(f"cv_{fam}_{group_key(g)}", 0, make)["P"]
    if "two_tower" in preds and "task_prior" in preds:  # the blend at a fixed w = 0.5 (not tuned here)
        preds["blend_two_tower+task_prior_w0.5"] = {k: 0.5 * preds["two_tower"][k] + 0.5 * preds["task_prior"][k] for k in preds["two_tower"]}
    for name, per_group in preds.items():
        out[name] = {}
        for g in hard:
            key, cols = group_key(g), g[3]
            Yg = S.Y[rows_all][:, cols]
            b = int(np.argmax(S.Y[S.train][:, cols].mean(0)))
            c = np.argmax(per_group[key], axis=1)
            diff = Yg[np.arange(len(Yg)), c] - Yg[:, b]
            out[name][key] = {"v_b": v_b(Yg, c), "se": float(diff.std() / np.sqrt(len(diff)) / Yg.mean(0).max()),
                              "moved_share": float((c != b).mean()), "wins": int((diff > 0).sum()), "losses": int((diff < 0).sum())}
        out[name]["mean"] = float(np.mean([out[name][group_key(g)]["v_b"] for g in hard]))
        if "two_tower" in preds:  # the mean over pools of V_B − the two-tower's, with its paired SE
            diffs = []
            for g in hard:
                Yg = S.Y[rows_all][:, g[3]]
                mine, tt = (Yg[np.arange(len(Yg)), np.argmax(P[group_key(g)], axis=1)] for P in (per_group, preds["two_tower"]))
                diffs.append((mine - tt) / Yg.mean(0).max())
            D = np.mean(diffs, axis=0)
            out[name]["minus_two_tower"] = {"mean": float(D.mean()), "se": float(D.std() / np.sqrt(len(D)))}
        print("cv", name, round(out[name]["mean"], 4), flush=True)
    return out


# ---------------------------------------------------------------------- the protocol with the category as a feature
PROTOCOL_RUNS = RESULTS / "m10_protocol_runs.jsonl"


def protocol_run(spec: str, seed: int, setting: str, with_task: bool) -> list[dict]:
    """``spec`` (seeded) through RouterEval's protocol (``evaluate_dataset``) on MMLU-Pro with the
    ``minilm-onnx+lexical`` features, plus the category one-hot when ``with_task``: the group-mean rows,
    appended to PROTOCOL_RUNS (skipped when already there)."""
    from bench_data import resolve
    from quality import seeded
    from recroute.eval.protocol import evaluate_dataset

    label = f"{spec} [{ENCODER}{'+task' if with_task else ''}]"
    done = [json.loads(line) for line in PROTOCOL_RUNS.read_text().splitlines()] if PROTOCOL_RUNS.exists() else []
    if any(r["router"] == label and r["seed"] == seed and r["setting"] == setting for r in done):
        return []
    data = resolve("mmlu_pro")
    load_setup()  # makes the cached features
    X = np.load(SCRATCH / "features.npz")["X"]  # dataset order
    if with_task:
        X = np.hstack([X, task_onehot(data.prompts["task"].astype(str).to_numpy())])
    load, start = os.getloadavg()[0], time.perf_counter()
    df = evaluate_dataset(data, [seeded(spec, seed) or spec], settings=(setting,), X=X, quiet=True)
    rows = [{"router": label, "seed": seed, "setting": setting, "m": int(r.m), "group": r.group, "v_b": float(r.v_b),
             "auc": float(r.auc), "seconds": time.perf_counter() - start, "load_start": load, "load_end": os.getloadavg()[0]}
            for r in df.itertuples()]
    with PROTOCOL_RUNS.open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in rows))
    return rows


# ---------------------------------------------------------------------- report
def summary_table(results: dict) -> list[dict]:
    """Per model × m: mean over groups (and over seeds) of val and test V_B, with and without the val margin."""
    rows = []
    models = sorted({n for e in results["groups"].values() for n in e["models"]})
    for name in models:
        for m in (3, 5, 10):
            es = [e["models"][name] for k, e in results["groups"].items() if f"_m{m}_" in k and name in e["models"]]
            if not es:
                continue
            seeds = sorted(set.intersection(*[set(e) for e in es]))
            def mean(field):
                per_seed = [np.mean([e[s][field] for e in es]) for s in seeds]
                return float(np.mean(per_seed)), float(np.std(per_seed))
            row = {"model": name, "m": m, "seeds": len(seeds)}
            for f in ("val_v_b", "test_v_b", "val_v_b_margin", "test_v_b_margin"):
                row[f], row[f + "_std"] = mean(f)
            if "val_log_loss" in es[0][seeds[0]]:
                row["val_log_loss"] = mean("val_log_loss")[0]
            rows.append(row)
    for m in (3, 5, 10):  # the blend weight chosen on validation per m (mean over seeds of the pools' mean)
        cands = [r for r in rows if r["model"].startswith("blend_two_tower+task_prior_w") and r["m"] == m]
        if cands:
            best = max(cands, key=lambda r: r["val_v_b"])
            rows.append({**best, "model": "blend_two_tower+task_prior (w on val)", "w": float(best["model"].rsplit("_w", 1)[1])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true", help="seed-dependent models on the first seed only")
    parser.add_argument("--families", default="two_tower,pairwise,ceiling,two_tower_task")
    parser.add_argument("--out", type=Path, default=HERE / "_scratch" / "m10_study_raw.json")
    parser.add_argument("--cv", action="store_true", help="only the 5-fold cross-validation of the m = 10 pools")
    parser.add_argument("--protocol", default=None, help="a router spec run through RouterEval's protocol with the category one-hot")
    parser.add_argument("--settings", default="hard,easy")
    parser.add_argument("--render", nargs=2, type=Path, metavar=("RAW", "CV"), help="write m10_study.md/json from a run's JSON and the CV's")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.render:
        write_report(*args.render)
        return
    if args.protocol:
        for seed in seeds:
            for setting in args.settings.split(","):
                for r in protocol_run(args.protocol, seed, setting, with_task=True):
                    print(r["router"], r["seed"], r["m"], r["group"], round(r["v_b"], 4), flush=True)
        return
    load = os.getloadavg()[0]
    start = time.perf_counter()
    S = load_setup()
    if args.cv:
        out = {"cv": cv_m10(S), "load_start": load, "load_end": os.getloadavg()[0], "seconds": time.perf_counter() - start}
        args.out.write_text(json.dumps(out, indent=1))
        return
    results = run(S, seeds, args.quick, args.families.split(","))
    results["summary"] = summary_table(results)
    results["machine"] = {"load_start": load, "load_end": os.getloadavg()[0], "seconds": time.perf_counter() - start}
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=float))
    tmp.replace(args.out)
    for r in results["summary"]:
        print(f"{r['model']:32s} m={r['m']:2d} val {r['val_v_b']:.4f} test {r['test_v_b']:.4f} | margin val {r['val_v_b_margin']:.4f} "
              f"test {r['test_v_b_margin']:.4f} | ll {r.get('val_log_loss', float('nan')):.4f} seeds {r['seeds']}")



# ---------------------------------------------------------------------- markdown
MODEL_NOTES = {
    "logistic_C0.3": "per-LLM L2 logistic (the `logistic` family), C = 0.3", "logistic_C1.0": "same, C = 1 (the family's default)",
    "logistic_C3.0": "same, C = 3", "logistic+task": "logistic + MMLU-Pro category one-hot",
    "logistic+knn31": "logistic + kNN means (k = 50) of all 31 LLMs' training results (full matrix)",
    "irt_full_r1": "IRT of the full 31-LLM training matrix, rank 1, factors ridge-predicted from features",
    "irt_full_r4": "same, rank 4", "logistic+irt_r1+knn31": "logistic on features + predicted rank-1 factor + kNN means",
    "logistic+irt_r4+knn31": "same with rank-4 factors", "hgb": "HistGradientBoosting per LLM (PCA-32 MiniLM, lexical, category, kNN means)",
    "task_prior": "per-category training mean per LLM (shrunk 20 prompts toward the overall mean)",
    "two_tower": "the `two_tower` family fitted on the pool (the stack's usual choice)",
    "pairwise_logistic": "per j: 3-class logistic of sign(y_j − y_best); route by P(win) − P(loss)",
    "pairwise_logistic+knn31": "same + kNN means of all 31 LLMs",
    "two_tower+task": "the two-tower on the features + the category one-hot (seed 0)",
    "kmeans30_prior": "the same prior on 30 k-means clusters of MiniLM (no category field needed)",
    "blend_two_tower+task_prior (w on val)": "(1 − w)·two_tower + w·task_prior, w in {0.25, 0.5, 0.75} chosen on validation per m",
    "ceiling_other_llms_true": "NOT a router: logistic + the TRUE results of the 21 LLMs outside the pool on the same prompt",
}


def render(raw: dict, cv: dict | None) -> tuple[str, dict]:
    """The study as markdown plus the compact JSON written beside it."""
    groups = raw["groups"]
    hard = [k for k in groups if "_m10_" in k]
    L = ["# Why the hard pools (m = 10) stay at V_B ≈ 1.00 on MMLU-Pro, and what the unused information adds", "",
         "`python benchmarks/m10_study.py` (issue 23). RouterEval's protocol: seed-42 split 80/10/10 (9,620 / 1,203 / "
         "1,209 prompts), its candidate groups, V_B = mu_o / best single LLM of the pool on test. Features: "
         "`minilm-onnx+lexical` (MiniLM + TF-IDF + 9 format statistics, fitted on training prompts). Every choice was read "
         "off the validation part (or the cross-validation over training + validation); test columns only report. "
         f"Machine: 2 shared cores; this evaluation at a load average of {raw['machine']['load_start']:.0f} to "
         f"{raw['machine']['load_end']:.0f} (the cached fits ran at 6 to 16). What the numbers say: docs/zoo.md, "
         "\"The hard pools (m = 10): what the data allow\".", ""]
    L += ["## 1. The m = 10 pools", "",
          "| pool | best single (test mean) | second | lead | oracle V_B | paired SE of a router's V_B (two_tower) |",
          "|---|---|---|---|---|---|"]
    for k in hard:
        e = groups[k]
        means = sorted(zip(e["test_means"], e["llms"]), reverse=True)
        tt = e["models"].get("two_tower", {}).get("0") or e["models"]["logistic_C0.3"]["0"]
        L.append(f"| {k.split('_m10_')[1]} | {means[0][1]} ({means[0][0]:.3f}) | {means[1][1]} ({means[1][0]:.3f}) | "
                 f"{e['lead_over_second']:.3f} | {e['oracle_v_b']:.3f} | {tt.get('test_v_b_se', float('nan')):.4f} |")
    L.append("")
    # needed signal
    curves = [groups[k]["needed_signal"] for k in hard]
    need = {f: needed_at(curves, 1.05, f) for f in ("v_b", "v_b_best_margin")}
    L += ["## 2. What a router would need for V_B = 1.05 at m = 10", "",
          "A noisy-truth router s_ij = logit(p̄_j) + d·y_ij + N(0, 1) on the test prompts (p̄: the training means), d swept: "
          "its per-LLM AUC is Φ(d/√2), its discordant-pair AUC (among prompts where exactly one of j and the pool's best "
          "single b is right, how often s_j − s_b ranks them right) is measured. The mean V_B over the three pools against d:", "",
          "| d | per-LLM AUC | pair AUC | V_B all_strong | all_weak | strong_to_weak | mean | mean, best margin for b |", "|---|---|---|---|---|---|---|---|"]
    for i, r in enumerate(curves[0]):
        if i % 2:
            continue
        vs = [c[i]["v_b"] for c in curves]
        L.append(f"| {r['d']:.1f} | {r['llm_auc']:.3f} | {np.mean([c[i]['pair_auc'] for c in curves]):.3f} | "
                 + " | ".join(f"{v:.3f}" for v in vs) + f" | {np.mean(vs):.3f} | {np.mean([c[i]['v_b_best_margin'] for c in curves]):.3f} |")
    L.append("")
    for f, label in (("v_b", "argmax"), ("v_b_best_margin", "with the best margin for b (chosen on test: a bound)")):
        n = need[f]
        L.append(f"- Mean V_B 1.05 ({label}): d = {n['d']:.2f}, per-LLM AUC {n['llm_auc']:.3f}, pair AUC {n['pair_auc']:.3f}." if n
                 else f"- Mean V_B 1.05 ({label}): not reached on the grid.")
    L.append("")
    L += ["Measured on test (seed 0), per pool: per-LLM AUC (mean over the pool's LLMs), pair AUC against b (mean over "
          "the other LLMs), cell AUC, mean log loss / Brier / ECE of P(correct) over the pool's LLMs:", "",
          "| model | pool | per-LLM AUC | pair AUC vs b | cell AUC | log loss | Brier | ECE | V_B | moved off b | wins | losses |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("two_tower", "logistic_C0.3", "hgb", "task_prior", "ceiling_other_llms_true"):
        for k in hard:
            ev = groups[k]["models"].get(name, {}).get("0")
            if not ev or "calibration" not in ev:
                continue
            cal = ev["calibration"]
            mean = lambda f: np.nanmean([c[f] for c in cal])  # noqa: E731
            L.append(f"| {name} | {k.split('_m10_')[1]} | {mean('auc'):.3f} | {mean('pair_auc_vs_best'):.3f} | {ev['cell_auc']:.3f} | "
                     f"{mean('log_loss'):.4f} | {mean('brier'):.4f} | {mean('ece'):.4f} | {ev['test_v_b']:.4f} | {ev['moved_share']:.2f} | "
                     f"{ev['wins']} | {ev['losses']} |")
    L.append("")
    L += ["Where the two-tower's routed choices win and lose against the best single (test, seed 0; a win: the chosen "
          "LLM right and b wrong):", "", "| pool | chosen LLM | prompts | wins | losses | net |", "|---|---|---|---|---|---|"]
    for k in hard:
        ev = groups[k]["models"].get("two_tower", {}).get("0")
        for p in (ev or {}).get("per_llm", []):
            if p["chosen"] and p["llm"] != groups[k]["best_single"]:
                L.append(f"| {k.split('_m10_')[1]} | {p['llm']} | {p['chosen']} | {p['wins']} | {p['losses']} | {p['wins'] - p['losses']:+d} |")
    L.append("")
    L += ["Per LLM of each pool (two-tower, test, seed 0): calibration and the pair AUC against b:", "",
          "| pool | LLM | test mean | log loss | Brier | ECE | AUC | pair AUC vs b |", "|---|---|---|---|---|---|---|---|"]
    for k in hard:
        ev = groups[k]["models"].get("two_tower", {}).get("0")
        for c in (ev or {}).get("calibration", []):
            L.append(f"| {k.split('_m10_')[1]} | {c['llm']} | {c['test_mean']:.3f} | {c['log_loss']:.4f} | {c['brier']:.4f} | "
                     f"{c['ece']:.4f} | {c['auc']:.3f} | {c['pair_auc_vs_best']:.3f} |")
    L.append("")
    # models
    L += ["## 3. The models (mean V_B over the three pools; seeds: the seed-dependent ones over 0, 1, 2, ± std over seeds)", "",
          "`margin`: the argmax with a margin for the pool's best single b, the margin chosen on validation per pool from "
          f"{list(MARGINS)}.", "",
          "| model | what | val m=3 | m=5 | m=10 | test m=3 | m=5 | m=10 | test, margin m=3 | m=5 | m=10 | val log loss m=10 | seeds |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summ = {(r["model"], r["m"]): r for r in raw["summary"]}
    for name in sorted({r["model"] for r in raw["summary"]}, key=lambda n: (n.startswith("ceiling"), n)):
        rs = [summ.get((name, m)) for m in (3, 5, 10)]
        if any(r is None for r in rs):
            continue
        pm = lambda r, f: f"{r[f]:.4f}" + (f" ±{r[f + '_std']:.3f}" if r["seeds"] > 1 else "")  # noqa: E731
        ll = rs[2].get("val_log_loss")
        L.append(f"| {name} | {MODEL_NOTES.get(name, '')} | " + " | ".join(pm(r, "val_v_b") for r in rs) + " | "
                 + " | ".join(pm(r, "test_v_b") for r in rs) + " | " + " | ".join(pm(r, "test_v_b_margin") for r in rs)
                 + f" | {'-' if ll is None else f'{ll:.4f}'} | {rs[0]['seeds']} |")
    L.append("")
    if cv:
        L += ["## 4. m = 10 by 5-fold cross-validation over training + validation (10,823 prompts; no test prompt)", "",
              "| model | all_strong | all_weak | strong_to_weak | mean | mean − two_tower ± paired SE | (paired SE against b per pool) |",
              "|---|---|---|---|---|---|---|"]
        for name, per in cv.items():
            ks = [k for k in per if k.startswith("hard_")]
            d = per.get("minus_two_tower")
            L.append(f"| {name} | " + " | ".join(f"{per[k]['v_b']:.4f}" for k in ks) + f" | {per['mean']:.4f} | "
                     + ("-" if d is None else f"{d['mean']:+.4f} ± {d['se']:.4f}") + " | "
                     + " / ".join(f"{per[k]['se']:.4f}" for k in ks) + " |")
        L.append("")
    proto = protocol_lines()
    L += proto[0]
    compact = {"protocol": proto[1], "summary": raw["summary"], "needed": need, "machine": raw["machine"], "cv": cv,
               "pools": {k: {f: groups[k][f] for f in ("llms", "best_single", "test_means", "oracle_v_b", "lead_over_second")} for k in hard},
               "needed_curves": {k: groups[k]["needed_signal"] for k in hard}}
    return "\n".join(L), compact


def protocol_lines() -> tuple[list[str], list[dict]]:
    """Markdown lines and rows: the protocol runs with the category one-hot beside the recorded stack
    on the same features without it (benchmarks/results/zoo_runs_stack.jsonl, same seeds)."""
    if not PROTOCOL_RUNS.exists():
        return [], []
    runs = [json.loads(line) for line in PROTOCOL_RUNS.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r["group"] == "mean"]
    ref_file = RESULTS / "zoo_runs_stack.jsonl"
    refs = [json.loads(line) for line in ref_file.read_text().splitlines() if line.strip()] if ref_file.exists() else []
    L = ["## 5. The stack in RouterEval's protocol with the category one-hot among its features", "",
         "`python benchmarks/m10_study.py --protocol stack --seeds 0,1,2` (the default stack, `evaluate_dataset` "
         "with X = the features + the category one-hot), against the recorded `stack [minilm-onnx+lexical]` of the same "
         "seeds (zoo_runs_stack.jsonl):", "", "| router | seed | V_B m=3 | m=5 | m=10 |", "|---|---|---|---|---|"]
    rows = []
    for label in sorted({r["router"] for r in runs}):
        for seed in sorted({r["seed"] for r in runs if r["router"] == label}):
            mine = {r["m"]: r["v_b"] for r in runs if r["router"] == label and r["seed"] == seed}
            base = label.split(" [")[0] + f" [{ENCODER}]"
            ref = {r["m"]: r["v_b"] for r in refs if r.get("dataset") == "mmlu_pro" and r["router"] == base and r["seed"] == seed}
            for name, vals in ((label, mine), (base, ref)):
                if len(vals) == 3:
                    L.append(f"| {name} | {seed} | " + " | ".join(f"{vals[m]:.4f}" for m in (3, 5, 10)) + " |")
                    rows.append({"router": name, "seed": seed, **{f"v_b_m{m}": vals[m] for m in (3, 5, 10)}})
    return L + [""], rows


def write_report(raw_path: Path, cv_path: Path | None) -> None:
    raw = json.loads(raw_path.read_text())
    cv = json.loads(cv_path.read_text())["cv"] if cv_path and cv_path.exists() else None
    md, compact = render(raw, cv)
    for path, text in ((RESULTS / "m10_study.md", md + "\n"), (RESULTS / "m10_study.json", json.dumps(compact, indent=1, default=float))):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


if __name__ == "__main__":
    main()
