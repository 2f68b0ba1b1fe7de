"""Routers: the shared base, the registry and one module per router family."""

from recroute.routers.base import Router
from recroute.routers.registry import available_routers, make_router, parse_router_spec, router_class

__all__ = ["Router", "available_routers", "make_router", "parse_router_spec", "router_class"]
