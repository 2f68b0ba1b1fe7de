"""recroute: route each prompt to the best LLM by treating routing as a recommender problem.

Prompts are users, LLMs are items and per-sample evaluation results are the interactions.
Heavy backends (torch, faiss, implicit, lightfm, sentence-transformers) load lazily.
"""

from __future__ import annotations

import os as _os

# OpenMP pools (FAISS's, torch's) that wait for work by sleeping, not spinning, unless the user says
# otherwise: on a busy 2-core machine spinning threads made a 2-thread FAISS search 2-3x slower than
# one thread (benchmarks/results/finetune_static.md, "Where the time goes"). Read when each library
# loads, so it is set before any of them is imported.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from recroute.data.dataset import RoutingDataset
from recroute.data.catalog import load_dataset, list_datasets
from recroute.errors import DataError, RecrouteError

__all__ = ["RoutingDataset", "load_dataset", "list_datasets", "DataError", "RecrouteError"]
__version__ = "0.1.0"
