"""``DebiasedRouter``: any registered router with popularity remedies applied, itself a Router.

    make_router("debiased:inner=two_tower,ipw=0.5")                 # IPW-weighted training targets
    make_router("debiased:inner=knn,tau=1.0")                       # logit adjustment
    make_router("debiased:inner=als,calibration=isotonic,tau=0.5")  # calibrate, then adjust

Stages, in order (see :mod:`recroute.debias.remedies` for each definition):

1. ``ipw`` (alpha >= 0): the inner router is fitted on IPW targets (``ipw_mode`` "auto" scales the
   targets for routers whose loss is linear in them and samples positives for the others).
2. ``calibration`` ("isotonic" | "platt" | None): a copy of the inner router is fitted on
   1 - ``holdout`` of the training prompts, per-LLM maps are fitted on the held-out rest (against the
   true targets), and applied to the scores of the inner router fitted on all of them (sklearn's
   ``CalibratedClassifierCV(ensemble=False)`` shape).
3. ``tau`` >= 0: score - tau · unit · log(prior), the prior from ``prior`` ("positive_rate" |
   "selection_share"); with ``tau_units="std"`` the unit is the standard deviation of the (calibrated)
   scores on the training prompts, so one tau grid fits routers whose scores are probabilities and
   routers whose scores are unbounded inner products; ``"raw"``: unit 1.

Capacity-constrained routing is a property of a batch, not of one prompt's score, so it is the
method :meth:`DebiasedRouter.route_capped` (and :func:`recroute.debias.remedies.capacity_assign`).
Inner parameters go after the inner name, separated by ``;`` on the command line:
``debiased:inner=knn:k=10;metric='l2',tau=0.5``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from recroute.debias import remedies
from recroute.errors import DataError, SavedArtifactError
from recroute.routers.base import Router

_INNER_DIR = "inner"


class DebiasedRouter(Router):
    """An inner router spec wrapped with IPW, per-LLM calibration and logit adjustment (module docstring)."""

    name = "debiased"

    def __init__(
        self,
        inner: str = "knn",
        ipw: float = 0.0,
        ipw_mode: str = "auto",
        calibration: str | None = None,
        tau: float = 0.0,
        prior: str = "positive_rate",
        tau_units: str = "std",
        holdout: float = 0.2,
        random_state: int | None = 0,
    ) -> None:
        self.inner = inner
        self.ipw = ipw
        self.ipw_mode = ipw_mode
        self.calibration = calibration
        self.tau = tau
        self.prior = prior
        self.tau_units = tau_units
        self.holdout = holdout
        self.random_state = random_state

    # ------------------------------------------------------------------ the inner router
    @property
    def inner_spec(self) -> str:
        """The inner spec with ``;`` read as ``,`` (``knn:k=10;metric='l2'``)."""
        return str(self.inner).replace(";", ",")

    def _new_inner(self) -> Router:
        from recroute.routers.registry import make_router, parse_router_spec

        name = parse_router_spec(self.inner_spec)[0]
        if name == self.name:
            raise DataError("debiased: the inner router cannot itself be 'debiased'")
        router = make_router(self.inner_spec)
        if router.requires_truth or router.stochastic:
            raise DataError(f"debiased: inner router {name!r} does not learn scores (oracle, r_o and random cannot be debiased)")
        return router

    @property
    def needs_features(self) -> bool:  # type: ignore[override]
        from recroute.routers.registry import parse_router_spec, router_class

        return bool(router_class(parse_router_spec(self.inner_spec)[0]).needs_features)

    def fit_cell_limit(self) -> float | None:
        """The inner router's limit, halved when a calibration copy is fitted too."""
        limit = self._new_inner().fit_cell_limit()
        return None if limit is None else limit / (2 if self.calibration else 1)

    # ------------------------------------------------------------------ fit
    def fit(self, data, X: np.ndarray | None = None) -> "DebiasedRouter":
        """Fit on a RoutingDataset or a (n_prompts, n_llms) score matrix (NaN = unobserved) and X (n, d)."""
        self._check_params()
        self._data = data  # the inner router sees the dataset itself (LLM metadata) unless IPW changes it
        try:
            return super().fit(data, X)
        finally:
            self._data = None

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        inner = self._new_inner()
        mode = remedies.ipw_mode(inner.name, self.ipw_mode)
        target = remedies.ipw_targets(Y, self.ipw, mode, self.random_state) if float(self.ipw) > 0 else None
        source = getattr(self, "_data", None)
        self.inner_ = inner.fit(target if target is not None else (Y if source is None else source), X)
        self.entropy_floor = float(self.inner_.entropy_floor)  # RouterEval's E_p floor of the inner family
        self.calibrator_ = None
        if self.calibration:
            self.calibrator_ = fit_holdout_calibrator(
                self.inner_spec, Y, X, self.calibration, self.holdout, self.random_state, target
            )
        train_scores = self._calibrated(self.inner_.score(X, n=Y.shape[0]))
        self.prior_, self.unit_ = remedies.adjustment_terms(Y, train_scores, self.prior, self.tau_units)

    def _check_params(self) -> None:
        remedies.ipw_weights(np.ones((1, 1)), self.ipw)  # validates the strength
        remedies.ipw_mode("", self.ipw_mode)
        remedies.logit_adjust(np.zeros((1, 1)), np.ones(1), self.tau)  # validates tau
        if self.calibration not in (None, *remedies.CALIBRATIONS):
            raise DataError(f"debiased: calibration must be None or one of {remedies.CALIBRATIONS}; got {self.calibration!r}")
        if self.prior not in remedies.PRIORS:
            raise DataError(f"debiased: prior must be one of {remedies.PRIORS}; got {self.prior!r}")
        if self.tau_units not in ("std", "raw"):
            raise DataError(f"debiased: tau_units must be 'std' or 'raw'; got {self.tau_units!r}")

    # ------------------------------------------------------------------ scores
    def _calibrated(self, scores: np.ndarray) -> np.ndarray:
        S = np.asarray(scores, dtype=np.float64)
        return S if self.calibrator_ is None else self.calibrator_.transform(S)

    def _transforms_scores(self) -> bool:
        return self.calibrator_ is not None or float(self.tau) > 0

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        S = self._calibrated(self.inner_.score(X, n=n))
        return remedies.logit_adjust(S, self.prior_, float(self.tau) * self.unit_)

    def selection_probs(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """The inner router's distribution when the scores are untouched, else the softmax of the scores."""
        self._check_fitted()
        if not self._transforms_scores():
            return self.inner_.selection_probs(X, n=n)
        return super().selection_probs(X, n)

    def route_capped(self, X: np.ndarray | None, cap: float, candidates=None, n: int | None = None) -> np.ndarray:
        """int64 (n,): route a batch so no LLM takes more than floor(cap · n) of its prompts (exact LP).

        ``candidates`` restricts the LLMs as in :meth:`route`; the cap is a share of the batch.
        """
        scores = self.score(X, n)
        allowed = np.flatnonzero(self._candidate_mask(candidates))
        return allowed[remedies.capacity_assign(scores[:, allowed], cap)].astype(np.int64)

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {"prior": self.prior_, "unit": np.array([self.unit_])}
        if self.calibrator_ is not None:
            arrays.update(self.calibrator_.state())
        return {}, arrays

    def _save_extra(self, path: Path) -> None:
        self.inner_.save(Path(path) / _INNER_DIR)

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.inner_ = Router.load(Path(path) / _INNER_DIR)
        self.entropy_floor = float(self.inner_.entropy_floor)
        self.prior_ = np.asarray(arrays["prior"], dtype=np.float64)
        self.unit_ = float(arrays["unit"][0])
        self.calibrator_ = (
            remedies.PerLLMCalibrator.from_state(self.calibration, arrays) if self.calibration else None
        )
        if self.inner_.n_llms_ != self.n_llms_ or self.prior_.shape != (self.n_llms_,):
            raise SavedArtifactError(f"{path}: the inner router holds {self.inner_.n_llms_} LLMs, the wrapper {self.n_llms_}")


def fit_holdout_calibrator(
    spec: str,
    Y: np.ndarray,
    X: np.ndarray | None,
    method: str,
    holdout: float = 0.2,
    random_state: int | None = 0,
    fit_target: np.ndarray | None = None,
) -> remedies.PerLLMCalibrator:
    """Per-LLM calibrator for router ``spec``: fit a copy on 1 - ``holdout`` of the prompts (on
    ``fit_target`` when given, e.g. IPW targets), score the held-out prompts, and map them to ``Y``.

    ``Y`` (n, m) true training targets (NaN = unobserved), ``X`` (n, d) | None prompt features.
    """
    from recroute.routers.registry import make_router

    fit_rows, held = remedies.holdout_split(Y.shape[0], holdout, random_state)
    source = Y if fit_target is None else fit_target
    aux = make_router(spec).fit(source[fit_rows], None if X is None else X[fit_rows])
    scores = aux.score(None if X is None else X[held], n=len(held))
    return remedies.PerLLMCalibrator(method).fit(scores, Y[held])
