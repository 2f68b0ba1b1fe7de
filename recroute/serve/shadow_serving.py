"""A shadow bundle served beside the live one (``POST /admin/shadow``): shadow exploration
(``recroute.loop.shadow``) through the gateway.

Per routed request, live decides as ever (candidates, breakers, cost step) and the shadow's router
scores the same prompt features (one more scoring; its encoder must be live's, so each prompt is
encoded once) over its own LLMs, restricted and cost-stepped the same way (a shadow with
``costs="predicted"`` predicts its costs from those features too, in live's cost call). Where the conservative
shadow's greedy choice s (``conservative_scores``: the shadow's greedy choice only where
S(s) > S(l) + tau, l live's greedy choice) differs from l, the gateway serves s with probability ε and l
otherwise; elsewhere l (``shadow_probabilities``). While a shadow is installed, live's own choice is its
greedy one (the shadow is the exploration; the ``--policy`` applies again once it is removed).

The two bundles may route to different LLMs (a shadow that holds a newly placed LLM): the decision is
made over the union of their LLMs (live's first, in its order, then the shadow's others), each bundle
scoring an LLM it does not know below every LLM it knows. An LLM the shadow adds to live's needs an
upstream in this gateway (one declared with ``--spare-upstreams``): a shadow naming a new LLM without
one is refused. An LLM of both bundles without an upstream is left out of routing for both, as live's is.

The decision log records, beside the served choice and its propensity under this mixture,
``live_choice``, ``shadow_choice`` (the conservative shadow's), ``shadow_checksum``,
``shadow_epsilon`` and ``shadow_tau``: enough to rebuild each decision's logging probabilities
(``recroute.loop.shadow.logged_shadow_probabilities``) without rescoring.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import numpy as np

from recroute.errors import DataError
from recroute.feedback.policies import sample_rows
from recroute.loop.shadow import conservative_scores, shadow_probabilities

LOW = -1e300  # a bundle's score of an LLM it does not know (finite: below every real score)


def check_shadow_settings(epsilon, tau) -> tuple[float, float]:
    """(ε, tau) as floats; DataError naming the bad one (ε in [0, 1], tau a finite number >= 0)."""
    for name, value in (("epsilon", epsilon), ("tau", tau)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise DataError(f"the shadow's {name} must be a finite number; got {value!r}")
    if not 0.0 <= epsilon <= 1.0:
        raise DataError(f"the shadow's epsilon (its exploration probability) must be in [0, 1]; got {epsilon!r}")
    if tau < 0:
        raise DataError(f"the shadow's tau (its conservative margin) must be >= 0; got {tau!r}")
    return float(epsilon), float(tau)


def encoder_files(bundle) -> dict[str, str] | None:
    """{path under encoder/: sha256} from a loaded bundle's manifest (None: no encoder, or not loaded
    from a folder)."""
    if bundle.encoder is None:
        return None
    if getattr(bundle, "path", None) is None:
        return {"object": str(id(bundle.encoder))}
    files = json.loads((Path(bundle.path) / "manifest.json").read_text())["files"]
    return {rel: entry["sha256"] for rel, entry in files.items() if rel.startswith("encoder/")}


class Shadow:
    """A loaded shadow bundle with its ε and tau, checked against the live bundle and the upstreams.

    ``llm_names``: the shadow's LLMs; ``union``: the decision's LLMs (live's, then the shadow's others);
    ``helper``: a Decider over the shadow bundle for its candidate restriction and cost step.
    """

    def __init__(self, bundle, live_bundle, upstreams: Mapping, epsilon: float, tau: float = 0.0,
                 breakers=None) -> None:
        from recroute.serve.gateway import Decider

        self.epsilon, self.tau = check_shadow_settings(epsilon, tau)
        live_names = set(live_bundle.llm_names)
        missing = [n for n in bundle.llm_names if n not in upstreams and n not in live_names]
        if missing:
            raise DataError(f"the shadow bundle routes to LLM(s) {missing[:10]} that have no upstream in this gateway "
                            "(give them an entry in its upstreams file and start it with --spare-upstreams)")
        if bundle.router.needs_features and encoder_files(bundle) != encoder_files(live_bundle):
            raise DataError("the shadow bundle's encoder is not the live bundle's (the gateway encodes each prompt "
                            "once for both): refit the shadow with the live bundle's encoder")
        self.bundle = bundle
        self.checksum = getattr(bundle, "checksum", None)
        self.path = None if getattr(bundle, "path", None) is None else str(bundle.path)
        self.llm_names = bundle.llm_names
        self.helper = Decider(bundle, upstreams, None, decide_on="loop", breakers=breakers)
        live_names = live_bundle.llm_names
        self.union = live_names + [n for n in self.llm_names if n not in set(live_names)]
        self.n_live = len(live_names)
        at = {n: j for j, n in enumerate(self.union)}
        self.cols = np.array([at[n] for n in self.llm_names], dtype=np.int64)

    def describe(self) -> dict:
        """{"bundle", "checksum", "epsilon", "tau", "llms"} for /healthz and the admin answer."""
        return {"bundle": self.path, "checksum": self.checksum, "epsilon": self.epsilon, "tau": self.tau,
                "llms": len(self.llm_names)}

    def scores(self, X: np.ndarray | None, n: int) -> np.ndarray:
        """float (n, m_shadow) the shadow router's scores of the prompts' features ``X`` (live's encoder)."""
        router = self.bundle.router
        return router.score(X if router.needs_features else None, n=n)

    def decide(self, live_util: np.ndarray, live_allowed: np.ndarray, shadow_util: np.ndarray,
               shadow_allowed: np.ndarray, rng: np.random.Generator) -> tuple[int, float, int, int, np.ndarray, np.ndarray]:
        """(chosen, propensity, live's choice, the conservative shadow's choice, allowed (m_union,),
        values (m_union,)) over the union's LLMs for one request: live's utility/allowed (m_live,) and the
        shadow's (m_shadow,) after the same restriction and cost step; values: live's utility on its LLMs,
        the shadow's on the others (the fallback order)."""
        m = len(self.union)
        L = np.full(m, LOW)
        L[: self.n_live] = np.where(live_allowed, live_util, LOW)
        A = np.zeros(m, dtype=bool)
        A[: self.n_live] = live_allowed
        T = np.full(m, LOW)
        if shadow_allowed.any():
            T[self.cols] = np.where(shadow_allowed, shadow_util, LOW)
            A[self.cols] |= shadow_allowed
        C = conservative_scores(L[None, :], T[None, :], A[None, :], self.tau)
        P = shadow_probabilities(L[None, :], C, A[None, :], self.epsilon if shadow_allowed.any() else 0.0)
        live_choice = int(np.argmax(np.where(A, L, -np.inf)))
        shadow_choice = int(np.argmax(np.where(A, C[0], -np.inf))) if shadow_allowed.any() else live_choice
        chosen = int(sample_rows(P, rng)[0])
        values = L.copy()
        values[self.n_live:] = T[self.n_live:]
        return chosen, float(P[0, chosen]), live_choice, shadow_choice, A, values


def load_shadow(path: str, live_bundle, upstreams: Mapping, epsilon, tau, breakers=None) -> Shadow:
    """The bundle at ``path`` loaded (checksums verified: ``RoutingBundle.load``) and checked as a shadow."""
    from recroute.serve.bundle import RoutingBundle

    epsilon, tau = check_shadow_settings(epsilon, tau)
    return Shadow(RoutingBundle.load(path), live_bundle, upstreams, epsilon, tau, breakers)
