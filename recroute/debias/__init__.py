"""Popularity bias in routing: diagnostics, remedies and the study that trades mu_o against diversity.

- :mod:`recroute.debias.diagnostics`: E_p, the aggregate selection distribution (normalised entropy,
  Gini, coverage), long-tail mu_o, per-LLM calibration (reliability bins, ECE); ``diagnose(router, ...)``.
- :mod:`recroute.debias.remedies`: IPW targets, logit adjustment, per-LLM calibration, capacity-constrained
  batch assignment, as functions over arrays.
- :mod:`recroute.debias.router`: ``DebiasedRouter`` (registered as ``debiased``), any router with the remedies.
- :mod:`recroute.debias.study`: sweeps each remedy's strength under RouterEval's protocol; Pareto fronts.
"""

from __future__ import annotations

from recroute.debias.diagnostics import coverage, diagnose, diagnostics_from_scores, ece, gini, normalized_entropy, tail_mu_o
from recroute.debias.remedies import (
    PerLLMCalibrator,
    capacity_assign,
    capped_distribution,
    ipw_targets,
    ipw_weights,
    logit_adjust,
    training_prior,
)

__all__ = [
    "coverage", "diagnose", "diagnostics_from_scores", "ece", "gini", "normalized_entropy", "tail_mu_o",
    "PerLLMCalibrator", "capacity_assign", "capped_distribution", "ipw_targets", "ipw_weights", "logit_adjust",
    "training_prior",
]
