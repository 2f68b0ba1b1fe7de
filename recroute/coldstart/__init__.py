"""Cold start: new LLMs placed into trained routers from a few probe results (``Router.partial_fit_llms``),
which prompts to probe (:mod:`.probes`), the held-out-LLM experiment (:mod:`.experiment`), and routers
facing prompts of tasks never seen in training (:mod:`.new_tasks`)."""

from recroute.coldstart.experiment import ColdStartResult, plot_coldstart, response_features, run_coldstart
from recroute.coldstart.probes import STRATEGIES, ProbeSet, select_probes

__all__ = ["STRATEGIES", "ColdStartResult", "ProbeSet", "plot_coldstart", "response_features", "run_coldstart",
           "select_probes"]
