"""``ConservativeRouter``: a refitted router that leaves live's choice only where it is confident.

    ConservativeRouter(refit, live, tau=0.2)   # two fitted routers over the same LLMs

Among each prompt's candidates A it routes to the refit's greedy choice s only where
S(s) > S(l) + tau (S the refit's scores, l live's greedy choice among A), else to l; its score (n, m)
is S with ``tau`` added on l (ties: the lower index, as routing). ``live`` may itself be conservative
(after two promotions: Conservative(refit2, Conservative(refit1, start), tau)), so live's choice is
taken among the same candidates level by level (:meth:`ConservativeRouter.score_among`).

This is the policy the loop's shadow gate tests (``recroute.loop.shadow``, the gateway's shadow
serving); the loop promotes it as a bundle, so it is saved like any router: router.json (tau) with the
two inner routers in ``refit/`` and ``live/`` (Router.save folders, loaded with every check of
Router.load). It is built from two fitted routers, never fitted from data (``fit`` refuses). Scores are
float64 (``score_dtype``): the margin is applied exactly as the gateway's shadow applied it to the inner
routers' float32 scores, so a float32 rounding never breaks a tie at exactly tau the other way.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recroute.errors import DataError, NotSupportedError, SavedArtifactError
from recroute.routers.base import Router

INNER = ("refit", "live")  # the inner routers' subfolders


class ConservativeRouter(Router):
    """The refit's choice where it beats live's by more than ``tau``, else live's (module docstring)."""

    name = "conservative"
    score_scale = "raw"  # the refit's scores plus tau on one LLM
    built_from_routers = True
    score_dtype: ClassVar[type] = np.float64

    def __init__(self, refit: Router | None = None, live: Router | None = None, tau: float = 0.2) -> None:
        self.refit = refit
        self.live = live
        self.tau = tau
        if refit is not None or live is not None:
            self._build()

    def _build(self) -> None:
        """Check the two routers and tau; set the fitted attributes (LLM names, feature width)."""
        if self.refit is None or self.live is None:
            raise DataError("a conservative router needs both a refit and a live router (two fitted routers)")
        tau = self.tau
        if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating)) or not math.isfinite(tau) or tau < 0:
            raise DataError(f"tau must be a finite number >= 0; got {tau!r}")
        self.tau = float(tau)
        for role, router in (("refit", self.refit), ("live", self.live)):
            if not hasattr(router, "llm_names_"):
                raise DataError(f"the conservative router's {role} router is not fitted")
        names_r, names_l = [str(n) for n in self.refit.llm_names_], [str(n) for n in self.live.llm_names_]
        if names_r != names_l:
            only_r = [n for n in names_r if n not in set(names_l)][:5]
            only_l = [n for n in names_l if n not in set(names_r)][:5]
            raise DataError(f"the refit and the live router route to different LLMs (refit only: {only_r}, live only: "
                            f"{only_l}{', same names in another order' if not only_r and not only_l else ''}): refit "
                            "on the live router's LLMs")
        widths = {int(r.n_features_in_) for r in (self.refit, self.live) if r.needs_features}
        if len(widths) > 1:
            raise DataError(f"the refit and the live router take prompt features of different widths {sorted(widths)}")
        self.llm_names_ = np.asarray(names_r, dtype=object)
        self.n_llms_ = len(names_r)
        if widths:
            self.n_features_in_ = widths.pop()
        self.fitted_ = True

    @property
    def needs_features(self) -> bool:  # type: ignore[override]
        return any(r is not None and r.needs_features for r in (self.refit, self.live))

    def fit(self, data, X=None, validation=None) -> "ConservativeRouter":
        raise NotSupportedError("a conservative router is built from two fitted routers, not fitted from data: "
                                "ConservativeRouter(refit, live, tau) (the loop builds it on a promotion)")

    # ------------------------------------------------------------------ scoring
    def parts(self, X: np.ndarray | None, n: int) -> tuple[list[np.ndarray], list[float]]:
        """([float64 (n, m) scores of each level's refit, ..., the innermost live's], [tau per level]),
        outermost first: what :func:`combine` turns into the scores among any candidates."""
        S = np.asarray(self.refit.score(X if self.refit.needs_features else None, n=n), dtype=np.float64)
        if isinstance(self.live, ConservativeRouter):
            inner, taus = self.live.parts(X if self.live.needs_features else None, n)
        else:
            inner, taus = [np.asarray(self.live.score(X if self.live.needs_features else None, n=n), dtype=np.float64)], []
        return [S, *inner], [self.tau, *taus]

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        return combine(*self.parts(X, n), None)

    def score_among(self, X: np.ndarray | None, allowed: np.ndarray, n: int | None = None) -> np.ndarray:
        """float64 (n, m): the scores with live's choice taken among each row's ``allowed`` (n, m) LLMs
        (bool; (m,) for every row), at every level: their greedy choice among ``allowed`` is this router's."""
        self._check_fitted()
        X, n = self._check_query(X, n)
        return combine(*self.parts(X, n), allowed)

    # ------------------------------------------------------------------ new LLMs
    def can_place_new_llms(self) -> bool:
        return self.refit.can_place_new_llms() and self.live.can_place_new_llms()

    def partial_fit_llms(self, X_probe, Y_probe, names, metadata=None) -> "ConservativeRouter":
        """A conservative router over the refit and the live router with the new LLMs placed into each
        (``Router.partial_fit_llms``; NotSupportedError naming an inner family that cannot), same tau and
        class (the simulator's ``recroute.loop.shadow.Conservative`` stays one)."""
        self._check_fitted()
        return type(self)(self.refit.partial_fit_llms(X_probe, Y_probe, names, metadata),
                          self.live.partial_fit_llms(X_probe, Y_probe, names, metadata), self.tau)

    # ------------------------------------------------------------------ persistence
    def _saved_params(self) -> dict[str, Any]:
        return {"tau": self.tau}

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"inner": list(INNER)}, {}

    def _save_extra(self, path: Path) -> None:
        self.refit.save(Path(path) / "refit")
        self.live.save(Path(path) / "live")

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        loaded = {}
        for role in INNER:
            try:
                loaded[role] = Router.load(Path(path) / role)
            except SavedArtifactError as exc:
                raise SavedArtifactError(f"{path}: the conservative router's {role} router cannot be loaded: {exc}") from None
        names = [str(n) for n in self.llm_names_]
        self.refit, self.live = loaded["refit"], loaded["live"]
        try:
            self._build()
        except DataError as exc:
            raise SavedArtifactError(f"{path}: {exc}") from None
        if [str(n) for n in self.llm_names_] != names:
            raise SavedArtifactError(f"{path}/router.json: its LLM names differ from its inner routers'")


def fitted_family(router) -> Router:
    """The router whose family a refit (or an onboarding's proxy) of ``router`` fits: ``router`` itself, or
    for a conservative router its refit's (outermost level), never "conservative"."""
    while isinstance(router, ConservativeRouter):
        router = router.refit
    return router


def combine(parts: list[np.ndarray], taus: list[float], allowed: np.ndarray | None) -> np.ndarray:
    """float64 (n, m) conservative scores from :meth:`ConservativeRouter.parts` (outermost first):
    from the innermost live's scores outwards, each level's refit scores plus its tau on the greedy choice
    of the level below among ``allowed`` (bool (n, m) or (m,); None = every LLM), by the shadow's rule
    (``recroute.loop.shadow.conservative_scores``, the gateway's arithmetic)."""
    from recroute.loop.shadow import conservative_scores

    if len(parts) != len(taus) + 1:
        raise DataError(f"{len(parts)} score arrays for {len(taus)} margins: expected one more array than margins")
    C = np.asarray(parts[-1], dtype=np.float64)
    for S, tau in zip(reversed(parts[:-1]), reversed(taus)):
        C = conservative_scores(C, S, allowed, tau)
    return C
