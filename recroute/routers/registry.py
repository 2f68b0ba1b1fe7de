"""Routers by name, and ``NAME[:key=value,...]`` specs as written on the command line.

Modules load lazily so ``import recroute`` stays fast. Every name listed here is run through the
shared conformance suite (tests/conformance), so a router cannot be added without passing it.
"""

from __future__ import annotations

import ast
import importlib

from recroute.errors import DataError

# name -> (module, class)
ROUTERS: dict[str, tuple[str, str]] = {
    "random": ("recroute.routers.baselines", "RandomRouter"),
    "best_single": ("recroute.routers.baselines", "BestSingleRouter"),
    "oracle": ("recroute.routers.baselines", "OracleRouter"),
    "r_o": ("recroute.routers.baselines", "ROPRouter"),
    "knn": ("recroute.routers.knn", "KNNRouter"),
    "linear": ("recroute.routers.linear", "LinearRouter"),
    "logistic": ("recroute.routers.logistic", "LogisticRouter"),  # per-LLM L2 logistic regression (sklearn)
    "mlp": ("recroute.routers.linear", "MLPRouter"),
    "cluster": ("recroute.routers.cluster", "ClusterRouter"),
    "soft_cluster": ("recroute.routers.cluster", "SoftClusterRouter"),
    "mlc": ("recroute.routers.mlc", "MLCRouter"),
    "als": ("recroute.routers.mf", "ALSRouter"),
    "bpr": ("recroute.routers.mf", "BPRRouter"),
    "lightfm": ("recroute.routers.lightfm_router", "LightFMRouter"),
    "two_tower": ("recroute.routers.two_tower", "TwoTowerRouter"),
    "text_mf": ("recroute.routers.two_tower", "TextMFRouter"),
    "routerdc": ("recroute.routers.routerdc", "RouterDCRouter"),  # RouterDC's dual contrastive losses
    "graphrouter": ("recroute.routers.graphrouter", "GraphRouter"),  # GraphRouter's task-prompt-LLM graph
    "ensemble": ("recroute.routers.ensemble", "EnsembleRouter"),  # averaged P(correct) of member specs
    "irt": ("recroute.routers.irt", "IRTRouter"),  # IRT-Router (MIRT / NIRT), arXiv 2506.01048
    "avengers": ("recroute.routers.avengers", "AvengersRouter"),  # Avengers-Pro clusters, arXiv 2508.12631
    "sw_ranking": ("recroute.routers.sw_ranking", "SWRankingRouter"),  # RouteLLM's similarity-weighted BT/Elo
    "hybrid": ("recroute.routers.hybrid", "HybridRouter"),  # Hybrid LLM's quality-gap classifier, n LLMs
    "stack": ("recroute.routers.stack", "StackRouter"),  # families blended on the validation part
    "debiased": ("recroute.debias.router", "DebiasedRouter"),  # any router above with popularity remedies
    "conservative": ("recroute.routers.conservative", "ConservativeRouter"),  # built from two fitted routers (loop)
}


def available_routers() -> list[str]:
    """Registered router names."""
    return list(ROUTERS)


def fittable_routers() -> list[str]:
    """Registered routers fitted from data: all but those built from fitted routers (conservative)."""
    return [name for name in ROUTERS if not router_class(name).built_from_routers]


def routers_supporting_new_llms() -> list[str]:
    """Names of the routers whose ``partial_fit_llms`` places new LLMs without retraining."""
    return [name for name in ROUTERS if router_class(name).supports_new_llms]


def router_class(name: str):
    """The Router subclass registered under ``name``."""
    if name not in ROUTERS:
        raise DataError(f"unknown router {name!r}; available: {', '.join(ROUTERS)}")
    module, cls = ROUTERS[name]
    return getattr(importlib.import_module(module), cls)


def parse_router_spec(spec: str) -> tuple[str, dict]:
    """``"r_o:p=0.5,seed=1"`` -> ("r_o", {"p": 0.5, "seed": 1}); values parse as Python literals."""
    name, _, rest = spec.strip().partition(":")
    params: dict = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise DataError(f"router spec {spec!r}: expected key=value, got {item!r}")
        try:
            value = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            value = raw.strip()
        params[key.strip()] = value
    return name.strip(), params


def make_router(spec: str, **overrides):
    """A new, unfitted router from a spec string; unknown parameters raise a clear error."""
    name, params = parse_router_spec(spec)
    klass = router_class(name)
    params.update(overrides)
    try:
        return klass(**params)
    except TypeError as exc:
        raise DataError(f"router {name!r}: bad parameters {params} ({exc})") from None


def spec_label(spec: str) -> str:
    """Canonical display name of a spec: ``r_o:p=0.5`` stays, ``knn`` stays."""
    name, params = parse_router_spec(spec)
    return name if not params else name + ":" + ",".join(f"{k}={v}" for k, v in params.items())
