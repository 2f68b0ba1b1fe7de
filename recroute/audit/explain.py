"""Per-decision explanations: why the router sent a prompt to one LLM.

:func:`explain_arrays` returns one JSON-able dict per prompt::

    {"llm": chosen, "runner_up": name | None, "margin": utility(chosen) - utility(runner_up) | None,
     "tie": bool (margin 0: the choice went to the lower LLM position), "cost_weight": lambda | None,
     "candidates": [{"llm", "score", "cost", "utility", "allowed", "low", "high", "spread", "n_evidence"}, ...]
                   (allowed ones best first, then the excluded ones),
     "uncertainty": {"kind": "beta" | "members" | None, "note": str},
     "evidence": {"kind": "neighbours" | "cluster" | "irt" | "representation" | None, ...},
     "counterfactuals": {"flip_up": {"cost_weight", "llm"} | None, "flip_down": {...} | None,
                         "excluded_best": {"llm", "utility"} | None, "note": str}}

The decision it explains is the shared one (``recroute.cost.decide``): router scores, then the utility
``score - cost_weight · cost`` when a cost weight is given, then the candidate / ``max_cost`` masks, then
the argmax (ties to the lower LLM position).

Uncertainty and evidence by family: kNN gives the neighbours (training rows from ``router.kneighbors``,
their texts when the training dataset is given, each candidate's outcome on them) and a Beta(1 + wins,
1 + losses) posterior per LLM; the ensemble gives its bagged members' spread; the cluster router its
cluster; a conservative router says its rule (its scores are its refit's plus tau on live's choice among
the candidates, float64); other routers the nearest training prompts in their own representation (two-tower prompt
vectors, else the router's score profile) when the training dataset is given, and no uncertainty.

Counterfactuals: along lambda the utilities are lines ``s_j - lambda · c_j``, so the choice flips where
the chosen line is first crossed: ``flip_up`` is the smallest lambda above the current one at which
another allowed LLM wins (just above it, that LLM is chosen), ``flip_down`` the largest one below it;
``excluded_best`` is the LLM outside the candidates (or over ``max_cost``) that would have been chosen
had it been allowed.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from recroute.errors import DataError

INTERVAL = 0.90          # the Beta posterior's central interval
MAX_EVIDENCE_TEXT = 300  # characters of a neighbour's text kept in an explanation


# ---------------------------------------------------------------------- the decision step
def decision_values(scores: np.ndarray, costs: np.ndarray | None, cost_weight, max_cost, allowed: np.ndarray,
                    names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values float64 (n, m), allowed bool (n, m), chosen int64 (n,)) of the shared decision step."""
    from recroute.cost.decide import cost_aware_scores, greedy_top_k

    values, mask = cost_aware_scores(scores, costs if (cost_weight is not None or max_cost is not None) else None,
                                     cost_weight, max_cost, allowed, names)
    return values, mask, greedy_top_k(values, mask, 1)[:, 0]


def cost_flips(scores: np.ndarray, costs: np.ndarray, allowed: np.ndarray, chosen: int,
               lam0: float) -> tuple[tuple[float, int] | None, tuple[float, int] | None]:
    """((lambda, llm) just above which the choice first changes, (lambda, llm) just below which it last
    changed) for one prompt: ``scores``, ``costs`` (m,), ``allowed`` (m,) bool, ``chosen`` at ``lam0``."""
    s, c = np.asarray(scores, dtype=np.float64), np.asarray(costs, dtype=np.float64)
    others = np.flatnonzero(allowed)
    others = others[others != chosen]
    up = down = None
    cheaper = others[c[others] < c[chosen]]
    if cheaper.size:
        lam = np.maximum((s[chosen] - s[cheaper]) / (c[chosen] - c[cheaper]), lam0)
        first = lam.min()
        tied = cheaper[lam <= first + 1e-12 * abs(first)]
        winner = tied[np.lexsort((tied, c[tied]))[0]]  # just above the crossing: the cheapest line wins
        up = (float(first), int(winner))
    dearer = others[c[others] > c[chosen]]
    if dearer.size and lam0 > 0:
        lam = (s[dearer] - s[chosen]) / (c[dearer] - c[chosen])
        # at lambda 0 itself (an equal score) a dearer LLM wins only by the lower position
        below = (lam < lam0) & ((lam > 0) | ((lam == 0) & (dearer < chosen)))
        if below.any():
            last = lam[below].max()
            tied = dearer[below][lam[below] >= last - 1e-12 * abs(last)]
            if last > 0:
                winner = tied[np.lexsort((tied, -c[tied]))[0]]  # just below it: the dearest line wins
            else:
                winner = tied.min()  # lambda 0: equal utilities, the lower position wins
            down = (float(last), int(winner))
    return up, down


# ---------------------------------------------------------------------- uncertainty by family
def _beta_interval(wins: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from scipy.special import betaincinv  # the Beta quantile function, without importing scipy.stats

    a, b = 1.0 + wins, 1.0 + (n - wins)
    tail = (1.0 - INTERVAL) / 2
    return betaincinv(a, b, tail), betaincinv(a, b, 1.0 - tail)


def _knn_parts(router, X: np.ndarray) -> dict[str, np.ndarray]:
    """The neighbours (n, k) from ``router.kneighbors``, their outcomes (n, k, m) and the Beta posterior."""
    rows = np.asarray(router.kneighbors(X), dtype=np.int64)
    outcomes = np.asarray(router.train_scores_, dtype=np.float64)[np.maximum(rows, 0)]
    outcomes[rows < 0] = np.nan
    observed = ~np.isnan(outcomes)
    n_obs = observed.sum(axis=1).astype(np.float64)
    wins = np.where(observed, outcomes, 0.0).sum(axis=1)
    low, high = _beta_interval(wins, n_obs)
    mean = wins / np.maximum(n_obs, 1)
    spread = np.sqrt(np.where(observed, (outcomes - mean[:, None, :]) ** 2, 0.0).sum(axis=1) / np.maximum(n_obs, 1))
    return {"rows": rows, "outcomes": outcomes, "low": low, "high": high, "spread": np.nan_to_num(spread),
            "n_evidence": n_obs, "distances": _neighbour_distances(router, X, rows)}


def _neighbour_distances(router, X: np.ndarray, rows: np.ndarray) -> np.ndarray | None:
    """float64 (n, k) distances in the router's metric, from the vectors its index stores; None if it cannot tell."""
    try:
        stored = router.index_.reconstruct_batch(np.maximum(rows, 0).ravel()).reshape(*rows.shape, -1)
    except Exception:  # an index without a direct map (IVF): distances left out
        return None
    Q = np.asarray(X, dtype=np.float64)
    if router.metric == "cosine":
        Q = Q / np.maximum(np.linalg.norm(Q, axis=1, keepdims=True), 1e-30)
        dist = 1.0 - np.einsum("nd,nkd->nk", Q, stored.astype(np.float64))
    else:
        dist = ((stored.astype(np.float64) - Q[:, None, :]) ** 2).sum(axis=2)
    return np.where(rows >= 0, dist, np.nan)


def _member_parts(router, X: np.ndarray | None, n: int) -> dict[str, np.ndarray]:
    """The ensemble's bagged copies: spread (std), min and max of their (calibrated) scores, (n, m) each."""
    copies = []
    for routers, calibrators in zip(router.members_, router.calibrators_):
        for member, calibrator in zip(routers, calibrators):
            S = np.asarray(member.score(X, n=n), dtype=np.float64)
            copies.append(S if calibrator is None else calibrator.transform(S))
    stack = np.stack(copies)
    return {"low": stack.min(axis=0), "high": stack.max(axis=0), "spread": stack.std(axis=0),
            "n_evidence": np.full(stack.shape[1:], float(len(copies)))}


# ---------------------------------------------------------------------- evidence
def _training_lookup(training) -> tuple[np.ndarray, np.ndarray] | None:
    """(prompt ids, texts) object arrays of the training dataset, or None without one."""
    return None if training is None else (training.prompt_ids, training.prompts["text"].to_numpy(dtype=object))


def _training_rows_table(lookup, rows: np.ndarray) -> list[dict[str, Any]]:
    """prompt_id and (shortened) text of training rows, from the dataset the router was fitted on."""
    if lookup is None:
        return [{} for _ in rows]
    ids, texts = lookup
    out = []
    for r in rows:
        if r < 0:
            out.append({})
            continue
        text = texts[int(r)]
        out.append({"prompt_id": str(ids[int(r)]),
                    "text": None if not isinstance(text, str) else text[:MAX_EVIDENCE_TEXT]})
    return out


def _check_training(router, training) -> None:
    if training is None:
        return
    n_train = getattr(getattr(router, "index_", None), "ntotal", None)
    if n_train is not None and int(n_train) != training.n_prompts:
        raise DataError(f"the training dataset has {training.n_prompts} prompts but the router was fitted on "
                        f"{n_train}: give the dataset the bundle was fitted on")
    if [str(x) for x in training.llm_names] != [str(x) for x in router.llm_names_]:
        raise DataError("the training dataset's LLMs differ from the router's: give the dataset the bundle was fitted on")


def _representation(router, X: np.ndarray | None, n: int) -> np.ndarray:
    """float32 (n, r): the router's own view of a prompt (two-tower prompt vectors, else its score profile)."""
    if callable(getattr(router, "prompt_vectors", None)):
        return np.asarray(router.prompt_vectors(X)[0], dtype=np.float32)
    return np.asarray(router.score(X, n=n), dtype=np.float32)


def _representation_neighbours(router, X, n: int, training, k: int) -> np.ndarray | None:
    """int64 (n, k) training rows nearest in the router's representation (needs the training dataset)."""
    if training is None or (router.needs_features and training.embeddings is None):
        return None
    from recroute.routers.knn import exact_neighbours

    X_train = training.embeddings if router.needs_features else None
    train_rep = _representation(router, X_train, training.n_prompts)
    return np.asarray(exact_neighbours(train_rep, _representation(router, X, n), k, metric="l2"), dtype=np.int64)


# ---------------------------------------------------------------------- explanations
def _family_view(router, X, n: int, training, n_neighbours: int):
    """(parts {low, high, spread, n_evidence (n, m); kNN: rows, outcomes, distances}, uncertainty kind, its
    note, evidence kind, clusters (n,) | None, representation neighbours (n, k) | None) for the router's family."""
    parts: dict[str, np.ndarray] = {}
    kind, note = None, f"router {router.name!r} gives a point estimate only (no spread over evidence or members)"
    evidence_kind = None
    if hasattr(router, "refit") and hasattr(router, "tau") and router.name == "conservative":
        note = (f"conservative router: its refit's scores with tau = {router.tau:g} added on the live router's "
                f"choice among the candidates (the refit's choice only where it wins by more than tau); a point estimate")
    elif callable(getattr(router, "kneighbors", None)) and hasattr(router, "train_scores_"):
        parts = _knn_parts(router, X)
        kind, evidence_kind = "beta", "neighbours"
        note = (f"Beta(1 + wins, 1 + losses) posterior from the {parts['rows'].shape[1]} neighbours' outcomes, "
                f"central {INTERVAL:.0%} interval; spread = std of the outcomes")
    elif hasattr(router, "members_") and hasattr(router, "calibrators_"):
        parts = _member_parts(router, X, n)
        kind = "members"
        note = f"spread (std), min and max over the ensemble's {int(parts['n_evidence'].flat[0])} bagged fits"
    cluster = rep_rows = None
    if callable(getattr(router, "predict_cluster", None)):
        cluster = np.asarray(router.predict_cluster(X), dtype=np.int64)
        evidence_kind = "cluster"
    elif callable(getattr(router, "item_parameters", None)) and callable(getattr(router, "abilities", None)):
        parts["discrimination"], parts["difficulty"] = router.item_parameters(X)
        parts["abilities"] = router.abilities()
        evidence_kind = "irt"
    if evidence_kind is None:
        rep_rows = _representation_neighbours(router, X, n, training, n_neighbours)
        evidence_kind = "representation" if rep_rows is not None else None
    return parts, kind, note, evidence_kind, cluster, rep_rows


def explain_arrays(
    router, X: np.ndarray | None, *, n: int | None = None, candidates: Sequence[str] | None = None,
    costs: np.ndarray | None = None, cost_weight: float | None = None, max_cost: float | None = None,
    training=None, n_neighbours: int = 5,
) -> list[dict[str, Any]]:
    """One explanation per row of prompt features X (n, d) (X None and ``n`` for a feature-free router).

    ``costs`` (n, m): expected cost per prompt and LLM (the bundle's prices), needed for ``cost_weight`` /
    ``max_cost`` and for the cost counterfactual; ``training``: the RoutingDataset the router was fitted
    on (rows aligned with its training rows), for the evidence prompts' ids and texts.
    """
    from recroute.routers.base import candidate_mask

    router._check_fitted()
    X, n = router._check_query(X, n)
    names = [str(x) for x in router.llm_names_]
    m = len(names)
    _check_training(router, training)
    base = candidate_mask(names, None if candidates is None else list(candidates), "this router")
    # the router's own dtype (a conservative router's float64 keeps its margin exact) among the candidates
    scores = np.asarray(router.score_among(X, base, n=n), dtype=getattr(router, "score_dtype", np.float32))
    if costs is not None:
        from recroute.cost.decide import as_cost_matrix

        costs = as_cost_matrix(costs, n, m)
    values, mask, chosen = decision_values(scores, costs, cost_weight, max_cost, base, names)

    parts, kind, note, evidence_kind, cluster, rep_rows = _family_view(router, X, n, training, int(n_neighbours))
    lookup = _training_lookup(training)
    rep_Y = None if rep_rows is None else training.dense(np.nan)
    out = []
    for i in range(n):
        c = int(chosen[i])
        order = np.argsort(-np.where(mask[i], values[i], -np.inf), kind="stable")
        allowed_order = [int(j) for j in order if mask[i, j]]
        excluded = [j for j in range(m) if not mask[i, j]]
        runner = allowed_order[1] if len(allowed_order) > 1 else None
        rows_out = []
        for j in allowed_order + excluded:
            row = {"llm": names[j], "score": float(scores[i, j]), "allowed": bool(mask[i, j]),
                   "cost": None if costs is None else float(costs[i, j]),
                   "utility": float(values[i, j]) if cost_weight is not None else None}
            for key in ("low", "high", "spread", "n_evidence"):
                row[key] = float(parts[key][i, j]) if key in parts else None
            rows_out.append(row)
        doc = {
            "llm": names[c], "runner_up": None if runner is None else names[runner],
            "margin": None if runner is None else float(values[i, c] - values[i, runner]),
            "tie": runner is not None and bool(values[i, c] == values[i, runner]),  # won by the lower LLM position
            "cost_weight": None if cost_weight is None else float(cost_weight),
            "candidates": rows_out,
            "uncertainty": {"kind": kind, "note": note},
            "evidence": _evidence(i, evidence_kind, parts, cluster, rep_rows, router, lookup, rep_Y, names, mask[i]),
            "counterfactuals": _counterfactuals(i, scores, costs, cost_weight, mask, base, chosen, names, max_cost),
        }
        out.append(doc)
    return out


def _evidence(i, kind, parts, cluster, rep_rows, router, lookup, rep_Y, names, allowed) -> dict[str, Any]:
    if kind == "neighbours":
        rows = parts["rows"][i]
        dist = parts["distances"]
        order = np.lexsort((rows, np.zeros(len(rows)) if dist is None else np.nan_to_num(dist[i], nan=np.inf)))
        info = _training_rows_table(lookup, rows[order])
        neighbours = []
        for pos, extra in zip(order, info):
            outcome = parts["outcomes"][i, pos]
            neighbours.append({
                "row": int(rows[pos]), **extra,
                "distance": None if dist is None or np.isnan(dist[i, pos]) else float(dist[i, pos]),
                "outcomes": {names[j]: (None if np.isnan(outcome[j]) else float(outcome[j]))
                             for j in np.flatnonzero(allowed)},
            })
        return {"kind": "neighbours", "metric": str(router.metric), "neighbours": neighbours,
                "rule": "score = mean of the observed outcomes over the neighbours (0 when none observed)"}
    if kind == "cluster":
        c = int(cluster[i])
        return {"kind": "cluster", "cluster": c, "n_clusters": int(len(router.centers_)),
                "rule": "score = the cluster's mean training score per LLM",
                "cluster_scores": {names[j]: float(router.cluster_scores_[c, j]) for j in np.flatnonzero(allowed)}}
    if kind == "irt":
        a, b, theta = parts["discrimination"][i], parts["difficulty"][i], parts["abilities"]
        ability = theta @ a  # (m,): each LLM's ability along this prompt's discrimination
        out = {"kind": "irt", "variant": str(router.variant), "discrimination_norm": float(np.linalg.norm(a)),
               "ability": {names[j]: float(ability[j]) for j in np.flatnonzero(allowed)}}
        if np.ndim(b) == 0:  # MIRT: P(correct) = sigmoid(a . theta_j - b)
            out |= {"difficulty": float(b), "rule": "P(correct) = sigmoid(ability - difficulty), ability = a(x) . theta_j"}
        else:
            out |= {"difficulty": [float(v) for v in b],
                    "rule": "NIRT: P(correct) = monotone network of a(x) * (theta_j - b(x)); ability = a(x) . theta_j"}
        return out
    if kind == "representation":
        rows = rep_rows[i]
        Y = rep_Y[rows]
        return {"kind": "representation",
                "rule": "the training prompts nearest in the router's own representation (L2)",
                "neighbours": [{"row": int(r), **extra,
                                "outcomes": {names[j]: (None if np.isnan(Y[p, j]) else float(Y[p, j]))
                                             for j in np.flatnonzero(allowed)}}
                               for p, (r, extra) in enumerate(zip(rows, _training_rows_table(lookup, rows)))]}
    return {"kind": None, "note": f"router {router.name!r}: give the training dataset to see the nearest training prompts"}


def _counterfactuals(i, scores, costs, cost_weight, mask, base, chosen, names, max_cost) -> dict[str, Any]:
    c = int(chosen[i])
    out: dict[str, Any] = {"flip_up": None, "flip_down": None, "excluded_best": None}
    excluded_any = not mask[i].all()
    if costs is None:
        out["note"] = "no prices: the cost weight at which the choice flips is unknown"
        values_all = scores[i].astype(np.float64)
    else:
        lam0 = 0.0 if cost_weight is None else float(cost_weight)
        up, down = cost_flips(scores[i], costs[i], mask[i], c, lam0)
        if up is not None:
            out["flip_up"] = {"cost_weight": up[0], "llm": names[up[1]]}
        if down is not None:
            out["flip_down"] = {"cost_weight": down[0], "llm": names[down[1]]}
        out["note"] = ("flip_up: above this cost weight the cheaper LLM is chosen; flip_down: below it, the dearer one"
                       if up or down else "no cost weight changes the choice among the allowed LLMs")
        values_all = scores[i].astype(np.float64) - lam0 * costs[i]
    if excluded_any:
        best = int(np.argsort(-values_all, kind="stable")[0])
        if not mask[i, best]:
            out["excluded_best"] = {"llm": names[best], "utility": float(values_all[best]),
                                    "why_excluded": "over max_cost" if base[best] and max_cost is not None
                                    else "not a candidate"}
    return out


# ---------------------------------------------------------------------- checks of an explanation
def choice_from_neighbours(explanation: dict[str, Any]) -> str:
    """The LLM a kNN explanation's neighbours and outcomes imply: mean observed outcome per allowed LLM
    (float32, 0 when none observed), minus cost_weight · cost when a cost weight was on, argmax (ties to
    the LLM listed first in the router's order, which ``candidates`` keeps by allowed position)."""
    evidence = explanation["evidence"]
    if evidence.get("kind") != "neighbours":
        raise DataError("this explanation has no neighbours (not a kNN router)")
    rows = {row["llm"]: row for row in explanation["candidates"] if row["allowed"]}
    names = list(evidence["neighbours"][0]["outcomes"]) if evidence["neighbours"] else list(rows)
    total = np.zeros(len(names))
    count = np.zeros(len(names))
    for neighbour in evidence["neighbours"]:
        for j, name in enumerate(names):
            value = neighbour["outcomes"][name]
            if value is not None:
                total[j] += value
                count[j] += 1
    score = (total / np.maximum(count, 1)).astype(np.float32).astype(np.float64)
    lam = explanation.get("cost_weight")
    if lam is not None:
        score = score - lam * np.array([rows[name]["cost"] for name in names])
    return names[int(np.argmax(score))]
