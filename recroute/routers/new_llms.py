"""Shared pieces of new-LLM onboarding (``Router.partial_fit_llms``).

- :class:`LLMMetadata`: the numeric LLM metadata a router saw at fit (size, prices), standardised with
  the training LLMs' statistics so a new LLM's row is comparable.
- :func:`check_new_llms`: validation of the probe embeddings, probe results, names and metadata.
- :class:`VectorPrior`: an empirical-Bayes Gaussian prior over the LLM side of a latent model
  (mean from the metadata by ridge regression, else the mean LLM; Ledoit-Wolf covariance).
- :func:`map_llm_vectors`: each new LLM's vector as the MAP estimate under that prior given its probe
  results (squared loss in closed form, or logistic loss by damped Newton steps).

A latent family scores LLM j on prompt i as ``<p_i, v_j> + offset_i``; onboarding keeps every p_i and
every existing v_j fixed and estimates only the new rows v_new, so nothing else is retrained.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recroute.errors import DataError

NEWTON_STEPS = 50


@dataclass
class LLMMetadata:
    """Numeric metadata columns and their training mean/std; ``values`` (n_llms, f) standardised."""

    columns: list[str]
    mean: np.ndarray
    std: np.ndarray
    values: np.ndarray

    @classmethod
    def from_table(cls, table: pd.DataFrame | None, n_llms: int) -> "LLMMetadata | None":
        """From a dataset's LLM table (rows in LLM order); None without numeric columns."""
        if table is None or len(table) != n_llms:
            return None
        numeric = _with_parsed_sizes(table.drop(columns=["llm"], errors="ignore")).select_dtypes("number")
        numeric = numeric.loc[:, numeric.notna().any()]
        if not numeric.shape[1]:
            return None
        raw = numeric.to_numpy(dtype=np.float64)
        mean, std = np.nanmean(raw, axis=0), np.nanstd(raw, axis=0)
        meta = cls([str(c) for c in numeric.columns], mean, np.where(std > 0, std, 1.0), np.zeros(0))
        meta.values = meta.standardise(raw)
        return meta

    def standardise(self, raw: np.ndarray) -> np.ndarray:
        """float32 (n, f): (raw - mean) / std, missing values at the mean (0)."""
        return np.nan_to_num((np.asarray(raw, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def rows_for(self, table: pd.DataFrame | None, names: list[str]) -> np.ndarray | None:
        """float32 (len(names), f) standardised rows of ``table`` for ``names``; None without a table."""
        if table is None:
            return None
        if not isinstance(table, pd.DataFrame) or "llm" not in table.columns:
            raise DataError("metadata must be a DataFrame with an 'llm' column naming the new LLMs")
        missing_cols = [c for c in self.columns if c not in table.columns]
        if missing_cols:
            raise DataError(f"metadata lacks the column(s) {missing_cols} the router was fitted with; has {list(table.columns)}")
        indexed = table.drop_duplicates("llm").set_index(table["llm"].drop_duplicates().astype(str))
        absent = [n for n in names if n not in indexed.index]
        if absent:
            raise DataError(f"metadata has no row for the new LLM(s) {absent[:10]}")
        try:
            raw = _with_parsed_sizes(indexed.loc[names, self.columns]).to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(f"metadata columns {self.columns} must be numeric ({exc})") from None
        return self.standardise(raw)

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        return {"columns": self.columns}, {"meta_mean": self.mean, "meta_std": self.std, "meta_values": self.values}

    @classmethod
    def from_state(cls, meta: dict | None, arrays: dict[str, np.ndarray]) -> "LLMMetadata | None":
        if not meta or "meta_values" not in arrays:
            return None
        return cls(list(meta["columns"]), arrays["meta_mean"], arrays["meta_std"], arrays["meta_values"])


_SIZE = r"^\s*(\d+(?:\.\d+)?)\s*([BbMm])\s*$"


def _with_parsed_sizes(table: pd.DataFrame) -> pd.DataFrame:
    """Text columns whose every value reads like a parameter count ("7B", "350M") as billions."""
    out = table.copy()
    for column in out.columns:
        values = out[column]
        if pd.api.types.is_numeric_dtype(values) or not values.notna().any():
            continue
        parts = values.astype("string").str.extract(_SIZE)
        if parts[0][values.notna()].notna().all():
            scale = np.where(parts[1].str.upper() == "M", 1e-3, 1.0)
            out[column] = parts[0].astype(float) * scale
    return out


def check_new_llms(router, X_probe, Y_probe, names) -> tuple[np.ndarray | None, np.ndarray, list[str]]:
    """Validated (X (k, d) | None when k = 0, Y float64 (k, n_new) NaN = not probed, names).

    ``Y_probe`` may be 1-D for one new LLM; scores must lie in [0, 1]; names must be new and unique.
    """
    names = [names] if isinstance(names, str) else [str(n) for n in names]
    if not names:
        raise DataError("give at least one new LLM name")
    if len(set(names)) != len(names):
        raise DataError(f"new LLM names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    known = sorted(set(names) & {str(n) for n in router.llm_names_})
    if known:
        raise DataError(f"LLM(s) {known[:10]} are already in the router; new LLMs need new names")
    Y = np.asarray(Y_probe if Y_probe is not None else np.zeros((0, len(names))), dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[1] != len(names):
        raise DataError(f"probe results must be (k, n_new={len(names)}); got shape {Y.shape}")
    bad = np.isinf(Y) | (Y < 0) | (Y > 1)
    if bad.any():
        rows = sorted(set(np.nonzero(bad)[0].tolist()))
        raise DataError(f"probe results must be scores in [0, 1] (NaN = not evaluated); bad value(s) in probe row(s) {rows[:10]}")
    k = Y.shape[0]
    if k == 0:
        return None, Y, names
    from recroute.routers.base import check_features

    if X_probe is None:
        raise DataError(f"{k} probe results but no probe embeddings X_probe")
    X = check_features(X_probe, n_rows=k, n_features=getattr(router, "n_features_in_", None))
    return X, Y, names


class VectorPrior:
    """Gaussian prior over LLM vectors learned from the existing ones (V: (n_llms, d))."""

    def __init__(self, V: np.ndarray, metadata: np.ndarray | None = None, ridge: float = 1.0) -> None:
        V = np.asarray(V, dtype=np.float64)
        if metadata is not None and metadata.shape[1]:
            F = np.hstack([np.ones((len(V), 1)), np.asarray(metadata, dtype=np.float64)])
            penalty = ridge * np.eye(F.shape[1])
            penalty[0, 0] = 0.0  # no shrinkage of the intercept
            self.coef_ = np.linalg.solve(F.T @ F + penalty, F.T @ V)
            residual = V - F @ self.coef_
        else:
            self.coef_ = V.mean(axis=0, keepdims=True)
            residual = V - self.coef_
        self.precision_ = _precision(residual)

    def means(self, n: int, metadata: np.ndarray | None = None) -> np.ndarray:
        """float64 (n, d) prior means: from each new LLM's metadata row, else the LLM at mean metadata."""
        if metadata is None or self.coef_.shape[0] == 1:
            return np.repeat(self.coef_[:1], n, axis=0)  # the intercept: mean metadata, or the mean LLM
        F = np.hstack([np.ones((n, 1)), np.asarray(metadata, dtype=np.float64)])
        return F @ self.coef_


def place_llm_vectors(
    router, V: np.ndarray, P: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None,
    offset: np.ndarray | None = None, loss: str = "logistic", noise: float = 1.0,
) -> np.ndarray:
    """float64 (n_new, d): new LLM vectors under the prior learned from the router's V (n_llms, d)
    and its training LLMs' metadata; see :func:`map_llm_vectors` for P, Y, offset, loss, noise."""
    known = getattr(router, "llm_metadata_", None)
    prior = VectorPrior(V, None if known is None else known.values)
    return map_llm_vectors(P, Y, prior.means(Y.shape[1], metadata), prior.precision_, offset, loss, noise)


def _precision(residual: np.ndarray) -> np.ndarray:
    """Inverse of a Ledoit-Wolf covariance of the residual vectors (d, d); a floor keeps it finite."""
    n, d = residual.shape
    if n >= 2:
        from sklearn.covariance import ledoit_wolf

        cov = ledoit_wolf(residual, assume_centered=True)[0]
    else:
        cov = np.eye(d) * max(float(np.mean(residual**2)), 1e-2)
    floor = 1e-6 * max(float(np.trace(cov)) / d, 1e-8)
    return np.linalg.inv(cov + floor * np.eye(d))


def map_llm_vectors(
    P: np.ndarray | None,
    Y: np.ndarray,
    prior_means: np.ndarray,
    precision: np.ndarray,
    offset: np.ndarray | None = None,
    loss: str = "logistic",
    noise: float = 1.0,
) -> np.ndarray:
    """float64 (n_new, d): MAP LLM vectors given probe results.

    P (k, d) prompt vectors of the probes; Y (k, n_new) results (NaN = not probed); prior_means
    (n_new, d); precision (d, d); offset (k,) added to every score (e.g. a prompt difficulty).
    ``loss="squared"``: score ≈ y (closed form); ``"logistic"``: P(correct) = sigmoid(score).
    ``noise``: the variance of y around the score under squared loss. A new LLM without probe results
    gets its prior mean.
    """
    if loss not in ("squared", "logistic"):
        raise ValueError(f"loss must be 'squared' or 'logistic'; got {loss!r}")
    out = np.array(prior_means, dtype=np.float64, copy=True)
    if P is None or Y.shape[0] == 0:
        return out
    P = np.asarray(P, dtype=np.float64)
    offset = np.zeros(len(P)) if offset is None else np.asarray(offset, dtype=np.float64)
    for j in range(Y.shape[1]):
        rows = np.flatnonzero(~np.isnan(Y[:, j]))
        if rows.size:
            if loss == "squared":
                out[j] = _map_squared(P[rows], Y[rows, j], offset[rows], out[j], precision * noise)
            else:
                out[j] = _map_logistic(P[rows], Y[rows, j], offset[rows], out[j], precision)
    return out


def _map_squared(P, y, offset, mean, precision) -> np.ndarray:
    """argmin ||y - offset - P v||^2 + (v - mean)' precision (v - mean), in closed form."""
    gram = P.T @ P + precision
    return np.linalg.solve(gram, P.T @ (y - offset) + precision @ mean)


def _map_logistic(P, y, offset, mean, precision) -> np.ndarray:
    """Newton's method with step halving on the (strictly convex) negative log posterior."""
    v = mean.copy()

    def objective(w):
        z = P @ w + offset
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * (w - mean) @ precision @ (w - mean))

    current = objective(v)
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-(P @ v + offset)))
        grad = P.T @ (p - y) + precision @ (v - mean)
        hess = (P * (p * (1.0 - p))[:, None]).T @ P + precision
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-6:
            candidate = v - t * step
            value = objective(candidate)
            if value <= current:
                break
            t *= 0.5
        else:
            break
        v, improvement, current = candidate, current - value, value
        if improvement < 1e-10 * max(1.0, abs(current)):
            break
    return v


def llm_similarity_weights(
    at_probes: np.ndarray, Y: np.ndarray, k: int, eps: float,
    known_metadata: np.ndarray | None = None, new_metadata: np.ndarray | None = None,
) -> np.ndarray:
    """float64 (n_new, n_llms) weights over existing LLMs, each row summing to 1.

    at_probes (k_probes, n_llms): the existing LLMs' results (or predictions) on the probes; Y
    (k_probes, n_new) the new LLMs' results (NaN = not probed). Weight ∝ likelihood of the new LLM's
    results under each existing LLM's (clipped to [eps, 1 - eps]), kept for the ``k`` most likely
    LLMs and every LLM tied with the k-th. A new LLM without probe results weighs the ``k`` LLMs
    nearest in metadata equally (all LLMs without metadata).
    """
    n_llms = at_probes.shape[1]
    k = min(int(k), n_llms)
    probed = ~np.isnan(Y)                                                   # (k_probes, n_new)
    W = np.ones((Y.shape[1], n_llms))                                       # no probe, no metadata: everyone
    if at_probes.shape[0]:
        Pc = np.clip(np.nan_to_num(at_probes.astype(np.float64), nan=0.5), eps, 1.0 - eps)
        right = np.where(probed, Y, 0.0)
        loglik = right.T @ np.log(Pc) + (probed - right).T @ np.log1p(-Pc)  # (n_new, n_llms)
        threshold = np.partition(loglik, n_llms - k, axis=1)[:, n_llms - k]
        keep = loglik >= threshold[:, None] - 1e-9                          # the k most likely and ties
        weights = np.where(keep, np.exp(loglik - loglik.max(axis=1, keepdims=True)), 0.0)
        has = probed.any(axis=0)
        W[has] = weights[has]
    blind = ~probed.any(axis=0)
    if blind.any() and known_metadata is not None and new_metadata is not None:
        dist = np.linalg.norm(new_metadata[blind][:, None, :] - known_metadata[None, :, :], axis=2)
        nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]
        rows = np.zeros((int(blind.sum()), n_llms))
        np.put_along_axis(rows, nearest, 1.0, axis=1)
        W[blind] = rows
    return W / W.sum(axis=1, keepdims=True)
