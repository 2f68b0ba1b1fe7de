"""The gateway's memory of its recent routed decisions, explained on request (``GET /v1/decisions/{id}``).

A bounded ring (oldest dropped first) of what each decision was made from: the routed text, the
candidates, the cost options, the LLM served and its propensity. The explanation
(recroute.audit.explain) is computed when asked, from the bundle that made the decision, so the routing
path pays nothing but one dict insert.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Sequence

import numpy as np

DECISION_MEMORY = 10_000  # decisions kept for GET /v1/decisions/{id}


class RecentDecisions:
    """``add`` a routed decision, ``explain(decision_id)`` it later (None once forgotten or never seen).

    ``costs_for(text, allowed (m,) bool) -> (m,)`` gives expected costs (the gateway's prices); it may
    raise for an unpriced LLM, and the explanation then carries no cost terms.
    """

    def __init__(self, bundle, costs_for: Callable[[str, np.ndarray], np.ndarray] | None = None,
                 size: int = DECISION_MEMORY) -> None:
        self.bundle = bundle
        self.costs_for = costs_for
        self.size = int(size)
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, decision_id: str, text: str, candidates: Sequence[str], chosen: str, propensity: float,
            policy: str, cost_weight: float | None = None, max_cost: float | None = None) -> None:
        item = {"decision_id": decision_id, "timestamp": time.time(), "text": text, "candidates": list(candidates),
                "chosen": chosen, "propensity": float(propensity), "policy": policy,
                "cost_weight": cost_weight, "max_cost": max_cost}
        with self._lock:
            self._items[decision_id] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def explain(self, decision_id: str) -> dict[str, Any] | None:
        """{"decision_id", "timestamp", "chosen" (served), "propensity", "policy", "explanation"} or None."""
        with self._lock:
            item = self._items.get(decision_id)
        if item is None:
            return None
        from recroute.audit.explain import explain_arrays

        bundle = self.bundle
        X = bundle.encode([item["text"]]) if bundle.router.needs_features else None
        costs = self._costs(item)
        cost_weight, max_cost = (item["cost_weight"], item["max_cost"]) if costs is not None else (None, None)
        explanation = explain_arrays(bundle.router, X, n=1, candidates=item["candidates"], costs=costs,
                                     cost_weight=cost_weight, max_cost=max_cost)[0]
        return {key: item[key] for key in ("decision_id", "timestamp", "chosen", "propensity", "policy")} | {
            "prompt_text": item["text"], "explanation": explanation}

    def _costs(self, item: dict[str, Any]) -> np.ndarray | None:
        if self.costs_for is None:
            return None
        names = self.bundle.llm_names
        for allowed in (np.ones(len(names), dtype=bool), np.isin(names, item["candidates"])):
            try:
                return np.asarray(self.costs_for(item["text"], allowed), dtype=np.float64)[None, :]
            except Exception:  # an unpriced LLM: try the candidates alone, then give up on cost terms
                continue
        return None
