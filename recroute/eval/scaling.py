"""Scaling curves (RouterEval Fig. 2): how routing quality grows with the number of candidates m.

For each m = 2..M, ``n_samples`` candidate sets of m LLMs are drawn uniformly without replacement
from the pool (one seeded generator), and r_o(p)'s mu_o, averaged over the sets, is recorded for
p = 0, 0.1, ..., 1 (its exact expectation per set: mean over prompts of p · best + (1 - p) · mean
candidate score). p = 0 is random routing, p = 1 the oracle. Optionally a trained router's curve: the
router is fitted once on the train split of the whole pool and, on each sampled set, routes each
test prompt to the argmax of its scores among the set's LLMs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from recroute.errors import DataError

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset

P_GRID = tuple(round(0.1 * i, 1) for i in range(11))
COLUMNS = ("curve", "p", "m", "mu", "mu_std", "n_samples")


def sample_candidates(n_llms: int, m: int, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """int64 (n_samples, m): each row m distinct LLM positions drawn uniformly without replacement."""
    if not 1 <= m <= n_llms:
        raise DataError(f"cannot draw m={m} candidates from a pool of {n_llms} LLMs")
    keys = rng.random((n_samples, n_llms))
    sets = np.argpartition(keys, m - 1, axis=1)[:, :m] if m < n_llms else np.argsort(keys, axis=1)
    return np.sort(sets, axis=1).astype(np.int64)  # ascending: argmax ties go to the lower position


def _chunks(n_prompts: int, sets: np.ndarray, cells: int = 20_000_000):
    """Row slices of ``sets`` so that one (n_prompts, chunk, m) gather stays under ``cells`` values."""
    step = max(1, cells // max(1, n_prompts * sets.shape[1]))
    for start in range(0, sets.shape[0], step):
        yield sets[start:start + step]


def best_and_mean(Y: np.ndarray, sets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(oracle mu (n_sets,), random mu (n_sets,)) of each candidate set (n_sets, m) on Y (n, n_llms)."""
    best, mean = [], []
    for chunk in _chunks(Y.shape[0], sets):
        part = Y[:, chunk]  # (n, chunk, m)
        best.append(part.max(axis=2).mean(axis=0))
        mean.append(part.mean(axis=2).mean(axis=0))
    return np.concatenate(best), np.concatenate(mean)


def routed_mu(scores: np.ndarray, Y: np.ndarray, sets: np.ndarray) -> np.ndarray:
    """float64 (n_sets,): mu_o of routing each prompt to the argmax of ``scores`` within each set."""
    out = []
    for chunk in _chunks(Y.shape[0], sets):
        pick = np.argmax(scores[:, chunk], axis=2)  # (n, chunk): position within each set
        chosen = chunk[np.arange(chunk.shape[0])[None, :], pick]  # (n, chunk): LLM positions
        out.append(np.take_along_axis(Y, chosen, axis=1).mean(axis=0))
    return np.concatenate(out)


def r_o_curves(
    Y: np.ndarray, max_m: int | None = None, n_samples: int = 100, p_grid: Sequence[float] = P_GRID,
    seed: int = 0, min_m: int = 2,
) -> pd.DataFrame:
    """Tidy rows {curve="r_o", p, m, mu, mu_std, n_samples} for m = min_m..max_m on Y (n_prompts, n_llms).

    Y is a dense score matrix (unobserved cells already filled, e.g. with 0); mu_std is the standard
    deviation over the sampled candidate sets.
    """
    Y = _check_pool(Y)
    max_m = _check_max_m(Y.shape[1], max_m, min_m)
    rng = np.random.default_rng(seed)
    p = np.asarray(p_grid, dtype=np.float64)[:, None]
    rows = []
    for m in range(min_m, max_m + 1):
        best, mean = best_and_mean(Y, sample_candidates(Y.shape[1], m, n_samples, rng))
        mu = p * best[None, :] + (1.0 - p) * mean[None, :]  # (n_p, n_samples)
        for pi, values in zip(p[:, 0], mu):
            rows.append({"curve": "r_o", "p": float(round(pi, 6)), "m": m, "mu": float(values.mean()),
                         "mu_std": float(values.std()), "n_samples": n_samples})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def router_curve(
    scores: np.ndarray, Y: np.ndarray, label: str, max_m: int | None = None, n_samples: int = 100,
    seed: int = 0, min_m: int = 2,
) -> pd.DataFrame:
    """Tidy rows {curve=label, p=NaN, m, mu, mu_std, n_samples} of a router's predicted ``scores``.

    scores, Y: (n_test, n_llms). For each sampled set the router picks the argmax of its scores among
    the set (ties: the lower LLM position). The same seed draws the same sets as :func:`r_o_curves`.
    """
    Y = _check_pool(Y)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != Y.shape:
        raise DataError(f"router scores have shape {scores.shape}; expected {Y.shape}")
    max_m = _check_max_m(Y.shape[1], max_m, min_m)
    rng = np.random.default_rng(seed)
    rows = []
    for m in range(min_m, max_m + 1):
        values = routed_mu(scores, Y, sample_candidates(Y.shape[1], m, n_samples, rng))
        rows.append({"curve": label, "p": float("nan"), "m": m, "mu": float(values.mean()),
                     "mu_std": float(values.std()), "n_samples": n_samples})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _check_pool(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] == 0 or Y.shape[1] < 2:
        raise DataError(f"the pool needs at least 1 prompt and 2 LLMs; got scores of shape {Y.shape}")
    if not np.isfinite(Y).all():
        raise DataError("pool scores contain NaN or inf: fill unobserved cells (e.g. with 0) first")
    return Y


def _check_max_m(n_llms: int, max_m: int | None, min_m: int) -> int:
    max_m = n_llms if max_m is None else int(max_m)
    if not 2 <= min_m <= max_m <= n_llms:
        raise DataError(f"need 2 <= min_m <= max_m <= n_llms = {n_llms}; got min_m={min_m}, max_m={max_m}")
    return max_m


def scaling_curves(
    data: "RoutingDataset",
    max_m: int | None = None,
    router: str | Sequence[str] | None = None,
    *,
    n_samples: int = 100,
    p_grid: Sequence[float] = P_GRID,
    seed: int = 0,
    split_seed: int = 42,
    X: np.ndarray | None = None,
    encoder=None,
) -> pd.DataFrame:
    """Scaling curves on a dataset's RouterEval test split (seed-42 stratified split; unobserved = 0).

    Returns the r_o(p) rows and, for each ``router`` spec given ("knn" or ["knn", "best_single"]),
    the router's rows: it is fitted once on the train split of the whole pool (RouterEval's training
    target) and routes among each sampled set. Columns: curve, p, m, mu, mu_std, n_samples.
    """
    from recroute.data.splits import routereval_split

    Y = data.dense(fill=0.0).astype(np.float64)
    split = routereval_split(data.prompts["task"], data.n_prompts, seed=split_seed)
    Y_test = Y[split.test]
    frames = [r_o_curves(Y_test, max_m, n_samples, p_grid, seed)]
    from recroute.routers.registry import spec_label

    for spec in [router] if isinstance(router, str) else list(router or []):
        scores = _router_scores(data, Y, split, spec, X, encoder)
        frames.append(router_curve(scores, Y_test, spec_label(spec), max_m, n_samples, seed))
    return pd.concat(frames, ignore_index=True)


def _router_scores(data, Y, split, spec: str, X, encoder) -> np.ndarray:
    """float64 (n_test, n_llms) scores of ``spec`` fitted on the train split of the whole pool."""
    from recroute.data.labels import multi_hot_labels
    from recroute.eval.protocol import dataset_embeddings
    from recroute.routers.registry import make_router

    router = make_router(spec)
    if getattr(router, "requires_truth", False) or getattr(router, "stochastic", False):
        raise DataError(f"router {spec!r} is random or routes from the truth: its curve is r_o's (p = 0 or 1)")
    emb = dataset_embeddings(data, X, encoder, needed=router.needs_features)
    if router.needs_features and emb is None:
        raise DataError(f"router {spec!r} needs prompt embeddings: the dataset has neither embeddings nor texts")
    target = multi_hot_labels(Y[split.train]) if data.score_type == "continuous" else Y[split.train]
    router.fit(target, X=None if emb is None else emb[split.train])
    n_test = len(split.test)
    return np.asarray(router.score(None if emb is None else emb[split.test], n=n_test), dtype=np.float64)
