"""Router audits: where a router sends prompts, where it loses, how calibrated it is, whether live traffic drifts.

:func:`audit_dataset` audits a fitted router on prompts with full results (a RoutingDataset and its
features); :func:`audit_logs` audits a decision log (recroute.feedback.logs), optionally with the router
and the features of the logged prompts and of the training prompts (for E_p and drift). Both return an
:class:`Audit`: named tables (pandas) and a ranked list of findings in plain words.

Definitions (dataset audit, over the prompts given; the router chooses among ``candidates``):

- routed score of a prompt: the true score of the LLM the router picks (NaN when that cell was not
  observed: such prompts are left out of the means);
- oracle score: the prompt's best observed score among the candidates; the oracle's share of an LLM is
  the mean of RouterEval's oracle distribution (proportional to the scores, uniform if all 0);
- per task: ``regret_oracle`` = oracle mean - routed mean and ``regret_best`` = the best single LLM's mean
  on that task (the candidate with the highest mean there) - routed mean, in score points (x 100);
  ``lost_to``: the LLM the router most often chose on the task's prompts where the best LLM was right
  and the router's pick was not;
- calibration: per-LLM ECE and reliability bins (``recroute.debias.diagnostics``), the predicted score vs
  the accuracy on the prompts routed to each LLM, and how many decisions change (and the routed mean
  moves) when each LLM's scores are replaced by its reliability bins' accuracies (in-sample).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from recroute.debias import diagnostics
from recroute.errors import DataError
from recroute.eval import metrics

NO_TASK = "(no task)"
TOP_FINDINGS = 10
COLLAPSE_SHARE = 0.9      # a log window whose top LLM takes at least this share is a collapse
DEFAULT_LOG_WINDOW = 500  # decisions per window of the log audit


@dataclass
class Audit:
    """An audit's tables (name -> DataFrame), its findings (best first) and its headline numbers."""

    kind: str  # "dataset" or "logs"
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    findings: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[dict[str, Any]]:
        """Every table row and finding as one tidy list of dicts with a ``section`` key (for --json)."""
        out = [{"section": "summary", **self.summary}]
        out += [{"section": "finding", "rank": i + 1, **f} for i, f in enumerate(self.findings)]
        for name, table in self.tables.items():
            out += [{"section": name, **row} for row in table.to_dict("records")]
        return out


def _finding(kind: str, severity: float, text: str, **extra) -> dict[str, Any]:
    return {"kind": kind, "severity": float(severity), "text": text, **extra}


def _pct(x: float) -> str:
    return f"{100 * x:.0f} %"


# ---------------------------------------------------------------------- dataset audit
def task_labels(data) -> np.ndarray:
    """object (n_prompts,): the task of each prompt (the benchmark where no task is given)."""
    table = data.prompts
    task = table["task"] if "task" in table else pd.Series([None] * len(table))
    bench = table["benchmark"] if "benchmark" in table else pd.Series([None] * len(table))
    labels = task.where(task.notna(), bench).astype(object)
    return labels.where(labels.notna(), NO_TASK).astype(str).to_numpy(dtype=object)


def regret_table(Y: np.ndarray, choice: np.ndarray, tasks: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """One row per task (and "(all)"): n_prompts, routed, oracle, best_llm, best, regret_oracle,
    regret_best (points), top_llm and top_share (the router's favourite there), lost_to, lost_share,
    n_lost. ``Y`` (n, m) true scores of the candidates (NaN unobserved), ``choice`` (n,) columns."""
    Y = np.asarray(Y, dtype=np.float64)
    rows_idx = np.arange(len(Y))
    routed = Y[rows_idx, choice]
    oracle = np.nanmax(np.where(np.isnan(Y), -np.inf, Y), axis=1)
    oracle = np.where(np.isfinite(oracle), oracle, np.nan)
    groups = [("(all)", np.ones(len(Y), dtype=bool))] + [(t, tasks == t) for t in sorted(set(tasks))]
    out = []
    for task, sel in groups:
        observed = ~np.isnan(Y[sel])
        means = np.where(observed.sum(axis=0) > 0,
                         np.where(observed, Y[sel], 0.0).sum(axis=0) / np.maximum(observed.sum(axis=0), 1), -np.inf)
        best = int(np.argmax(means))
        routed_mean = float(np.nanmean(routed[sel])) if np.isfinite(routed[sel]).any() else float("nan")
        shares = np.bincount(choice[sel], minlength=Y.shape[1]) / max(int(sel.sum()), 1)
        top = int(np.argmax(shares))
        lost = sel & (Y[:, best] >= 0.5) & (routed < 0.5)
        lost_counts = np.bincount(choice[lost], minlength=Y.shape[1])
        lost_to = int(np.argmax(lost_counts)) if lost.any() else None
        out.append({
            "task": task, "n_prompts": int(sel.sum()), "routed": routed_mean,
            "oracle": float(np.nanmean(oracle[sel])), "best_llm": names[best], "best": float(means[best]),
            "regret_oracle": 100 * (float(np.nanmean(oracle[sel])) - routed_mean),
            "regret_best": 100 * (float(means[best]) - routed_mean),
            "top_llm": names[top], "top_share": float(shares[top]),
            "lost_to": None if lost_to is None else names[lost_to], "n_lost": int(lost.sum()),
            "lost_share": float(lost_counts[lost_to] / lost.sum()) if lost_to is not None else 0.0,
        })
    return pd.DataFrame(out)


def share_tables(Y: np.ndarray, choice: np.ndarray, tasks: np.ndarray, names: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per LLM: llm, share, oracle_share; per task and LLM: task, llm, share, oracle_share)."""
    Y0 = np.nan_to_num(np.asarray(Y, dtype=np.float64), nan=0.0)  # an unobserved cell counts as wrong for the oracle
    oracle = metrics.oracle_distribution(Y0)
    m = Y0.shape[1]
    overall = pd.DataFrame({"llm": list(names), "share": metrics.selection_shares(choice, m),
                            "oracle_share": oracle.mean(axis=0)})
    parts = []
    for task in sorted(set(tasks)):
        sel = tasks == task
        parts.append(pd.DataFrame({"task": task, "llm": list(names), "share": metrics.selection_shares(choice[sel], m),
                                   "oracle_share": oracle[sel].mean(axis=0)}))
    per_task = pd.concat(parts, ignore_index=True)
    return overall, per_task[(per_task["share"] > 0) | (per_task["oracle_share"] > 0)].reset_index(drop=True)


def calibration_tables(scores: np.ndarray, Y: np.ndarray, choice: np.ndarray, allowed: np.ndarray,
                       names: Sequence[str], n_bins: int = 10) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(per LLM: llm, ece, share, predicted_when_chosen, accuracy_when_chosen, gap (points); reliability
    bins with the LLM's name; {"changed_share", "routed_binned", "routed"}: the decisions that change when
    each LLM's scores become its bins' accuracies). Requires scores in [0, 1]."""
    S = np.asarray(scores, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    m = S.shape[1]
    ece = diagnostics.ece(S, Y, n_bins)
    bins = diagnostics.reliability(S, Y, n_bins)
    rows = np.arange(len(S))
    pred, truth = S[rows, choice], Y[rows, choice]
    per_llm = []
    for j in range(m):
        sel = (choice == j) & ~np.isnan(truth)
        per_llm.append({"llm": names[j], "ece": float(ece[j]), "share": float(np.mean(choice == j)),
                        "predicted_when_chosen": float(pred[sel].mean()) if sel.any() else float("nan"),
                        "accuracy_when_chosen": float(truth[sel].mean()) if sel.any() else float("nan"),
                        "gap": 100 * float(pred[sel].mean() - truth[sel].mean()) if sel.any() else float("nan")})
    lookup = np.full((m, n_bins), np.nan)
    lookup[bins["llm"].to_numpy(), bins["bin"].to_numpy()] = bins["accuracy"].to_numpy()
    b = np.clip((np.clip(S, 0.0, 1.0) * n_bins).astype(np.int64), 0, n_bins - 1)
    binned = np.where(np.isnan(lookup[np.arange(m)[None, :], b]), S, lookup[np.arange(m)[None, :], b])
    new_choice = np.argsort(-np.where(allowed[None, :], binned, -np.inf), axis=1, kind="stable")[:, 0]
    moved = {"changed_share": float(np.mean(new_choice != choice)),
             "routed": float(np.nanmean(truth)), "routed_binned": float(np.nanmean(Y[rows, new_choice]))}
    bins = bins.assign(llm=[names[j] for j in bins["llm"]])
    return pd.DataFrame(per_llm), bins, moved


def cross_fit_scores(router, data, X: np.ndarray | None, folds: int = 5,
                     random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(scores float64 (n, m), selection probs float64 (n, m)) of every prompt of ``data`` from a copy of
    ``router`` (same class and parameters) fitted on the other ``folds - 1`` folds (shuffled K-fold): the
    out-of-sample view of a router audited on the prompts it was trained on."""
    from sklearn.model_selection import KFold

    folds = int(folds)
    if not 2 <= folds <= data.n_prompts:
        raise DataError(f"cross-fitting needs 2..{data.n_prompts} folds; got {folds}")
    names = [str(x) for x in router.llm_names_]
    sub = data.subset(llms=names)
    scores = np.zeros((data.n_prompts, len(names)))
    probs = np.zeros_like(scores)
    for train, test in KFold(folds, shuffle=True, random_state=random_state).split(np.arange(data.n_prompts)):
        fold = type(router)(**router.get_params()).fit(sub.subset(prompts=train), None if X is None else X[train])
        X_test = None if X is None else X[test]
        scores[test] = fold.score(X_test, n=len(test))
        probs[test] = fold.selection_probs(X_test, n=len(test))
    return scores, probs


def audit_dataset(router, data, X: np.ndarray | None, *, candidates: Sequence[str] | None = None,
                  n_bins: int = 10, cross_fit: int = 0, random_state: int = 0) -> Audit:
    """Audit a fitted router on the prompts of ``data`` (RoutingDataset whose LLMs include the router's)
    with their features ``X`` (n_prompts, d) (None for a feature-free router).

    ``cross_fit`` K >= 2: score each prompt with a copy of the router refitted on the other folds
    (:func:`cross_fit_scores`), for a dataset the router was trained on; 0: score with the router as it is
    (a held-out dataset)."""
    from recroute.cost.decide import greedy_top_k
    from recroute.routers.base import candidate_mask

    names = [str(x) for x in router.llm_names_]
    missing = sorted(set(names) - {str(x) for x in data.llm_names})
    if missing:
        raise DataError(f"the dataset has no results for the router's LLM(s) {missing[:5]}")
    if data.n_prompts == 0:
        raise DataError("the dataset has no prompts to audit")
    allowed = candidate_mask(names, None if candidates is None else list(candidates), "this router")
    Y_all = data.dense(np.nan)[:, data.llm_index(names)]
    if cross_fit:
        scores, probs = cross_fit_scores(router, data, X, cross_fit, random_state)
    else:
        scores = np.asarray(router.score(X, n=data.n_prompts), dtype=np.float64)
        probs = router.selection_probs(X, n=data.n_prompts)
    choice = greedy_top_k(scores, np.broadcast_to(allowed, scores.shape), 1)[:, 0]
    cand = np.flatnonzero(allowed)
    cand_names = [names[j] for j in cand]
    Y = Y_all[:, cand]
    local = np.searchsorted(cand, choice)  # the routed column among the candidates
    tasks = task_labels(data)
    audit = Audit("dataset")
    audit.tables["regret"] = regret_table(Y, local, tasks, cand_names)
    audit.tables["shares"], audit.tables["task_shares"] = share_tables(Y, local, tasks, cand_names)
    moved = None
    if diagnostics.is_probability(scores):
        per_llm, bins, moved = calibration_tables(scores[:, cand], Y, local, np.ones(len(cand), bool), cand_names, n_bins)
        audit.tables["calibration"], audit.tables["reliability"] = per_llm, bins
    overall = audit.tables["regret"].iloc[0]
    shares = audit.tables["shares"]["share"].to_numpy()
    audit.summary = {
        "kind": "dataset", "router": router.name, "dataset": getattr(data, "name", None), "n_prompts": data.n_prompts,
        "n_candidates": len(cand), "routed": float(overall["routed"]), "oracle": float(overall["oracle"]),
        "best_llm": overall["best_llm"], "best": float(overall["best"]),
        "gini": diagnostics.gini(shares), "selection_entropy": diagnostics.normalized_entropy(shares),
        "e_p": metrics.e_p(probs[:, cand], float(router.entropy_floor)), "cross_fit": int(cross_fit),
        "ece": float(np.nanmean(audit.tables["calibration"]["ece"])) if "calibration" in audit.tables else None,
        **({} if moved is None else {"calibration_" + k: v for k, v in moved.items()}),
    }
    audit.summary.update(tie_summary(scores[:, cand], local, cand_names))
    audit.findings = dataset_findings(audit, moved)
    return audit


def tie_summary(scores: np.ndarray, choice: np.ndarray, names: Sequence[str]) -> dict[str, Any]:
    """{"tie_share": share of prompts whose best score is shared by another candidate (the choice then goes to
    the lower LLM position), "tie_winner": the LLM that wins most of those ties, "tie_winner_share"}."""
    top2 = -np.sort(-np.asarray(scores, dtype=np.float64), axis=1)[:, :2]
    tied = top2[:, 0] == top2[:, 1] if scores.shape[1] > 1 else np.zeros(len(scores), dtype=bool)
    if not tied.any():
        return {"tie_share": 0.0, "tie_winner": None, "tie_winner_share": None}
    counts = np.bincount(choice[tied], minlength=len(names))
    winner = int(np.argmax(counts))
    return {"tie_share": float(tied.mean()), "tie_winner": names[winner],
            "tie_winner_share": float(counts[winner] / tied.sum())}


def dataset_findings(audit: Audit, moved: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Plain-words findings of a dataset audit, most severe first (severity in score points)."""
    out = []
    regret = audit.tables["regret"]
    for row in regret.iloc[1:].itertuples(index=False):
        if not row.regret_best > 0:
            continue
        lost = (f"; {row.n_lost} of its prompts the best LLM solved went wrong, {_pct(row.lost_share)} of them "
                f"sent to {row.lost_to}") if row.lost_to else ""
        out.append(_finding(
            "regret", row.regret_best,
            f"{row.task} prompts: {_pct(row.top_share)} to {row.top_llm}, {row.regret_best:.1f} points below "
            f"{row.best_llm} (the best single LLM on them){lost}", task=row.task, llm=row.top_llm,
            best_llm=row.best_llm, regret_best=row.regret_best, lost_to=row.lost_to))
    shares = audit.tables["shares"]
    top = shares.sort_values("share", ascending=False, kind="stable").iloc[0]
    excess = 100 * (top["share"] - top["oracle_share"])
    if excess > 0:
        out.append(_finding("concentration", excess / 2,
                            f"{top['llm']} takes {_pct(top['share'])} of the prompts; the oracle would send it "
                            f"{_pct(top['oracle_share'])} (Gini {audit.summary['gini']:.2f})", llm=top["llm"]))
    summary = audit.summary
    if summary.get("tie_share", 0) >= 0.05:
        out.append(_finding(
            "ties", 100 * summary["tie_share"] * summary["tie_winner_share"] / 2,
            f"{_pct(summary['tie_share'])} of the decisions are ties at the top score, broken by LLM position: "
            f"{summary['tie_winner']} wins {_pct(summary['tie_winner_share'])} of them", llm=summary["tie_winner"]))
    if "calibration" in audit.tables:
        cal = audit.tables["calibration"].dropna(subset=["gap"])
        cal = cal[cal["share"] >= 0.02]
        if not cal.empty:
            worst = cal.loc[cal["gap"].abs().idxmax()]
            word = "over" if worst["gap"] > 0 else "under"
            out.append(_finding(
                "calibration", abs(worst["gap"]) * worst["share"],
                f"{worst['llm']} is {word}-confident when chosen: predicted {worst['predicted_when_chosen']:.2f}, "
                f"correct {worst['accuracy_when_chosen']:.2f} on its {_pct(worst['share'])} of the prompts "
                f"(ECE {worst['ece']:.3f})", llm=worst["llm"]))
        if moved is not None and moved["changed_share"] > 0:
            delta = 100 * (moved["routed_binned"] - moved["routed"])
            out.append(_finding(
                "calibration_moves", abs(delta),
                f"calibrating each LLM's scores (reliability bins, in-sample) would change {_pct(moved['changed_share'])} "
                f"of the decisions and move the routed score by {delta:+.1f} points"))
    return sorted(out, key=lambda f: -f["severity"])


# ---------------------------------------------------------------------- decision-log audit
def _fallback_table(log: pd.DataFrame) -> pd.DataFrame:
    """llm, kind, count of failed upstream tries (the gateway's ``fallbacks`` column, "llm:kind" entries)."""
    if "fallbacks" not in log:
        return pd.DataFrame(columns=["llm", "kind", "count"])
    entries = [str(e) for items in log["fallbacks"] if isinstance(items, (list, tuple, np.ndarray)) for e in items]
    if not entries:
        return pd.DataFrame(columns=["llm", "kind", "count"])
    split = pd.DataFrame([e.rsplit(":", 1) if ":" in e else [e, "error"] for e in entries], columns=["llm", "kind"])
    return split.value_counts().rename("count").reset_index().sort_values(["count", "llm"], ascending=[False, True],
                                                                          kind="stable").reset_index(drop=True)


def _window_tables(log: pd.DataFrame, chosen: np.ndarray, names: Sequence[str], probs: np.ndarray | None,
                   floor: float, window: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per window of decisions: start, end, time, selection entropy (bits), top LLM and share, E_p,
    mean outcome; the shares per window and LLM)."""
    from recroute.audit.drift import window_bounds

    rows, share_rows = [], []
    for w, (start, end) in enumerate(window_bounds(len(log), window)):
        shares = metrics.selection_shares(chosen[start:end], len(names))
        top = int(np.argmax(shares))
        outcomes = log["outcome"].iloc[start:end]
        rows.append({"window": w, "start": start, "end": end, "time": float(np.mean(log["timestamp"].iloc[start:end])),
                     "selection_entropy_bits": float(metrics.entropy_bits(shares[None, :], floor=0.0)[0]),
                     "top_llm": names[top], "top_share": float(shares[top]),
                     "e_p": None if probs is None else metrics.e_p(probs[start:end], floor),
                     "outcome": float(np.nanmean(outcomes)) if outcomes.notna().any() else None})
        share_rows += [{"window": w, "llm": names[j], "share": float(shares[j])} for j in np.flatnonzero(shares)]
    return pd.DataFrame(rows), pd.DataFrame(share_rows)


def _drift_tables(log: pd.DataFrame, X_log: np.ndarray, reference, X_reference: np.ndarray | None,
                  drift_window: int | None, alpha: float | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the drift test per window of live prompts, with its mean time; per UTC day: n, median distance,
    the test's p-value and the domain classifier's AUC when the training features are given)."""
    from recroute.audit import drift

    distances = reference.distances(X_log)
    kwargs = {k: v for k, v in (("window", drift_window), ("alpha", alpha)) if v is not None}
    windows = drift.drift_windows(reference, distances, **kwargs)
    windows["time"] = [float(np.mean(log["timestamp"].iloc[s:e])) for s, e in zip(windows["start"], windows["end"])]
    days = pd.to_datetime(log["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%d").to_numpy()
    day_rows = []
    for day in sorted(set(days)):
        sel = days == day
        day_rows.append({"day": day, "n": int(sel.sum()), "median_distance": float(np.median(distances[sel])),
                         "null_median": float(np.median(reference.null)),
                         "p_value": drift.window_test(reference.null, distances[sel]),
                         "domain_auc": drift.domain_auc(X_reference, X_log[sel]) if X_reference is not None else None})
    return windows, pd.DataFrame(day_rows)


def audit_logs(log: pd.DataFrame, *, router=None, X_log: np.ndarray | None = None, reference=None,
               X_reference: np.ndarray | None = None, window: int = DEFAULT_LOG_WINDOW,
               drift_window: int | None = None, alpha: float | None = None) -> Audit:
    """Audit a decision log (a DecisionLog / DataFrame with its columns), in timestamp order.

    ``router`` with ``X_log`` (n_decisions, d), the features of the logged prompts: E_p of the router's
    selection distribution per window. ``reference`` (a :class:`~recroute.audit.drift.DriftReference`
    of the training prompts) with ``X_log``: drift per window and per day; ``X_reference`` (the training
    prompts' features) adds the domain classifier's AUC.
    """
    from recroute.audit import drift as drift_mod

    if len(log) == 0:
        raise DataError("the decision log has no decisions")
    order = np.argsort(np.asarray(log["timestamp"], dtype=np.float64), kind="stable")
    log = log.iloc[order].reset_index(drop=True)
    if X_log is not None:
        if len(X_log) != len(log):
            raise DataError(f"{len(X_log)} prompt features for {len(log)} logged decisions")
        X_log = np.asarray(X_log)[order]
    window = int(window)
    if window < 1:
        raise DataError(f"window must be at least 1 decision; got {window}")
    names = sorted({str(c) for cands in log["candidates"] for c in cands} | set(log["chosen"].astype(str)))
    if router is not None:
        names = [str(x) for x in router.llm_names_] + [n for n in names if n not in set(map(str, router.llm_names_))]
    position = {name: j for j, name in enumerate(names)}
    chosen = np.array([position[str(c)] for c in log["chosen"]], dtype=np.int64)
    probs = router.selection_probs(X_log, n=len(log)) if router is not None and X_log is not None else None
    floor = float(router.entropy_floor) if router is not None else 0.0
    audit = Audit("logs")
    windows, shares = _window_tables(log, chosen, names, probs, floor, window)
    audit.tables["log_windows"], audit.tables["log_shares"] = windows, shares
    audit.tables["collapses"] = _collapse_episodes(windows)
    audit.tables["fallbacks"] = _fallback_table(log)
    per_llm = log.assign(chosen=log["chosen"].astype(str)).groupby("chosen", sort=True).agg(
        decisions=("decision_id", "size"), outcome=("outcome", "mean"), outcomes=("outcome", "count"))
    audit.tables["log_llms"] = per_llm.reset_index().rename(columns={"chosen": "llm"})
    alarm = None
    if reference is not None and X_log is not None:
        audit.tables["drift"], audit.tables["drift_days"] = _drift_tables(log, X_log, reference, X_reference,
                                                                          drift_window, alpha)
        alarm = drift_mod.first_alarm(audit.tables["drift"])
    audit.summary = {
        "kind": "logs", "n_decisions": len(log), "n_llms": len(names), "window": window,
        "first_time": float(log["timestamp"].iloc[0]), "last_time": float(log["timestamp"].iloc[-1]),
        "from_utc": _iso(log["timestamp"].iloc[0]), "to_utc": _iso(log["timestamp"].iloc[-1]),
        "collapse_episodes": len(audit.tables["collapses"]), "fallbacks": int(audit.tables["fallbacks"]["count"].sum())
        if len(audit.tables["fallbacks"]) else 0, "drift_alarm_at": alarm,
        "domain_auc": (drift_mod.domain_auc(X_reference, X_log) if X_reference is not None and X_log is not None
                       else None),
    }
    audit.findings = log_findings(audit)
    return audit


def _iso(timestamp: float) -> str:
    """Unix seconds as "YYYY-MM-DD HH:MM:SS" UTC."""
    return pd.Timestamp(float(timestamp), unit="s", tz="UTC").strftime("%Y-%m-%d %H:%M:%S")


def _collapse_episodes(windows: pd.DataFrame) -> pd.DataFrame:
    """Runs of consecutive windows whose top LLM (the same one) takes at least COLLAPSE_SHARE."""
    out, run = [], None
    for row in windows.itertuples(index=False):
        hit = row.top_share >= COLLAPSE_SHARE
        if hit and run is not None and run["llm"] == row.top_llm:
            run.update(end=row.end, windows=run["windows"] + 1, share=max(run["share"], row.top_share))
            continue
        if run is not None:
            out.append(run)
            run = None
        if hit:
            run = {"llm": row.top_llm, "start": row.start, "end": row.end, "windows": 1, "share": row.top_share}
    if run is not None:
        out.append(run)
    return pd.DataFrame(out, columns=["llm", "start", "end", "windows", "share"])


def log_findings(audit: Audit) -> list[dict[str, Any]]:
    """Plain-words findings of a decision-log audit, most severe first."""
    out = []
    s = audit.summary
    if "drift" in audit.tables:
        dw = audit.tables["drift"]
        if s["drift_alarm_at"] is not None:
            fired = dw[dw["fired"]]
            out.append(_finding(
                "drift", 100.0,
                f"live prompts drift away from the training prompts from decision {int(fired['start'].iloc[0]):,} on: "
                f"{int(len(fired))} of {len(dw)} windows fire, median nearest-training distance "
                f"{fired['median_distance'].median():.3f} vs {dw['null_median'].iloc[0]:.3f} in training",
                at=s["drift_alarm_at"]))
    for row in audit.tables["collapses"].itertuples(index=False):
        out.append(_finding("collapse", 50.0 + row.windows,
                            f"collapse: {row.llm} took {_pct(row.share)} of decisions {row.start:,}-{row.end:,}",
                            llm=row.llm))
    fb = audit.tables["fallbacks"]
    if len(fb):
        per_llm = fb.groupby("llm")["count"].sum().sort_values(ascending=False, kind="stable")
        llm, count = per_llm.index[0], int(per_llm.iloc[0])
        out.append(_finding("fallbacks", 100.0 * count / s["n_decisions"],
                            f"{llm} failed {count:,} upstream tries ({100.0 * count / s['n_decisions']:.1f} per 100 "
                            f"decisions; kinds: {', '.join(sorted(set(fb[fb['llm'] == llm]['kind'])))})", llm=llm))
    llms = audit.tables["log_llms"].dropna(subset=["outcome"])
    llms = llms[llms["outcomes"] >= 20]
    if len(llms) >= 2:
        worst, best = llms.loc[llms["outcome"].idxmin()], llms.loc[llms["outcome"].idxmax()]
        gap = 100 * (best["outcome"] - worst["outcome"])
        out.append(_finding("outcomes", gap * worst["decisions"] / s["n_decisions"],
                            f"{worst['llm']} gets {int(worst['decisions']):,} decisions with a mean outcome of "
                            f"{worst['outcome']:.2f}, {gap:.1f} points below {best['llm']}", llm=worst["llm"]))
    return sorted(out, key=lambda f: -f["severity"])
