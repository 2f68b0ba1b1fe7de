"""Off-policy evaluation: a target router's value (its mu_o) estimated from a log of another policy.

For logged decisions i = 1..n with prompt x_i, candidates, chosen a_i, propensity p_i = pi_0(a_i | x_i)
and outcome r_i; a target policy pi (n, m); a reward model q(x, a); w_i = pi(a_i | x_i) / p_i:

    DM        mean_i  sum_a pi(a|x_i) q(x_i, a)                                  (direct method)
    IPS       mean_i  w_i r_i                                                    (inverse propensity)
    SNIPS     sum_i w_i r_i / sum_i w_i                                          (self-normalised IPS)
    DR        mean_i  [sum_a pi(a|x_i) q(x_i, a) + w_i (r_i - q(x_i, a_i))]     (Dudík et al. 2011)
    Switch-DR mean_i  [sum_a pi(a|x_i) q(x_i, a) + 1{w_i <= tau} w_i (r_i - q(x_i, a_i))]
                                                                                 (Wang et al. 2017, as in OBP)

Intervals: "normal" (mean ± z·se of the per-decision terms; SNIPS by the delta method; se cluster-robust
by prompt when ``clusters`` is given, as ``evaluate_targets`` does) or "bootstrap" (percentiles of
resampled decisions). Every function is vectorised over leading axes:
arrays of shape (..., n) give estimates of shape (...) (e.g. one row per simulated seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit, log_matrix
from recroute.feedback.policies import Policy, parse_policy

if TYPE_CHECKING:
    from recroute.routers.base import Router

ESTIMATORS = ("dm", "ips", "snips", "dr", "switch_dr")
INTERVALS = ("normal", "bootstrap")
DEFAULT_TAU = 20.0
DEFAULT_REWARD_ROUTER = "linear"


@dataclass
class Terms:
    """Per-decision ingredients, each (..., n): reward r, weight w, q at the chosen LLM, q averaged under pi."""

    r: np.ndarray
    w: np.ndarray
    q_chosen: np.ndarray
    q_pi: np.ndarray

    @property
    def n(self) -> int:
        return int(self.r.shape[-1])


def decision_terms(bandit: Bandit, target: np.ndarray, q_hat: np.ndarray | None = None) -> Terms:
    """Terms from a log, the target's probabilities (n, m) at the logged decisions and q (n, m) (None: 0)."""
    n = len(bandit)
    target = np.asarray(target, dtype=np.float64)
    if target.shape != (n, bandit.n_llms):
        raise DataError(f"target probabilities have shape {target.shape}; expected ({n}, {bandit.n_llms})")
    if (target[~bandit.allowed] > 0).any():
        raise DataError("the target policy puts probability on an LLM that was not a candidate of the decision")
    q = np.zeros_like(target) if q_hat is None else np.asarray(q_hat, dtype=np.float64)
    if q.shape != target.shape:
        raise DataError(f"q_hat has shape {q.shape}; expected {target.shape}")
    idx = np.arange(n)
    w = target[idx, bandit.chosen] / bandit.propensity
    return Terms(bandit.reward.astype(np.float64), w, q[idx, bandit.chosen], (target * np.where(bandit.allowed, q, 0.0)).sum(axis=1))


def per_decision(terms: Terms, estimator: str, tau: float = DEFAULT_TAU) -> np.ndarray:
    """(..., n) per-decision values whose mean is the estimate (for SNIPS: w r, normalised later)."""
    if estimator == "dm":
        return terms.q_pi
    if estimator in ("ips", "snips"):
        return terms.w * terms.r
    if estimator == "dr":
        return terms.q_pi + terms.w * (terms.r - terms.q_chosen)
    if estimator == "switch_dr":
        if not tau > 0:
            raise ValueError(f"switch_dr: tau must be positive; got {tau}")
        return terms.q_pi + np.where(terms.w <= tau, terms.w, 0.0) * (terms.r - terms.q_chosen)
    raise ValueError(f"unknown estimator {estimator!r}; expected one of {ESTIMATORS}")


def estimate(
    terms: Terms, estimator: str, *, alpha: float = 0.05, interval: str = "normal", tau: float = DEFAULT_TAU,
    n_bootstrap: int = 1000, seed: int = 0, clusters: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """{"value", "lower", "upper", "se"}, each of shape (...), for one estimator.

    ``clusters`` (n,) or (..., n): a label per decision (its prompt) for a cluster-robust standard error
    (decisions on the same prompt are correlated once the reward model uses repeated prompts' outcomes):
    se² = C/(C-1) · Σ_c (Σ_{i in c} (x_i − x̄))² / n² over the C clusters; one decision per cluster gives the
    usual sd/√n.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha}")
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {INTERVALS}; got {interval!r}")
    n = terms.n
    if n < 2:
        raise DataError(f"off-policy evaluation needs at least 2 logged decisions with an outcome; got {n}")
    x = per_decision(terms, estimator, tau)
    if estimator == "snips":
        wsum = terms.w.sum(axis=-1)
        value = np.divide(x.sum(axis=-1), wsum, out=np.full(wsum.shape, np.nan), where=wsum > 0)
        mean_w = wsum / n
        psi = terms.w * (terms.r - value[..., None]) / np.where(mean_w > 0, mean_w, np.nan)[..., None]
    else:
        value = x.mean(axis=-1)
        psi = x
    se = psi.std(axis=-1, ddof=1) / np.sqrt(n) if clusters is None else _cluster_se(psi, clusters)
    if interval == "normal":
        from scipy.stats import norm

        z = float(norm.ppf(1 - alpha / 2))
        return {"value": value, "lower": value - z * se, "upper": value + z * se, "se": se}
    lower, upper = _bootstrap(terms, x, estimator, alpha, n_bootstrap, seed)
    return {"value": value, "lower": lower, "upper": upper, "se": se}


def _cluster_se(psi: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """Cluster-robust (CR0 with the C/(C-1) factor) standard error of the mean of psi (..., n)."""
    n = psi.shape[-1]
    labels = np.broadcast_to(np.asarray(clusters), psi.shape).reshape(-1, n)
    d = (psi - psi.mean(axis=-1, keepdims=True)).reshape(-1, n)
    out = np.empty(len(d))
    for k in range(len(d)):
        _, codes = np.unique(labels[k], return_inverse=True)
        sums = np.bincount(codes, weights=d[k])
        c = len(sums)
        out[k] = np.sqrt(c / max(c - 1, 1) * np.sum(sums ** 2)) / n
    return out.reshape(psi.shape[:-1])


def _bootstrap(terms: Terms, x: np.ndarray, estimator: str, alpha: float, n_bootstrap: int, seed: int):
    """Percentile interval of ``n_bootstrap`` resamples of the decisions (per leading index)."""
    n = x.shape[-1]
    lead = x.shape[:-1]
    flat_x = x.reshape(-1, n)
    flat_w = np.broadcast_to(terms.w, x.shape).reshape(-1, n)
    rng = np.random.default_rng(seed)
    lower, upper = np.empty(len(flat_x)), np.empty(len(flat_x))
    chunk = max(1, 4_000_000 // n)
    for k in range(len(flat_x)):
        stats = []
        for start in range(0, int(n_bootstrap), chunk):
            idx = rng.integers(0, n, size=(min(chunk, int(n_bootstrap) - start), n))
            if estimator == "snips":
                ws = flat_w[k][idx].sum(axis=1)
                stats.append(np.divide(flat_x[k][idx].sum(axis=1), ws, out=np.full(len(ws), np.nan), where=ws > 0))
            else:
                stats.append(flat_x[k][idx].mean(axis=1))
        s = np.concatenate(stats)
        lower[k], upper[k] = np.nanquantile(s, alpha / 2), np.nanquantile(s, 1 - alpha / 2)
    return lower.reshape(lead), upper.reshape(lead)


# ---------------------------------------------------------------------- targets and the reward model
def parse_target(spec: str) -> tuple[str, Policy | None]:
    """``"ROUTER_SPEC"`` or ``"ROUTER_SPEC@POLICY_SPEC"`` (e.g. ``knn@softmax:temperature=0.1``)."""
    router, sep, policy = str(spec).partition("@")
    if not router.strip():
        raise ValueError(f"target {spec!r}: no router before '@'")
    return router.strip(), (parse_policy(policy) if sep else None)


def target_probabilities(router: "Router", X: np.ndarray | None, allowed: np.ndarray,
                         policy: Policy | None = None) -> np.ndarray:
    """float64 (n, m): a fitted router's choice distribution among ``allowed`` (n, m).

    Greedy over its scores (ties: the lower index, as ``route``) unless ``policy`` is given; a stochastic
    router (random) is uniform over the allowed LLMs.
    """
    if getattr(router, "requires_truth", False):
        raise DataError(f"router {router.name!r} needs the true scores to route: it cannot be evaluated off-policy")
    allowed = np.asarray(allowed, dtype=bool)
    if getattr(router, "stochastic", False) and policy is None:
        return allowed / allowed.sum(axis=1, keepdims=True)
    from recroute.routers.base import scores_among

    scores = scores_among(router, X if router.needs_features else None, allowed, len(allowed))
    return parse_policy(policy).probabilities(scores, allowed)


def fit_predict_log(router_spec: "str | Router", bandit: Bandit, X: np.ndarray | None, rows: np.ndarray,
                    prior: "tuple[np.ndarray, np.ndarray | None] | None" = None) -> np.ndarray:
    """float64 (len(rows), m): a router fitted on the log's observed cells, scoring the prompts ``rows``.

    ``prior`` (Y (k, m) float, NaN = unobserved; X (k, d) or None): full-information results on prompts
    that are not in the log, in the bandit's LLM order, stacked over the log's cells in the fit (the
    routing loop's anchored reward model, ``recroute.loop.refit``).
    """
    from recroute.routers.registry import make_router

    rtr = make_router(router_spec) if isinstance(router_spec, str) else _fresh(router_spec)
    uniq, Y = log_matrix(bandit)
    feats = None
    if rtr.needs_features:
        if X is None:
            raise DataError(f"router {rtr.name!r} needs prompt features X for the logged prompts")
        feats = np.asarray(X, dtype=np.float32)[uniq]
    if prior is not None:
        Y, feats = _with_prior(Y, feats, prior, rtr)
    rtr.fit(Y, feats)
    return rtr.score(None if feats is None else np.asarray(X, dtype=np.float32)[rows], n=len(rows)).astype(np.float64)


def _with_prior(Y: np.ndarray, feats: np.ndarray | None, prior: tuple, rtr: "Router") -> tuple:
    """(Y, feats) with the prior's rows on top, its prompts without any observed cell dropped."""
    Y_p, X_p = np.asarray(prior[0], dtype=np.float64), prior[1]
    if Y_p.ndim != 2 or Y_p.shape[1] != Y.shape[1]:
        raise DataError(f"prior results of shape {Y_p.shape}; expected (k, {Y.shape[1]}) in the log's LLM order")
    keep = ~np.isnan(Y_p).all(axis=1)
    Y = np.vstack([Y_p[keep], Y])
    if feats is not None:
        if X_p is None:
            raise DataError(f"router {rtr.name!r} needs prompt features for the prior's prompts too")
        feats = np.vstack([np.asarray(X_p, dtype=np.float32)[keep], feats])
    return Y, feats


def _fresh(router: "Router") -> "Router":
    return type(router)(**router.get_params())


def reward_model(bandit: Bandit, X: np.ndarray | None, router: "str | Router" = DEFAULT_REWARD_ROUTER,
                 folds: int = 2, seed: int = 0, repeats: bool = True,
                 prior: "tuple[np.ndarray, np.ndarray | None] | None" = None) -> np.ndarray:
    """float64 (n, m) q(x_i, ·) per decision from ``router`` fitted on the log itself.

    ``folds`` >= 2 cross-fits: the decisions are split at random into folds and each fold's q comes from a
    router fitted on the other folds' decisions (so q is independent of the decision it corrects);
    ``folds=1`` fits once on all decisions (in-sample). ``repeats``: where the same prompt was logged
    again and another of its decisions revealed the cell, q is that revealed mean instead (leave-one-out:
    a decision never sees its own outcome), exact when outcomes are a function of (prompt, LLM).
    ``prior``: full-information results stacked into every fit (:func:`fit_predict_log`).
    """
    folds = int(folds)
    if folds < 1:
        raise ValueError(f"folds must be at least 1; got {folds}")
    n = len(bandit)
    if folds == 1:
        uniq, inv = np.unique(bandit.rows, return_inverse=True)
        q = fit_predict_log(router, bandit, X, uniq, prior)[inv]
    else:
        fold = np.random.default_rng(seed).permutation(n) % folds
        q = np.empty((n, bandit.n_llms))
        for f in range(folds):
            test = fold == f
            uniq, inv = np.unique(bandit.rows[test], return_inverse=True)
            q[test] = fit_predict_log(router, bandit.take(~test), X, uniq, prior)[inv]
    return repeat_means(bandit, q) if repeats else q


def repeat_means(bandit: Bandit, q: np.ndarray) -> np.ndarray:
    """q (n, m) with each cell replaced by the mean outcome of the *other* decisions on the same prompt
    that chose that LLM, where there is one."""
    uniq, inv = np.unique(bandit.rows, return_inverse=True)
    m = bandit.n_llms
    total = np.zeros((len(uniq), m))
    count = np.zeros((len(uniq), m))
    np.add.at(total, (inv, bandit.chosen), bandit.reward)
    np.add.at(count, (inv, bandit.chosen), 1.0)
    T, C = total[inv], count[inv]
    idx = np.arange(len(bandit))
    T[idx, bandit.chosen] -= bandit.reward
    C[idx, bandit.chosen] -= 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(C > 0, T / np.maximum(C, 1.0), q)


def evaluate_targets(
    bandit: Bandit,
    X: np.ndarray | None,
    targets: dict[str, Any],
    *,
    q_hat: np.ndarray | None = None,
    reward_router: "str | Router" = DEFAULT_REWARD_ROUTER,
    folds: int = 2,
    estimators=ESTIMATORS,
    alpha: float = 0.05,
    interval: str = "normal",
    tau: float = DEFAULT_TAU,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (target, estimator): value, lower, upper, se, n.

    ``targets``: name -> fitted router, (fitted router, Policy | spec), or an (n, m) probability matrix
    at the logged decisions. X: features indexed by ``bandit.rows``. ``q_hat`` (n, m) replaces the reward
    model fitted on the log (``reward_router``, cross-fitted over ``folds``).
    """
    bad = [e for e in estimators if e not in ESTIMATORS]
    if bad:
        raise ValueError(f"unknown estimator(s) {bad}; expected some of {ESTIMATORS}")
    if q_hat is None:
        q_hat = reward_model(bandit, X, reward_router, folds, seed)
    feats = None if X is None else np.asarray(X, dtype=np.float32)[bandit.rows]
    rows = []
    for name, target in targets.items():
        probs = _target_matrix(target, feats, bandit.allowed)
        terms = decision_terms(bandit, probs, q_hat)
        for est in estimators:
            out = estimate(terms, est, alpha=alpha, interval=interval, tau=tau, seed=seed, clusters=bandit.rows)
            rows.append({"target": name, "estimator": est, **{k: float(v) for k, v in out.items()}, "n": len(bandit)})
    return pd.DataFrame(rows)


def _target_matrix(target, feats, allowed) -> np.ndarray:
    if isinstance(target, np.ndarray):
        return target
    if isinstance(target, tuple):
        router, policy = target
        return target_probabilities(router, feats, allowed, None if policy is None else parse_policy(policy))
    return target_probabilities(target, feats, allowed)


def true_value(target: np.ndarray, truth: np.ndarray) -> float:
    """The target's exact value on a population: mean_x sum_a pi(a|x) Y(x, a); target (N, m), truth (N, m).

    Cells with pi = 0 are ignored (they may be unobserved, NaN); a NaN where pi > 0 is an error.
    """
    target = np.asarray(target, dtype=np.float64)
    if np.isnan(truth[target > 0]).any():
        raise DataError("the target puts probability on an unobserved cell: its true value is undefined")
    return float(np.where(target > 0, target * np.nan_to_num(truth), 0.0).sum(axis=1).mean())
