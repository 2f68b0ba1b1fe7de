"""A decision log as arrays against a fixed LLM order: the form the estimators and learners work on.

    rows (n,) int64         the decision's prompt: a row of the feature matrix X (and of the dataset)
    allowed (n, m) bool     the candidates offered at that decision
    chosen (n,) int64       the chosen column
    propensity (n,) float64 the logging policy's probability of that choice, in (0, 1]
    reward (n,) float64     the observed outcome in [0, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recroute.errors import DataError


@dataclass
class Bandit:
    """Logged decisions as arrays; ``llm_names`` (m,) names the columns."""

    rows: np.ndarray
    allowed: np.ndarray
    chosen: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    llm_names: np.ndarray
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.rows)
        if self.allowed.shape != (n, len(self.llm_names)):
            raise DataError(f"allowed has shape {self.allowed.shape}; expected ({n}, {len(self.llm_names)})")
        for name in ("chosen", "propensity", "reward"):
            if len(getattr(self, name)) != n:
                raise DataError(f"{name} has {len(getattr(self, name))} entries for {n} decisions")
        if n and not self.allowed[np.arange(n), self.chosen].all():
            raise DataError("a chosen LLM is not among its decision's candidates")

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def n_llms(self) -> int:
        return len(self.llm_names)

    def take(self, index: np.ndarray) -> "Bandit":
        """The decisions at ``index`` (positions or a boolean mask)."""
        return Bandit(self.rows[index], self.allowed[index], self.chosen[index], self.propensity[index],
                      self.reward[index], self.llm_names, dict(self.info))


def bandit_from_log(log: pd.DataFrame, llm_names, prompt_ids=None) -> tuple[Bandit, pd.DataFrame]:
    """(Bandit, prompts) from a DecisionLog.

    ``llm_names``: the column order (every candidate must be one of them). ``prompt_ids``: the dataset's
    prompt ids, then ``rows`` index them (each decision needs a known ``prompt_id``); without them the
    decisions' distinct prompts (by prompt_id, else prompt_hash, else text) are numbered in order of first
    appearance and ``prompts`` (prompt_id, prompt_text) lists them, one row per ``rows`` value.
    Decisions whose outcome never came back are left out (``info["dropped_no_outcome"]``).
    """
    names = np.asarray([str(n) for n in llm_names], dtype=object)
    column = {n: j for j, n in enumerate(names)}
    if len(column) != len(names):
        raise DataError("llm_names holds duplicates")
    has = log["outcome"].notna().to_numpy() if len(log) else np.zeros(0, dtype=bool)
    dropped = int((~has).sum())
    log = log[has]
    n = len(log)
    if prompt_ids is not None:
        pid = log["prompt_id"]
        if pid.isna().any():
            raise DataError(f"decision {log['decision_id'][pid.isna()].iloc[0]!r} has no prompt_id to match the dataset")
        index = pd.Index(np.asarray(prompt_ids).astype(str))
        rows = index.get_indexer(pid.astype(str))
        if (rows < 0).any():
            raise DataError(f"prompt_id {pid[rows < 0].iloc[0]!r} (decision {log['decision_id'][rows < 0].iloc[0]!r}) "
                            "is not in the dataset")
        prompts = pd.DataFrame({"prompt_id": index.astype(object), "prompt_text": None})
    else:
        key = log["prompt_id"].where(log["prompt_id"].notna(), log["prompt_hash"])
        key = key.where(key.notna(), log["prompt_text"]).astype(str)
        codes, uniques = pd.factorize(key)
        rows = codes
        first = pd.Series(np.arange(n)).groupby(codes).first().to_numpy()
        prompts = pd.DataFrame({"prompt_id": log["prompt_id"].to_numpy()[first],
                                "prompt_text": log["prompt_text"].to_numpy()[first]})
    lengths = log["candidates"].map(len).to_numpy() if n else np.zeros(0, dtype=int)
    flat = pd.Series([c for cands in log["candidates"] for c in cands], dtype=object)
    cols = flat.map(column)
    if cols.isna().any():
        raise DataError(f"candidate LLM {flat[cols.isna()].iloc[0]!r} is not one of the {len(names)} LLMs "
                        f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    allowed = np.zeros((n, len(names)), dtype=bool)
    allowed[np.repeat(np.arange(n), lengths), cols.to_numpy(dtype=np.int64)] = True
    chosen = log["chosen"].map(column).to_numpy(dtype=np.int64)
    bandit = Bandit(np.asarray(rows, dtype=np.int64), allowed, chosen, log["propensity"].to_numpy(np.float64),
                    log["outcome"].to_numpy(np.float64), names, {"dropped_no_outcome": dropped})
    return bandit, prompts


def log_matrix(bandit: Bandit, n_rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unique logged rows (u,), float64 (u, m)): each revealed cell's mean outcome, NaN elsewhere.

    The naive training matrix (observed cells only). ``n_rows`` is unused beyond a range check.
    """
    uniq, inv = np.unique(bandit.rows, return_inverse=True)
    if n_rows is not None and len(uniq) and uniq[-1] >= n_rows:
        raise DataError(f"a decision's row {uniq[-1]} is outside the {n_rows} prompts")
    m = bandit.n_llms
    total = np.zeros((len(uniq), m))
    count = np.zeros((len(uniq), m))
    np.add.at(total, (inv, bandit.chosen), bandit.reward)
    np.add.at(count, (inv, bandit.chosen), 1.0)
    with np.errstate(invalid="ignore"):
        return uniq, np.where(count > 0, total / np.maximum(count, 1), np.nan)
