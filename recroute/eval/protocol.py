"""RouterEval's protocol runner: every router on every candidate group, tidy rows out.

For each candidate group of a RouterEval ``router_dataset`` (setting, m, group) a fresh router is
fitted on ``train_embed`` and the group's training target, then measured on ``test_score``. A router
that ``uses_validation`` (e.g. the stack) also gets the validation part (``val_embed`` and the
group's validation target, built like the training one) to choose on; the others never see it:

- ``mu_o``: mean test score of the argmax of ``router.score`` (ties: the first LLM);
- ``v_b`` = mu_o / best single candidate's mean test score; ``v_r`` = mu_o / Perf(ref) (NaN without
  a reference score);
- ``e_p``: mean entropy (bits) of ``router.selection_probs`` with the router's ``entropy_floor``;
- ``auc``: ROC AUC of ``router.score`` against the test truth over all cells.

Truth-based routers (oracle, r_o(p)) and stochastic ones (random) are measured by their exact
expectation by default (``r_o_expected_mu``; random = r_o with p = 0), or by RouterEval's Monte
Carlo (``monte_carlo_runs=1000``); their E_p comes from their truth distribution. A ``mean`` row per
(router, setting, m) is the plain mean over the three groups, as in RouterEval's test_router.py.
Nothing is printed unless ``quiet=False`` (a progress bar on stderr).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

from recroute.encoders.base import DEFAULT_ENCODER  # re-exported here: one default for every layer
from recroute.errors import DataError, FitTooLargeError
from recroute.eval import metrics

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.routers.base import Router

GROUP_ORDER = ("all_strong", "all_weak", "strong_to_weak")
MEAN = "mean"
METRICS = ("mu_o", "v_r", "v_b", "e_p", "auc")
ROW_KEYS = ("router", "setting", "m", "group", *METRICS)
TARGETS = ("auto", "score", "label")
REFUSALS = ("raise", "record")


@dataclass(frozen=True)
class GroupData:
    """One candidate group, ready for a router.

    X_train (n_train, d) | None, X_test (n_test, d) | None, Y_train (n_train, m): the training target,
    Y_test (n_test, m): the true test scores, llms (m,): candidate names; X_val (n_val, d) | None and
    Y_val (n_val, m) | None: the validation part, its target made like Y_train (None when absent).
    """

    setting: str
    m: int
    group: str
    llms: np.ndarray
    X_train: np.ndarray | None
    X_test: np.ndarray | None
    Y_train: np.ndarray
    Y_test: np.ndarray
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None

    @property
    def where(self) -> str:
        return f"{self.setting}/m={self.m}/{self.group}"

    def validation(self):
        """The validation part as a ``ValidationPart`` for ``Router.fit``, or None when the group has none."""
        from recroute.routers.base import ValidationPart

        if self.Y_val is None or len(self.Y_val) == 0:
            return None
        return ValidationPart(self.Y_val, self.X_val)


# ---------------------------------------------------------------------- router_dataset access
def is_continuous(router_dataset: dict) -> bool:
    """Whether any score of any group is neither 0 nor 1 (RouterEval's per-benchmark label switch)."""
    from recroute.data.routereval import iter_groups

    for _, _, _, entry in iter_groups(router_dataset):
        for part in ("train_score", "val_score", "test_score"):
            arr = np.asarray(entry["data"][part])
            if not np.all((arr == 0) | (arr == 1)):
                return True
    return False


def iter_group_data(
    router_dataset: dict, settings: Sequence[str] = ("easy",), target: str = "auto"
) -> Iterator[GroupData]:
    """Yield every filled group of the requested settings, groups in RouterEval's order.

    ``target``: "auto" trains on ``train_label`` when it is present and the scores are continuous
    (test_router.py), "label" always on ``train_label`` (computed by the 0.95 × best rule if absent),
    "score" always on ``train_score``.
    """
    if target not in TARGETS:
        raise DataError(f"target must be one of {TARGETS}; got {target!r}")
    from recroute.data.labels import process_label

    use_label = target == "label" or (target == "auto" and is_continuous(router_dataset))
    emb = router_dataset.get("embedding") or {}
    X_train, X_test, X_val = (None if emb.get(f"{p}_embed") is None else np.asarray(emb[f"{p}_embed"], dtype=np.float32)
                              for p in ("train", "test", "val"))
    for setting in settings:
        block = router_dataset.get(setting) or {}
        for m in sorted(block, key=int):
            groups = block[m] or {}
            for group in sorted(groups, key=lambda g: GROUP_ORDER.index(g) if g in GROUP_ORDER else 99):
                entry = groups[group]
                if not entry or entry.get("data") is None or entry.get("model") is None:
                    continue
                data = entry["data"]
                Y_train = np.asarray(data["train_score"], dtype=np.float32)
                Y_val = None if data.get("val_score") is None else np.asarray(data["val_score"], dtype=np.float32)
                if use_label:  # "auto" without a stored train_label keeps the scores
                    label = data.get("train_label")
                    if label is None and target == "label":
                        label = process_label(Y_train)
                    if label is not None:
                        Y_train = np.asarray(label, dtype=np.float32)
                        Y_val = None if Y_val is None else process_label(Y_val).astype(np.float32)
                yield GroupData(
                    setting, int(m), str(group), np.asarray(entry["model"]).astype(str),
                    X_train, X_test, Y_train, np.asarray(data["test_score"], dtype=np.float64),
                    X_val, Y_val,
                )


def check_settings(settings: Sequence[str] | str) -> tuple[str, ...]:
    """Settings as a tuple, each "easy" or "hard" ("all" = both)."""
    from recroute.eval.groups import SETTINGS

    if isinstance(settings, str):
        settings = tuple(SETTINGS) if settings == "all" else (settings,)
    settings = tuple(settings)
    bad = [s for s in settings if s not in SETTINGS]
    if bad or not settings:
        raise DataError(f"unknown setting(s) {bad}; expected easy, hard or all")
    return settings


# ---------------------------------------------------------------------- one router on one group
def _truth_p(router: "Router") -> float | None:
    """The mixing weight p of an oracle-style or random router (oracle 1, random 0, r_o its p)."""
    if getattr(router, "name", "") == "random":
        return 0.0
    if getattr(router, "name", "") == "oracle":
        return 1.0
    p = getattr(router, "p", None)
    return None if p is None else float(p)


def is_expected_router(router: "Router") -> bool:
    """Routers measured by expectation: truth-based (oracle, r_o) and stochastic (random)."""
    return bool(getattr(router, "requires_truth", False) or getattr(router, "stochastic", False))


def truth_metrics(router: "Router", gd: GroupData, monte_carlo_runs: int | None, seed: int | None):
    """(mu_o, probs (n, m), expected shares (m,)) of an oracle-style or random router."""
    Y = gd.Y_test
    n, m = Y.shape
    if getattr(router, "requires_truth", False):
        probs = np.asarray(router.selection_probs_truth(Y), dtype=np.float64)
    else:
        probs = np.asarray(router.selection_probs(gd.X_test, n=n), dtype=np.float64)
    p = _truth_p(router)
    if monte_carlo_runs:
        if p is None:
            raise DataError(f"router {router.name!r}: Monte Carlo needs a mixing weight p")
        mu = metrics.r_o_monte_carlo_mu(Y, p, runs=int(monte_carlo_runs), seed=seed)
    elif hasattr(router, "expected_mu"):
        mu = float(router.expected_mu(Y))
    elif p is not None:
        mu = metrics.r_o_expected_mu(Y, p)
    else:  # any other stochastic router: expectation under its selection distribution
        mu = float(np.mean(np.sum(probs * Y, axis=1)))
    return mu, probs, probs.mean(axis=0)


def _fitted_metrics(router: "Router", gd: GroupData):
    """(mu_o, probs (n, m), shares (m,), auc) of a router fitted on the group's training data."""
    from recroute.routers.base import Router

    Y = gd.Y_test
    n, m = Y.shape
    scores = np.asarray(router.score(gd.X_test, n=n), dtype=np.float64)
    if scores.shape != (n, m):
        raise DataError(f"router {router.name!r} returned scores of shape {scores.shape}; expected {(n, m)}")
    choice = np.argmax(scores, axis=1)  # ties: the first LLM
    if type(router).selection_probs is Router.selection_probs:
        probs = metrics.softmax(scores)  # the default, without scoring twice
    else:
        probs = np.asarray(router.selection_probs(gd.X_test, n=n), dtype=np.float64)
    auc = metrics.cell_auc(Y, scores)
    return metrics.mu_o(Y, choice), probs, metrics.selection_shares(choice, m), auc


def evaluate_group(
    router: "Router", gd: GroupData, reference: float | None = None,
    monte_carlo_runs: int | None = None, seed: int | None = 0,
) -> dict[str, Any]:
    """Fit ``router`` on the group's train split and measure it on its test split: one row's metrics.

    Returns {"mu_o", "v_r", "v_b", "e_p", "auc", "share" (list of m floats), "llms" (list of m names),
    "fit_seconds", "route_seconds"}.
    """
    if router.needs_features and gd.X_train is None:
        raise DataError(
            f"router {router.name!r} needs prompt embeddings and the router dataset has none "
            "(pass X, attach embeddings or choose an encoder)"
        )
    n = gd.Y_test.shape[0]
    start = time.perf_counter()
    if getattr(router, "uses_validation", False):
        router.fit(gd.Y_train, X=gd.X_train, validation=gd.validation())
    else:
        router.fit(gd.Y_train, X=gd.X_train)
    fitted = time.perf_counter()
    if is_expected_router(router):
        mu, probs, shares = truth_metrics(router, gd, monte_carlo_runs, seed)
        auc = float("nan")
    else:
        mu, probs, shares, auc = _fitted_metrics(router, gd)
    routed = time.perf_counter()
    if probs.shape != (n, gd.m):
        raise DataError(f"router {router.name!r}: selection distribution of shape {probs.shape}; expected {(n, gd.m)}")
    floor = float(getattr(router, "entropy_floor", 1e-10))
    return {
        "mu_o": mu,
        "v_r": metrics.v_r(mu, reference),
        "v_b": metrics.v_b(mu, gd.Y_test),
        "e_p": metrics.e_p(probs, floor),
        "auc": auc,
        "share": [float(s) for s in shares],
        "llms": [str(x) for x in gd.llms],
        "fit_seconds": fitted - start,
        "route_seconds": routed - fitted,  # scoring the test prompts plus the metrics
    }


# ---------------------------------------------------------------------- the runner
def evaluate_router_dataset(
    router_dataset: dict,
    routers: Sequence[str],
    benchmark: str | None = None,
    settings: Sequence[str] | str = ("easy",),
    *,
    target: str = "auto",
    monte_carlo_runs: int | None = None,
    seed: int | None = 0,
    reference: float | None = None,
    quiet: bool = True,
    backend: str = "serial",
    n_workers: int | None = None,
    refusals: str = "raise",
) -> pd.DataFrame:
    """Evaluate router specs (``"knn"``, ``"r_o:p=0.5"``) on a RouterEval router_dataset dict.

    Returns a tidy DataFrame, one row per (router, setting, m, group) with columns ``router, setting,
    m, group, mu_o, v_r, v_b, e_p, auc, share, llms`` (``share``/``llms``: lists over the m candidates),
    plus a ``group == "mean"`` row per (router, setting, m): the plain mean over the groups
    (share/llms None). V_R uses ``reference`` or else RouterEval's score for ``benchmark`` (NaN if none).
    A router that fails on a group raises (with a note naming the router and group).
    ``backend``: where the (router × group) grid runs, "serial" (default), "process" (a local spawn
    pool of ``n_workers``) or "ray" (see :mod:`recroute.eval.backends`); the rows are the same.
    ``refusals``: "raise" (default) or "record": a group whose fit the router refuses by its declared
    size limit (FitTooLargeError, e.g. sw_ranking above 300 LLMs) becomes a row with NaN metrics and
    the error message in a ``refused`` column (None on the other rows), and the other groups go on.
    """
    from recroute.eval.backends import check_backend, map_work
    from recroute.routers.registry import make_router, spec_label

    settings = check_settings(settings)
    specs = [str(s).strip() for s in routers if str(s).strip()]
    if not specs:
        raise DataError("no routers to evaluate")
    for spec in specs:  # validate every spec before any work
        make_router(spec)
    labels = [spec_label(s) for s in specs]
    if len(set(labels)) != len(labels):
        raise DataError(f"router list repeats a router: {labels}")
    ref = reference if reference is not None else metrics.reference_score(benchmark)
    groups = list(iter_group_data(router_dataset, settings, target))
    if not groups:
        raise DataError(f"the router dataset has no candidate group for setting(s) {', '.join(settings)}")
    check_router_features(specs, groups)
    check_backend(backend)
    if refusals not in REFUSALS:
        raise DataError(f"refusals must be one of {', '.join(REFUSALS)}; got {refusals!r}")
    items = [(spec, label, g) for g in range(len(groups)) for spec, label in zip(specs, labels)]
    shared = {"groups": groups, "reference": ref, "monte_carlo_runs": monte_carlo_runs, "seed": seed,
              "refusals": refusals}
    with progress_steps(quiet, len(items)) as progress:
        rows = map_work(
            _evaluate_item, items, shared, backend, n_workers,
            on_start=lambda i: progress.start(f"{items[i][1]} on {groups[items[i][2]].where}"),
            on_done=lambda i: progress.done(),
        )
    df = pd.DataFrame(rows)
    if refusals == "record":
        df["refused"] = _none_for_missing(df["refused"]) if "refused" in df else None
    return _with_means(df, labels)


def _evaluate_item(shared: dict[str, Any], item: tuple[str, str, int]) -> dict[str, Any]:
    """One (router spec, label, group index) work item of the grid: its result row."""
    from recroute.routers.registry import make_router

    spec, label, g = item
    gd = shared["groups"][g]
    try:
        result = evaluate_group(make_router(spec), gd, shared["reference"], shared["monte_carlo_runs"], shared["seed"])
    except FitTooLargeError as exc:
        if shared.get("refusals") != "record":
            exc.add_note(f"while evaluating router {label!r} on {gd.where}")
            raise
        result = {**dict.fromkeys(("mu_o", "v_r", "v_b", "e_p", "auc", "fit_seconds", "route_seconds"), float("nan")),
                  "share": None, "llms": [str(x) for x in gd.llms], "refused": str(exc)}
    except Exception as exc:
        exc.add_note(f"while evaluating router {label!r} on {gd.where}")
        raise
    return {"router": label, "setting": gd.setting, "m": gd.m, "group": gd.group, **result}


def check_router_features(specs: Sequence[str], groups: list[GroupData]) -> None:
    """Routers that need embeddings need train and test embeddings of one width."""
    from recroute.routers.registry import make_router

    X_train, X_test = groups[0].X_train, groups[0].X_test
    needs = [s for s in specs if make_router(s).needs_features]
    if needs and (X_train is None or X_test is None):
        raise DataError(
            f"router(s) {', '.join(needs)} need prompt embeddings but the router dataset has no "
            "embedding/train_embed and test_embed: pass embeddings or an encoder"
        )
    if X_train is not None and X_test is not None and X_train.shape[1] != X_test.shape[1]:
        raise DataError(f"train_embed has {X_train.shape[1]} columns but test_embed has {X_test.shape[1]}")


def _with_means(df: pd.DataFrame, labels: list[str]) -> pd.DataFrame:
    """Append the plain mean over groups per (router, setting, m) and order the rows."""
    keys = ["router", "setting", "m"]
    agg = {"mu_o": plain_mean, "v_r": plain_mean, "v_b": plain_mean, "e_p": plain_mean, "auc": "mean",
           "fit_seconds": "mean", "route_seconds": "mean"}
    if "refused" in df:  # a (router, setting, m) mean is refused when one of its groups was
        agg["refused"] = "first"
    means = df.groupby(keys, sort=False)[list(agg)].agg(agg).reset_index()
    means["group"] = MEAN
    means["share"] = None
    means["llms"] = None
    if "refused" in df:
        means["refused"] = _none_for_missing(means["refused"])
    out = pd.concat([df, means[df.columns]], ignore_index=True)
    order = {label: i for i, label in enumerate(labels)}
    group_rank = {g: i for i, g in enumerate((*GROUP_ORDER, MEAN))}
    out["_r"] = out["router"].map(order)
    out["_s"] = out["setting"].map({"easy": 0, "hard": 1})
    out["_g"] = out["group"].map(group_rank)
    out = out.sort_values(["_r", "_s", "m", "_g"], kind="stable").drop(columns=["_r", "_s", "_g"])
    out["m"] = out["m"].astype(int)
    return out.reset_index(drop=True)


def _none_for_missing(values: pd.Series) -> pd.Series:
    """An object column with None (not NaN) where a value is missing."""
    return values.astype(object).where(values.notna(), None)


def plain_mean(values: pd.Series) -> float:
    """np.mean without skipping NaN (a NaN group makes the mean NaN, as in test_router.py)."""
    return float(np.mean(values.to_numpy(dtype=np.float64)))


def progress_steps(quiet: bool, total: int):
    """Context manager yielding an object with ``start(description)`` and ``done()``; silent when quiet."""
    return nullcontext(_Silent()) if quiet else _RichProgress(total)


class _Silent:
    def start(self, description: str) -> None:
        pass

    def done(self) -> None:
        pass


class _RichProgress:
    """A transient rich progress bar on stderr naming the router and group being evaluated."""

    def __init__(self, total: int) -> None:
        self.total = total

    def __enter__(self) -> "_RichProgress":
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]evaluating[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=Console(stderr=True), transient=True,
        )
        self.progress.__enter__()
        self.task = self.progress.add_task("", total=self.total)
        return self

    def start(self, description: str) -> None:
        self.progress.update(self.task, description=description)

    def done(self) -> None:
        self.progress.advance(self.task)

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)


# ---------------------------------------------------------------------- from a RoutingDataset
def dataset_benchmark(data: "RoutingDataset") -> str | None:
    """The dataset's single benchmark name, or None when it has none or several."""
    if "benchmark" not in data.prompts:
        return None
    names = data.prompts["benchmark"].dropna().unique()
    return str(names[0]) if len(names) == 1 else None


def dataset_embeddings(data: "RoutingDataset", X: np.ndarray | None = None, encoder=None,
                       needed: bool = False, fit_seed: int | None = None) -> np.ndarray | None:
    """float32 (n_prompts, d) prompt features: ``X``, else ``encoder``'s (when given), else the dataset's.

    An encoder given explicitly wins over attached embeddings (``embed_dataset`` reuses them when the
    same encoder made them). Without one, the dataset's set made by the default encoder
    (``DEFAULT_ENCODER``) when it carries one, else its active embeddings; when it has none and
    features are ``needed``, its texts encoded by ``DEFAULT_ENCODER`` (cached on disk); else None.
    An encoder that learns from texts (TF-IDF, lexical) and is not fitted yet is fitted on the training
    prompts of RouterEval's split with ``fit_seed`` when given (never on test prompts), else on every text.
    """
    if needed and X is None and encoder is None and data.embeddings is None and data.has_text:
        encoder = DEFAULT_ENCODER  # texts but no stored embeddings: encode them
    if X is not None:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] != data.n_prompts:
            raise DataError(f"X must have shape (n_prompts={data.n_prompts}, d); got {X.shape}")
        return X
    if encoder is not None:
        from recroute.encoders import embed_dataset, get_encoder

        encoder = get_encoder(encoder)
        if fit_seed is not None and getattr(encoder, "is_fitted", True) is False:
            from recroute.data.routereval import routereval_train_prompts
            from recroute.encoders.embed import dataset_texts

            texts = dataset_texts(data)
            encoder.fit([texts[i] for i in routereval_train_prompts(data, fit_seed)])
        out = embed_dataset(data, encoder)
        X = out if isinstance(out, np.ndarray) else getattr(out, "embeddings", None)
        return data.embeddings if X is None else np.asarray(X, dtype=np.float32)
    from recroute.encoders.base import embedding_names

    sets = getattr(data, "embedding_sets", {})
    for name in embedding_names(DEFAULT_ENCODER):  # the default encoder's set first
        if name in sets:
            return sets[name]
    return data.embeddings


def build_settings(settings: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """The settings to build so the strong_to_weak draws follow RouterEval's one RNG stream.

    RouterEval fills easy before hard from one stream, so building "hard" needs "easy" first.
    """
    from recroute.eval.groups import SETTINGS

    last = max(list(SETTINGS).index(s) for s in settings)
    return {s: SETTINGS[s] for s in list(SETTINGS)[: last + 1]}


def evaluate_dataset(
    data: "RoutingDataset",
    routers: Sequence[str],
    settings: Sequence[str] | str = ("easy", "hard"),
    X: np.ndarray | None = None,
    encoder=None,
    seed: int = 42,
    *,
    benchmark: str | None = None,
    prompt_order: str = "sorted",
    quiet: bool = True,
    **kwargs: Any,
) -> pd.DataFrame:
    """Build RouterEval's router_dataset from ``data`` (seed-42 split and groups) and evaluate on it.

    Embeddings: ``X`` (n_prompts, d), else computed with ``encoder`` when given, else ``data.embeddings``,
    else (when a router needs them and the prompts have text) the default MiniLM encoder through the
    on-disk cache.
    V_R uses ``benchmark`` or the dataset's single benchmark name (NaN when it has none or several).
    Hard settings appear only where the pool holds enough LLMs. Other keyword arguments go to
    :func:`evaluate_router_dataset`.
    """
    from recroute.data.routereval import build_router_dataset

    from recroute.routers.registry import make_router

    settings = check_settings(settings)
    needs_features = any(make_router(spec).needs_features for spec in routers)
    emb = dataset_embeddings(data, X, encoder, needed=needs_features, fit_seed=seed)
    rd = build_router_dataset(data, build_settings(settings), seed=seed, prompt_order=prompt_order, embeddings=emb)
    bench = benchmark if benchmark is not None else dataset_benchmark(data)
    present = [s for s in settings if rd.get(s)]
    if not present:
        raise DataError(
            f"{data.name or 'dataset'}: too few LLMs with a mean score in (0.1, 0.9] for any pool of setting(s) "
            f"{', '.join(settings)}"
        )
    return evaluate_router_dataset(rd, routers, bench, present, quiet=quiet, **kwargs)


def reembed_router_dataset(router_dataset: dict, encoder, show_progress: bool = False) -> dict:
    """A shallow copy of ``router_dataset`` whose embeddings are its prompt texts re-encoded.

    An unfitted encoder (TF-IDF, lexical) is first fitted on the pickle's training prompts only.
    """
    from recroute.encoders import encode_cached, get_encoder

    texts_block = router_dataset.get("prompt") or {}
    parts = [texts_block.get(f"{p}_prompt") for p in ("train", "val", "test")]
    if any(t is None for t in parts):
        raise DataError("the RouterEval pickle has no prompt/train_prompt, val_prompt and test_prompt to encode")
    texts = [str(t) for part in parts for t in np.asarray(part, dtype=object)]
    encoder = get_encoder(encoder)
    if getattr(encoder, "is_fitted", True) is False:
        encoder.fit(texts[: len(parts[0])])
    X = np.asarray(encode_cached(encoder, texts, show_progress=show_progress), dtype=np.float32)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    out = dict(router_dataset)
    out["embedding"] = {f"{p}_embed": X[a:b] for p, a, b in zip(("train", "val", "test"), bounds[:-1], bounds[1:])}
    return out
