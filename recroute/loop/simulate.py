"""The stream simulator, in process: a dataset's prompts arrive once each as traffic to a live router
that routes by the exploration policy, every outcome comes back from the stored results, and the loop
(:func:`~recroute.loop.runner.refit_and_gate`, :func:`~recroute.loop.onboard.onboard_llm`) refits,
gates, promotes and onboards exactly as ``recroute loop run`` does, without HTTP. The truth is known
here, so every promotion's true effect and the live router's true mu_o are measured.

Setting: the live router starts fitted with full information on ``start_share`` of the prompts (the
anchor); the other prompts arrive in a random order (``seed``), ``decisions`` of them, never repeated.
A ``new_llm`` is left out of the pool until ``new_llm_at`` (a share of the stream), then onboarded by
probing the anchor. At each decision the candidates are the pool's LLMs whose result was observed.
``explore``: "epsilon" (ε-greedy over the top k, each refit gated on the most recent ``holdout``) or
"shadow" (``recroute.loop.shadow``: the last refit, conservative by ``shadow_tau``, explored within the
budget and gated on the decisions since it became the shadow, up to ``shadow_looks`` times). The
logging probabilities of every decision are kept, so the gate's design interval applies.
``anchor_reward``: the DR reward model of the refits and of the shadow's gate is fitted on the anchor's
full-information results too (``recroute.loop.refit.Anchor.prior``). ``onboard_shadow`` (with
"shadow"): when a new LLM is promoted, a shadow that knows it is fitted at once (its cells at the prompts
logged before it joined prefilled by the placement's regression, ``recroute.loop.onboard.prefill_column``),
explored from then on and first gated once its window holds half a refit period.

Every gated candidate is recorded with its estimate and its true delta (``gated``), promoted or not.
True mu_o of a router on a set of prompts: the mean stored score of its top allowed LLM.
``mu_o_full``: the same family fitted with full information on every prompt before the last
``window`` decisions (anchor included, every LLM of the final pool), on the last window's prompts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.feedback.policies import greedy_matrix, sample_rows
from recroute.loop.exploration import budget_policy
from recroute.loop.onboard import onboard_llm, prefill_column
from recroute.loop.refit import Anchor, LogData
from recroute.loop.runner import LoopSettings, best_verdict, refit_and_gate
from recroute.loop.shadow import (
    FIRST_Z,
    Conservative,
    first_disagreement,
    first_epsilon,
    look_alpha,
    policy_depth,
    retune_epsilon,
    shadow_probabilities,
    shallow_promotion,
)


@dataclass
class StreamConfig:
    family: str = "knn"
    start_share: float = 0.05
    decisions: int | None = None  # None: every prompt outside the anchor once
    explore_budget: float = 0.02
    explore_top_k: int | None = 3
    explore: str = "epsilon"  # "epsilon": ε-greedy over the top k; "shadow": recroute.loop.shadow
    shadow_tau: float = 0.0  # > 0: the shadow is Conservative(refit, live, tau)
    shadow_looks: int = 3  # refits a shadow is gated at (on its growing window) before a fresh one replaces it
    anchor_reward: bool = False  # the DR reward model (refit completion and shadow gate) fitted on the anchor too
    onboard_shadow: bool = False  # on onboarding, a shadow with the new LLM is fitted at once (explore="shadow")
    shallow: bool = True  # tau > 0: after the conservative policy passes, gate its plain refit (promoted if it passes)
    retune: bool = True  # after a look that keeps the shadow, ε set again from its served disagreement (the runner's rule)
    first_epsilon: str = "max"  # a fresh shadow's d (its ε): "max" of "trained" and "heldout" (shadow.first_disagreement)
    new_llm: str | None = None
    new_llm_at: float = 0.5
    window: int = 2000
    bucket: int = 500  # decisions per point of the over-time curves
    settings: LoopSettings = field(default_factory=LoopSettings)


def true_mu(router, X: np.ndarray | None, truth: np.ndarray, allowed: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean true score of the router's top allowed LLM, its picks (n,)); truth/allowed (n, m) in the
    router's LLM order. A router whose choice depends on the candidates (a conservative router: live's
    choice at each level among ``allowed``, as the gateway takes it) is scored among them (``scores_among``)."""
    from recroute.routers.base import scores_among

    scores = scores_among(router, X if router.needs_features else None, allowed, len(truth))
    pick = greedy_matrix(scores, allowed).argmax(axis=1)
    return float(np.nan_to_num(truth[np.arange(len(truth)), pick]).mean()), pick


def simulate_stream(data, X: np.ndarray | None, config: StreamConfig, seed: int = 0,
                    on_event: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """One seed's run: {mu_o_live, mu_o_full, mu_o_start, promotions, curve, new_llm, ...} (module docstring)."""
    from recroute.routers.registry import make_router

    names = [str(n) for n in data.llm_names]
    col = {n: j for j, n in enumerate(names)}
    truth_all = data.dense(np.nan).astype(np.float64)
    observed = ~np.isnan(truth_all)
    rng = np.random.default_rng(seed)
    start, stream = stream_order(observed, config, rng)
    n0 = len(start)
    if config.new_llm is not None and config.new_llm not in col:
        raise DataError(f"--new-llm {config.new_llm!r} is not an LLM of the dataset ({names[:8]}...)")
    pool = [n for n in names if n != config.new_llm]
    feats = (lambda rows: None if X is None else X[rows])
    live = make_router(config.family).fit(truth_all[start][:, [col[n] for n in pool]].astype(np.float32), feats(start))
    live.llm_names_ = np.asarray(pool, dtype=object)
    anchor = Anchor(feats(start), truth_all[start], names)
    policy = budget_policy(config.explore_budget, config.explore_top_k)
    settings = config.settings
    every = settings.schedule.every_outcomes or 1000
    add_at = None if config.new_llm is None else int(config.new_llm_at * len(stream))

    def cols_of(router) -> np.ndarray:
        return np.array([col[str(n)] for n in router.llm_names_], dtype=np.int64)

    X_stream = feats(stream)  # one array: a Conservative's levels score it once (recroute.loop.shadow)
    on_stream: dict[int, tuple[object, float]] = {}  # id(router) -> (router, its true mu_o on the stream)

    def mu_on(router, rows) -> float:
        if rows is stream and id(router) in on_stream:  # the live router and a shadow are scored once
            return on_stream[id(router)][1]
        c = cols_of(router)
        mu = true_mu(router, X_stream if rows is stream else feats(rows), truth_all[rows][:, c], observed[rows][:, c])[0]
        if rows is stream:
            on_stream[id(router)] = (router, mu)
        return mu

    eval_rows = stream  # the deployment population of every promotion's true delta
    log_rows, log_allowed, log_chosen, log_p, log_r, log_P0 = [], [], [], [], [], []
    greedy_true, greedy_llm = np.zeros(len(stream)), np.empty(len(stream), dtype=object)
    served_llm = np.empty(len(stream), dtype=object)
    p_greedy = np.ones(len(stream))  # the probability of live's greedy choice at each decision
    shadow_differs = np.zeros(len(stream), dtype=bool)  # the served shadow's choice differs from live's there

    def window(a: int, b: int) -> dict:  # the served exploration of decisions a..b-1 (a shadow's window)
        return {"off_greedy_expected": float(np.mean(1.0 - p_greedy[a:b])),
                "off_greedy_served": float(np.mean(served_llm[a:b] != greedy_llm[a:b])),
                "differ_served": float(np.mean(shadow_differs[a:b]))}
    new_tie_share = np.zeros(len(stream))  # the new LLM's share of each greedy choice with ties split evenly
    promotions, gated, probes = [], [], None
    shadow, shadow_since, shadow_eps, looks = None, 0, 0.0, 0
    prefill = None  # the onboarded LLM's predicted results at the prompts logged before it joined
    notes: dict = {}  # the current shadow's disagreement estimates at install (d_heldout, d_trained)
    mu_start = mu_on(live, eval_rows)
    t = 0
    while t < len(stream):
        stop = min(len(stream), (t // every + 1) * every)
        if add_at is not None and t <= add_at < stop and probes is None:
            stop = add_at if add_at > t else stop
        if add_at is not None and t == add_at and probes is None:
            seen = np.unique(np.concatenate(log_rows)) if log_rows else np.zeros(0, dtype=np.int64)
            got = onboard_llm(live, anchor, config.new_llm, lambda row: float(np.nan_to_num(truth_all[start[row], col[config.new_llm]])),
                              settings.probe_budget, None if X is None else X[seen], min_probes=settings.min_probes,
                              probe_every=settings.probe_every, alpha=settings.alpha, margin=settings.onboard_margin,
                              min_support=settings.onboard_min_support, seed=seed, design=settings.onboard_design)
            probes = {"llm": config.new_llm, "probes": got.probes, "placed": got.placed is not None, "at": t,
                      "reason": got.reason, "gate": None if got.gate is None else got.gate.to_dict(),
                      "true_delta": mu_on(got.candidate, eval_rows) - mu_on(live, eval_rows)}  # promoted or not
            if got.placed is not None:
                anchor.Y[got.rows, col[config.new_llm]] = got.results  # probe results join the anchor
                promotions.append(_promotion("onboard", t, got.placed, live, mu_on, eval_rows, got.gate))
                if config.onboard_shadow and X is not None and len(seen):
                    prefill = prefill_column(live, got.regression, X, seen, len(truth_all))
                live, shadow = got.placed, None  # a shadow without the new LLM cannot explore for it
                if config.onboard_shadow and config.explore == "shadow" and log_rows:
                    logged = LogData(_bandit(log_rows, log_allowed, log_chosen, log_p, log_r, names, cols_of(live)), X,
                                     [], np.zeros(0), logging=np.concatenate(log_P0)[:, cols_of(live)])
                    shadow, shadow_since, shadow_eps = _fresh_shadow(live, logged, settings, anchor, seed, config,
                                                                     cols_of, prefill, notes)
                    looks = 0
            else:  # not placed: its probe results are still known
                anchor.Y[got.rows, col[config.new_llm]] = got.results
            if on_event:
                on_event({"event": "onboard", **probes})
            if stop == t:
                continue
        rows = stream[t:stop]
        c = cols_of(live)
        allowed = observed[rows][:, c]
        scores, P, differ = decision_probabilities(live, shadow, feats(rows), allowed, shadow_eps, policy)
        chosen = sample_rows(P, rng)
        prop = P[np.arange(len(rows)), chosen]
        truth = truth_all[rows][:, c]
        pick = greedy_matrix(scores, allowed).argmax(axis=1)
        p_greedy[t:stop], shadow_differs[t:stop] = P[np.arange(len(rows)), pick], differ
        greedy_true[t:stop] = np.nan_to_num(truth[np.arange(len(rows)), pick])
        live_names = np.asarray(live.llm_names_, dtype=object)
        greedy_llm[t:stop], served_llm[t:stop] = live_names[pick], live_names[chosen]
        if config.new_llm in set(map(str, live_names)):
            new_tie_share[t:stop] = tie_split_share(scores, allowed, list(map(str, live_names)).index(config.new_llm))
        full_allowed = np.zeros((len(rows), len(names)), dtype=bool)
        full_allowed[:, c] = allowed
        log_rows.append(rows), log_allowed.append(full_allowed), log_chosen.append(c[chosen])
        log_p.append(prop), log_r.append(truth[np.arange(len(rows)), chosen])
        P0 = np.zeros((len(rows), len(names)))
        P0[:, c] = P
        log_P0.append(P0)
        t = stop
        n_log = t
        if t % every == 0 and n_log >= settings.min_outcomes and t < len(stream):
            bandit = _bandit(log_rows, log_allowed, log_chosen, log_p, log_r, names, cols_of(live))
            logged = LogData(bandit, X, [], np.zeros(0), logging=np.concatenate(log_P0)[:, cols_of(live)])
            if config.explore == "shadow":
                live, shadow, shadow_since, shadow_eps, looks = _shadow_step(
                    live, shadow, shadow_since, looks, logged, settings, anchor, seed, config, cols_of, t, gated,
                    promotions, mu_on, eval_rows, shadow_eps, prefill, window, notes)
                continue
            verdicts = refit_and_gate(live, logged, settings, anchor, seed)
            best = best_verdict(verdicts)
            for v in verdicts:  # every gated candidate's true effect: the evidence for the rule
                gated.append({"at": int(t), "family": v.family, "estimated_delta": v.result.delta,
                              "lower": v.result.lower, "support": v.result.support, "promoted": v is best,
                              "se": v.result.se, "se_empirical": v.result.se_empirical,
                              "expected_support": v.result.expected_support, "unsupported": v.result.unsupported,
                              "true_delta": mu_on(v.router, eval_rows) - mu_on(live, eval_rows)})
            if on_event:
                on_event({"event": "refit", "at": t, "verdicts": [(v.family, v.result.delta, v.result.lower,
                                                                   v.result.support, v.promote) for v in verdicts]})
            if best is not None:
                promotions.append(_promotion("refit", t, best.router, live, mu_on, eval_rows, best.result))
                live = best.router
    last = slice(max(0, len(stream) - config.window), len(stream))
    before = np.concatenate([start, stream[: last.start]])
    final_pool = [n for n in names if n in set(map(str, live.llm_names_))] if config.new_llm else pool
    full = _full_router(config.family, truth_all, observed, before, final_pool, col, feats)
    out = {
        "seed": seed, "family": config.family, "n_start": int(n0), "n_decisions": int(len(stream)),
        "explore_budget": config.explore_budget, "explore_top_k": config.explore_top_k,
        "mu_o_start": mu_start, "mu_o_live": float(greedy_true[last].mean()),
        "mu_o_full": mu_on(full, stream[last]), "served_mean": float(np.concatenate(log_r)[last].mean()),
        "off_greedy_share": float(np.mean(served_llm != greedy_llm)),
        "promotions": promotions, "gated": gated, "live_depth": policy_depth(live),
        "curve": _curve(greedy_true, served_llm, config, stream, start, truth_all, observed, final_pool, col, feats, mu_on),
    }
    out["ratio"] = out["mu_o_live"] / out["mu_o_full"] if out["mu_o_full"] > 0 else float("nan")
    if config.new_llm is not None:
        out["new_llm"] = _new_llm_share(config, stream, add_at, served_llm, new_tie_share, probes, truth_all, observed,
                                        start, names, col, feats)
    return out


def _shadow_step(live, shadow, since, looks, logged, settings, anchor, seed, config, cols_of, t, gated, promotions,
                 mu_on, eval_rows, eps, prefill=None, window=None, notes=None):
    """Shadow exploration's refit (recroute.loop.shadow): gate the shadow on the decisions since it
    became one (look j at level alpha / (j (j + 1))) and, when it passes, its plain refit at the same level
    (``shallow_promotion``), promote the last that passed; retune ε after a look that keeps it (the
    runner's rule, ``config.retune``); a fresh shadow fitted
    on every decision replaces it then, or after ``config.shadow_looks`` looks; (live, shadow, since, ε, looks)."""
    same = shadow is not None and list(map(str, shadow.llm_names_)) == list(map(str, live.llm_names_))
    every = settings.schedule.every_outcomes or 1000
    if same and len(logged.bandit) - since < max(2, every // 2):  # a shadow fitted between refits (onboarding):
        return live, shadow, since, eps, looks  # its first look waits for a window of at least half a period
    if same and since < len(logged.bandit) - 1:
        looks += 1
        level = look_alpha(settings.alpha, looks, config.shadow_looks)
        plain = shadow.refit if isinstance(shadow, Conservative) and config.shallow else None
        stages, chosen = shallow_promotion(shadow, plain, live, logged, since, level, settings.margin,
                                           settings.reward_router, seed, anchor=anchor if config.anchor_reward else None)
        ok = chosen is not None
        for st in stages:  # the plain refit's row only when the conservative one passed (the fixed sequence)
            result = st.result
            gated.append({"at": int(t), "family": config.family, "stage": st.stage, "estimated_delta": result.delta,
                          "lower": result.lower, "support": result.support, "promoted": st is chosen,
                          "passed": st.ok, "se": result.se,
                          "se_empirical": result.se_empirical, "expected_support": result.expected_support,
                          "unsupported": result.unsupported, "disagree": result.disagree, "n": result.n,
                          "look": looks, "since": int(since), "epsilon": eps,  # the served exploration of its window:
                          **({} if window is None else window(since, int(t))), **(notes or {}),
                          "true_delta": mu_on(st.router, eval_rows) - mu_on(live, eval_rows)})
        if ok:
            promotions.append({**_promotion("refit", t, chosen.router, live, mu_on, eval_rows, chosen.result),
                               "stage": chosen.stage, "depth": policy_depth(chosen.router)})
            live = chosen.router
        if not ok and looks < config.shadow_looks:  # kept for another look: ε set again from what it served
            if config.retune and window is not None and t > since:  # (the runner's retuned_epsilon)
                eps = retune_epsilon(window(since, int(t))["differ_served"], eps, config.explore_budget,
                                     settings.shadow_cap) or eps
            return live, shadow, since, eps, looks
    shadow, since, eps = _fresh_shadow(live, logged, settings, anchor, seed, config, cols_of, prefill, notes)
    return live, shadow, since, eps, 0


def _fresh_shadow(live, logged, settings, anchor, seed, config, cols_of, prefill=None, notes=None):
    """(shadow, since, ε): a refit on every decision so far (``prefill``: an onboarded LLM's predicted results
    where it was never a candidate), conservative by ``config.shadow_tau``, explored at ε from now on:
    ε = ``shadow.first_epsilon`` of ``shadow.first_disagreement`` on the most recent ``settings.holdout``
    decisions (``config.first_epsilon``: "max" of both estimates, or only "trained" (the shadow on the
    prompts it trained on: the rule before this change, at z = 0 below) or "heldout"); ``notes`` gets the
    estimates."""
    from recroute.loop.refit import fit_candidate

    spec = (settings.families or (config.family,))[0]
    fill = prefill if prefill is not None and prefill.shape[1] == len(cols_of(live)) else None

    def served(bandit):
        refit = fit_candidate(spec, bandit, logged.X, anchor, settings.reward_router, seed=seed,
                              anchor_reward=config.anchor_reward, prefill=fill)
        return Conservative(refit, live, config.shadow_tau) if config.shadow_tau > 0 else refit

    shadow = served(logged.bandit)
    which = {"max": ("trained", "heldout"), "trained": ("trained",), "heldout": ("heldout",)}.get(config.first_epsilon)
    if which is None:
        raise DataError(f"first_epsilon must be 'max', 'trained' or 'heldout'; got {config.first_epsilon!r}")
    est = first_disagreement(live, shadow, logged.bandit, logged.X, settings.holdout, served, which)
    if notes is not None:
        notes.clear()
        notes.update(est)
    z = 0.0 if config.first_epsilon == "trained" else FIRST_Z  # "trained": the runner's rule before (z = 0)
    return shadow, len(logged.bandit), first_epsilon(est, config.explore_budget, z=z)


def decision_probabilities(live, shadow, X: np.ndarray | None, allowed: np.ndarray, epsilon: float, policy):
    """(live's scores (n, m), logging probabilities P (n, m), bool (n,) the served shadow's choice differs
    from live's) of one batch (features ``X`` or None, candidates ``allowed`` bool (n, m)): without a
    shadow live's ``policy``; with one the gateway's rule (``recroute.serve.shadow_serving``): live's
    choice among the candidates, the shadow's (conservative over live) among the same, mixed at ε. One
    feature array for both: a conservative shadow over live scores live's levels once."""
    from recroute.routers.base import scores_among

    n = len(allowed)
    scores = scores_among(live, X if live.needs_features else None, allowed, n)
    if shadow is None:
        return scores, policy.probabilities(scores, allowed), np.zeros(n, dtype=bool)
    shadow_scores = scores_among(shadow, X if shadow.needs_features else None, allowed, n)
    P = shadow_probabilities(scores, shadow_scores, allowed, epsilon)
    differ = greedy_matrix(scores, allowed).argmax(axis=1) != greedy_matrix(shadow_scores, allowed).argmax(axis=1)
    return scores, P, differ


def stream_order(observed: np.ndarray, config: StreamConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(start rows, stream rows): the prompts with an observed result in random order, the first
    ``start_share`` of them the anchor, then ``decisions`` of the others (each once)."""
    perm = rng.permutation(np.flatnonzero(observed.any(axis=1)))
    n0 = max(int(round(config.start_share * len(perm))), 2)
    start, stream = perm[:n0], perm[n0:]
    if config.decisions is not None:
        if config.decisions > len(stream):
            raise DataError(f"{config.decisions} decisions asked but only {len(stream)} prompts outside the start set "
                            "(each prompt arrives once)")
        stream = stream[: config.decisions]
    return start, stream


def _bandit(rows, allowed, chosen, prop, reward, names, cols) -> Bandit:
    """The log so far as a Bandit over the live router's LLM columns ``cols`` (into ``names``)."""
    A = np.concatenate(allowed)[:, cols]
    where = {int(c): j for j, c in enumerate(cols)}
    ch = np.array([where[int(c)] for c in np.concatenate(chosen)], dtype=np.int64)
    return Bandit(np.concatenate(rows).astype(np.int64), A, ch, np.concatenate(prop), np.concatenate(reward),
                  np.asarray(names, dtype=object)[cols])


def _promotion(kind, at, new, old, mu_on, rows, result=None) -> dict:
    mu_new, mu_old = mu_on(new, rows), mu_on(old, rows)
    row = {"kind": kind, "at": int(at), "true_mu_o": mu_new, "true_mu_o_replaced": mu_old, "true_delta": mu_new - mu_old}
    if result is not None:
        row.update(estimated_delta=result.delta, lower=result.lower, support=result.support)
    return row


def _full_router(family, truth_all, observed, rows, pool, col, feats):
    """``family`` fitted with full information on ``rows`` over the LLMs ``pool``."""
    from recroute.routers.registry import make_router

    c = [col[n] for n in pool]
    router = make_router(family).fit(truth_all[rows][:, c].astype(np.float32), feats(rows))
    router.llm_names_ = np.asarray(pool, dtype=object)
    return router


def _curve(greedy_true, served_llm, config, stream, start, truth_all, observed, pool, col, feats, mu_on) -> list[dict]:
    """Per bucket of decisions: the live router's true mu_o, the full-information router's (the family
    fitted with full information on the anchor and every earlier prompt of the stream, over the final
    pool) on the same prompts, and the new LLM's share of the served traffic."""
    out = []
    for a in range(0, len(stream), config.bucket):
        b = min(len(stream), a + config.bucket)
        full = _full_router(config.family, truth_all, observed, np.concatenate([start, stream[:a]]), pool, col, feats)
        row = {"end": b, "mu_o_live": float(greedy_true[a:b].mean()), "mu_o_full": mu_on(full, stream[a:b])}
        if config.new_llm is not None:
            row["new_llm_share"] = float(np.mean(served_llm[a:b] == config.new_llm))
        out.append(row)
    return out


def tie_split_share(scores: np.ndarray, allowed: np.ndarray, j: int) -> np.ndarray:
    """float64 (n,): LLM j's share of each prompt's greedy choice when a tie at the top is split evenly
    (1 / the number of allowed LLMs tied at the top where j is one of them, else 0): a share that does not
    depend on the column order, which decides kNN's ties (the lower LLM index wins)."""
    s = np.where(allowed, np.asarray(scores, dtype=np.float64), -np.inf)
    top = allowed & (s >= s.max(axis=1, keepdims=True) - 1e-6)
    return np.where(top[:, j], 1.0 / np.maximum(top.sum(axis=1), 1), 0.0)


def _new_llm_share(config, stream, add_at, served_llm, new_tie_share, probes, truth_all, observed, start, names, col,
                   feats) -> dict:
    """The new LLM's share over the 500 decisions ending 2,000 after its arrival, against the
    full-information router's share on the same prompts (fitted on every other prompt, whole pool), three
    ways: ``share_full`` with the LLMs in the dataset's order (as the start of the issue measured it),
    ``share_full_last`` with the new LLM last (its position in the live router, so kNN's tie order treats
    both alike), and both routers' shares with ties split evenly (``share_live_split`` / ``share_full_split``,
    free of the column order)."""
    b = min(len(stream), add_at + 2000)
    a = max(add_at, b - 500)
    rows = stream[a:b]
    others = np.setdiff1d(np.concatenate([start, stream]), rows)
    last = [n for n in names if n != config.new_llm] + [config.new_llm]
    out = {**(probes or {}), "window": [int(a), int(b)], "share_live": float(np.mean(served_llm[a:b] == config.new_llm)),
           "share_live_split": float(new_tie_share[a:b].mean())}
    for key, order in (("share_full", names), ("share_full_last", last)):
        full = _full_router(config.family, truth_all, observed, others, order, col, feats)
        c = [col[n] for n in order]
        allowed = observed[rows][:, c]
        _, pick = true_mu(full, feats(rows), truth_all[rows][:, c], allowed)
        out[key] = float(np.mean(np.asarray(order, dtype=object)[pick] == config.new_llm))
        if key == "share_full_last":
            scores = full.score(feats(rows) if full.needs_features else None, n=len(rows))
            out["share_full_split"] = float(tie_split_share(scores, allowed, len(order) - 1).mean())
    for key, live, full in (("share_ratio", "share_live", "share_full"), ("share_ratio_last", "share_live", "share_full_last"),
                            ("share_ratio_split", "share_live_split", "share_full_split")):
        out[key] = out[live] / out[full] if out[full] > 0 else float("nan")
    return out
