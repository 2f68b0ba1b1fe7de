"""Serving routing decisions: a checksummed routing bundle (encoder + fitted router), batch routing
and an HTTP service (``recroute.serve.http``, which needs fastapi and uvicorn)."""

from __future__ import annotations

from recroute.serve.bundle import RouteDecision, RoutingBundle

__all__ = ["RouteDecision", "RoutingBundle"]
