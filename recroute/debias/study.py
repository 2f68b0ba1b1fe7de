"""The debiasing study: each remedy's strength swept under RouterEval's protocol, and the front of
mu_o against the diversity of the routing.

For every candidate group of RouterEval's router_dataset (the same seed-42 split and groups as
``recroute eval``) and every router spec, the router is fitted once on the group's training target;
then every remedy is applied at every strength:

| remedy | strength | refits |
|---|---|---|
| ``none`` | 0 (the router as is) | - |
| ``logit_adjust`` | tau, in units of the router's training-score std | no |
| ``calibrate`` | tau of a logit adjustment after per-LLM calibration (0 = calibration alone) | 1 (holdout copy) |
| ``capacity`` | s in [0, 1]: cap = 1 - s (1 - 1/m) of the test batch per LLM | no |
| ``ipw`` | alpha, the exponent of the inverse propensity | 1 per strength |

Each row carries mu_o, ``selection_entropy`` (entropy of the aggregate selection shares over the
test prompts, normalised by log2 m), RouterEval's ``e_p`` (per-prompt entropy of the selection
distribution: softmax of the remedied scores; for capacity its Sinkhorn projection onto the cap),
``tail_mu_o`` (mu_o on the test prompts the best single LLM of the training split gets wrong), Gini,
coverage and the ECE of the predicted probabilities (NaN when they are not probabilities). A
``group == "mean"`` row is the plain mean over the three groups, as RouterEval's tables.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd

from recroute.debias import diagnostics
from recroute.debias import remedies as rem
from recroute.errors import DataError
from recroute.eval import metrics

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.eval.protocol import GroupData

NONE = "none"
REMEDIES: dict[str, tuple[float, ...]] = {  # default strength grids
    "logit_adjust": (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0),
    "calibrate": (0.0, 0.25, 0.5, 1.0, 1.5),
    "capacity": (0.1, 0.25, 0.5, 0.75, 1.0),
    "ipw": (0.1, 0.25, 0.5, 1.0),
}
ROW_KEYS = ("router", "remedy", "strength", "m", "group", "mu_o", "selection_entropy", "e_p", "tail_mu_o")
EXTRA_KEYS = ("setting", "gini", "coverage", "ece", "val_mu_o", "val_selection_entropy")
VALUE_KEYS = ("mu_o", "selection_entropy", "e_p", "tail_mu_o", "gini", "coverage", "ece")
VAL_KEYS = ("val_mu_o", "val_selection_entropy")


@dataclass(frozen=True)
class StudyOptions:
    """How the remedies are learned: the logit-adjustment prior and units, the calibration map and holdout."""

    prior: str = "positive_rate"
    tau_units: str = "std"
    calibration: str = "isotonic"
    holdout: float = 0.2
    random_state: int = 0

    def check(self) -> "StudyOptions":
        if self.prior not in rem.PRIORS:
            raise DataError(f"prior must be one of {rem.PRIORS}; got {self.prior!r}")
        if self.calibration not in rem.CALIBRATIONS:
            raise DataError(f"calibration must be one of {rem.CALIBRATIONS}; got {self.calibration!r}")
        rem.holdout_split(100, self.holdout)
        rem.adjustment_terms(np.ones((2, 1)), np.ones((2, 1)), "positive_rate", self.tau_units)
        return self


# ---------------------------------------------------------------------- remedy lists
def parse_remedies(text: str | Sequence[str] | dict) -> dict[str, tuple[float, ...]]:
    """``"ipw,logit_adjust:0.5,1,capacity"`` -> {"ipw": default grid, "logit_adjust": (0.5, 1.0), ...}.

    A comma-separated piece that is a number continues the previous remedy's strengths.
    """
    if isinstance(text, dict):
        pieces = [f"{k}:" + ",".join(str(v) for v in vals) if vals else k for k, vals in text.items()]
        text = ",".join(pieces)
    if not isinstance(text, str):
        text = ",".join(str(t) for t in text)
    out: dict[str, list[float]] = {}
    last = None
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        name, sep, value = piece.partition(":")
        if not sep and _is_number(piece):
            if last is None:
                raise DataError(f"remedy list {text!r}: strength {piece} before any remedy name")
            out[last].append(_strength(piece, last))
            continue
        name = name.strip()
        if name not in REMEDIES:
            raise DataError(f"unknown remedy {name!r}; available: {', '.join(REMEDIES)}")
        if name in out:
            raise DataError(f"remedy list {text!r} names {name!r} twice")
        out[name] = [_strength(value, name)] if sep else []
        last = name
    if not out:
        raise DataError("no remedies to study")
    return {k: tuple(v) if v else REMEDIES[k] for k, v in out.items()}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _strength(text: str, remedy: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataError(f"remedy {remedy!r}: strength {text!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or (remedy == "capacity" and value > 1):
        raise DataError(f"remedy {remedy!r}: strength must be >= 0{' and <= 1' if remedy == 'capacity' else ''}; got {text}")
    return value


# ---------------------------------------------------------------------- one router on one group
def group_rows(
    spec: str,
    gd: "GroupData",
    best_llm: int,
    grids: dict[str, tuple[float, ...]],
    options: StudyOptions,
    val: tuple[np.ndarray | None, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """Rows {remedy, strength, mu_o, selection_entropy, e_p, tail_mu_o, gini, coverage, ece, val_mu_o,
    val_selection_entropy} of one router spec on one candidate group: the undebiased router and every
    remedy at every strength, measured on the test split (and on ``val`` = (X_val, Y_val) when given,
    to choose a strength without looking at the test split)."""
    splits = {"test": (gd.X_test, gd.Y_test)}
    if val is not None:
        splits["val"] = val
    rows = []
    for remedy, strength, routed in _routings(spec, gd, grids, options, splits):
        scores, probs, choice, calibration_scores, floor = routed["test"]
        d = diagnostics.diagnostics_from_scores(scores, gd.Y_test, best_llm, probs, choice=choice, floor=floor,
                                                calibration_scores=calibration_scores)
        row = {"remedy": remedy, "strength": float(strength), **{k: d[k] for k in VALUE_KEYS}}
        if "val" in routed:
            v_scores, _, v_choice, _, _ = routed["val"]
            v_choice = np.argmax(v_scores, axis=1) if v_choice is None else v_choice
            row["val_mu_o"] = metrics.mu_o(splits["val"][1], v_choice)
            row["val_selection_entropy"] = diagnostics.normalized_entropy(metrics.selection_shares(v_choice, gd.m))
        else:
            row["val_mu_o"] = row["val_selection_entropy"] = float("nan")
        rows.append(row)
    return rows


def _routings(spec: str, gd: "GroupData", grids: dict[str, tuple[float, ...]], options: StudyOptions,
              splits: dict[str, tuple[np.ndarray | None, np.ndarray]]):
    """Yield (remedy, strength, {split: (scores, probs, choice | None, calibration scores | None, floor)})."""
    from recroute.routers.registry import make_router, parse_router_spec

    name = parse_router_spec(spec)[0]
    base = make_router(spec).fit(gd.Y_train, gd.X_train)
    floor = float(base.entropy_floor)
    raw = {k: _scores(base, X, len(Y), gd.m) for k, (X, Y) in splits.items()}
    probs = {k: _selection_probs(base, X, len(Y), raw[k]) for k, (X, Y) in splits.items()}
    yield NONE, 0.0, {k: (raw[k], probs[k], None, None, floor) for k in splits}
    S_train = None
    if "logit_adjust" in grids or "calibrate" in grids:
        S_train = _scores(base, gd.X_train, gd.Y_train.shape[0], gd.m)
    if "logit_adjust" in grids:
        prior, unit = rem.adjustment_terms(gd.Y_train, S_train, options.prior, options.tau_units)
        for tau in grids["logit_adjust"]:
            adjusted = {k: rem.logit_adjust(S, prior, tau * unit) for k, S in raw.items()}
            yield "logit_adjust", tau, {k: (A, metrics.softmax(A), None, raw[k], floor) for k, A in adjusted.items()}
    if "capacity" in grids:
        for s in grids["capacity"]:
            out = {}
            for k, S in raw.items():  # each split is one batch under its own cap
                cap = rem.batch_cap(len(S), gd.m, rem.cap_for_strength(s, gd.m))
                out[k] = (S, rem.capped_distribution(probs[k], cap), rem.capacity_assign(S, cap), None, floor)
            yield "capacity", s, out
    if "calibrate" in grids:
        from recroute.debias.router import fit_holdout_calibrator

        cal = fit_holdout_calibrator(spec, gd.Y_train, gd.X_train, options.calibration, options.holdout,
                                     options.random_state)
        calibrated = {k: cal.transform(S) for k, S in raw.items()}
        prior, unit = rem.adjustment_terms(gd.Y_train, cal.transform(S_train), options.prior, options.tau_units)
        for tau in grids["calibrate"]:
            adjusted = {k: rem.logit_adjust(C, prior, tau * unit) for k, C in calibrated.items()}
            yield "calibrate", tau, {k: (A, metrics.softmax(A), None, calibrated[k], floor) for k, A in adjusted.items()}
    if "ipw" in grids:
        mode = rem.ipw_mode(name)
        for alpha in grids["ipw"]:
            router = base
            if alpha > 0:
                router = make_router(spec).fit(rem.ipw_targets(gd.Y_train, alpha, mode, options.random_state), gd.X_train)
            out = {}
            for k, (X, Y) in splits.items():
                S = raw[k] if router is base else _scores(router, X, len(Y), gd.m)
                out[k] = (S, probs[k] if router is base else _selection_probs(router, X, len(Y), S), None, None, floor)
            yield "ipw", alpha, out


def _scores(router, X, n: int, m: int) -> np.ndarray:
    S = np.asarray(router.score(X, n=n), dtype=np.float64)
    if S.shape != (n, m):
        raise DataError(f"router {router.name!r} returned scores of shape {S.shape}; expected {(n, m)}")
    return S


def _selection_probs(router, X, n: int, scores: np.ndarray) -> np.ndarray:
    """The router's own selection distribution (softmax of the scores unless it defines another)."""
    from recroute.routers.base import Router

    if type(router).selection_probs is Router.selection_probs:
        return metrics.softmax(scores)
    return np.asarray(router.selection_probs(X, n=n), dtype=np.float64)


# ---------------------------------------------------------------------- the runner
def study_router_dataset(
    router_dataset: dict,
    routers: Sequence[str],
    remedies: str | Sequence[str] | dict = tuple(REMEDIES),
    settings: Sequence[str] | str = ("easy",),
    *,
    options: StudyOptions | None = None,
    target: str = "auto",
    quiet: bool = True,
) -> pd.DataFrame:
    """Run the study on a RouterEval router_dataset dict: a tidy DataFrame of ``ROW_KEYS + EXTRA_KEYS``.

    One row per (router, remedy, strength, setting, m, group), plus ``group == "mean"`` rows (plain
    means over the groups). ``remedies``: names or ``"name:s1,s2"`` (see :func:`parse_remedies`).
    """
    from recroute.eval.protocol import check_settings, iter_group_data
    from recroute.routers.registry import make_router, spec_label

    options = (options or StudyOptions()).check()
    settings = check_settings(settings)
    grids = parse_remedies(remedies)
    specs = [str(s).strip() for s in routers if str(s).strip()]
    if not specs:
        raise DataError("no routers to study")
    for spec in specs:
        router = make_router(spec)
        if router.requires_truth or router.stochastic:
            raise DataError(f"router {spec!r} does not learn scores: debiasing applies to fitted routers")
    groups = list(iter_group_data(router_dataset, settings, target))
    if not groups:
        raise DataError(f"the router dataset has no candidate group for setting(s) {', '.join(settings)}")
    if any(make_router(s).needs_features for s in specs) and (groups[0].X_train is None or groups[0].X_test is None):
        raise DataError("the routers need prompt embeddings and the router dataset has none")
    best = _best_llms(router_dataset)
    vals = _val_parts(router_dataset)
    rows: list[dict[str, Any]] = []
    with _progress(quiet, len(groups) * len(specs)) as bar:
        for gd in groups:
            for spec in specs:
                bar.set_description(f"{spec_label(spec)} on {gd.where}")
                try:
                    key = (gd.setting, gd.m, gd.group)
                    part = group_rows(spec, gd, best[key], grids, options, vals.get(key))
                except Exception as exc:
                    exc.add_note(f"while studying router {spec!r} on {gd.where}")
                    raise
                rows += [{"router": spec_label(spec), "setting": gd.setting, "m": gd.m, "group": gd.group, **r}
                         for r in part]
                bar.update(1)
    return with_means(pd.DataFrame(rows))


def study_dataset(
    data: "RoutingDataset",
    routers: Sequence[str],
    remedies: str | Sequence[str] | dict = tuple(REMEDIES),
    settings: Sequence[str] | str = ("easy",),
    X: np.ndarray | None = None,
    encoder=None,
    seed: int = 42,
    **kwargs: Any,
) -> pd.DataFrame:
    """Build RouterEval's router_dataset from ``data`` exactly as ``evaluate_dataset`` does, then study it.

    Embeddings: ``X``, else ``encoder``'s, else the dataset's, else (texts, no embeddings) MiniLM.
    """
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.protocol import DEFAULT_ENCODER, build_settings, check_settings, dataset_embeddings

    settings = check_settings(settings)
    if X is None and encoder is None and data.embeddings is None and data.has_text:
        encoder = DEFAULT_ENCODER
    emb = dataset_embeddings(data, X, encoder)
    rd = build_router_dataset(data, build_settings(settings), seed=seed, embeddings=emb)
    present = [s for s in settings if rd.get(s)]
    if not present:
        raise DataError(f"{data.name or 'dataset'}: too few usable LLMs for any pool of setting(s) {', '.join(settings)}")
    return study_router_dataset(rd, routers, remedies, present, **kwargs)


def _best_llms(router_dataset: dict) -> dict[tuple[str, int, str], int]:
    """(setting, m, group) -> position of the best single LLM on the group's training scores."""
    from recroute.data.routereval import iter_groups

    out = {}
    for setting, m, group, entry in iter_groups(router_dataset):
        if entry and entry.get("data") is not None:
            out[(str(setting), int(m), str(group))] = diagnostics.best_llm_index(entry["data"]["train_score"])
    return out


def _val_parts(router_dataset: dict) -> dict[tuple[str, int, str], tuple[np.ndarray | None, np.ndarray]]:
    """(setting, m, group) -> (X_val (n_val, d) | None, Y_val (n_val, m)): RouterEval's validation part,
    which its protocol leaves unused; the study chooses remedy strengths on it. Empty when absent."""
    from recroute.data.routereval import iter_groups

    X = (router_dataset.get("embedding") or {}).get("val_embed")
    X = None if X is None else np.asarray(X, dtype=np.float32)
    out = {}
    for setting, m, group, entry in iter_groups(router_dataset):
        Y = (entry or {}).get("data", {}).get("val_score") if entry else None
        if Y is not None and len(Y) and (X is None or len(X) == len(Y)):
            out[(str(setting), int(m), str(group))] = (X, np.asarray(Y, dtype=np.float64))
    return out


def with_means(df: pd.DataFrame) -> pd.DataFrame:
    """Append the plain mean over groups per (router, remedy, strength, setting, m); NaN propagates."""
    keys = ["router", "remedy", "strength", "setting", "m"]
    means = df.groupby(keys, sort=False)[[*VALUE_KEYS, *VAL_KEYS]].agg(lambda v: float(np.mean(v.to_numpy(np.float64))))
    means = means.reset_index()
    means["group"] = "mean"
    out = pd.concat([df, means[df.columns]], ignore_index=True)
    out["m"] = out["m"].astype(int)
    return out[[*ROW_KEYS, *EXTRA_KEYS]]


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows (NaN -> None) with the columns ``ROW_KEYS + EXTRA_KEYS``."""
    from recroute.eval.report import records as to_records

    return to_records(df, (*ROW_KEYS, *EXTRA_KEYS))


class _NoBar:
    def set_description(self, text: str) -> None:
        pass

    def update(self, n: int) -> None:
        pass

    def __enter__(self) -> "_NoBar":
        return self

    def __exit__(self, *exc) -> None:
        pass


def _progress(quiet: bool, total: int):
    """A tqdm bar on stderr (one step per router × group), or nothing when quiet."""
    if quiet:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, unit="fit", leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------- fronts and the goal
def pareto_front(df: pd.DataFrame) -> pd.DataFrame:
    """The mean rows with a ``pareto`` column: not dominated in (mu_o, selection_entropy) by another
    point of the same (router, m), both higher-is-better."""
    rows = df[df["group"] == "mean"].copy()
    rows["pareto"] = False
    for _, part in rows.groupby(["router", "m"], sort=False):
        mu = part["mu_o"].to_numpy()
        ent = part["selection_entropy"].to_numpy()
        dominated = ((mu[None, :] >= mu[:, None]) & (ent[None, :] >= ent[:, None])
                     & ((mu[None, :] > mu[:, None]) | (ent[None, :] > ent[:, None]))).any(axis=1)
        rows.loc[part.index, "pareto"] = ~dominated
    return rows


def goal_summary(df: pd.DataFrame, entropy_gain: float = 0.25, max_mu_loss: float = 0.005,
                 select_on: str = "test") -> pd.DataFrame:
    """Per (router, m, remedy), against the undebiased router (mean rows):

    ``best_strength``: among the strengths that lose at most ``max_mu_loss`` of mu_o, the one with the
    largest relative selection-entropy gain (NaN if none), judged on the test split
    (``select_on="test"``: the best point of the front, optimistic) or on RouterEval's validation part
    (``"val"``: columns val_mu_o / val_selection_entropy; the honest choice). ``entropy_gain``,
    ``mu_change``, ``tail_change``: the *test* numbers at that strength; ``reached``: the test gain is at
    least ``entropy_gain`` and the test mu_o loss at most ``max_mu_loss``; ``best_tail_change``: the
    largest test long-tail mu_o gain among the strengths admissible on the selection split.
    """
    if select_on not in ("test", "val"):
        raise DataError(f"select_on must be 'test' or 'val'; got {select_on!r}")
    mu_key, ent_key = ("mu_o", "selection_entropy") if select_on == "test" else VAL_KEYS
    mean = df[df["group"] == "mean"]
    out = []
    for (router, m), part in mean.groupby(["router", "m"], sort=False):
        base = part[part["remedy"] == NONE].iloc[0]
        for remedy, rows in part[part["remedy"] != NONE].groupby("remedy", sort=False):
            gain = (rows["selection_entropy"] - base.selection_entropy) / max(base.selection_entropy, 1e-12)
            mu_change = rows["mu_o"] - base.mu_o
            tail_change = rows["tail_mu_o"] - base.tail_mu_o
            chosen_gain = (rows[ent_key] - base[ent_key]) / max(base[ent_key], 1e-12)
            ok = (rows[mu_key] - base[mu_key]) >= -max_mu_loss - 1e-12
            record = {"router": router, "m": int(m), "remedy": remedy, "select_on": select_on,
                      "base_mu_o": base.mu_o, "base_selection_entropy": base.selection_entropy,
                      "base_tail_mu_o": base.tail_mu_o}
            if ok.any():
                i = chosen_gain[ok].idxmax()
                record.update(best_strength=rows.loc[i, "strength"], entropy_gain=gain[i], mu_change=mu_change[i],
                              tail_change=tail_change[i],
                              reached=bool(gain[i] >= entropy_gain and mu_change[i] >= -max_mu_loss - 1e-12),
                              best_tail_change=float(tail_change[ok].max()))
            else:
                record.update(best_strength=np.nan, entropy_gain=np.nan, mu_change=np.nan, tail_change=np.nan,
                              reached=False, best_tail_change=np.nan)
            out.append(record)
    return pd.DataFrame(out)


# ---------------------------------------------------------------------- the figure
_MARKERS = {NONE: "*", "logit_adjust": "o", "calibrate": "s", "capacity": "^", "ipw": "D"}
_COLORS = ("crimson", "royalblue", "darkorange", "seagreen", "purple", "black", "teal", "brown")


def plot_pareto(df: pd.DataFrame, path: str | Path | None = None, title: str = "", zoom: float | None = 0.08):
    """A Figure: mu_o against the normalised selection entropy, one panel per m (group means).

    Each router has a colour, each remedy a marker; lines join a remedy's strengths starting from the
    undebiased router (a star); filled markers lie on the router's Pareto front. ``zoom``: the y axis
    starts this far below the weakest undebiased router (None: every point shown), so the region of
    small mu_o losses stays readable. Drawn on an Agg canvas without pyplot; written atomically to
    ``path`` when given.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from recroute.eval.report import atomic_write

    front = pareto_front(df)
    ms = sorted(front["m"].unique())
    if not ms:
        raise DataError("no mean rows to plot")
    fig = Figure(figsize=(4.6 * len(ms) + 1.6, 4.2))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(ms), squeeze=False)[0]
    colors = {r: _COLORS[i % len(_COLORS)] for i, r in enumerate(dict.fromkeys(front["router"]))}
    for ax, m in zip(axes, ms):
        panel = front[front["m"] == m]
        for router, part in panel.groupby("router", sort=False):
            base = part[part["remedy"] == NONE]
            for remedy, rows in part[part["remedy"] != NONE].groupby("remedy", sort=False):
                line = pd.concat([base, rows.sort_values("strength")]) if remedy != "calibrate" else rows.sort_values("strength")
                ax.plot(line["selection_entropy"], line["mu_o"], "-", color=colors[router], lw=0.8, alpha=0.6)
                for on_front in (False, True):
                    pts = rows[rows["pareto"] == on_front]
                    ax.scatter(pts["selection_entropy"], pts["mu_o"], marker=_MARKERS.get(remedy, "x"), s=22,
                               facecolors=colors[router] if on_front else "none", edgecolors=colors[router], lw=0.9)
            ax.scatter(base["selection_entropy"], base["mu_o"], marker="*", s=120, color=colors[router],
                       edgecolors="black", lw=0.6, zorder=3)
        if zoom is not None:
            bases = panel.loc[panel["remedy"] == NONE, "mu_o"]
            top = panel["mu_o"].max()
            ax.set_ylim(bases.min() - float(zoom), top + 0.05 * (top - bases.min() + float(zoom)))
        ax.set_title(f"m = {m}")
        ax.set_xlabel("selection entropy / log2(m)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mu_o (mean test score)")
    handles = [axes[0].scatter([], [], marker="s", color=c, label=r) for r, c in colors.items()]
    handles += [axes[0].scatter([], [], marker=mk, facecolors="none", edgecolors="grey", label=name)
                for name, mk in _MARKERS.items() if name in set(front["remedy"])]
    right = 1 - 1.5 / fig.get_figwidth()
    fig.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(right, 0.5), frameon=False)
    note = "" if zoom is None else f"; y axis cut {zoom:g} below the weakest undebiased router"
    fig.suptitle((title or "Debiasing: mu_o vs selection entropy (filled: Pareto front)") + note, fontsize=10)
    fig.tight_layout(rect=(0, 0, right, 1))
    if path is not None:
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    return fig
