"""Cold start: new LLMs placed into trained routers from a few probe results (``Router.partial_fit_llms``),
which prompts to probe (:mod:`.probes`; adaptive probing in :mod:`.adaptive`), router-free estimators
of a new LLM's results (:mod:`.estimators`: an LLM mixture, 2PL IRT in :mod:`.irt`, gp-IRT), the
held-out-LLM experiment (:mod:`.experiment`), and routers facing prompts of tasks never seen in
training (:mod:`.new_tasks`); the stratified probe design of live onboarding (:mod:`.design`)."""

from recroute.coldstart.adaptive import (
           adaptive_probes,
           irt_support,
           llm_support,
           predict,
           probe_live,
)
from recroute.coldstart.estimators import ESTIMATORS, ProbeEstimator
from recroute.coldstart.experiment import (
           ColdStartResult,
           plot_coldstart,
           response_features,
           run_coldstart,
)
from recroute.coldstart.irt import IRTFit, eap_ability, fit_irt
from recroute.coldstart.probes import STRATEGIES, ProbeSet, select_probes

__all__ = ["ESTIMATORS", "STRATEGIES", "ColdStartResult", "IRTFit", "ProbeEstimator", "ProbeSet", "adaptive_probes",
           "eap_ability", "fit_irt", "irt_support", "llm_support", "plot_coldstart", "predict", "probe_live",
           "response_features", "run_coldstart", "select_probes"]
