"""A new LLM onboarded live: probed adaptively on the anchor's prompts, placed with ``partial_fit_llms``.

The anchor holds the existing LLMs' results on its prompts: its LLMs are the support of the new LLM's
posterior (``recroute.coldstart.adaptive.llm_support``). Adaptive probing asks the new LLM the anchor
prompt that most narrows the posterior of its mean result (``probe_live``; ``answer(row)`` sends that
prompt to the LLM and scores the reply), and stops at ``budget`` probes or as soon as the posterior
standard deviation of its mean result over the anchor is at most ``max_sd`` (after ``min_probes``).
Only then is the LLM placed (``router.partial_fit_llms`` on the probed prompts' features and results)
and given traffic; a wider interval keeps it out of routing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from recroute.coldstart.adaptive import Support, llm_support, posterior, probe_live
from recroute.errors import DataError
from recroute.loop.refit import Anchor


@dataclass
class Onboarding:
    """rows int64 (k,) anchor positions probed, results float64 (k,), sd: posterior sd of the mean
    result over the anchor, mean: its posterior mean, placed: the router that also routes to the LLM
    (None when the interval stayed wider than asked)."""

    llm: str
    rows: np.ndarray
    results: np.ndarray
    sd: float
    mean: float
    placed: object | None

    @property
    def probes(self) -> int:
        return int(len(self.rows))


class _Enough(Exception):
    pass


def mean_posterior(support: Support, rows: np.ndarray, results: np.ndarray) -> tuple[float, float]:
    """(mean, sd) of the new LLM's mean result over the support's prompts: probed prompts count with
    their own result, the others with each support point's value, weighted by the posterior."""
    n = support.n_prompts
    rows = np.asarray(rows, dtype=np.int64)
    unprobed = np.ones(n, dtype=bool)
    unprobed[rows] = False
    known = float(np.sum(results)) / n
    per_point = support.values[unprobed].sum(axis=0) / n  # (S,)
    w = posterior(support, rows[None, :], np.asarray(results, dtype=np.float64)[None, :])[0] if len(rows) else support.prior
    m = float(w @ per_point)
    return known + m, float(np.sqrt(max(float(w @ (per_point - m) ** 2), 0.0)))


def onboard_llm(router, anchor: Anchor, llm: str, answer: Callable[[int], float], budget: int = 200,
                max_sd: float = 0.02, min_probes: int = 20) -> Onboarding:
    """Probe ``llm`` live through ``answer(anchor_row) -> result in [0, 1]`` and place it into ``router``
    (a fitted router whose family supports new LLMs) when its interval is narrow enough."""
    if llm in [str(n) for n in router.llm_names_]:
        raise DataError(f"LLM {llm!r} is already routed to")
    if not router.supports_new_llms:
        raise DataError(f"router {router.name!r} cannot place a new LLM (no partial_fit_llms); use knn, mf or two_tower")
    known = anchor.with_llms([str(n) for n in router.llm_names_])
    budget = min(int(budget), len(known.Y))
    if budget < 1:
        raise DataError("the probe budget must be at least 1 and the anchor must hold prompts")
    support = llm_support(known.Y)
    asked: list[tuple[int, float]] = []

    def recorded(row: int) -> float:
        y = float(answer(row))
        if not 0.0 <= y <= 1.0:
            raise DataError(f"the scorer returned {y!r} for probe {row}; expected a result in [0, 1]")
        asked.append((row, y))
        return y

    def check(t: int) -> None:
        if t >= min_probes:
            rows, results = map(np.asarray, zip(*asked))
            if mean_posterior(support, rows, results)[1] <= max_sd:
                raise _Enough

    try:
        probe_live(support, recorded, budget, on_step=check)
    except _Enough:
        pass
    rows = np.array([r for r, _ in asked], dtype=np.int64)
    results = np.array([y for _, y in asked], dtype=np.float64)
    mean, sd = mean_posterior(support, rows, results)
    placed = None
    if sd <= max_sd:
        X_probe = None if known.X is None else known.X[rows]
        placed = router.partial_fit_llms(X_probe, results, [llm])
    return Onboarding(llm, rows, results, sd, mean, placed)
