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


BUNDLES_KEPT = 2  # the serving bundle and the one before a hot reload: older decisions keep no bundle alive


class RecentDecisions:
    """``add`` a routed decision, ``explain(decision_id)`` it later (None once forgotten or never seen).

    Each decision is explained with the bundle that made it (``bundle``, with its ``costs_for(text,
    allowed (m,) bool, X (1, d) or None) -> (m,)`` expected costs, X the prompt's features as the
    explanation encodes them (predicted costs come from them: one encoding); it may raise for an unpriced
    LLM: the explanation then carries no cost terms). Only the last ``BUNDLES_KEPT`` bundles are held, so
    hot reloads never pile up bundles in memory; a decision by an older bundle is answered without an
    explanation, saying so.
    """

    def __init__(self, size: int = DECISION_MEMORY) -> None:
        self.size = int(size)
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._bundles: OrderedDict[int, tuple[Any, Callable | None]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, decision_id: str, bundle, text: str, candidates: Sequence[str], chosen: str, propensity: float,
            policy: str, cost_weight: float | None = None, max_cost: float | None = None,
            costs_for: Callable[[str, np.ndarray, np.ndarray | None], np.ndarray] | None = None) -> None:
        item = {"decision_id": decision_id, "timestamp": time.time(), "text": text, "candidates": list(candidates),
                "chosen": chosen, "propensity": float(propensity), "policy": policy,
                "cost_weight": cost_weight, "max_cost": max_cost, "bundle": id(bundle),
                "bundle_checksum": getattr(bundle, "checksum", None)}
        with self._lock:
            if id(bundle) not in self._bundles:
                self._bundles[id(bundle)] = (bundle, costs_for)
                while len(self._bundles) > BUNDLES_KEPT:
                    self._bundles.popitem(last=False)
            self._items[decision_id] = item
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def explain(self, decision_id: str) -> dict[str, Any] | None:
        """{"decision_id", "timestamp", "chosen" (served), "propensity", "policy", "bundle_checksum",
        "prompt_text", "explanation"} or None; "explanation" is None (with a "note") when the bundle that
        made the decision has since been replaced twice."""
        with self._lock:
            item = self._items.get(decision_id)
            made_by = None if item is None else self._bundles.get(item["bundle"])
        if item is None:
            return None
        out = {key: item[key] for key in ("decision_id", "timestamp", "chosen", "propensity", "policy",
                                          "bundle_checksum")} | {"prompt_text": item["text"]}
        if made_by is None:
            return out | {"explanation": None, "note": "the bundle that made this decision is no longer loaded"}
        from recroute.audit.explain import explain_arrays

        bundle, costs_for = made_by
        X = bundle.encode([item["text"]]) if bundle.router.needs_features else None
        costs = _costs(bundle, costs_for, item, X)
        cost_weight, max_cost = (item["cost_weight"], item["max_cost"]) if costs is not None else (None, None)
        explanation = explain_arrays(bundle.router, X, n=1, candidates=item["candidates"], costs=costs,
                                     cost_weight=cost_weight, max_cost=max_cost)[0]
        return out | {"explanation": explanation}


def _costs(bundle, costs_for, item: dict[str, Any], X: np.ndarray | None) -> np.ndarray | None:
    if costs_for is None:
        return None
    names = bundle.llm_names
    for allowed in (np.ones(len(names), dtype=bool), np.isin(names, item["candidates"])):
        try:
            return np.asarray(costs_for(item["text"], allowed, X), dtype=np.float64)[None, :]
        except Exception:  # an unpriced LLM: try the candidates alone, then give up on cost terms
            continue
    return None
