"""``StackRouter``: per pool, the families (or a weighted blend of their P(correct)) chosen on validation.

    make_router("stack")                                  # DEFAULT_MEMBERS, 3 seeds each, one family per pool
    make_router("stack:members=two_tower+soft_cluster,steps=10")  # a blend: 10 greedy steps
    make_router("stack:members=all,refit=True")            # every registered family that learns scores

Each member (a registered router spec) is fitted on the training prompts as a seed-bagged
:class:`~recroute.routers.ensemble.EnsembleRouter` (``n_seeds`` seeds when it has a ``random_state``;
members whose scores are not probabilities, e.g. als or lightfm, are Platt-calibrated per LLM on the
ensemble's own hold-out of the training prompts). The choice is made on held-out prompts, never on test:

- **what it is scored on**: with at least ``cv_below`` (1,000) validation prompts (a
  :class:`~recroute.routers.base.ValidationPart`: RouterEval's validation split under the protocol, else
  a seeded ``validation_share`` of the training prompts held out by ``Router.fit``), each member bagged on
  the training prompts and scored on the validation part (MMLU-Pro: 1,203 prompts); with fewer
  (RouterEval's v1 sets keep 14 to 24, llmrouter_nim 611), **cross-fitted**: ``cv_folds`` (5) seeded
  folds of training + validation, each member fitted (one seed) on four and scored on the fifth, so every
  one of those prompts is scored out of fold and the choice rests on 5,495 prompts on llmrouter_nim and
  130 / 213 on v1 ARC / GSM8K;
- **the rule** (``steps=1``): ``select="one_se"``: the members whose routed mu_o (the target at each
  prompt's argmax LLM) is within one paired standard error of the best member's, and among them the
  lowest log loss of P(correct) over every cell (:func:`one_se_choice`): the argmax decides where a
  member routes clearly better, the steadier log loss where the difference is noise.
  ``select="log_loss"``: the log loss alone (the first rule). ``select="auto"`` (the default): one_se
  on a cross-fitted choice, log_loss on a validation part (on MMLU-Pro's validation part the one-SE
  rule lost 0.006 mean V_B against the log loss, 3 seeds; docs/zoo.md). ``steps > 1``: Caruana et al.'s forward
  ensemble selection (ICML 2004) with replacement, ``steps`` greedy steps each adding the member that most
  lowers the blend's log loss, weights the members' shares of the steps.

``selection_`` records the evidence (mode, rows, and per member log loss, mu_o, se, within), saved with
the router; docs/zoo.md has the diagnosis per set and pool and what each rule measured.

``score(X)`` (n, n_llms) = Σ_i w_i · P_i(X) over the members with a positive weight (the others are
dropped after fitting). ``refit=True`` (the default) refits the kept members on training + validation
prompts (+0.006 mean V_B on llmrouter_nim, level on MMLU-Pro; ``refit=False`` keeps the first fits);
a cross-fitted choice always refits the kept members (bagged, ``n_seeds``) on training + validation.
Prompt features beyond MiniLM come from the encoder: ``recroute eval --encoder minilm-onnx+lexical``
gives every member TF-IDF and format features of the prompt (docs/zoo.md).
Size: members are taken in order while their declared fit limits (``Router.max_fit_cells``) leave room
in the 5-minute budget for this training matrix (a cross-fit is charged as ``cv_folds`` one-seed fits
on (cv_folds - 1) / cv_folds of it plus the bagged refit; where no member fits a cross-fit, the
validation part is used); the others are skipped (``skipped_``), so at
RouterEval's scale the stack chooses among the families that fit it, and refuses only a matrix that
no member fits.
On the command line members are joined by ``+`` and a member's own parameters separated by ``;``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recroute.errors import DataError, SavedArtifactError
from recroute.routers.base import Router, ValidationPart
from recroute.routers.ensemble import member_specs

DEFAULT_MEMBERS = "two_tower+soft_cluster:n_partitions=2+logistic+knn+best_single"
NOT_MEMBERS = ("stack", "ensemble", "debiased")  # routers over other routers
SELECTS = ("auto", "one_se", "log_loss")  # steps=1: auto = one_se where cross-fitted, else log_loss
_EPS = 1e-4  # probabilities are clipped to [_EPS, 1 - _EPS] inside the log loss


def learning_families() -> list[str]:
    """Registered routers that learn scores from training data: the members of ``members='all'``."""
    from recroute.routers.registry import available_routers, router_class

    out = []
    for name in available_routers():
        klass = router_class(name)
        if name not in NOT_MEMBERS and not klass.requires_truth and not klass.stochastic and not klass.built_from_routers:
            out.append(name)
    return out


def log_loss(P: np.ndarray, Y: np.ndarray) -> float:
    """Mean binary cross-entropy of P (n, m) against soft targets Y (n, m) in [0, 1], NaN cells skipped."""
    observed = ~np.isnan(Y)
    if not observed.any():
        raise DataError("the validation part has no observed cell")
    p = np.clip(P[observed], _EPS, 1.0 - _EPS)
    y = np.clip(Y[observed], 0.0, 1.0)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log(1.0 - p)))


def routed_gains(P: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """float64 (n_members, n_rows): each member's target at its argmax LLM (ties: the first), over the rows
    where every member's choice is observed. P (n_members, n, m) candidate scores, Y (n, m) targets."""
    choice = np.argmax(P, axis=2)  # (n_members, n)
    gains = np.take_along_axis(np.broadcast_to(Y, P.shape), choice[:, :, None], axis=2)[:, :, 0].astype(np.float64)
    return gains[:, ~np.isnan(gains).any(axis=0)]


def one_se_choice(P: np.ndarray, Y: np.ndarray) -> tuple[int, dict[str, list[float]]]:
    """The member to keep: among those whose routed mean (mu_o on these rows) is within one paired standard
    error of the best member's, the one with the lowest log loss (ties: the lower index).

    P (n_members, n, m), Y (n, m), NaN = unobserved. The paired standard error of member i against the
    best b is std(g_b - g_i, ddof=1) / sqrt(n_rows) over the rows' routed targets g (:func:`routed_gains`);
    with fewer than two such rows every member is within it, and the log loss alone decides.
    Returns (index, {"log_loss", "mu_o", "se", "within"}: one value per member).
    """
    losses = np.array([log_loss(p, Y) for p in P])
    gains = routed_gains(P, Y)
    n_rows = gains.shape[1]
    if n_rows < 2:
        mu = gains[:, 0] if n_rows == 1 else np.full(len(P), np.nan)
        se, within = np.full(len(P), np.inf), np.ones(len(P), dtype=bool)
    else:
        mu = gains.mean(axis=1)
        diff = gains[int(np.argmax(mu))] - gains  # (n_members, n_rows); the best's own row is 0
        se = diff.std(axis=1, ddof=1) / np.sqrt(n_rows)
        within = diff.mean(axis=1) <= se + 1e-12
    index = int(np.flatnonzero(within)[np.argmin(losses[within])])
    return index, {"log_loss": losses.tolist(), "mu_o": mu.tolist(), "se": se.tolist(), "within": within.astype(float).tolist()}


def fold_ids(n: int, folds: int, seed: int | None) -> np.ndarray:
    """int64 (n,): a seeded, balanced assignment of n rows to ``folds`` folds (sizes differ by at most one)."""
    out = np.empty(n, dtype=np.int64)
    out[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return out


def forward_selection(P: np.ndarray, Y: np.ndarray, steps: int) -> np.ndarray:
    """Caruana's ensemble selection with replacement: float64 (n_members,) weights summing to 1.

    P (n_members, n, m) candidate P(correct), Y (n, m) validation targets (NaN = unobserved). Each of
    ``steps`` steps adds the member whose inclusion gives the lowest log loss of the running mean
    (ties: the lower index), so the first step is the single best member.
    """
    counts = np.zeros(P.shape[0], dtype=np.int64)
    total = np.zeros(P.shape[1:], dtype=np.float64)
    for step in range(1, int(steps) + 1):
        losses = [log_loss((total + P[i]) / step, Y) for i in range(P.shape[0])]
        best = int(np.argmin(losses))
        counts[best] += 1
        total += P[best]
    return counts / counts.sum()


class StackRouter(Router):
    """Blend of seed-bagged member routers with weights chosen on validation (module docstring)."""

    name = "stack"
    uses_validation = True

    def __init__(
        self,
        members: str | Sequence[str] = DEFAULT_MEMBERS,
        n_seeds: int = 3,
        steps: int = 1,
        refit: bool = True,
        select: str = "auto",
        cv_folds: int = 5,
        cv_below: int = 1000,
        random_state: int | None = 0,
    ) -> None:
        self.members = members
        self.n_seeds = n_seeds
        self.steps = steps
        self.refit = refit
        self.select = select
        self.cv_folds = cv_folds
        self.cv_below = cv_below
        self.random_state = random_state

    # ------------------------------------------------------------------ members
    def member_list(self) -> list[str]:
        """The member specs (``members='all'`` expands to :func:`learning_families`)."""
        if isinstance(self.members, str) and self.members.strip() == "all":
            return learning_families()
        from recroute.routers.registry import parse_router_spec, router_class

        specs = member_specs(self.members)
        for spec in specs:
            name = parse_router_spec(spec)[0]
            klass = router_class(name)
            if name in NOT_MEMBERS or klass.requires_truth or klass.stochastic or klass.built_from_routers:
                raise DataError(f"stack: {name!r} cannot be a member (members learn scores: not {', '.join(NOT_MEMBERS)}, "
                                "conservative, oracle, r_o or random)")
        return specs

    @property
    def needs_features(self) -> bool:  # type: ignore[override]
        from recroute.routers.registry import make_router

        return any(make_router(spec).needs_features for spec in self.member_list())

    def fit_cell_limit(self) -> float | None:
        """Cells within the fit budget: the most any one member takes (the stack keeps the members that fit)."""
        limits = [self._bagged(s).fit_cell_limit() for s in self.member_list()]
        if any(limit is None for limit in limits):
            return None
        return max(limits) / (1 + bool(self.refit))

    def members_within_budget(self, n_cells: int, n_llms: int | None = None, cross_fit: bool = False) -> list[str]:
        """The members, in order, whose fits one after another stay within the fit budget for ``n_cells``
        (n_prompts × n_llms, validation included) and that take a pool of ``n_llms``: at RouterEval's scale
        the slow families drop out, and a family with an LLM limit (sw_ranking) drops out of larger pools.
        ``cross_fit``: each member is charged ``cv_folds`` one-seed fits on (cv_folds − 1) / cv_folds of the
        cells, plus one bagged refit on all of them; else its bagged fit, twice with ``refit``."""
        from recroute.routers.base import fit_limit_scale, llm_limit
        from recroute.routers.registry import make_router

        scale = fit_limit_scale()
        specs = self.member_list()
        if scale is None:
            return specs
        if n_llms is not None:
            specs = [s for s in specs if (most := llm_limit(make_router(s))) is None or n_llms <= most]
        kept, used = [], 0.0
        for spec in specs:
            share = self._budget_share(spec, n_cells, cross_fit) / scale
            if used + share <= 1.0:
                kept.append(spec)
                used += share
        return kept

    def _budget_share(self, spec: str, n_cells: int, cross_fit: bool) -> float:
        """The share of the (unscaled) fit budget that fitting ``spec`` takes for ``n_cells``."""
        limit = self._bagged(spec).fit_cell_limit()
        if limit is None:
            return 0.0
        if not cross_fit:
            return (1 + bool(self.refit)) * n_cells / limit
        one_seed = self._bagged(spec, n_seeds=1).fit_cell_limit()
        return (int(self.cv_folds) - 1) * n_cells / one_seed + n_cells / limit

    def _bagged(self, spec: str, n_seeds: int | None = None) -> Router:
        from recroute.routers.ensemble import EnsembleRouter
        from recroute.routers.registry import make_router

        calibration = None if make_router(spec).score_scale == "probability" else "platt"
        return EnsembleRouter(members=[spec], n_seeds=self.n_seeds if n_seeds is None else n_seeds,
                              calibration=calibration, random_state=self.random_state)

    # ------------------------------------------------------------------ fit / score
    def _check(self) -> None:
        if int(self.n_seeds) < 1 or int(self.steps) < 1:
            raise DataError(f"stack: n_seeds and steps must be at least 1; got {self.n_seeds!r}, {self.steps!r}")
        if self.select not in SELECTS:
            raise DataError(f"stack: select must be one of {', '.join(SELECTS)}; got {self.select!r}")
        if self.select == "one_se" and int(self.steps) > 1:
            raise DataError(f"stack: select='one_se' keeps one member; steps={self.steps!r} blends members by forward "
                            "selection on the log loss: use steps=1, or select='log_loss' / 'auto' with steps > 1")
        if int(self.cv_folds) < 2 or int(self.cv_below) < 0:
            raise DataError(f"stack: cv_folds must be at least 2 and cv_below at least 0; got {self.cv_folds!r}, {self.cv_below!r}")

    def candidates(self, Y: np.ndarray, X: np.ndarray | None, validation: ValidationPart):
        """(specs, P (n_specs, n_rows, m), Y_rows (n_rows, m), fitted | None, mode): what the choice is made on.

        With at least ``cv_below`` validation prompts: each member bagged (``n_seeds``) on the training
        prompts, P on the validation part (``fitted``: those routers). With fewer (RouterEval's v1 sets keep
        14 to 24): cross-fitted on training + validation, ``cv_folds`` seeded folds, one seed per fold fit, P
        out of fold on every one of those prompts (``fitted`` None); members are charged for the cross-fit
        against the fit budget, and where none fits that way the validation part is used after all.
        """
        n_val = validation.Y.shape[0]
        n_cells = (Y.shape[0] + n_val) * Y.shape[1]
        specs = self.members_within_budget(n_cells, Y.shape[1], cross_fit=True) if n_val < int(self.cv_below) else []
        if not specs:
            specs = self.members_within_budget(n_cells, Y.shape[1])
            fitted = [self._bagged(spec).fit(Y, X) for spec in specs]
            P = np.stack([np.asarray(r.score(validation.X, n=n_val), dtype=np.float64) for r in fitted])
            return specs, P, validation.Y, fitted, "validation"
        Y_all = np.vstack([Y, validation.Y])
        X_all = None if X is None else np.vstack([X, validation.X])
        folds = fold_ids(len(Y_all), int(self.cv_folds), self.random_state)
        P = np.empty((len(specs), *Y_all.shape), dtype=np.float64)
        for k in range(int(self.cv_folds)):
            out, rows = folds == k, folds != k
            for i, spec in enumerate(specs):
                router = self._bagged(spec, n_seeds=1).fit(Y_all[rows], None if X_all is None else X_all[rows])
                P[i, out] = np.asarray(router.score(None if X_all is None else X_all[out], n=int(out.sum())), dtype=np.float64)
        return specs, P, Y_all, None, f"cross-fitted ({int(self.cv_folds)} folds)"

    def _fit(self, Y: np.ndarray, X: np.ndarray | None, validation: ValidationPart) -> None:
        self._check()
        specs, P, Y_rows, fitted, mode = self.candidates(Y, X, validation)
        self.skipped_ = [spec for spec in self.member_list() if spec not in specs]
        rule = self.select if self.select != "auto" else ("log_loss" if mode == "validation" else "one_se")
        if int(self.steps) == 1 and rule == "one_se":
            index, table = one_se_choice(P, Y_rows)
            weights = np.eye(len(specs))[index]
        else:
            weights = forward_selection(P, Y_rows, int(self.steps))
            table = {"log_loss": [log_loss(p, Y_rows) for p in P]}
        self.validation_losses_ = np.asarray(table["log_loss"], dtype=np.float64)
        self.selection_ = {"mode": mode, "rows": int(Y_rows.shape[0]), "members": list(specs), **table}
        keep = np.flatnonzero(weights > 0)
        if self.refit or fitted is None:
            Y_all = np.vstack([Y, validation.Y])
            X_all = None if X is None else np.vstack([X, validation.X])
            fitted = {int(i): self._bagged(specs[i]).fit(Y_all, X_all) for i in keep}
        self.chosen_ = [specs[i] for i in keep]
        self.weights_ = weights[keep]
        self.members_ = [fitted[int(i)] for i in keep]

    def _score(self, X: np.ndarray | None, n: int) -> np.ndarray:
        out = np.zeros((n, self.n_llms_))
        for w, router in zip(self.weights_, self.members_):
            out += w * np.asarray(router.score(X, n=n), dtype=np.float64)
        return out

    # ------------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"chosen": list(self.chosen_), "skipped": list(self.skipped_), "selection": self.selection_}, {"weights": self.weights_, "validation_losses": self.validation_losses_}

    def _save_extra(self, path: Path) -> None:
        for i, router in enumerate(self.members_):
            router.save(Path(path) / f"member_{i}")

    def _set_state(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], path) -> None:
        self.chosen_ = [str(s) for s in meta["chosen"]]
        self.skipped_ = [str(s) for s in meta.get("skipped", [])]
        self.selection_ = dict(meta.get("selection", {}))
        self.weights_ = np.asarray(arrays["weights"], dtype=np.float64)
        self.validation_losses_ = np.asarray(arrays["validation_losses"], dtype=np.float64)
        if self.weights_.shape != (len(self.chosen_),):
            raise SavedArtifactError(f"{path}: {self.weights_.shape[0]} weights for {len(self.chosen_)} members")
        self.members_ = []
        for i in range(len(self.chosen_)):
            router = Router.load(Path(path) / f"member_{i}")
            if router.n_llms_ != self.n_llms_:
                raise SavedArtifactError(f"{path}: member {i} holds {router.n_llms_} LLMs, the stack {self.n_llms_}")
            self.members_.append(router)
