"""recroute: route each prompt to the best LLM by treating routing as a recommender problem.

Prompts are users, LLMs are items and per-sample evaluation results are the interactions.
Heavy backends (torch, faiss, implicit, lightfm, sentence-transformers) load lazily.
"""

from __future__ import annotations

from recroute.data.dataset import RoutingDataset
from recroute.data.catalog import load_dataset, list_datasets
from recroute.errors import DataError, RecrouteError

__all__ = ["RoutingDataset", "load_dataset", "list_datasets", "DataError", "RecrouteError"]
__version__ = "0.1.0"
