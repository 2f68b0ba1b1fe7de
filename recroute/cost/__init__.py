"""Cost-aware routing: expected costs, the shared cost-aware decision step for any router, budgets,
and quality–cost evaluation (curves, the zero router, AIQ, APGR, CPT).

- :mod:`recroute.cost.decide`: ``utility``, ``alpha_utility`` (Avengers-Pro's trade-off), ``max_cost_mask``, ``cost_aware_scores``,
  ``route_with_costs``, ``calibrate_cost_weight``, ``budget_assign``.
- :mod:`recroute.data.costs` (data layer): ``Prices``, token counting, ``RoutingDataset.costs``.
"""

from __future__ import annotations

from recroute.cost.decide import (
    Calibration,
    alpha_utility,
    budget_assign,
    calibrate_cost_weight,
    cost_aware_scores,
    max_cost_mask,
    route_with_costs,
    utility,
)
from recroute.data.costs import Prices

__all__ = [
    "Calibration", "Prices", "alpha_utility", "budget_assign", "calibrate_cost_weight", "cost_aware_scores", "max_cost_mask",
    "route_with_costs", "utility",
]
