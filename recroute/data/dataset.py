"""RoutingDataset: the sparse prompt × LLM matrix of *observed* evaluation results.

An observed 0 means "wrong"; a missing cell means "not evaluated" and is never read as 0 unless a
caller asks for a dense view with ``fill=0``. Rows are prompts (``prompt_idx``), columns are LLMs
(``llm_idx``); external names (``prompt_id``, ``llm``) are used only at the edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recroute.errors import DataError, require_finite_rows

PROMPT_COLUMNS = ("prompt_id", "text", "benchmark", "task", "split")
Selector = Sequence[int] | Sequence[str] | np.ndarray | None


@dataclass(frozen=True)
class DatasetSummary:
    """Headline numbers of a dataset (what `recroute data info` prints)."""

    name: str
    n_prompts: int
    n_llms: int
    n_observed: int
    density: float
    score_type: str
    oracle: float
    best_llm: str
    best_accuracy: float
    has_text: bool
    has_embeddings: bool


class RoutingDataset:
    """Observed prompt × LLM scores plus a prompt table and an LLM table.

    Attributes:
        scores: CSR float32 (n_prompts, n_llms); stored entries are exactly the observed cells,
            explicit zeros included (never call ``eliminate_zeros`` on it).
        prompts: one row per prompt, columns ``prompt_id, text, benchmark, task, split`` (+ any extra).
        llms: one row per LLM, column ``llm`` plus metadata (size, prices, description, ...).
        embeddings: optional float32 (n_prompts, d) prompt features, with ``embedding_name``.
    """

    def __init__(
        self,
        scores: sp.spmatrix,
        prompts: pd.DataFrame,
        llms: pd.DataFrame,
        embeddings: np.ndarray | None = None,
        embedding_name: str | None = None,
        name: str = "",
    ) -> None:
        scores = sp.csr_matrix(scores, dtype=np.float32)
        scores.sort_indices()
        if scores.shape != (len(prompts), len(llms)):
            raise DataError(
                f"scores have shape {scores.shape} but there are {len(prompts)} prompts and {len(llms)} LLMs"
            )
        self.scores = scores
        self.prompts = _normalise_prompt_table(prompts)
        self.llms = _normalise_llm_table(llms)
        self.embeddings = None
        self.embedding_name = None
        self.embedding_sets: dict[str, np.ndarray] = {}  # every attached set by encoder name, active one included
        self.name = name
        if embeddings is not None:
            self.set_embeddings(embeddings, embedding_name or "unknown")

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_long(
        cls,
        records: pd.DataFrame | str | Path,
        prompts: pd.DataFrame | str | Path | None = None,
        llms: pd.DataFrame | str | Path | None = None,
        *,
        duplicates: str = "error",
        rescale: bool = False,
        unknown_metadata: str = "error",
        name: str = "",
    ) -> "RoutingDataset":
        """Build from a long table ``prompt_id, llm, score`` (DataFrame, Parquet or CSV path).

        ``duplicates``: "error" (default) or an aggregation of repeated (prompt, LLM) pairs:
        "mean", "max", "min", "first", "last". ``rescale``: min-max scores outside [0, 1] into it
        instead of refusing them. ``unknown_metadata``: "error" (default) when a result names an id
        the prompt or LLM table lacks, "keep" to accept it with empty metadata (and to keep metadata
        rows that have no result, which are otherwise dropped with a warning).
        """
        from recroute.data.io import build_from_records, read_long_records, read_table

        records_source = read_long_records(records)
        prompt_table = None if prompts is None else read_table(prompts, "prompts", required=("prompt_id",))
        llm_table = None if llms is None else read_table(llms, "llms", required=("llm",))
        return build_from_records(
            cls, records_source, prompt_table, llm_table,
            duplicates=duplicates, rescale=rescale, unknown_metadata=unknown_metadata, name=name,
        )

    @classmethod
    def from_wide(
        cls,
        matrix: pd.DataFrame | np.ndarray,
        prompt_ids: Sequence[str] | None = None,
        llm_names: Sequence[str] | None = None,
        *,
        prompts: pd.DataFrame | None = None,
        llms: pd.DataFrame | None = None,
        rescale: bool = False,
        name: str = "",
    ) -> "RoutingDataset":
        """Build from a wide (n_prompts, n_llms) matrix; NaN marks a cell that was not evaluated.

        A DataFrame supplies prompt ids (index) and LLM names (columns) unless they are given.
        """
        from recroute.data.io import build_from_wide

        return build_from_wide(cls, matrix, prompt_ids, llm_names, prompts, llms, rescale=rescale, name=name)

    @classmethod
    def from_routereval(cls, source: str | Path | dict, name: str = "") -> "RoutingDataset":
        """Read a RouterEval ``router_dataset`` pickle (safely) into one dataset of all its LLMs."""
        from recroute.data.routereval import dataset_from_routereval

        return dataset_from_routereval(cls, source, name=name)

    @classmethod
    def load(cls, path: str | Path) -> "RoutingDataset":
        """Load a folder written by :meth:`save` (or any folder in the ``records.parquet`` layout)."""
        from recroute.data.io import load_folder

        return load_folder(cls, Path(path))

    def save(self, path: str | Path) -> Path:
        """Write the dataset as a folder of Parquet files (atomically: all or nothing)."""
        from recroute.data.io import save_folder

        return save_folder(self, Path(path))

    def to_routereval(self, **kwargs) -> dict:
        """A RouterEval ``router_dataset`` dict; see :func:`recroute.data.routereval.build_router_dataset`."""
        from recroute.data.routereval import build_router_dataset

        return build_router_dataset(self, **kwargs)

    # ------------------------------------------------------------------ shape and names
    @property
    def n_prompts(self) -> int:
        return self.scores.shape[0]

    @property
    def n_llms(self) -> int:
        return self.scores.shape[1]

    @property
    def shape(self) -> tuple[int, int]:
        return self.scores.shape

    @property
    def n_observed(self) -> int:
        return int(self.scores.nnz)

    @property
    def density(self) -> float:
        cells = self.n_prompts * self.n_llms
        return self.n_observed / cells if cells else 0.0

    @property
    def prompt_ids(self) -> np.ndarray:
        return self.prompts["prompt_id"].to_numpy(dtype=object)

    @property
    def llm_names(self) -> np.ndarray:
        return self.llms["llm"].to_numpy(dtype=object)

    @property
    def texts(self) -> list[str | None]:
        return [None if pd.isna(t) else str(t) for t in self.prompts["text"]]

    @property
    def has_text(self) -> bool:
        return bool(self.prompts["text"].notna().all()) and self.n_prompts > 0

    @property
    def score_type(self) -> str:
        """"binary" when every observed score is 0 or 1, else "continuous"."""
        values = self.scores.data
        return "binary" if np.all((values == 0) | (values == 1)) else "continuous"

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return (
            f"RoutingDataset{label}({self.n_prompts} prompts × {self.n_llms} LLMs, "
            f"{self.n_observed} observed, {self.score_type})"
        )

    def __len__(self) -> int:
        return self.n_prompts

    # ------------------------------------------------------------------ lookups
    def llm_index(self, names: Iterable[str] | str) -> np.ndarray:
        """int64 positions of LLM names; unknown names raise a DataError naming them."""
        return _lookup(self.llms["llm"], names, "LLM")

    def prompt_index(self, ids: Iterable[str] | str) -> np.ndarray:
        """int64 positions of prompt ids; unknown ids raise a DataError naming them."""
        return _lookup(self.prompts["prompt_id"], ids, "prompt")

    # ------------------------------------------------------------------ views
    def observed_mask(self) -> np.ndarray:
        """bool (n_prompts, n_llms): True where a result was observed."""
        mask = np.zeros(self.shape, dtype=bool)
        rows = np.repeat(np.arange(self.n_prompts), np.diff(self.scores.indptr))
        mask[rows, self.scores.indices] = True
        return mask

    def dense(self, fill: float = np.nan) -> np.ndarray:
        """float32 (n_prompts, n_llms) with unobserved cells set to ``fill`` (NaN unless asked)."""
        out = np.full(self.shape, fill, dtype=np.float32)
        rows = np.repeat(np.arange(self.n_prompts), np.diff(self.scores.indptr))
        out[rows, self.scores.indices] = self.scores.data
        return out

    def to_long(self) -> pd.DataFrame:
        """The observed cells as a long table ``prompt_id, llm, score`` (prompt-major order)."""
        coo = self.scores.tocoo()
        return pd.DataFrame(
            {
                "prompt_id": self.prompt_ids[coo.row],
                "llm": self.llm_names[coo.col],
                "score": coo.data.astype(np.float32),
            }
        )

    def to_wide(self, fill: float = np.nan) -> pd.DataFrame:
        """A DataFrame (prompt_id index × llm columns); unobserved cells are ``fill``."""
        return pd.DataFrame(
            self.dense(fill),
            index=pd.Index(self.prompt_ids, name="prompt_id"),
            columns=pd.Index(self.llm_names, name="llm"),
        )

    def set_embeddings(self, embeddings: np.ndarray, name: str) -> None:
        """Attach prompt features: float32 (n_prompts, d), finite; they become the active set."""
        self.add_embedding_set(embeddings, name)
        self.embeddings = self.embedding_sets[name]
        self.embedding_name = name

    def add_embedding_set(self, embeddings: np.ndarray, name: str) -> None:
        """Keep another set of prompt features, float32 (n_prompts, d), by encoder name, without activating it."""
        X = np.asarray(embeddings, dtype=np.float32)
        if X.ndim != 2 or X.shape[0] != self.n_prompts:
            raise DataError(
                f"embeddings must have shape (n_prompts={self.n_prompts}, d); got {tuple(X.shape)} (set {name!r})"
            )
        require_finite_rows(X, "embeddings")
        self.embedding_sets[name] = X

    def use_embeddings(self, name: str) -> bool:
        """Make the kept set ``name`` the active embeddings; False (nothing changed) when there is none."""
        X = self.embedding_sets.get(name)
        if X is None:
            return False
        self.embeddings, self.embedding_name = X, name
        return True

    def subset(self, prompts: Selector = None, llms: Selector = None) -> "RoutingDataset":
        """A new dataset restricted to the given prompts and/or LLMs (positions, masks or names)."""
        rows = self._resolve(prompts, self.n_prompts, self.prompt_index)
        cols = self._resolve(llms, self.n_llms, self.llm_index)
        scores = self.scores[rows][:, cols]
        out = RoutingDataset(
            scores,
            self.prompts.iloc[rows].reset_index(drop=True),
            self.llms.iloc[cols].reset_index(drop=True),
            embeddings=None if self.embeddings is None else self.embeddings[rows],
            embedding_name=self.embedding_name,
            name=self.name,
        )
        for key, X in self.embedding_sets.items():
            if key != out.embedding_name and X.shape[0] == self.n_prompts:
                out.embedding_sets[key] = X[rows]
        return out

    @staticmethod
    def _resolve(selector: Selector, size: int, lookup) -> np.ndarray:
        if selector is None:
            return np.arange(size)
        arr = np.asarray(selector)
        if arr.dtype == bool:
            if arr.shape != (size,):
                raise DataError(f"boolean mask has length {arr.size}, expected {size}")
            return np.flatnonzero(arr)
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        if arr.dtype.kind in "iu":
            if arr.min() < 0 or arr.max() >= size:
                raise DataError(f"index out of range 0..{size - 1}: {arr[(arr < 0) | (arr >= size)][:5].tolist()}")
            return arr.astype(np.int64)
        return lookup(list(arr))

    # ------------------------------------------------------------------ statistics
    def llm_stats(self) -> pd.DataFrame:
        """Per LLM: n_observed, coverage (share of prompts observed), accuracy (mean over observed)."""
        cols = self.scores.indices
        counts = np.bincount(cols, minlength=self.n_llms)
        sums = np.bincount(cols, weights=self.scores.data.astype(np.float64), minlength=self.n_llms)
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return pd.DataFrame(
            {
                "llm": self.llm_names,
                "n_observed": counts,
                "coverage": counts / max(self.n_prompts, 1),
                "accuracy": accuracy,
            }
        )

    def prompt_stats(self) -> pd.DataFrame:
        """Per prompt: n_observed, mean score over observed LLMs, oracle (best observed score)."""
        counts = np.diff(self.scores.indptr)
        mean = np.full(self.n_prompts, np.nan)
        best = np.full(self.n_prompts, np.nan)
        has = counts > 0
        if self.scores.nnz:
            starts = self.scores.indptr[:-1][has]
            data = self.scores.data.astype(np.float64)
            mean[has] = np.add.reduceat(data, starts) / counts[has]
            best[has] = np.maximum.reduceat(data, starts)
        return pd.DataFrame({"prompt_id": self.prompt_ids, "n_observed": counts, "mean": mean, "oracle": best})

    def oracle_score(self) -> float:
        """Mean over prompts with at least one result of the best observed score."""
        best = self.prompt_stats()["oracle"].to_numpy()
        best = best[~np.isnan(best)]
        return float(best.mean()) if best.size else float("nan")

    def best_single_llm(self) -> tuple[str, float]:
        """(name, accuracy) of the LLM with the highest mean observed score (first on ties)."""
        acc = self.llm_stats()["accuracy"].to_numpy()
        if np.all(np.isnan(acc)):
            raise DataError("no LLM has any observed result")
        j = int(np.nanargmax(acc))
        return str(self.llm_names[j]), float(acc[j])

    def benchmark_stats(self, by: str = "benchmark") -> pd.DataFrame:
        """Per value of a prompt column (benchmark or task): prompts, observed cells, oracle, best LLM."""
        if by not in self.prompts:
            raise DataError(f"no prompt column {by!r}; columns: {list(self.prompts.columns)}")
        rows = []
        labels = self.prompts[by].fillna("(none)").to_numpy(dtype=object)
        for value in pd.unique(labels):
            part = self.subset(prompts=labels == value)
            name, acc = part.best_single_llm() if part.n_observed else ("", float("nan"))
            rows.append(
                {
                    by: value,
                    "n_prompts": part.n_prompts,
                    "n_observed": part.n_observed,
                    "oracle": part.oracle_score(),
                    "best_llm": name,
                    "best_accuracy": acc,
                }
            )
        return pd.DataFrame(rows)

    def summary(self) -> DatasetSummary:
        best, acc = self.best_single_llm()
        return DatasetSummary(
            name=self.name,
            n_prompts=self.n_prompts,
            n_llms=self.n_llms,
            n_observed=self.n_observed,
            density=self.density,
            score_type=self.score_type,
            oracle=self.oracle_score(),
            best_llm=best,
            best_accuracy=acc,
            has_text=self.has_text,
            has_embeddings=self.embeddings is not None,
        )


# ---------------------------------------------------------------------- helpers
def _lookup(column: pd.Series, names: Iterable[str] | str, what: str) -> np.ndarray:
    if isinstance(names, str):
        names = [names]
    names = list(names)
    index = pd.Index(column.astype(str))
    pos = index.get_indexer([str(n) for n in names])
    if (pos < 0).any():
        unknown = [names[i] for i in np.flatnonzero(pos < 0)]
        shown = ", ".join(repr(u) for u in unknown[:5]) + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
        raise DataError(f"unknown {what} name{'s' if len(unknown) > 1 else ''}: {shown}")
    return pos.astype(np.int64)


def _normalise_prompt_table(prompts: pd.DataFrame) -> pd.DataFrame:
    table = prompts.reset_index(drop=True).copy()
    if "prompt_id" not in table:
        raise DataError("prompt table needs a 'prompt_id' column")
    for column in PROMPT_COLUMNS[1:]:
        if column not in table:
            table[column] = None
    table["prompt_id"] = table["prompt_id"].astype(str)
    for column in PROMPT_COLUMNS[1:]:
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    dup = table["prompt_id"].duplicated()
    if dup.any():
        raise DataError(f"prompt ids must be unique; repeated: {table['prompt_id'][dup].head(5).tolist()}")
    ordered = list(PROMPT_COLUMNS) + [c for c in table.columns if c not in PROMPT_COLUMNS]
    return table[ordered]


def _normalise_llm_table(llms: pd.DataFrame) -> pd.DataFrame:
    table = llms.reset_index(drop=True).copy()
    if "llm" not in table:
        raise DataError("LLM table needs an 'llm' column")
    table["llm"] = table["llm"].astype(str)
    dup = table["llm"].duplicated()
    if dup.any():
        raise DataError(f"LLM names must be unique; repeated: {table['llm'][dup].head(5).tolist()}")
    return table[["llm"] + [c for c in table.columns if c != "llm"]]
