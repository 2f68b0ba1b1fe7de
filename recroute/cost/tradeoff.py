"""The quality–cost study of routers on one dataset: curves, baselines and metrics as tidy rows.

For each router spec a fresh router is fitted on the training prompts (calibrated per LLM first when
its scores are not probabilities, or when asked), scores the test prompts, and is swept over the cost
weight lambda (utility routing). Beside the routers: each single LLM, the zero router (hull of the
single LLMs) and the cheapest-correct oracle. Metrics per router (docs/cost.md): AIQ over the single
LLMs' cost range and its ratio to the zero router's, the cost to reach the best single LLM's quality
(absolute, and as a fraction of that LLM's cost; on the hull and on realised points), the quality at a
given cost, and for two-LLM pools RouteLLM's APGR and CPT(50%) / CPT(80%).

Split: the dataset's ``split`` column when it has train and test prompts, else RouterEval's split
(stratified by task, seed 42; the validation part unused). Unobserved test cells count 0, as RouterEval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from recroute.cost import curves
from recroute.cost.decide import calibrate_cost_weight
from recroute.errors import DataError

CALIBRATIONS = ("auto", "none", "isotonic", "platt")


@dataclass
class Tradeoff:
    """Points (kind, name, cost_weight, mean_cost, quality) and one summary row per router."""

    points: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    llms: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Tidy rows for JSON: every point, then every summary row (``kind="summary"``)."""
        return self.points + [{"kind": "summary", **row} for row in self.summary]


def evaluation_split(data, split: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(train positions, test positions): the ``split`` column ("auto" when it has both parts, or
    "column") or RouterEval's split ("routereval")."""
    from recroute.data.splits import routereval_split

    if split not in ("auto", "column", "routereval"):
        raise DataError(f"split must be auto, column or routereval; got {split!r}")
    labels = data.prompts["split"].astype(object).to_numpy() if "split" in data.prompts else None
    has = labels is not None and {"train", "test"} <= set(x for x in labels if x is not None)
    if split == "column" and not has:
        raise DataError("split='column' needs a prompt 'split' column with train and test prompts")
    if has and split != "routereval":
        return np.flatnonzero(labels == "train"), np.flatnonzero(labels == "test")
    s = routereval_split(data.prompts["task"], data.n_prompts)
    return s.train, s.test


def cost_ready_spec(spec: str, calibration: str = "auto") -> str:
    """The spec wrapped in per-LLM calibration (``debiased:inner=...,calibration=...``) when asked,
    or ("auto") when the router's scores are not probabilities."""
    from recroute.routers.registry import parse_router_spec, router_class

    if calibration not in CALIBRATIONS:
        raise DataError(f"calibration must be one of {CALIBRATIONS}; got {calibration!r}")
    name, _ = parse_router_spec(spec)
    klass = router_class(name)
    if calibration == "none" or name == "debiased":
        return spec
    if calibration == "auto":
        if klass.score_scale == "probability":
            return spec
        calibration = "isotonic"
    inner = spec.strip().replace(",", ";")
    return f"debiased:inner={inner},calibration='{calibration}'"


def fit_scores(spec: str, Y_train: np.ndarray, X_train, X_test, n_test: int, calibration: str = "auto") -> np.ndarray:
    """float64 (n_test, m) test scores of a router fitted on (X_train, Y_train) (NaN = unobserved)."""
    from recroute.routers.registry import make_router

    router = make_router(cost_ready_spec(spec, calibration))
    if router.requires_truth or router.stochastic:
        raise DataError(f"router {spec!r} does not learn scores (oracle, r_o and random have no cost-aware form)")
    router.fit(Y_train, X_train if router.needs_features else None)
    return np.asarray(router.score(X_test if router.needs_features else None, n=n_test), dtype=np.float64)


def summarise(name: str, curve: np.ndarray, Y: np.ndarray, C: np.ndarray, zero: np.ndarray,
              at_cost: float | None = None, S: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of one router's (lambda, cost, quality) curve against the single LLMs (see module doc)."""
    singles = curves.single_llm_points(Y, C)
    best = int(np.argmax(singles[:, 1]))
    best_cost, best_quality = singles[best]
    c_min, c_max = float(singles[:, 0].min()), float(singles[:, 0].max())
    vertices = curves.hull(curve[:, 1:])
    row: dict[str, Any] = {
        "router": name,
        "aiq": curves.aiq(vertices, c_min, c_max) if c_max > c_min else float("nan"),
        "zero_aiq": curves.aiq(zero, c_min, c_max) if c_max > c_min else float("nan"),
        "c_min": c_min, "c_max": c_max,
        "best_llm_quality": float(best_quality), "best_llm_cost": float(best_cost),
        "max_quality": float(curve[:, 2].max()),
        "cost_to_best": curves.cost_to_reach(vertices, best_quality),
        "realised_cost_to_best": curves.realised_cost_to_reach(curve[:, 1:], best_quality),
    }
    row["aiq_ratio"] = row["aiq"] / row["zero_aiq"] if row["zero_aiq"] else float("nan")
    row["cost_to_best_fraction"] = row["cost_to_best"] / best_cost if best_cost else float("nan")
    row["realised_cost_to_best_fraction"] = row["realised_cost_to_best"] / best_cost if best_cost else float("nan")
    if at_cost is not None:
        row["at_cost"] = float(at_cost)
        row["quality_at_cost"] = curves.quality_at_cost(vertices, at_cost)
        row["zero_quality_at_cost"] = curves.quality_at_cost(zero, at_cost)
    if S is not None and Y.shape[1] == 2:
        costs = C.mean(axis=0)
        strong, weak = (1, 0) if Y[:, 1].mean() > Y[:, 0].mean() else (0, 1)
        if costs[strong] >= costs[weak] and Y[:, strong].mean() > Y[:, weak].mean():
            pgr = curves.pgr_curve(S, Y, strong, weak)
            row.update(apgr=curves.apgr(pgr), cpt50=curves.cpt(pgr, 0.5), cpt80=curves.cpt(pgr, 0.8))
    return row


def run_tradeoff(
    data,
    routers: Sequence[str],
    *,
    pool: Sequence[str] | None = None,
    X: np.ndarray | None = None,
    encoder: str | None = None,
    pricing: str = "tokens",
    split: str = "auto",
    calibration: str = "auto",
    weights: Sequence[float] | None = None,
    at_cost: float | None = None,
    target_costs: Sequence[float] = (),
    holdout: float = 0.2,
    random_state: int = 0,
    quiet: bool = True,
) -> Tradeoff:
    """The quality–cost study (module doc). ``pool``: LLM names (default all); ``X`` prompt features
    (default: the dataset's embeddings, else ``encoder``, else MiniLM); ``pricing`` as
    :meth:`RoutingDataset.costs`; ``target_costs``: mean costs per prompt for which lambda is calibrated
    on ``holdout`` of the training prompts by a router fitted on the rest, which then routes the test
    prompts (:func:`calibrated_costs`); the realised test cost is recorded."""
    from recroute.eval.protocol import dataset_embeddings, progress_steps
    from recroute.routers.registry import make_router

    if not routers:
        raise DataError("give at least one router spec")
    if pool is not None:
        data = data.subset(llms=list(pool))
    if data.n_llms < 2:
        raise DataError("a quality–cost trade-off needs at least 2 LLMs in the pool")
    train, test = evaluation_split(data, split)
    if len(train) < 2 or len(test) < 1:
        raise DataError(f"the split leaves {len(train)} training and {len(test)} test prompts")
    needs_x = any(make_router(cost_ready_spec(s, calibration)).needs_features for s in routers)
    if needs_x:
        X = dataset_embeddings(data, X, encoder, needed=True)
    Y_all = data.dense(np.nan)
    Y_train, Y_test = Y_all[train], np.nan_to_num(Y_all[test], nan=0.0).astype(np.float64)
    C_test = data.costs(prompts=test, pricing=pricing)
    names = [str(n) for n in data.llm_names]
    singles = curves.single_llm_points(Y_test, C_test)
    zero = curves.hull(singles)
    points: list[dict[str, Any]] = [
        {"kind": "single", "name": names[j], "cost_weight": None, "mean_cost": float(c), "quality": float(q)}
        for j, (c, q) in enumerate(singles)
    ]
    points += [{"kind": "zero_router", "name": "zero_router", "cost_weight": None, "mean_cost": float(c), "quality": float(q)}
               for c, q in zero]
    oc, oq = curves.oracle_point(Y_test, C_test)
    points.append({"kind": "oracle", "name": "cheapest_correct_oracle", "cost_weight": None, "mean_cost": oc, "quality": oq})
    summary = []
    X_train = None if X is None else X[train]
    X_test = None if X is None else X[test]
    with progress_steps(quiet, len(routers)) as progress:
        for spec in routers:
            progress.start(spec)
            S = fit_scores(spec, Y_train, X_train, X_test, len(test), calibration)
            curve = curves.utility_curve(S, Y_test, C_test, weights)
            points += [{"kind": "router", "name": spec, "cost_weight": float(lam), "mean_cost": float(c), "quality": float(q)}
                       for lam, c, q in curve]
            row = summarise(spec, curve, Y_test, C_test, zero, at_cost, S)
            if len(target_costs):
                row["cost_calibration"] = calibrated_costs(spec, data, X, train, test, Y_test, C_test, target_costs, pricing,
                                                      calibration, holdout, random_state)
            summary.append(row)
            progress.done()
    meta = {"dataset": data.name, "n_train": int(len(train)), "n_test": int(len(test)), "pricing": pricing,
            "split": split, "calibration": calibration, "llms": names}
    return Tradeoff(points, summary, names, meta)


def calibrated_costs(spec: str, data, X, train, test, Y_test, C_test, targets: Sequence[float], pricing: str,
                     calibration: str = "auto", holdout: float = 0.2, random_state: int = 0) -> list[dict[str, Any]]:
    """RouteLLM's recipe: fit the router on 1 - ``holdout`` of the training prompts, calibrate lambda for each
    target mean cost on the held-out rest (which that router never saw), and route the test prompts with
    the same router and lambda. One row per target: lambda, realised test cost and quality, relative error."""
    from recroute.debias.remedies import holdout_split

    fit_rows, held = holdout_split(len(train), holdout, random_state)
    Y_all = data.dense(np.nan)
    rows = np.concatenate([train[held], test])
    S = fit_scores(spec, Y_all[train[fit_rows]], None if X is None else X[train[fit_rows]],
                   None if X is None else X[rows], len(rows), calibration)
    S_held, S_test = S[: len(held)], S[len(held):]
    C_held = data.costs(prompts=train[held], pricing=pricing)
    out = []
    for target in targets:
        cal = calibrate_cost_weight(S_held, C_held, target_cost=float(target))
        cost, quality = curves.point(Y_test, C_test, np.argmax(S_test - cal.cost_weight * C_test, axis=1))
        out.append({"target_cost": float(target), "cost_weight": cal.cost_weight, "calibration_cost": cal.mean_cost,
                    "test_cost": cost, "test_quality": quality,
                    "relative_error": (cost - target) / target if target else None})
    return out


def plot_tradeoff(result: Tradeoff, path=None, title: str = ""):
    """The quality–cost figure: router curves (realised points), single LLMs, zero router, oracle."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    routers = [r["router"] for r in result.summary]
    for name in routers:
        pts = np.array([(p["mean_cost"], p["quality"]) for p in result.points if p["kind"] == "router" and p["name"] == name])
        pts = pts[np.argsort(pts[:, 0], kind="stable")]
        ax.plot(pts[:, 0], pts[:, 1], marker=".", markersize=3, linewidth=1, label=name)
    zero = np.array([(p["mean_cost"], p["quality"]) for p in result.points if p["kind"] == "zero_router"])
    ax.plot(zero[:, 0], zero[:, 1], "k--", linewidth=1, label="zero router")
    for p in result.points:
        if p["kind"] == "single":
            ax.scatter(p["mean_cost"], p["quality"], color="grey", s=18)
            ax.annotate(p["name"], (p["mean_cost"], p["quality"]), fontsize=6, xytext=(3, -3), textcoords="offset points")
        elif p["kind"] == "oracle":
            ax.scatter(p["mean_cost"], p["quality"], marker="*", color="gold", edgecolor="k", s=90, label="cheapest-correct oracle")
    ax.set_xlabel("mean cost per prompt")
    ax.set_ylabel("mean quality (mu_o)")
    ax.set_title(title or f"quality–cost trade-off ({result.meta.get('dataset', '')})")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    if path is not None:
        from recroute.atomic import atomic_file

        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=130, format="png")
        plt.close(fig)
    return fig
