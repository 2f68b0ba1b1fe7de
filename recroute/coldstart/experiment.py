"""The new-LLM cold-start experiment: hold LLMs out, onboard each from k probes, measure the placement.

Protocol (:func:`run_coldstart`):

1. Prompts are split at random into train and test (``test_size``); LLMs into folds of ``holdout``
   (0.2 = 5 folds, every LLM held out once; ``"loo"`` = one LLM per fold); ``max_folds`` runs only
   the first folds (one is enough on the 4,000-LLM sets).
2. Per fold and router spec, three fits: on every prompt × the kept ("base") LLMs (the base LLMs were
   evaluated on the whole set; only the new LLM is not), for the estimates; on the train prompts ×
   the base LLMs, for routing; and a reference on the train prompts × all LLMs, which saw the
   held-out LLMs fully.
3. For every strategy and k, each held-out LLM gets k probes among the train prompts (random and
   stratified draws differ per LLM, seeded; the other strategies choose the same prompts for all),
   and ``partial_fit_llms`` places all of them at once from their probe results (and metadata),
   into the first two routers; each router-free estimator (``estimators``: llm_mixture, irt, gp_irt,
   :mod:`.estimators`, fitted on every prompt × the base LLMs) predicts their results from the same
   probes. An adaptive strategy runs once per fold to the largest k, answering from the held-out
   LLMs' stored results; each smaller k is a prefix of that run. Adaptive probes get no probe-mean or
   gp_irt rows (their plain mean is biased by the choice of prompts).
4. Measures, per held-out LLM, on the prompts it was evaluated on:
   - ``mae``: |estimated - true| overall mean result, the estimate being the mean over all prompts
     of its probe result where probed and the first router's predicted P(correct) elsewhere;
   - ``auc`` (ROC AUC of the predictions against its results >= 0.5) and ``log_loss`` on the
     prompts not probed;
   - ``mu_o_ratio``: mu_o on the test prompts of a pool of the held-out LLM and the
     ``pool_size - 1`` base LLMs closest to it in train mean, routed by the onboarded routing router, divided
     by the same for the reference router (pooled over held-out LLMs: ratio of the mean mu_o).
   Rows average over held-out LLMs (AUC over those with both outcomes among their unprobed prompts).
5. Estimate-only rows, router-free: ``plain_mean`` (strategy ``random``) is the plain mean of the k
   random probes, the estimate to beat; ``probe_mean`` is each other strategy's weighted probe mean
   (anchor strategies weigh each probe by its cluster's share: tinyBenchmarks' anchor-point
   estimate). With k = 0 both use the mean of the base LLMs. Their predictions are that constant, so
   their AUC is 0.5 and they have no mu_o_ratio (NaN).

Prompt features: ``features="text"`` uses the dataset's embeddings (encoded with MiniLM when it has
text but none), ``"responses"`` each prompt's results over the fold's base LLMs reduced by SVD
(:func:`response_features`: no text needed, nothing from the held-out LLMs), ``"auto"`` text when
there is any, else responses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from recroute.coldstart.estimators import ProbeEstimator, parse_estimator
from recroute.coldstart.probes import ADAPTIVE, STRATEGIES, ProbeSet, select_probes
from recroute.coldstart.irt import fit_irt
from recroute.errors import DataError
from recroute.eval.metrics import cell_auc
from recroute.routers.base import nan_mean_rows

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.routers.base import Router

DEFAULT_KS = (0, 5, 10, 20, 30, 50, 100)
ROW_KEYS = ("router", "strategy", "k", "mae", "auc", "log_loss", "mu_o_ratio")
EXTRA_KEYS = ("rmse", "bias", "mu_o", "mu_o_reference", "n_llms", "folds")
FEATURES = ("auto", "text", "responses")
AUTO_ONE_FOLD_LLMS = 1000  # max_folds="auto" runs one fold from this many LLMs
_CLIP = 1e-4  # predictions clipped to [_CLIP, 1 - _CLIP] for the log-loss


@dataclass(frozen=True)
class ColdStartResult:
    """rows: one per (router, strategy, k) with ROW_KEYS + EXTRA_KEYS; per_llm: one per held-out LLM."""

    rows: pd.DataFrame
    per_llm: pd.DataFrame

    def records(self) -> list[dict[str, Any]]:
        """The tidy rows as JSON-safe dicts (NaN as None)."""
        from recroute.eval.report import records

        return records(self.rows)


def plot_coldstart(rows: pd.DataFrame, path=None, title: str = ""):
    """A matplotlib Figure: MAE of the estimated mean result vs k, one panel per strategy, one line per
    router (plain_mean dashed in every panel). Written to ``path`` (PNG/PDF/SVG by suffix) when given."""
    from pathlib import Path

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from recroute.eval.report import atomic_write

    strategies = [s for s in STRATEGIES if s in set(rows["strategy"])]
    fig = Figure(figsize=(3.2 * max(len(strategies), 1) + 1.5, 3.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, max(len(strategies), 1), sharey=True, squeeze=False)[0]
    plain = rows[rows["router"] == "plain_mean"].sort_values("k")
    routers = [r for r in dict.fromkeys(rows["router"]) if r != "plain_mean"]
    colors = dict(zip(routers, ["crimson", "royalblue", "darkorange", "seagreen", "purple", "black", "teal", "brown"] * 3))
    for ax, strategy in zip(axes, strategies):
        for router in routers:
            part = rows[(rows["router"] == router) & (rows["strategy"] == strategy)].sort_values("k")
            if len(part):
                ax.plot(part["k"], part["mae"], marker="o", ms=3, color=colors[router], label=router)
        ax.plot(plain["k"], plain["mae"], "--", color="grey", label="plain_mean (random)")
        ax.axhline(0.02, color="grey", lw=0.8, ls=":")
        ax.set_title(strategy, fontsize=9)
        ax.set_xlabel("probes k")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("MAE of the estimated mean result")
    handles = {}
    for ax in axes:  # a router or estimator may be missing from some panels (no probe mean of adaptive probes)
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    axes[-1].legend(list(handles.values()), list(handles), fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0),
                    borderaxespad=0)
    fig.suptitle(title or "New-LLM cold start", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    return fig


def response_features(Y: np.ndarray, dim: int = 32) -> np.ndarray:
    """float32 (n_prompts, min(dim, ...)): each prompt's results over the LLMs of Y (n_prompts, n_llms),
    unobserved cells at the LLM's mean, centred per LLM and reduced by SVD (scores U·S)."""
    Y = np.asarray(Y, dtype=np.float64)
    means = nan_mean_rows(Y)
    Z = np.where(np.isnan(Y), means, Y) - means
    U, s, _ = np.linalg.svd(Z, full_matrices=False)
    r = int(min(dim, len(s)))
    return (U[:, :r] * s[:r]).astype(np.float32)


def llm_folds(n_llms: int, holdout: float | str, seed: int) -> list[np.ndarray]:
    """Held-out LLM positions per fold: every LLM held out once (``holdout`` fraction or "loo")."""
    if n_llms < 3:
        raise DataError(f"the cold-start experiment needs at least 3 LLMs; the dataset has {n_llms}")
    if holdout == "loo":
        n_folds = n_llms
    else:
        try:
            fraction = float(holdout)
        except (TypeError, ValueError):
            raise DataError(f"holdout must be a fraction in (0, 0.5] or 'loo'; got {holdout!r}") from None
        if not 0 < fraction <= 0.5:
            raise DataError(f"holdout must be a fraction in (0, 0.5] or 'loo'; got {holdout!r}")
        n_folds = min(n_llms, max(2, int(round(1.0 / fraction))))
    perm = np.random.default_rng(seed).permutation(n_llms)
    return [np.sort(part).astype(np.int64) for part in np.array_split(perm, n_folds)]


def probability(router: "Router", scores: np.ndarray) -> np.ndarray:
    """P(correct) from a router's scores by its ``score_scale`` (logits through a sigmoid, raw clipped)."""
    scores = np.asarray(scores, dtype=np.float64)
    if getattr(router, "score_scale", "probability") == "logit":
        return 1.0 / (1.0 + np.exp(-scores))
    return np.clip(scores, 0.0, 1.0)


def run_coldstart(
    data: "RoutingDataset",
    routers: Sequence[str],
    strategies: Sequence[str] = STRATEGIES,
    ks: Sequence[int] = DEFAULT_KS,
    *,
    estimators: Sequence[str] = (),
    holdout: float | str = 0.2,
    max_folds: int | str | None = None,
    test_size: float = 0.2,
    pool_size: int = 5,
    features: str = "auto",
    feature_dim: int = 32,
    X: np.ndarray | None = None,
    seed: int = 0,
    quiet: bool = True,
) -> ColdStartResult:
    """Run the protocol of the module docstring; k values above the number of train prompts are skipped.
    ``max_folds="auto"``: one fold when the dataset has at least 1,000 LLMs, else all."""
    from recroute.data.splits import random_split
    from recroute.eval.protocol import progress_steps
    from recroute.routers.registry import make_router

    specs = list(routers)
    strategies = list(strategies)
    for strategy in strategies:
        if strategy not in STRATEGIES:
            raise DataError(f"unknown probe strategy {strategy!r}; available: {', '.join(STRATEGIES)}")
    for spec in specs:
        if not make_router(spec).supports_new_llms:
            from recroute.routers.registry import routers_supporting_new_llms

            raise DataError(f"router {spec!r} cannot place new LLMs; use one of: {', '.join(routers_supporting_new_llms())}")
    for spec in estimators:
        parse_estimator(spec)
    if not specs and not estimators:
        raise DataError("give at least one router or estimator")
    if features not in FEATURES:
        raise DataError(f"features must be one of {FEATURES}; got {features!r}")
    if pool_size < 2:
        raise DataError(f"pool_size must be at least 2 (the new LLM and one other); got {pool_size}")
    Y = data.dense(np.nan).astype(np.float64)
    split = random_split(data.n_prompts, test_size=test_size, seed=seed)
    train, test = split.train, split.test
    ks = sorted({int(k) for k in ks if 0 <= int(k) <= len(train)})
    if not ks:
        raise DataError(f"no k value fits the {len(train)} train prompts")
    needs_X = bool(specs) or "anchor_embedding" in strategies
    text_X = _text_features(data, X, features) if needs_X else None
    tasks = data.prompts["task"].to_numpy() if "task" in data.prompts else None
    if max_folds == "auto":
        max_folds = 1 if data.n_llms >= AUTO_ONE_FOLD_LLMS else None
    folds = llm_folds(data.n_llms, holdout, seed)[: max_folds or None]
    adaptive = [s for s in strategies if s in ADAPTIVE]
    records: list[dict[str, Any]] = []
    with progress_steps(quiet, len(folds) * (len(specs) + len(estimators) + len(adaptive) + 1)) as progress:
        for fold_id, held in enumerate(folds):
            base = np.setdiff1d(np.arange(data.n_llms), held)
            Xf = (text_X if text_X is not None else response_features(Y[:, base], feature_dim)) if needs_X else None
            planned = list(dict.fromkeys(["random", *strategies]))  # plain_mean rows always need random probes
            irt = fit_irt(Y[:, base]) if adaptive or estimators else None
            fixed = [s for s in planned if s not in ADAPTIVE]
            probes = _probe_plan(fixed, ks, Y[:, base], Xf, tasks, train, len(held), seed + 1000 * fold_id)
            for strategy in adaptive:
                progress.start(f"fold {fold_id + 1}/{len(folds)}: {strategy} probing")
                probes.update(_adaptive_plan(strategy, ks, Y, base, held, train, irt))
                progress.done()
            progress.start(f"fold {fold_id + 1}/{len(folds)}: probe-mean estimates")
            records += _estimate_records(Y, base, held, {key: sets for key, sets in probes.items() if key[0] not in ADAPTIVE}, fold_id)
            progress.done()
            asked = {key: sets for key, sets in probes.items() if key[0] in strategies}
            for spec in estimators:
                progress.start(f"fold {fold_id + 1}/{len(folds)}: {spec}")
                estimator = ProbeEstimator(spec, Y[:, base], irt=irt)
                records += _estimator_records(estimator, Y, held, asked, fold_id)
                progress.done()
            for spec in specs:
                progress.start(f"fold {fold_id + 1}/{len(folds)}: {spec}")
                records += _router_records(data, spec, Y, Xf, base, held, train, test, asked, pool_size, fold_id)
                progress.done()
    per_llm = pd.DataFrame(records)
    return ColdStartResult(_aggregate(per_llm, len(folds)), per_llm)


def _text_features(data: "RoutingDataset", X: np.ndarray | None, features: str) -> np.ndarray | None:
    """Text embeddings (n_prompts, d) when they are to be used, else None (response features per fold)."""
    from recroute.eval.protocol import dataset_embeddings

    if features == "responses":
        return None
    if X is not None or data.embeddings is not None or data.has_text:
        return dataset_embeddings(data, X, needed=True)
    if features == "text":
        raise DataError(f"{data.name or 'dataset'} has neither prompt text nor embeddings; use features='responses'")
    return None


def _probe_plan(strategies, ks, Y_base, X, tasks, train, n_new, seed) -> dict[tuple[str, int], list[ProbeSet]]:
    """(strategy, k) -> one ProbeSet per held-out LLM (the same object repeated for fixed strategies)."""
    plan: dict[tuple[str, int], list[ProbeSet]] = {}
    for strategy in strategies:
        for k in ks:
            if strategy in ("random", "stratified"):
                plan[strategy, k] = [
                    select_probes(strategy, k, Y=Y_base, X=X, tasks=tasks, candidates=train, seed=seed + 7919 * j + k)
                    for j in range(n_new)
                ]
            else:
                plan[strategy, k] = [select_probes(strategy, k, Y=Y_base, X=X, tasks=tasks, candidates=train, seed=seed)] * n_new
    return plan


def _adaptive_plan(strategy, ks, Y, base, held, train, irt) -> dict[tuple[str, int], list[ProbeSet]]:
    """(strategy, k) -> one ProbeSet per held-out LLM, every k a prefix of one adaptive run to max(ks)
    that answers from the held-out LLMs' stored results (NaN where one was not evaluated)."""
    from recroute.coldstart.adaptive import adaptive_probes, strategy_support

    support = strategy_support(strategy, Y[:, base], irt)
    cols = np.asarray(held)
    rows, results = adaptive_probes(support, lambda r: Y[r, cols], max(ks), n_new=len(held), candidates=train)
    plan = {}
    for k in ks:
        sets = []
        for r, y in zip(rows[:, :k], results[:, :k]):
            order = np.argsort(r)
            sets.append(ProbeSet(r[order], np.full(k, 1.0 / max(k, 1)), y[order]))
        plan[strategy, k] = sets
    return plan


def _estimator_records(estimator: ProbeEstimator, Y, held, probes, fold_id) -> list[dict[str, Any]]:
    """Per held-out LLM, strategy and k: a router-free estimator's prediction from the probes (mean over
    the LLM's observed prompts of the prediction, its probe result where probed)."""
    out = []
    Y_held = Y[:, held]
    observed = ~np.isnan(Y_held)
    for (strategy, k), sets in probes.items():
        if estimator.name == "gp_irt" and strategy in ADAPTIVE:
            continue  # an adaptive probe mean is no estimate of the set's mean: nothing to combine with
        rows = np.stack([s.rows for s in sets]) if k else np.zeros((len(held), 0), dtype=np.int64)
        results = Y_held[rows, np.arange(len(held))[:, None]] if k else np.zeros((len(held), 0))
        P = estimator.predict(rows, results)
        estimate = np.where(observed, P, 0).sum(axis=0) / np.maximum(observed.sum(axis=0), 1)
        probe_mean = np.array([s.weighted_mean(y) for s, y in zip(sets, results)]) if k else np.full(len(held), np.nan)
        estimate = estimator.combine(estimate, probe_mean, k)
        for j, llm in enumerate(held):
            y = Y[:, llm]
            rest = np.setdiff1d(np.flatnonzero(~np.isnan(y)), sets[j].rows)
            out.append(_llm_record(estimator.spec, strategy, k, llm, fold_id, float(estimate[j]), y, rest, P[:, j]))
    return out


def _estimate_records(Y, base, held, probes, fold_id) -> list[dict[str, Any]]:
    """plain_mean / probe_mean rows: the probes' (weighted) mean as the estimate, a constant prediction."""
    prior = float(np.nanmean(Y[:, base]))
    out = []
    for (strategy, k), sets in probes.items():
        name = "plain_mean" if strategy == "random" else "probe_mean"
        for j, llm in enumerate(held):
            y = Y[:, llm]
            estimate = sets[j].weighted_mean(y[sets[j].rows]) if k else float("nan")
            estimate = prior if math.isnan(estimate) else estimate
            rest = np.setdiff1d(np.flatnonzero(~np.isnan(y)), sets[j].rows)
            out.append(_llm_record(name, strategy, k, llm, fold_id, estimate, y, rest, np.full(len(y), estimate)))
    return out


def _router_records(data, spec, Y, X, base, held, train, test, probes, pool_size, fold_id) -> list[dict[str, Any]]:
    """Per held-out LLM, strategy and k: the estimate from a router fitted on every prompt x the base
    LLMs, and mu_o of the pools from one fitted on the train prompts (vs the reference)."""
    from recroute.routers.registry import make_router

    def fitted(prompts: np.ndarray, llms: np.ndarray) -> "Router":
        return make_router(spec).fit(data.subset(prompts=prompts, llms=llms), X[prompts])

    everywhere = np.arange(data.n_prompts)
    router = fitted(everywhere, base)
    routing = fitted(train, base) if len(test) else None
    reference = fitted(train, np.arange(data.n_llms)) if len(test) else None
    names = [str(n) for n in data.llm_names[held]]
    metadata = data.llms.iloc[held] if getattr(router, "llm_metadata_", None) is not None else None
    pools = _pools(Y, train, base, held, pool_size)
    ref_mu = _pool_mu(probability(reference, reference.score(X[test])), Y[test], pools) if reference else None
    out = []
    for (strategy, k), sets in probes.items():
        rows = np.unique(np.concatenate([s.rows for s in sets])) if k else np.zeros(0, dtype=np.int64)
        Y_probe = np.full((len(rows), len(held)), np.nan)
        for j, (llm, s) in enumerate(zip(held, sets)):
            Y_probe[np.searchsorted(rows, s.rows), j] = Y[s.rows, llm]
        X_probe = X[rows] if k else None
        grown = router.partial_fit_llms(X_probe, Y_probe, names, metadata=metadata)
        P_all = probability(grown, grown.score(X))[:, len(base):]
        on_mu = None
        if routing is not None:
            placed = routing.partial_fit_llms(X_probe, Y_probe, names, metadata=metadata)
            P_test = probability(placed, placed.score(X[test]))
            on_full = np.empty((len(test), data.n_llms))
            on_full[:, base], on_full[:, held] = P_test[:, : len(base)], P_test[:, len(base):]
            on_mu = _pool_mu(on_full, Y[test], pools)
        for j, llm in enumerate(held):
            y = Y[:, llm]
            probed = sets[j].rows[~np.isnan(y[sets[j].rows])]
            observed = np.flatnonzero(~np.isnan(y))
            filled = P_all[:, j].copy()
            filled[probed] = y[probed]
            rest = np.setdiff1d(observed, probed)
            record = _llm_record(spec, strategy, k, llm, fold_id, float(filled[observed].mean()), y, rest, P_all[:, j])
            if on_mu is not None:
                record["mu_o"], record["mu_o_reference"] = on_mu[j], ref_mu[j]
            out.append(record)
    return out


def _pools(Y, train, base, held, pool_size) -> list[np.ndarray]:
    """Per held-out LLM: LLM positions [the pool_size - 1 base LLMs closest in train mean..., itself]."""
    means = nan_mean_rows(Y[train])
    out = []
    for llm in held:
        closest = base[np.argsort(np.abs(means[base] - means[llm]), kind="stable")[: pool_size - 1]]
        out.append(np.append(closest, llm))
    return out


def _pool_mu(P_test: np.ndarray, Y_test: np.ndarray, pools) -> list[float]:
    """mu_o per held-out LLM's pool: mean true score of the pool's argmax (first on ties), NaN as 0."""
    out = []
    for pool in pools:
        choice = np.argmax(np.nan_to_num(P_test[:, pool], nan=-np.inf), axis=1)
        picked = Y_test[np.arange(len(Y_test)), pool[choice]]
        out.append(float(np.nan_to_num(picked, nan=0.0).mean()))
    return out


def _llm_record(router, strategy, k, llm, fold_id, estimate, y, rest, pred) -> dict[str, Any]:
    """One held-out LLM's measures: estimate error, and AUC / log-loss of pred on the unprobed prompts."""
    true = float(np.nanmean(y))
    p = np.clip(pred[rest], _CLIP, 1.0 - _CLIP)
    t = y[rest]
    log_loss = float(-np.mean(t * np.log(p) + (1.0 - t) * np.log(1.0 - p))) if len(rest) else float("nan")
    return {
        "router": router, "strategy": strategy, "k": int(k), "llm": int(llm), "fold": fold_id,
        "estimate": float(estimate), "true": true, "error": float(estimate) - true,
        "auc": cell_auc(t, pred[rest]), "log_loss": log_loss, "mu_o": float("nan"), "mu_o_reference": float("nan"),
    }


def _aggregate(per_llm: pd.DataFrame, n_folds: int) -> pd.DataFrame:
    rows = []
    for (router, strategy, k), part in per_llm.groupby(["router", "strategy", "k"], sort=False):
        err = part["error"].to_numpy()
        mu, ref = part["mu_o"].to_numpy(), part["mu_o_reference"].to_numpy()
        has_mu = ~np.isnan(mu) & ~np.isnan(ref)
        ratio = float(mu[has_mu].mean() / ref[has_mu].mean()) if has_mu.any() and ref[has_mu].mean() > 0 else float("nan")
        rows.append({
            "router": router, "strategy": strategy, "k": int(k),
            "mae": float(np.mean(np.abs(err))), "auc": float(np.nanmean(part["auc"])) if part["auc"].notna().any() else float("nan"),
            "log_loss": float(part["log_loss"].mean()), "mu_o_ratio": ratio,
            "rmse": float(np.sqrt(np.mean(err**2))), "bias": float(np.mean(err)),
            "mu_o": float(mu[has_mu].mean()) if has_mu.any() else float("nan"),
            "mu_o_reference": float(ref[has_mu].mean()) if has_mu.any() else float("nan"),
            "n_llms": int(part["llm"].nunique()), "folds": n_folds,
        })
    return pd.DataFrame(rows, columns=[*ROW_KEYS, *EXTRA_KEYS])
