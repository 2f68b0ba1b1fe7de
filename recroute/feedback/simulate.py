"""Simulated decision logs from full-information data (the only place the truth is known).

A logging policy (a fitted router + a :class:`~recroute.feedback.policies.Policy`) meets prompts drawn
uniformly with replacement from one part of RouterEval's split (stratified by task, seed 42, prompts in
id order as ``build_router_dataset`` orders them); it chooses among the candidates, and only the chosen
cell's true score is revealed. The recorded propensity is the policy's exact probability of that choice.

Unobserved cells are never revealed as 0: at each prompt the candidates are the requested LLMs whose
result was observed (the decision's ``candidates`` list says which), and a prompt with no observed
candidate is never drawn (counted in ``info["prompts_without_candidates"]``).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit
from recroute.feedback.logs import DecisionLog, decision_log_from_records, decision_records
from recroute.feedback.policies import Policy, parse_policy
from recroute.routers.base import candidate_mask as base_candidate_mask

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset
    from recroute.routers.base import Router

SPLIT_PARTS = ("train", "val", "test", "all")
DEFAULT_LOGGING_ROUTER = "knn"
DEFAULT_LOGGING_POLICY = "epsilon_greedy:epsilon=0.2"


def split_positions(data: "RoutingDataset", part: str | Sequence[int] | np.ndarray, seed: int = 42) -> np.ndarray:
    """int64 dataset positions of a part of RouterEval's split ("train", "val", "test", "all") or given positions."""
    if not isinstance(part, str):
        pos = np.asarray(part, dtype=np.int64)
        if pos.ndim != 1 or (len(pos) and (pos.min() < 0 or pos.max() >= data.n_prompts)):
            raise DataError(f"split positions must be 1-D in 0..{data.n_prompts - 1}")
        return pos
    if part not in SPLIT_PARTS:
        raise DataError(f"split must be one of {SPLIT_PARTS} or an array of positions; got {part!r}")
    if part == "all":
        return np.arange(data.n_prompts, dtype=np.int64)
    from recroute.data.routereval import sorted_prompt_order
    from recroute.data.splits import routereval_split

    order = sorted_prompt_order(data)
    tasks = data.prompts["task"].to_numpy()[order] if "task" in data.prompts else None
    split = routereval_split(tasks, data.n_prompts, seed=seed)
    return np.sort(order[getattr(split, part)]).astype(np.int64)


def candidate_mask(data: "RoutingDataset", candidates=None) -> np.ndarray:
    """bool (n_llms,): the requested candidates (names or positions; None = every LLM)."""
    return base_candidate_mask(data.llm_names, candidates)


@dataclass
class LoggingPolicy:
    """A fitted router acting through a policy: ``probabilities(X, allowed) -> (n, m)``."""

    router: "Router"
    policy: Policy

    def probabilities(self, X: np.ndarray | None, allowed: np.ndarray) -> np.ndarray:
        """float64 (n, m) choice probabilities among ``allowed`` (n, m)."""
        scores = self.router.score(X, n=len(allowed))
        return self.policy.probabilities(scores, allowed)


def fit_logging_policy(
    data: "RoutingDataset",
    router: "str | Router" = DEFAULT_LOGGING_ROUTER,
    policy: str | Policy = DEFAULT_LOGGING_POLICY,
    split: str | np.ndarray = "train",
    X: np.ndarray | None = None,
) -> LoggingPolicy:
    """Fit ``router`` (a spec or an unfitted router) with full information on a part of the split."""
    from recroute.routers.registry import make_router

    rtr = make_router(router) if isinstance(router, str) else router
    pos = split_positions(data, split)
    X = data.embeddings if X is None else X
    feats = None
    if rtr.needs_features:
        if X is None:
            raise DataError(f"the logging router {rtr.name!r} needs prompt embeddings: the dataset has none (pass X)")
        feats = np.asarray(X, dtype=np.float32)[pos]
    rtr.fit(data.dense(np.nan)[pos], feats)
    rtr.llm_names_ = np.asarray(data.llm_names, dtype=object)
    return LoggingPolicy(rtr, parse_policy(policy))


def population(data: "RoutingDataset", split, candidates=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions (N,), allowed (N, m), truth (N, m) NaN = unobserved) of the drawable prompts.

    allowed = requested candidates whose result was observed; prompts with none are left out.
    """
    pos = split_positions(data, split)
    Y = data.dense(np.nan)[pos].astype(np.float64)
    allowed = ~np.isnan(Y) & candidate_mask(data, candidates)[None, :]
    keep = allowed.any(axis=1)
    return pos[keep], allowed[keep], Y[keep]


def simulate_bandit(P: np.ndarray, truth: np.ndarray, rows: np.ndarray, n: int, rng: np.random.Generator,
                    llm_names) -> Bandit:
    """n decisions: prompts drawn uniformly from the N population rows, a choice drawn from P (N, m).

    truth (N, m): the true scores (every cell with P > 0 observed); rows (N,): the prompts' dataset positions.
    """
    from recroute.feedback.policies import sample_rows

    n = int(n)
    if n < 1:
        raise DataError(f"n (the number of decisions) must be at least 1; got {n}")
    pick = rng.integers(0, len(P), size=n)
    chosen = sample_rows(P[pick], rng)
    reward = truth[pick, chosen]
    if np.isnan(reward).any():
        raise DataError("the logging policy chose an unobserved cell (its probabilities must be 0 there)")
    return Bandit(rows[pick].astype(np.int64), P[pick] > 0, chosen, P[pick, chosen], reward,
                  np.asarray(llm_names, dtype=object))


def simulate_logs(
    data: "RoutingDataset",
    policy: LoggingPolicy,
    n: int,
    seed: int = 0,
    split: str | np.ndarray = "test",
    candidates=None,
    X: np.ndarray | None = None,
    with_text: bool = False,
) -> DecisionLog:
    """A DecisionLog of ``n`` simulated decisions (prompt ids, candidates, chosen, propensity, outcome).

    Prompts come uniformly with replacement from ``split``; ``candidates`` (names or positions, None =
    the full pool) restricts the choice. ``log.attrs["simulation"]`` records the setting, including the
    prompts left out for lack of an observed candidate. ``with_text`` also stores each prompt's text.
    """
    bandit, info = simulate_arrays(data, policy, n, seed, split, candidates, X)
    names = np.asarray(data.llm_names, dtype=object)
    ids = data.prompt_ids[bandit.rows]
    texts = np.asarray(data.texts, dtype=object)[bandit.rows] if with_text else None
    rng = np.random.default_rng([seed, 1])
    cands = [list(names[row]) for row in bandit.allowed]
    dids = [uuid.UUID(bytes=bytes(b), version=4).hex for b in rng.integers(0, 256, size=(len(bandit), 16), dtype=np.uint8)]
    records = decision_records(
        cands, names[bandit.chosen], bandit.propensity, prompt_ids=ids, prompt_texts=texts,
        outcomes=bandit.reward, policy=policy.policy.spec, router=getattr(policy.router, "name", None),
    )
    now = time.time()
    for rec, did in zip(records, dids):
        rec.update(event="decision", decision_id=did, timestamp=now)
    log = decision_log_from_records(records, source="simulation")
    log.attrs["simulation"] = info
    return log


def simulate_arrays(
    data: "RoutingDataset",
    policy: LoggingPolicy,
    n: int,
    seed: int = 0,
    split: str | np.ndarray = "test",
    candidates=None,
    X: np.ndarray | None = None,
) -> tuple[Bandit, dict]:
    """The array form of :func:`simulate_logs`: (Bandit with rows = dataset positions, info)."""
    pos, allowed, truth = population(data, split, candidates)
    split_pos = split_positions(data, split)
    n_split = len(split_pos)
    unobserved = int((~data.observed_mask()[split_pos][:, candidate_mask(data, candidates)]).sum())
    if len(pos) == 0:
        raise DataError("no prompt of the split has an observed result for any candidate: nothing to simulate")
    X = data.embeddings if X is None else X
    feats = None if (X is None or not policy.router.needs_features) else np.asarray(X, dtype=np.float32)[pos]
    P = policy.probabilities(feats, allowed)
    bandit = simulate_bandit(P, truth, pos, n, np.random.default_rng(seed), data.llm_names)
    info = {"split": split if isinstance(split, str) else "custom", "n_split_prompts": int(n_split),
            "n_population": int(len(pos)), "prompts_without_candidates": int(n_split - len(pos)),
            "unobserved_candidate_cells": unobserved,
            "policy": policy.policy.spec, "router": getattr(policy.router, "name", None), "seed": int(seed), "n": int(n)}
    bandit.info.update(info)
    return bandit, info
