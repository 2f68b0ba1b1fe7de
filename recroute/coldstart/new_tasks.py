"""New tasks: how well routers handle prompts of a task never seen in training (leave-one-task-out).

Protocol (``leave_one_task_out``):

- RouterEval's split and candidate groups, exactly those of ``recroute eval``: the router_dataset is
  built by :func:`recroute.data.routereval.build_router_dataset` (seed-42 split stratified by
  ``task``, prompts sorted by id, 80/10/10; all_strong, all_weak and strong_to_weak for each m, the
  strong_to_weak draws following RouterEval's one RNG stream). The validation part is unused.
- Training target as in the eval protocol (:func:`recroute.eval.protocol.iter_group_data`): binary
  scores are their own labels; continuous scores become 0.95 × best labels when ``target="auto"``.
- For every router spec, m and candidate group:

  * ``in_distribution``: the router is fitted once on the whole train split, then measured on the
    test prompts of each task t separately;
  * ``leave_task_out``: for each task t, a fresh router is fitted on the train split *minus task t's
    prompts*, then measured on the same test prompts of task t.

  Both regimes are therefore measured on identical test prompts; only the training rows differ
  (by exactly task t's train prompts).
- Metrics per (router, m, group, task, regime): ``mu_o`` (mean test score of the argmax of the
  router's scores, ties: first LLM), ``v_b`` (mu_o / the best single candidate's mean on those test
  prompts), ``auc`` (:func:`recroute.eval.metrics.cell_auc`; NaN for truth-based or stochastic
  routers and for a task whose test cells hold one class), ``n_train``, ``n_test``, ``fit_seconds``.
  Oracle, r_o(p) and random are measured by their exact expectation, as in the eval protocol (they
  ignore training, so both regimes agree: they are reference rows).
- ``task == "all"``: every evaluated task's test prompts pooled. Its mu_o is the mean over tasks
  weighted by n_test (= mu_o over the pooled prompts, each routed by the router of its regime), so
  the in-distribution "all" row equals ``recroute eval``'s mu_o when every task is evaluated;
  ``v_b`` divides by the best single candidate on the pooled prompts and ``auc`` pools the scores.
  Its ``n_train`` is the mean over the fits behind it and its ``fit_seconds`` their total.
- ``group == "mean"``: the plain mean over the three groups (NaN propagates), as RouterEval's tables.

``compare(df)`` puts the two regimes side by side with their difference (LOTO minus in-distribution).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from recroute.errors import DataError
from recroute.eval import metrics

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.eval.protocol import GroupData
    from recroute.routers.base import Router

IN_DIST = "in_distribution"
LOTO = "leave_task_out"
REGIMES = (IN_DIST, LOTO)
ALL = "all"
ROW_KEYS = ("router", "m", "group", "task", "regime", "mu_o", "v_b", "auc", "n_train", "n_test", "fit_seconds")


@dataclass(frozen=True)
class TaskSplit:
    """RouterEval's split in the router_dataset's order, with each prompt's task.

    train / test: int64 (n_train,) / (n_test,) positions in the *dataset* (prompt_idx), in the order of
    the router_dataset's train / test rows; train_tasks / test_tasks: the task of each of those rows.
    """

    train: np.ndarray
    test: np.ndarray
    train_tasks: np.ndarray
    test_tasks: np.ndarray

    @property
    def tasks(self) -> list[str]:
        """The tasks with at least one test prompt, sorted."""
        return sorted(set(self.test_tasks.tolist()))


def task_labels(data: RoutingDataset) -> np.ndarray:
    """object (n_prompts,) task of each prompt (missing = "(none)"); DataError without two tasks."""
    from recroute.data.splits import task_label_array

    if "task" not in data.prompts:
        raise DataError(f"{data.name or 'dataset'}: the prompt table has no 'task' column; "
                        "leave-one-task-out needs a task per prompt")
    labels = task_label_array(data.prompts["task"], data.n_prompts)
    if len(set(labels.tolist())) < 2:
        raise DataError(f"{data.name or 'dataset'}: leave-one-task-out needs at least 2 tasks; "
                        f"the 'task' column holds only {sorted(set(labels.tolist()))}")
    return labels


def task_split(data: RoutingDataset, router_dataset: dict) -> TaskSplit:
    """Map the split of ``router_dataset`` (built from ``data`` with ``prompt_order="sorted"``) back to
    dataset positions and tasks."""
    labels = task_labels(data)
    from recroute.data.routereval import sorted_prompt_order

    order = sorted_prompt_order(data)
    index = router_dataset["split_index"]
    train = order[np.asarray(index["train_indices"], dtype=np.int64)]
    test = order[np.asarray(index["test_indices"], dtype=np.int64)]
    return TaskSplit(train, test, labels[train], labels[test])


def check_ms(ms: Sequence[int] | int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """(sorted unique ms, the settings holding them); DataError for an m RouterEval does not define."""
    from recroute.eval.groups import SETTINGS

    values = (ms,) if isinstance(ms, (int, np.integer)) else tuple(ms)
    try:
        out = tuple(sorted({int(m) for m in values}))
    except (TypeError, ValueError):
        raise DataError(f"m must be integers from {sorted(m for s in SETTINGS.values() for m in s)}; got {values}") from None
    known = {m: s for s, sizes in SETTINGS.items() for m in sizes}
    bad = [m for m in out if m not in known]
    if bad or not out:
        raise DataError(f"m must be among RouterEval's pool sizes {sorted(known)}; got {list(values)}")
    settings = tuple(s for s in SETTINGS if any(known[m] == s for m in out))
    return out, settings


# ---------------------------------------------------------------------- the runner
def leave_one_task_out(
    data: RoutingDataset,
    routers: Sequence[str],
    ms: Sequence[int] | int = (5,),
    X: np.ndarray | None = None,
    encoder=None,
    seed: int = 42,
    tasks: Sequence[str] | str | None = None,
    quiet: bool = True,
    target: str = "auto",
) -> pd.DataFrame:
    """In-distribution vs leave-one-task-out routing quality, per task (see the module docstring).

    Embeddings: ``X`` (n_prompts, d), else ``encoder``'s, else ``data.embeddings``, else (a router needs
    them and the prompts have text) MiniLM through the on-disk cache, as ``evaluate_dataset``.
    ``tasks``: the tasks to hold out (default: every task with a test prompt); the others always stay in
    training. Returns a tidy DataFrame with columns :data:`ROW_KEYS`, one row per (router, m, group,
    task, regime), plus ``task == "all"`` and ``group == "mean"`` rows.
    """
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.protocol import (
        DEFAULT_ENCODER,
        check_router_features,
        progress_steps,
        build_settings,
        dataset_embeddings,
        iter_group_data,
    )
    from recroute.routers.registry import make_router, spec_label

    specs = [str(s).strip() for s in routers if str(s).strip()]
    if not specs:
        raise DataError("no routers to evaluate")
    labels = [spec_label(s) for s in specs]
    if len(set(labels)) != len(labels):
        raise DataError(f"router list repeats a router: {labels}")
    needs_features = any(make_router(s).needs_features for s in specs)  # validates every spec first
    ms, settings = check_ms(ms)
    task_labels(data)
    if needs_features and X is None and encoder is None and data.embeddings is None and data.has_text:
        encoder = DEFAULT_ENCODER
    emb = dataset_embeddings(data, X, encoder)
    rd = build_router_dataset(data, build_settings(settings), seed=seed, prompt_order="sorted", embeddings=emb)
    split = task_split(data, rd)
    held = _held_out_tasks(split, tasks)
    groups = [gd for gd in iter_group_data(rd, settings, target) if gd.m in ms]
    missing = sorted(set(ms) - {gd.m for gd in groups})
    if missing:
        raise DataError(f"{data.name or 'dataset'}: too few LLMs with a mean score in (0.1, 0.9] for a pool of "
                        f"m={missing[0]}")
    check_router_features(specs, groups)
    rows: list[dict[str, Any]] = []
    with progress_steps(quiet, len(specs) * len(groups) * (1 + len(held))) as progress:
        for spec, label in zip(specs, labels):
            for gd in groups:
                try:
                    rows += _router_group_rows(spec, label, gd, split, held, progress)
                except Exception as exc:
                    exc.add_note(f"while evaluating router {label!r} on {gd.where} (leave-one-task-out)")
                    raise
    return _with_group_means(pd.DataFrame(rows, columns=list(ROW_KEYS)), labels, held)


def _held_out_tasks(split: TaskSplit, tasks: Sequence[str] | str | None) -> list[str]:
    """The requested tasks (default: all with a test prompt), checked against the dataset's."""
    known = split.tasks
    if tasks is None:
        return known
    asked = [tasks] if isinstance(tasks, str) else [str(t) for t in tasks]
    if not asked:
        raise DataError("tasks: give at least one task to hold out (or None for all)")
    unknown = [t for t in asked if t not in known]
    if unknown:
        raise DataError(f"unknown task(s) {unknown}; tasks with test prompts: {known}")
    return sorted(set(asked))


def _router_group_rows(spec: str, label: str, gd: GroupData, split: TaskSplit, held: list[str],
                       progress) -> list[dict[str, Any]]:
    """Both regimes of one router on one candidate group: rows per held-out task plus "all"."""
    from recroute.routers.registry import make_router

    key = {"router": label, "m": gd.m, "group": gd.group}
    test_rows = {t: np.flatnonzero(split.test_tasks == t) for t in held}
    progress.start(f"{label} on {gd.where}, every task in training")
    router, seconds = _fit(make_router(spec), gd, np.ones(len(split.train_tasks), dtype=bool))
    in_dist = [(t, len(gd.Y_train), seconds, *_measure(router, gd, test_rows[t])) for t in held]
    progress.done()
    loto = []
    for t in held:
        progress.start(f"{label} on {gd.where}, without task {t}")
        keep = split.train_tasks != t
        if not keep.any():
            raise DataError(f"task {t!r}: no training prompt is left once it is held out")
        router, seconds = _fit(make_router(spec), gd, keep)
        loto.append((t, int(keep.sum()), seconds, *_measure(router, gd, test_rows[t])))
        progress.done()
    return [{**key, **r} for regime, parts in ((IN_DIST, in_dist), (LOTO, loto)) for r in _task_rows(regime, parts)]


def _fit(router: Router, gd: GroupData, keep: np.ndarray) -> tuple[Router, float]:
    """The router fitted on the kept train rows (bool (n_train,)) of the group; (router, seconds)."""
    X = None if gd.X_train is None else gd.X_train[keep]
    start = time.perf_counter()
    router.fit(gd.Y_train[keep], X=X)
    return router, time.perf_counter() - start


def _measure(router: Router, gd: GroupData, rows: np.ndarray) -> tuple[float, np.ndarray, np.ndarray | None]:
    """(mu_o, Y (n, m) true scores, scores (n, m) | None) of a fitted router on the given test rows."""
    from recroute.eval.protocol import is_expected_router, truth_metrics

    sub = replace(gd, X_test=None if gd.X_test is None else gd.X_test[rows], Y_test=gd.Y_test[rows])
    n, m = sub.Y_test.shape
    if is_expected_router(router):  # oracle, r_o(p), random: their exact expectation
        return truth_metrics(router, sub, None, None)[0], sub.Y_test, None
    scores = np.asarray(router.score(sub.X_test, n=n), dtype=np.float64)
    if scores.shape != (n, m):
        raise DataError(f"router {router.name!r} returned scores of shape {scores.shape}; expected {(n, m)}")
    return metrics.mu_o(sub.Y_test, np.argmax(scores, axis=1)), sub.Y_test, scores


def _task_rows(regime: str, parts: list[tuple]) -> list[dict[str, Any]]:
    """Rows of one regime from (task, n_train, fit_seconds, mu_o, Y, scores) per task, plus "all"."""
    rows = [_row(regime, task, n_train, secs, mu, Y, scores) for task, n_train, secs, mu, Y, scores in parts]
    n_test = np.array([len(p[4]) for p in parts], dtype=np.float64)
    mu = float(np.dot(n_test, [p[3] for p in parts]) / n_test.sum())
    Y = np.vstack([p[4] for p in parts])
    scores = None if any(p[5] is None for p in parts) else np.vstack([p[5] for p in parts])
    fits = parts[:1] if regime == IN_DIST else parts  # one shared fit in distribution
    total = _row(regime, ALL, float(np.mean([p[1] for p in fits])), sum(p[2] for p in fits), mu, Y, scores)
    return rows + [total]


def _row(regime: str, task: str, n_train: float, seconds: float, mu: float, Y: np.ndarray,
         scores: np.ndarray | None) -> dict[str, Any]:
    return {
        "task": task, "regime": regime, "mu_o": float(mu), "v_b": metrics.v_b(mu, Y),
        "auc": float("nan") if scores is None else metrics.cell_auc(Y, scores),
        "n_train": n_train, "n_test": len(Y), "fit_seconds": float(seconds),
    }


def _with_group_means(df: pd.DataFrame, labels: list[str], held: list[str]) -> pd.DataFrame:
    """Append the plain mean over groups per (router, m, task, regime) and order the rows."""
    from recroute.eval.protocol import GROUP_ORDER, MEAN, plain_mean

    keys = ["router", "m", "task", "regime"]
    agg = {"mu_o": plain_mean, "v_b": plain_mean, "auc": plain_mean, "n_train": "mean", "n_test": "first",
           "fit_seconds": "mean"}
    means = df.groupby(keys, sort=False).agg(agg).reset_index()
    means["group"] = MEAN
    out = pd.concat([df, means[df.columns]], ignore_index=True)
    ranks = {"router": labels, "group": [*GROUP_ORDER, MEAN], "task": [*held, ALL], "regime": list(REGIMES)}
    sort_keys = []
    for column, values in ranks.items():
        out[f"_{column}"] = out[column].map({v: i for i, v in enumerate(values)})
        sort_keys.append(f"_{column}")
    out = out.sort_values([sort_keys[0], "m", *sort_keys[1:]], kind="stable").drop(columns=sort_keys)
    out["m"] = out["m"].astype(int)
    out["n_test"] = out["n_test"].astype(int)
    return out.reset_index(drop=True)


# ---------------------------------------------------------------------- summaries
def compare(df: pd.DataFrame, columns: Sequence[str] = ("mu_o", "v_b"), group: str | None = "mean") -> pd.DataFrame:
    """The two regimes side by side: one row per (router, m, group, task).

    Columns ``router, m, group, task, n_test, n_train_loto``, then per metric ``{metric}_in_dist``,
    ``{metric}_loto`` and ``{metric}_delta`` (= LOTO - in-distribution; negative = worse on new tasks)
    for each metric in ``columns`` (mu_o, v_b, auc).
    ``group``: keep only that group ("mean" by default; None keeps every group).
    """
    bad = [c for c in columns if c not in ("mu_o", "v_b", "auc")]
    if bad:
        raise DataError(f"compare: unknown metric(s) {bad}; expected mu_o, v_b or auc")
    part = df if group is None else df[df["group"] == group]
    if part.empty:
        raise DataError(f"compare: no rows for group {group!r}")
    keys = ["router", "m", "group", "task"]
    a = part[part["regime"] == IN_DIST].set_index(keys)
    b = part[part["regime"] == LOTO].set_index(keys)
    out = pd.DataFrame({"n_test": a["n_test"], "n_train_loto": b["n_train"]})
    for metric in columns:
        out[f"{metric}_in_dist"] = a[metric]
        out[f"{metric}_loto"] = b[metric]
        out[f"{metric}_delta"] = b[metric] - a[metric]
    return out.reset_index()
