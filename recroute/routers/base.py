"""The Router contract shared by every router family.

sklearn-style: ``__init__`` stores parameters only; ``fit`` sets attributes ending in ``_``.
Batch-first: every method takes 2-D inputs and is vectorised.

    fit(data, X=None, validation=None) -> self
                                       data: RoutingDataset or a (n_prompts, n_llms) score matrix,
                                       NaN = unobserved; X: (n_prompts, d) float32 prompt features;
                                       validation: a ValidationPart, used by routers that choose
                                       something on held-out prompts (``uses_validation``)
    score(X) -> float32 (n, n_llms)    higher = better (ideally P(correct))
    selection_probs(X) -> (n, n_llms)  the per-prompt selection distribution used for E_p
    route(X, k=1, candidates=None) -> (llm_idx int64 (n, k), scores float32 (n, k))
    partial_fit_llms(X_probe, Y_probe, names, metadata=None) -> a new router that also scores new LLMs
    save(path) / load(path)            a directory: router.json + arrays.npz (+ backend files)

Size check: a family declares ``max_fit_cells``, the n_prompts × n_llms it fits within
``FIT_BUDGET_S`` (5 minutes) on 2 cores at its default parameters (measured by
benchmarks/fit_scale.py), and ``fit`` refuses a larger training matrix with a FitTooLargeError
naming the size it can take, before any work. Routers built from other routers (ensemble, stack,
debiased) combine their members' limits (:func:`combined_cell_limit`). ``RECROUTE_FIT_LIMIT``
scales every limit on a larger machine (``4`` = four times the cells) or turns the check off (``off``).
"""

from __future__ import annotations

import copy
import inspect
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recroute.errors import (
    DataError, FitTooLargeError, NotFittedError, NotSupportedError, SavedArtifactError, require_finite_rows,
)

FORMAT_VERSION = 1
FIT_BUDGET_S = 300  # the fit time the declared size limits are measured against (2 cores)
FIT_LIMIT_ENV = "RECROUTE_FIT_LIMIT"


@dataclass(frozen=True)
class ValidationPart:
    """Held-out prompts a router may choose on (never the test prompts).

    Y (n_val, n_llms): their training targets, NaN = unobserved; X (n_val, d) | None: their features.
    The protocol hands RouterEval's validation part; otherwise :meth:`Router.fit` holds out a seeded
    ``validation_share`` of the training prompts.
    """

    Y: np.ndarray
    X: np.ndarray | None = None


class Router:
    """Base class. Subclasses implement ``_fit`` and ``_score`` (and ``_state``/``_set_state`` to save)."""

    name: ClassVar[str] = "router"
    needs_features: ClassVar[bool] = True      # uses prompt embeddings X
    supports_new_llms: ClassVar[bool] = False  # partial_fit_llms available
    score_scale: ClassVar[str] = "probability"  # what score() returns: "probability", "logit" or "raw"
    requires_truth: ClassVar[bool] = False     # oracle-style: needs the true scores to route
    stochastic: ClassVar[bool] = False         # decisions are random draws (Random router)
    entropy_floor: ClassVar[float] = 1e-10     # RouterEval's threshold for E_p terms
    uses_validation: ClassVar[bool] = False    # _fit takes a ValidationPart (see fit)
    validation_share: ClassVar[float] = 0.1    # held out of the training prompts when none is given
    max_fit_cells: ClassVar[float | None] = None  # n_prompts × n_llms fitted in FIT_BUDGET_S; None = no limit
    fit_cost_parameter: ClassVar[str | None] = None  # the parameter fit time is linear in ("epochs")
    max_fit_llms: ClassVar[int | None] = None  # the most LLMs a pool may hold (work in n_llms², not cells)
    fit_llms_reason: ClassVar[str] = ""  # why, in the FitTooLargeError above max_fit_llms
    built_from_routers: ClassVar[bool] = False  # built from fitted routers, never fitted from data (conservative)
    score_dtype: ClassVar[type] = np.float32  # score()'s dtype (conservative: float64, its margin exact)

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> "Router":
        valid = self.get_params()
        for key, value in params.items():
            if key not in valid:
                raise ValueError(f"{type(self).__name__} has no parameter {key!r}; parameters: {sorted(valid)}")
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ fitting
    def fit(self, data, X: np.ndarray | None = None, validation: "ValidationPart | None" = None) -> "Router":
        """Fit on a RoutingDataset or a dense score matrix (NaN = unobserved) and prompt features X.

        ``validation``: held-out prompts for a router that ``uses_validation`` (the others train on
        ``data`` alone, as RouterEval's protocol does, and ignore it). Without one, such a router holds
        out a seeded ``validation_share`` of ``data``'s prompts (seed: its ``random_state``, else 0).
        """
        Y, names = training_matrix(data)
        check_fit_size(self, *Y.shape)
        if self.needs_features:
            if X is None:
                X = getattr(data, "embeddings", None)
            X = check_features(X, n_rows=Y.shape[0])
            self.n_features_in_ = X.shape[1]
        if self.uses_validation:
            Y, X, validation = self._validation_part(Y, X, validation)
        self.n_llms_ = Y.shape[1]
        self.llm_names_ = np.asarray(names, dtype=object)
        if self.supports_new_llms:
            from recroute.routers.new_llms import LLMMetadata

            self.llm_metadata_ = LLMMetadata.from_table(getattr(data, "llms", None), self.n_llms_)
        if self.uses_validation:
            self._fit(Y, X, validation)
        else:
            self._fit(Y, X)
        self.fitted_ = True
        return self

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        """Fit on Y (n, n_llms) NaN = unobserved and X (n, d) | None (``uses_validation``: a third
        argument, the ValidationPart)."""
        raise NotImplementedError

    def fit_cell_limit(self) -> float | None:
        """n_prompts × n_llms this router fits within FIT_BUDGET_S on 2 cores (None: no limit).

        The family's ``max_fit_cells`` (measured at its default parameters; declared on the family's own
        class, never inherited by a subclass family, e.g. hybrid from mlp), scaled by default / actual
        ``fit_cost_parameter`` (half the epochs, twice the cells); routers built from others override it
        with :func:`combined_cell_limit` over their members.
        """
        own = vars(type(self))  # declared by the family's own class: a subclass family costs what it measures
        limit, param = own.get("max_fit_cells"), own.get("fit_cost_parameter")
        if limit is None or param is None:
            return limit
        default = inspect.signature(type(self).__init__).parameters[param].default
        return float(limit) * float(default) / max(float(getattr(self, param)), 1e-9)

    def _validation_part(self, Y: np.ndarray, X: np.ndarray | None, validation):
        """(Y_fit, X_fit, ValidationPart): ``validation`` checked against the training shapes, or a
        seeded ``validation_share`` of the training prompts held out. X is None for feature-free routers."""
        if not self.needs_features:
            X = None
        if validation is None:
            from recroute.data.splits import holdout_split

            seed = getattr(self, "random_state", 0)
            fit_rows, held = holdout_split(Y.shape[0], self.validation_share, 0 if seed is None else int(seed))
            part = ValidationPart(Y[held], None if X is None else X[held])
            return Y[fit_rows], None if X is None else X[fit_rows], part
        if not isinstance(validation, ValidationPart):
            raise DataError(f"validation must be a ValidationPart(Y, X); got {type(validation).__name__}")
        Y_val = np.asarray(validation.Y, dtype=np.float32)
        if Y_val.ndim != 2 or Y_val.shape[1] != Y.shape[1] or Y_val.shape[0] == 0:
            raise DataError(f"validation Y must have shape (n_val >= 1, n_llms={Y.shape[1]}); got {Y_val.shape}")
        if np.isinf(Y_val).any():
            raise DataError("validation Y contains inf")
        X_val = None
        if self.needs_features:
            X_val = check_features(validation.X, n_rows=Y_val.shape[0], n_features=X.shape[1])
        return Y, X, ValidationPart(Y_val, X_val)

    # ------------------------------------------------------------------ new LLMs (cold start)
    def partial_fit_llms(self, X_probe, Y_probe, names, metadata=None) -> "Router":
        """A copy of this router that also scores and routes to new LLMs; nothing else is retrained.

        X_probe (k, d): embeddings of the k probe prompts (None when k = 0); Y_probe (k, n_new) the new
        LLMs' results on them, NaN where an LLM was not run on a probe ((k,) for one LLM); names: the
        n_new new names; metadata: a DataFrame with an ``llm`` column and the numeric columns the router
        was fitted with (used as the prior, and alone when k = 0). The new LLMs come last.
        """
        self._check_fitted()
        if not self.supports_new_llms:
            from recroute.routers.registry import routers_supporting_new_llms

            raise NotSupportedError(
                f"router {self.name!r} cannot place a new LLM without retraining (it learns one output per LLM "
                f"from all training prompts); refit it, or use one of: {', '.join(routers_supporting_new_llms())}"
            )
        from recroute.routers.new_llms import check_new_llms

        X, Y, names = check_new_llms(self, X_probe, Y_probe, names)
        known = getattr(self, "llm_metadata_", None)
        if metadata is not None and known is None:
            raise DataError(f"router {self.name!r} was fitted without numeric LLM metadata; it cannot use metadata for new LLMs")
        meta = None if known is None else known.rows_for(metadata, names)
        new = self._copy_for_new_llms()
        new._add_llms(X, Y, meta)
        new.n_llms_ = self.n_llms_ + len(names)
        new.llm_names_ = np.concatenate([self.llm_names_, np.asarray(names, dtype=object)])
        if known is not None:
            rows = np.zeros((len(names), len(known.columns)), dtype=np.float32) if meta is None else meta
            new.llm_metadata_ = copy.copy(known)
            new.llm_metadata_.values = np.vstack([known.values, rows]).astype(np.float32)
        return new

    def can_place_new_llms(self) -> bool:
        """Whether :meth:`partial_fit_llms` places new LLMs into this fitted router (its family's
        ``supports_new_llms``; a conservative router: both its inner routers)."""
        return bool(self.supports_new_llms)

    def _copy_for_new_llms(self) -> "Router":
        """A shallow copy; ``_add_llms`` must replace (never modify in place) what it changes."""
        return copy.copy(self)

    def _add_llms(self, X: np.ndarray | None, Y: np.ndarray, metadata: np.ndarray | None) -> None:
        """Append the new LLMs' parameters. X (k, d) | None, Y (k, n_new) NaN = not probed,
        metadata (n_new, f) standardised | None."""
        raise NotImplementedError

    # ------------------------------------------------------------------ scoring
    def score(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float32 (n, n_llms) predicted scores (``score_dtype``); X may be None only for feature-free routers (give n)."""
        self._check_fitted()
        X, n = self._check_query(X, n)
        return np.asarray(self._score(X, n), dtype=self.score_dtype)

    def score_among(self, X: np.ndarray | None, allowed: np.ndarray, n: int | None = None) -> np.ndarray:
        """(n, n_llms) scores whose greedy choice among each row's ``allowed`` LLMs (bool (n, m) or (m,)) is
        the router's choice among them; :meth:`score` for every router whose scores do not depend on the
        candidates (the conservative router's live choice does)."""
        return self.score(X, n)

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        raise NotImplementedError

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n, n_llms) selection distribution for E_p; default: softmax of the scores."""
        from recroute.eval.metrics import softmax

        return softmax(self.score(X, n))

    def route(
        self, X: np.ndarray | None, k: int = 1, candidates=None, n: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k LLMs per prompt: (llm_idx int64 (n, k), scores float32 (n, k)); ties go to the lower index.

        ``candidates``: LLM positions or names to choose among (the others are never returned).
        """
        allowed = self._candidate_mask(candidates)
        scores = self.score(X, n) if candidates is None else self.score_among(X, allowed, n)
        k = int(k)
        if not 1 <= k <= int(allowed.sum()):
            raise ValueError(f"k must be between 1 and the number of candidates ({int(allowed.sum())}); got {k}")
        masked = np.where(allowed[None, :], scores, -np.inf)
        order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        return order.astype(np.int64), np.take_along_axis(scores, order, axis=1)

    def _candidate_mask(self, candidates) -> np.ndarray:
        return candidate_mask(self.llm_names_, candidates, "this router")

    # ------------------------------------------------------------------ checks
    def _check_fitted(self) -> None:
        if not getattr(self, "fitted_", False):
            raise NotFittedError(f"{type(self).__name__} is not fitted yet: call fit(data, X) first")

    def _check_query(self, X, n):
        if self.needs_features:
            X = check_features(X, n_features=self.n_features_in_)
            return X, X.shape[0]
        if X is not None:
            X = np.asarray(X)
            if X.ndim != 2:
                raise DataError(f"X must be 2-D (n_prompts, d); got shape {X.shape}")
            return X, X.shape[0]
        if n is None:
            raise ValueError(f"{type(self).__name__} needs X or n (the number of prompts)")
        return None, int(n)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(JSON-able fitted attributes, numpy arrays) that restore the fitted router."""
        return {}, {}

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
        pass

    def _saved_params(self) -> dict[str, Any]:
        """The parameters router.json records (``klass(**params)`` on load): all of :meth:`get_params`
        unless a family keeps some in its own files (the conservative router's inner routers)."""
        return self.get_params()

    def _save_extra(self, path: Path) -> None:
        """Backend files (FAISS index, torch state_dict) written beside router.json."""

    def save(self, path: str | Path) -> Path:
        """Write the fitted router to a directory atomically (JSON + npz, never an object pickle)."""
        self._check_fitted()
        from recroute.atomic import atomic_dir

        path = Path(path)
        with atomic_dir(path) as tmp:
            meta, arrays = self._state()
            doc = {
                "format_version": FORMAT_VERSION,
                "router": self.name,
                "class": type(self).__name__,
                "params": _jsonable(self._saved_params()),
                "n_llms": int(self.n_llms_),
                "llm_names": [str(n) for n in self.llm_names_],
                "n_features_in": int(getattr(self, "n_features_in_", 0)),
                "state": _jsonable(meta),
            }
            llm_meta = getattr(self, "llm_metadata_", None)
            if llm_meta is not None:
                meta_doc, meta_arrays = llm_meta.state()
                doc["llm_metadata"] = meta_doc
                arrays = {**arrays, **meta_arrays}
            (tmp / "router.json").write_text(json.dumps(doc, indent=1))
            np.savez(tmp / "arrays.npz", **arrays)
            self._save_extra(tmp)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Router":
        """Restore a router saved by :meth:`save`; any damage raises SavedArtifactError."""
        path = Path(path)
        doc_path = path / "router.json"
        if not doc_path.exists():
            raise SavedArtifactError(f"{path}: no router.json (not a saved recroute router)")
        try:
            doc = json.loads(doc_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SavedArtifactError(f"{doc_path}: corrupt JSON ({exc})") from None
        if doc.get("format_version") != FORMAT_VERSION:
            raise SavedArtifactError(f"{doc_path}: format_version {doc.get('format_version')} is not {FORMAT_VERSION}")
        from recroute.routers.registry import router_class

        klass = router_class(doc.get("router", ""))
        if cls is not Router and not issubclass(klass, cls):
            raise SavedArtifactError(f"{path} holds a {klass.__name__}, not a {cls.__name__}")
        try:
            # JSON has no tuples: sequence parameters (hidden sizes) come back as tuples
            params = {k: tuple(v) if isinstance(v, list) else v for k, v in doc["params"].items()}
            router = klass(**params)
            with np.load(path / "arrays.npz", allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SavedArtifactError(f"{path}: cannot restore the router ({type(exc).__name__}: {exc})") from None
        router.n_llms_ = int(doc["n_llms"])
        router.llm_names_ = np.asarray(doc["llm_names"], dtype=object)
        if len(router.llm_names_) != router.n_llms_:
            raise SavedArtifactError(f"{doc_path}: {len(router.llm_names_)} LLM names for n_llms={router.n_llms_}")
        if router.needs_features:
            router.n_features_in_ = int(doc["n_features_in"])
        if router.supports_new_llms:
            from recroute.routers.new_llms import LLMMetadata

            router.llm_metadata_ = LLMMetadata.from_state(doc.get("llm_metadata"), arrays)
        try:
            router._set_state(doc.get("state", {}), arrays, path)
        except SavedArtifactError:
            raise
        except Exception as exc:  # a damaged array or backend file
            raise SavedArtifactError(f"{path}: cannot restore the router state ({type(exc).__name__}: {exc})") from None
        router.fitted_ = True
        return router


# ---------------------------------------------------------------------- helpers
def scores_among(router, X: np.ndarray | None, allowed: np.ndarray, n: int) -> np.ndarray:
    """(n, m) ``router``'s scores whose greedy choice among ``allowed`` (bool (n, m)) is its choice there:
    ``router.score_among`` (a conservative router's live choice depends on the candidates), else
    ``router.score`` (any object with one, e.g. a test's fixed scores)."""
    among = getattr(router, "score_among", None)
    return router.score(X, n=n) if among is None else among(X, allowed, n=n)


def fit_limit_scale() -> float | None:
    """The multiplier of every size limit from ``RECROUTE_FIT_LIMIT`` (1 when unset; None = "off")."""
    import os

    raw = os.environ.get(FIT_LIMIT_ENV, "").strip().lower()
    if not raw:
        return 1.0
    if raw == "off":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value > 0 or not np.isfinite(value):
        raise DataError(f"{FIT_LIMIT_ENV} must be a positive number (a multiplier of the size limits) or 'off'; got {raw!r}")
    return value


def llm_limit(router: "Router") -> int | None:
    """The most LLMs the router's family takes in one pool (``max_fit_llms`` × the square root of the env's
    multiplier), or None for no limit."""
    max_llms, scale = type(router).max_fit_llms, fit_limit_scale()
    return None if max_llms is None or scale is None else int(max_llms * np.sqrt(scale))


def check_fit_size(router: "Router", n_prompts: int, n_llms: int) -> None:
    """FitTooLargeError when n_prompts × n_llms exceeds ``router.fit_cell_limit()`` or n_llms exceeds the
    family's ``max_fit_llms`` (scaled by the env: cells × the multiplier, LLMs × its square root)."""
    limit, scale = router.fit_cell_limit(), fit_limit_scale()
    most = llm_limit(router)
    if most is not None and n_llms > most:
        raise FitTooLargeError(
            f"router {router.name!r} takes at most {most:,} LLMs ({router.fit_llms_reason}); got {n_llms:,}: fit it "
            f"on a candidate subset of the pool, or on a larger machine set {FIT_LIMIT_ENV}=<multiplier> or "
            f"{FIT_LIMIT_ENV}=off", can_take=f"{most:,} LLMs",
        )
    if limit is None or scale is None or n_prompts * n_llms <= limit * scale:
        return
    cells = limit * scale
    raise FitTooLargeError(
        f"router {router.name!r} fits at most {cells:,.0f} cells (n_prompts × n_llms) within {FIT_BUDGET_S // 60} minutes "
        f"on 2 cores, e.g. {int(cells // n_llms):,} prompts × {n_llms:,} LLMs; got {n_prompts:,} × {n_llms:,} = "
        f"{n_prompts * n_llms:,}. Subsample the prompts, use fewer LLMs or a faster family (docs/routers.md, "
        f"'Fit size limits'), or on a larger machine set {FIT_LIMIT_ENV}=<multiplier> or {FIT_LIMIT_ENV}=off",
        can_take=f"{cells:,.0f} cells",
    )


def combined_cell_limit(limits, repeats=None) -> float | None:
    """Cell limit of fitting several routers one after another: 1 / Σ_i repeats_i / limit_i.

    ``limits``: each member's ``fit_cell_limit()`` (None = negligible); ``repeats``: fits per member
    (seeds, calibration copies). None when every member is unlimited.
    """
    limits = list(limits)
    repeats = [1.0] * len(limits) if repeats is None else list(repeats)
    load = sum(float(r) / float(l) for l, r in zip(limits, repeats) if l is not None)
    return None if load == 0 else 1.0 / load


def candidate_mask(names, candidates, owner: str = "the dataset") -> np.ndarray:
    """bool (len(names),): the LLMs named by ``candidates`` (names or positions, mixed; None = all).

    DataError (a ValueError) for an empty list, a position out of range or a name ``owner`` does not know.
    """
    names = np.asarray(names, dtype=object)
    mask = np.zeros(len(names), dtype=bool)
    if candidates is None:
        mask[:] = True
        return mask
    items = list(np.atleast_1d(np.asarray(candidates, dtype=object)))
    if not items:
        raise DataError("candidates is empty")
    for item in items:
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < len(names):
                raise DataError(f"candidate index {item} out of range 0..{len(names) - 1}")
            mask[int(item)] = True
        else:
            hits = np.flatnonzero(names == str(item))
            if hits.size == 0:
                raise DataError(f"unknown LLM {item!r}; {owner} knows {list(names[:10])}")
            mask[hits[0]] = True
    return mask


def training_matrix(data) -> tuple[np.ndarray, list[str]]:
    """(float32 (n_prompts, n_llms) with NaN where unobserved, LLM names) from a dataset or matrix."""
    if hasattr(data, "dense") and hasattr(data, "llm_names"):
        return data.dense(np.nan), [str(n) for n in data.llm_names]
    Y = np.asarray(data, dtype=np.float32)
    if Y.ndim != 2 or Y.shape[0] == 0 or Y.shape[1] == 0:
        raise DataError(f"training scores must be a non-empty 2-D (n_prompts, n_llms) matrix; got shape {Y.shape}")
    if np.isinf(Y).any():
        raise DataError("training scores contain inf")
    if np.isnan(Y).all():
        raise DataError("training scores have no observed cell (all NaN)")
    return Y, [f"llm_{j}" for j in range(Y.shape[1])]


def check_features(X, n_rows: int | None = None, n_features: int | None = None) -> np.ndarray:
    """float32 2-D finite features; errors name the wrong shape or the rows with NaN/inf."""
    if X is None:
        raise DataError("this router needs prompt features X (n_prompts, d): pass embeddings")
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise DataError(f"X must be 2-D (n_prompts, d); got shape {X.shape}")
    if n_rows is not None and X.shape[0] != n_rows:
        raise DataError(f"X has {X.shape[0]} rows but the scores have {n_rows} prompts")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(f"X has {X.shape[1]} features but the router was fitted on {n_features} (wrong embedding size?)")
    require_finite_rows(X, "X")
    return X


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def nan_mean_rows(Y: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Column means over observed cells (NaN ignored; an all-NaN column gives 0)."""
    part = Y if rows is None else Y[rows]
    observed = ~np.isnan(part)
    total = np.where(observed, part, 0.0).sum(axis=0)
    count = observed.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), 0.0)


