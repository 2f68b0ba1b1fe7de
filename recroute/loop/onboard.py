"""A new LLM onboarded live: probed on the anchor's prompts, placed by regression, promoted only on evidence.

**Probes.** The anchor holds the existing LLMs' results on its prompts. The new LLM is asked anchor
prompts in a random order (seeded): a uniform sample of the anchor, so the evidence below is unbiased.
``answer(row)`` sends the prompt to the LLM and scores the reply. ``design="contested"`` probes a stratified
sample instead, most where the existing LLMs' results disagree (:mod:`recroute.coldstart.design`), and the
evidence is its stratified estimate. Measured (benchmarks/results/loop_onboard.md, fourth session): it raises
the strong new LLM's share (nim: goal 3 on 15 of 20 fresh seeds against 10) and lowers a marginal LLM's true
mu_o more often (8 of 19 onboardings against 5 of 14), so ``uniform`` stays the default.

**Placement** (one mechanism for every family). A ridge regression of the probe results on the existing
LLMs' results at the probed prompts (:class:`~recroute.coldstart.estimators.ResultRegression`) predicts the
new LLM's result on every *placement prompt*: the anchor's (from their known results) and any further
prompts the live router was trained on, e.g. the decision log's (from the live router's scores there, its
expected results). ``router.partial_fit_llms`` then gets every placement prompt as a probe: the LLM's own
result where probed, the prediction elsewhere. kNN thereby sets the new LLM's training column at each of its
training prompts with per-prompt structure (where the LLM is right that the others are not), instead of a
similarity-weighted mix of the existing columns, which regresses to the mean and rarely tops a prompt; a
latent family (mf, two_tower, irt) fits the LLM's vector by MAP to them. A live router that is a promoted
conservative shadow (``recroute.loop.shadow.Conservative``, in process) gets the LLM placed into both of its
routers (:func:`place_into`); its refit's family is the evidence's (:func:`recroute.routers.conservative.fitted_family`).

**Evidence** (the gate of refits: :func:`~recroute.loop.gate.promotion_decision`). On the probed prompts
everything is known: the existing LLMs' results (anchor) and the new LLM's (probe), so the gain of placing
the LLM is a full-information paired difference (the result of each router's choice), its interval normal
with sd/sqrt(n). It is cross-fitted and out of sample: the probes are cut into ``folds`` folds (by probe
order); per fold, a proxy of the live router (its family and parameters) is fitted on the anchor without the
fold's prompts, the LLM is placed into it from the other folds' probes, and both choose on the fold's
prompts. The live router itself cannot be evaluated there: it was trained on the anchor, and a kNN
router's choice on a training prompt sees that prompt's own results (measured: mu_o 0.86 on the anchor's
prompts against 0.60 on new ones), which biased the gain by about -0.02. Support: probed prompts where the
two choose differently.

Every probe sharpens the placement of an LLM that may get traffic, so a promising LLM is probed up to the
budget, where one look decides (level alpha): promoted when the lower bound of the gain is above ``margin``
with at least ``min_support`` support. Earlier looks (after ``min_probes``, then every ``probe_every``; level
alpha / planned looks) only stop a harmful LLM: with that support, an upper bound at or below ``margin``
refuses it at once. An LLM not promoted gets no traffic; the journal says why.

``margin`` is a non-inferiority margin (``LoopSettings.onboard_margin``, default -0.03): 200 probes measure
the gain with a standard error of 0.010-0.015, so a gain of +0.01 to +0.03 (what the strongest new LLMs
bring in the measured streams) is rarely *proven* above 0; the rule promotes an LLM shown, at level alpha,
not to cost more than 0.03 of mu_o on the proxy, and only when it changes the choice on at least
``min_support`` (default 10) probed prompts, so a degenerate interval (an LLM chosen on two or three prompts,
all differences 0, a standard error of 0) never passes. A margin of 0 asks for proof of a gain."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recroute.coldstart.adaptive import llm_support
from recroute.coldstart.design import ProbeDesign, contested_design, stratified_mean, uniform_design
from recroute.coldstart.estimators import ResultRegression
from recroute.errors import DataError
from recroute.feedback.policies import greedy_matrix
from recroute.loop.gate import GateResult, promotion_decision
from recroute.loop.refit import Anchor
from recroute.routers.conservative import ConservativeRouter, fitted_family

DESIGNS = ("uniform", "contested")  # the probe designs (recroute.coldstart.design)
DEFAULT_DESIGN = "uniform"


@dataclass
class Onboarding:
    """rows int64 (k,) anchor positions probed, results float64 (k,); gate: the last look's evidence
    (None before a first look); promote / reason: the decision; placed: the router that also routes to the
    LLM (None unless promoted); candidate: the placement from every probe, promoted or not."""

    llm: str
    rows: np.ndarray
    results: np.ndarray
    gate: GateResult | None
    promote: bool
    reason: str
    placed: object | None
    candidate: object
    regression: ResultRegression | None = None  # the placement's regression on every probe (predicted results)

    @property
    def probes(self) -> int:
        return int(len(self.rows))


@dataclass
class PlacementPrompts:
    """X float32 (n, d) features; F float64 (n, m) the existing LLMs' results (anchor: known, NaN at the
    prompt's mean; further prompts: the live router's scores); the anchor's prompts first, in its order."""

    X: np.ndarray
    F: np.ndarray


def placement_prompts(router, known: Anchor, extra_X: np.ndarray | None = None) -> PlacementPrompts:
    """The anchor's prompts (``known``: the anchor over the router's LLMs) and ``extra_X`` (n_extra, d)."""
    if known.X is None:
        raise DataError("onboarding places a new LLM from prompt features: the anchor has none")
    X, F = np.asarray(known.X, dtype=np.float32), llm_support(known.Y).values
    if extra_X is not None and len(extra_X):
        extra_X = np.asarray(extra_X, dtype=np.float32)
        X = np.vstack([X, extra_X])
        F = np.vstack([F, router.score(extra_X).astype(np.float64)])
    return PlacementPrompts(X, F)


def place_into(router, known: Anchor, rows: np.ndarray, results: np.ndarray, llm: str,
               extra_X: np.ndarray | None = None):
    """:func:`place` into ``router``; a promoted conservative shadow gets the LLM placed into both of its
    routers (each from its own placement prompts), so it stays conservative with the new LLM in both."""
    if isinstance(router, ConservativeRouter):  # the simulator's Conservative too (a subclass)
        return type(router)(place_into(router.refit, known, rows, results, llm, extra_X),
                            place_into(router.live, known, rows, results, llm, extra_X), router.tau)
    return place(router, placement_prompts(router, known, extra_X), rows, results, llm)


def place(router, prompts: PlacementPrompts, rows: np.ndarray, results: np.ndarray, llm: str):
    """``router`` with ``llm`` placed from its results (k,) on the anchor positions rows (k,) (module docstring)."""
    y = ResultRegression(prompts.F[rows], results).predict(prompts.F)
    y[rows] = results
    return router.partial_fit_llms(prompts.X, y, [llm])


def evidence(router, known: Anchor, rows: np.ndarray, results: np.ndarray, llm: str, folds: int = 5,
             alpha: float = 0.05, design: ProbeDesign | None = None) -> GateResult:
    """Cross-fitted full-information gain of placing ``llm`` into a router of ``router``'s family, on the
    probed anchor positions rows (k,) with results (k,); ``known``: the anchor over the router's LLMs
    (NaN = not observed, not a choice). Per fold, the family is fitted on the anchor without the fold's
    prompts (a proxy of the live router that never saw them), the LLM placed from the other folds' probes,
    and both choose on the fold's prompts. ``design``: the probes' design (their strata and weights, when
    rows are its first k probes; None: a uniform sample), whose estimate the gain is
    (:func:`recroute.coldstart.design.stratified_mean`)."""
    from scipy.stats import norm

    from recroute.routers.registry import make_router
    from recroute.serve.bundle import _spec

    k, n = len(rows), len(known.Y)
    fold = np.arange(k) % max(1, min(int(folds), k))
    r_new, r_live = np.zeros(k), np.zeros(k)
    pick_new, pick_live = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    spec = _spec(fitted_family(router))  # a conservative live: its refit's family
    for f in np.unique(fold):
        held, used = fold == f, fold != f
        keep = np.ones(n, dtype=bool)
        keep[rows[held]] = False
        position = np.cumsum(keep) - 1  # anchor position -> position among the kept prompts
        proxy = make_router(spec).fit(known.Y[keep].astype(np.float32), known.X[keep])
        proxy.llm_names_ = np.asarray(router.llm_names_, dtype=object)
        sub = Anchor(known.X[keep], known.Y[keep], known.llm_names)
        X, t = known.X[rows[held]], known.Y[rows[held]]
        allowed = ~np.isnan(t)
        pick_live[held] = greedy_matrix(proxy.score(X), allowed).argmax(axis=1)
        if used.any():
            placed = place(proxy, placement_prompts(proxy, sub), position[rows[used]], results[used], llm)
            pick_new[held] = greedy_matrix(placed.score(X), np.column_stack([allowed, np.ones(len(t), bool)])).argmax(axis=1)
        else:  # a single probe: nothing to place it from, the placement is live's choice
            pick_new[held] = pick_live[held]
        full = np.column_stack([np.nan_to_num(t), results[held]])
        r_new[held] = full[np.arange(len(t)), pick_new[held]]
        r_live[held] = full[np.arange(len(t)), pick_live[held]]
    d = r_new - r_live
    if design is None:
        design = ProbeDesign(rows, np.zeros(n, dtype=np.int64), np.ones(1))
    delta, se = stratified_mean(d, design.stratum[rows], design.weight, n)
    z = float(norm.ppf(1 - alpha / 2))
    differ = pick_new != pick_live
    mu_new, _ = stratified_mean(r_new, design.stratum[rows], design.weight, n)
    mu_live, _ = stratified_mean(r_live, design.stratum[rows], design.weight, n)
    return GateResult(mu_new, mu_live, delta, delta - z * se, delta + z * se, se,
                      int(differ.sum()), float(differ.mean()), k)


def looks(budget: int, min_probes: int, every: int) -> list[int]:
    """The probe counts at which the evidence is looked at: min_probes, then every ``every``, and the budget."""
    at = list(range(min(min_probes, budget), budget + 1, max(1, every)))
    return at if at and at[-1] == budget else at + [budget]


def onboard_llm(router, anchor: Anchor, llm: str, answer: Callable[[int], float], budget: int = 200,
                extra_X: np.ndarray | None = None, *, min_probes: int = 40, probe_every: int = 40,
                alpha: float = 0.05, margin: float = -0.03, min_support: int = 10, folds: int = 5,
                seed: int = 0, design: str = DEFAULT_DESIGN) -> Onboarding:
    """Probe ``llm`` live through ``answer(anchor_row) -> result in [0, 1]``, place it into ``router`` (a
    fitted router whose family supports new LLMs) and promote it only on evidence (module docstring).
    ``extra_X`` (n, d): further prompts the router was trained on (the decision log's), placed too.
    ``design``: which anchor prompts are probed, in which order (:data:`DESIGNS`)."""
    if llm in [str(n) for n in router.llm_names_]:
        raise DataError(f"LLM {llm!r} is already routed to")
    if not router.can_place_new_llms():
        raise DataError(f"router {fitted_family(router).name!r} cannot place a new LLM (no partial_fit_llms); use knn, mf or two_tower")
    known = anchor.with_llms([str(n) for n in router.llm_names_])
    budget = min(int(budget), len(known.Y))
    if budget < 1:
        raise DataError("the probe budget must be at least 1 and the anchor must hold prompts")
    if design not in DESIGNS:
        raise DataError(f"unknown probe design {design!r}; available: {', '.join(DESIGNS)}")
    prompts = placement_prompts(fitted_family(router), known, extra_X)
    plan = (uniform_design(len(known.Y), budget, seed) if design == "uniform"
            else contested_design(prompts.F[: len(known.Y)], budget, seed))
    order = plan.order
    at = looks(budget, int(min_probes), int(probe_every))
    results = np.zeros(budget)
    gate, promote, reason = None, False, "no look yet"
    for t, row in enumerate(order, start=1):
        y = float(answer(int(row)))
        if not 0.0 <= y <= 1.0:
            raise DataError(f"the scorer returned {y!r} for probe {row}; expected a result in [0, 1]")
        results[t - 1] = y
        if t not in at:
            continue
        final = t == budget
        gate = evidence(router, known, order[:t], results[:t], llm, folds, alpha if final else alpha / len(at), plan)
        if final:
            promote, reason = promotion_decision(gate, margin, min_support)
            if gate.support < min_support:  # the rule's words are about logged decisions; here they are probes
                reason = f"support {gate.support} < {min_support}: the placement changes too few probed prompts' choice"
        elif gate.support >= min_support and gate.upper <= margin:
            reason = f"upper bound {gate.upper:+.4f} of the gain is at or below the margin {margin:+.4f}: harmful"
            break
    k = t
    rows, results = order[:k].astype(np.int64), results[:k]
    candidate = place_into(router, known, rows, results, llm, extra_X)
    return Onboarding(llm, rows, results, gate, promote, reason, candidate if promote else None, candidate,
                      ResultRegression(prompts.F[rows], results))


def prefill_column(router, regression: ResultRegression, X: np.ndarray, rows: np.ndarray, n_prompts: int) -> np.ndarray:
    """float64 (n_prompts, m + 1): NaN except the last column (the new LLM) at ``rows``: its predicted results
    there from the existing LLMs' expected results (``router``'s scores on X[rows], m LLMs), the placement's
    regression. A refit's input for the logged prompts where the new LLM was never a candidate
    (``recroute.loop.refit.fit_candidate``'s ``prefill``)."""
    rows = np.asarray(rows, dtype=np.int64)
    router = fitted_family(router)  # a conservative shadow's scores carry its tau on live's choice
    out = np.full((int(n_prompts), len(router.llm_names_) + 1), np.nan)
    if len(rows):
        F = router.score(np.asarray(X, dtype=np.float32)[rows] if router.needs_features else None, n=len(rows))
        out[rows, -1] = regression.predict(np.asarray(F, dtype=np.float64))
    return out
