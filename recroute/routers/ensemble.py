"""``EnsembleRouter``: the average of several routers' P(correct), each bagged over seeds.

    make_router("ensemble")                                          # soft_cluster + two_tower, 5 seeds each
    make_router("ensemble:members=two_tower+knn:k=50,n_seeds=3")
    make_router("ensemble:members=two_tower+als:factors=8,calibration='platt'")
    EnsembleRouter(members=("two_tower", "soft_cluster:n_partitions=1"), weights=(2, 1))

score(X) (n, n_llms) = Σ_i w_i · mean_s score_{i,s}(X): member i (a registered router spec) fitted
``n_seeds`` times with ``random_state = random_state + s`` when it has a ``random_state`` parameter
(once otherwise, e.g. knn), the weights ``w`` normalised to sum 1 (equal by default). Averaging
members whose scores are P(correct) reduces the variance of any one fit, which is what moves V_B on
RouterEval-style data (see docs/routers.md). Members must score in [0, 1]; a member that does not
(als, bpr, lightfm give inner products) needs ``calibration`` ("platt" | "isotonic"): per-LLM maps
fitted on a held-out ``holdout`` share of the training prompts, as the ``debiased`` router does.

On the command line members are joined by ``+`` and a member's own parameters are separated by
``;`` (the spec's ``,`` separates the ensemble's parameters):
``ensemble:members=soft_cluster:n_partitions=1+two_tower:dim=32;dropout=0.2,n_seeds=5``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recroute.errors import DataError, SavedArtifactError
from recroute.routers.base import Router

DEFAULT_MEMBERS = "soft_cluster:n_partitions=1+two_tower"
_CALIBRATIONS = (None, "platt", "isotonic")
_PROBABILITY_TOL = 1e-4  # member scores this far outside [0, 1] are not probabilities


def member_specs(members: str | Sequence[str]) -> list[str]:
    """Member specs from ``"a+b:k=1;x=2"`` or a sequence of specs; ``;`` inside a member reads as ``,``."""
    items = str(members).split("+") if isinstance(members, str) else [str(m) for m in members]
    specs = [item.strip().replace(";", ",") for item in items if item.strip()]
    if not specs:
        raise DataError("ensemble: members is empty; give router specs joined by '+', e.g. 'two_tower+knn'")
    return specs


class EnsembleRouter(Router):
    """Weighted mean of member routers' P(correct), each member bagged over ``n_seeds`` seeds (module docstring)."""

    name = "ensemble"

    def __init__(
        self,
        members: str | Sequence[str] = DEFAULT_MEMBERS,
        n_seeds: int = 5,
        weights: Sequence[float] | None = None,
        calibration: str | None = None,
        holdout: float = 0.2,
        random_state: int | None = 0,
    ) -> None:
        self.members = members
        self.n_seeds = n_seeds
        self.weights = weights
        self.calibration = calibration
        self.holdout = holdout
        self.random_state = random_state

    # ------------------------------------------------------------------ members
    def _member_classes(self) -> list[tuple[str, type]]:
        from recroute.routers.registry import parse_router_spec, router_class

        out = []
        for spec in member_specs(self.members):
            name = parse_router_spec(spec)[0]
            if name == self.name:
                raise DataError("ensemble: a member cannot itself be an ensemble")
            klass = router_class(name)
            if klass.requires_truth or klass.stochastic:
                raise DataError(f"ensemble: member {name!r} does not learn scores (oracle, r_o and random cannot be members)")
            out.append((spec, klass))
        return out

    @property
    def needs_features(self) -> bool:  # type: ignore[override]
        return any(klass.needs_features for _, klass in self._member_classes())

    def fit_cell_limit(self) -> float | None:
        """Cells fitted within the budget: every member's fits (seeds, calibration copies) one after another."""
        from recroute.routers.base import combined_cell_limit
        from recroute.routers.registry import make_router

        members = [make_router(spec) for spec, _ in self._member_classes()]
        copies = [(int(self.n_seeds) if "random_state" in r.get_params() else 1) * (2 if self.calibration else 1)
                  for r in members]
        return combined_cell_limit([r.fit_cell_limit() for r in members], copies)

    def _normalised_weights(self, n_members: int) -> np.ndarray:
        if self.weights is None:
            return np.full(n_members, 1.0 / n_members)
        w = np.asarray(self.weights, dtype=np.float64).ravel()
        if w.shape != (n_members,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
            raise DataError(
                f"ensemble: weights must be {n_members} non-negative numbers (one per member) with a positive sum; "
                f"got {self.weights!r}"
            )
        return w / w.sum()

    def _check_params(self) -> None:
        if int(self.n_seeds) < 1:
            raise DataError(f"ensemble: n_seeds must be at least 1; got {self.n_seeds!r}")
        if self.calibration not in _CALIBRATIONS:
            raise DataError(f"ensemble: calibration must be one of {_CALIBRATIONS}; got {self.calibration!r}")
        if self.calibration is not None and not 0 < float(self.holdout) < 1:
            raise DataError(f"ensemble: holdout must be in (0, 1); got {self.holdout!r}")

    # ------------------------------------------------------------------ fit / score
    def fit(self, data, X: np.ndarray | None = None) -> "EnsembleRouter":
        """Fit every member on a RoutingDataset or a (n_prompts, n_llms) score matrix (NaN = unobserved)
        and prompt features X (n_prompts, d); members see the dataset itself (LLM metadata)."""
        self._data = data
        try:
            return super().fit(data, X)
        finally:
            self._data = None

    def _fit(self, Y: np.ndarray, X: np.ndarray | None) -> None:
        from recroute.routers.registry import make_router

        self._check_params()
        classes = self._member_classes()
        self.member_weights_ = self._normalised_weights(len(classes))
        source = Y if getattr(self, "_data", None) is None else self._data
        base = 0 if self.random_state is None else int(self.random_state)
        check_rows = slice(0, min(len(Y), 256))
        self.members_: list[list[Router]] = []
        self.calibrators_: list[list[Any]] = []
        for spec, klass in classes:
            seeded = "random_state" in make_router(spec).get_params()
            copies, calibrators = [], []
            for s in range(int(self.n_seeds) if seeded else 1):
                overrides = {"random_state": base + s} if seeded else {}
                router = make_router(spec, **overrides).fit(source, X)
                calibrator = None
                if self.calibration is not None:
                    from recroute.debias.router import fit_holdout_calibrator

                    calibrator = fit_holdout_calibrator(
                        _with_params(spec, overrides), Y, X, self.calibration, float(self.holdout), base + s
                    )
                else:
                    self._check_probabilities(spec, router.score(None if X is None else X[check_rows], n=len(Y[check_rows])))
                copies.append(router)
                calibrators.append(calibrator)
            self.members_.append(copies)
            self.calibrators_.append(calibrators)

    @staticmethod
    def _check_probabilities(spec: str, scores: np.ndarray) -> None:
        if scores.size and (scores.min() < -_PROBABILITY_TOL or scores.max() > 1 + _PROBABILITY_TOL):
            raise DataError(
                f"ensemble: member {spec!r} scores outside [0, 1] (range {scores.min():.3g}..{scores.max():.3g}), "
                "so its scores are not P(correct): pass calibration='platt' or 'isotonic'"
            )

    def member_scores(self, X: np.ndarray | None, n: int | None = None) -> np.ndarray:
        """float64 (n_members, n, n_llms): each member's seed-averaged (calibrated) score."""
        self._check_fitted()
        X, n = self._check_query(X, n)
        return np.stack([self._member_score(i, X, n) for i in range(len(self.members_))])

    def _member_score(self, i: int, X: np.ndarray | None, n: int) -> np.ndarray:
        total = np.zeros((n, self.n_llms_))
        for router, calibrator in zip(self.members_[i], self.calibrators_[i]):
            S = np.asarray(router.score(X, n=n), dtype=np.float64)
            total += S if calibrator is None else calibrator.transform(S)
        return total / len(self.members_[i])

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        out = np.zeros((n, self.n_llms_))
        for i, w in enumerate(self.member_weights_):
            out += w * self._member_score(i, X, n)
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays: dict[str, np.ndarray] = {"member_weights": self.member_weights_}
        for i, calibrators in enumerate(self.calibrators_):
            for s, calibrator in enumerate(calibrators):
                if calibrator is not None:
                    arrays.update({f"cal_{i}_{s}.{k}": v for k, v in calibrator.state().items()})
        return {"copies": [len(c) for c in self.members_]}, arrays

    def _save_extra(self, path: Path) -> None:
        for i, copies in enumerate(self.members_):
            for s, router in enumerate(copies):
                router.save(Path(path) / f"member_{i}_{s}")

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        counts = [int(c) for c in meta["copies"]]
        self.member_weights_ = np.asarray(arrays["member_weights"], dtype=np.float64)
        if len(counts) != len(member_specs(self.members)) or self.member_weights_.shape != (len(counts),):
            raise SavedArtifactError(f"{path}: {len(counts)} saved members for members={self.members!r}")
        self.members_, self.calibrators_ = [], []
        for i, count in enumerate(counts):
            copies, calibrators = [], []
            for s in range(count):
                router = Router.load(Path(path) / f"member_{i}_{s}")
                if router.n_llms_ != self.n_llms_:
                    raise SavedArtifactError(f"{path}: member {i} holds {router.n_llms_} LLMs, the ensemble {self.n_llms_}")
                copies.append(router)
                calibrators.append(self._load_calibrator(arrays, i, s))
            self.members_.append(copies)
            self.calibrators_.append(calibrators)

    def _load_calibrator(self, arrays: dict[str, np.ndarray], i: int, s: int):
        if self.calibration is None:
            return None
        from recroute.debias.remedies import PerLLMCalibrator

        prefix = f"cal_{i}_{s}."
        return PerLLMCalibrator.from_state(self.calibration, {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})


def _with_params(spec: str, overrides: dict[str, Any]) -> str:
    """``spec`` with ``overrides`` appended as ``key=value`` (later keys win in make_router)."""
    if not overrides:
        return spec
    extra = ",".join(f"{k}={v!r}" for k, v in overrides.items())
    return f"{spec},{extra}" if ":" in spec else f"{spec}:{extra}"
