"""Train/val/test splits of prompts: RouterEval's, random, leave-task-out and leave-LLMs-out.

Every split returns integer positions into the dataset (``prompt_idx`` or ``llm_idx``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recroute.errors import DataError


@dataclass(frozen=True)
class Split:
    """Positions of the train, validation and test prompts (int64 arrays)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)


def routereval_split(
    tasks: np.ndarray | pd.Series | None, n_prompts: int | None = None, seed: int = 42,
    rng: np.random.RandomState | None = None,
) -> Split:
    """RouterEval's split (get_router_dataset.py): stratified by sub-task, 80/10/10 with integer floors.

    A legacy ``RandomState(seed)`` (the same stream as ``np.random.seed(seed)``) shuffles the
    positions of each sub-task in order of first appearance; train = the first ``int(0.8 n)``,
    val = up to ``int(0.9 n)``, test = the rest; the pieces are concatenated in sub-task order.
    Prompts without a task form one group. Pass ``rng`` to continue an existing stream.
    """
    labels = task_label_array(tasks, n_prompts)
    rng = np.random.RandomState(seed) if rng is None else rng
    train, val, test = [], [], []
    for task in pd.unique(labels):
        members = np.flatnonzero(labels == task)
        rng.shuffle(members)
        n = len(members)
        a, b = int(0.8 * n), int(0.9 * n)
        train.append(members[:a])
        val.append(members[a:b])
        test.append(members[b:])
    return Split(*(np.concatenate(part).astype(np.int64) for part in (train, val, test)))


def random_split(n_prompts: int, test_size: float = 0.2, val_size: float = 0.0, seed: int = 0) -> Split:
    """Uniformly random train/val/test positions."""
    if not 0 < test_size < 1 or not 0 <= val_size < 1 or test_size + val_size >= 1:
        raise DataError(f"need 0 < test_size, 0 <= val_size and test_size + val_size < 1; got {test_size}, {val_size}")
    perm = np.random.default_rng(seed).permutation(n_prompts)
    n_test, n_val = int(round(test_size * n_prompts)), int(round(val_size * n_prompts))
    return Split(np.sort(perm[n_test + n_val:]), np.sort(perm[n_test:n_test + n_val]), np.sort(perm[:n_test]))


def leave_task_out(tasks: np.ndarray | pd.Series, held_out: str | list[str]) -> Split:
    """Train on every other task, test on the held-out task(s); no validation part."""
    labels = task_label_array(tasks, None)
    held = [held_out] if isinstance(held_out, str) else list(held_out)
    unknown = sorted(set(held) - set(labels.tolist()))
    if unknown:
        raise DataError(f"unknown task(s) {unknown}; known: {sorted(set(labels.tolist()))[:20]}")
    test = np.isin(labels, held)
    return Split(np.flatnonzero(~test), np.zeros(0, dtype=np.int64), np.flatnonzero(test))


def leave_llms_out(n_llms: int, fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept llm_idx, held-out llm_idx), a random ``fraction`` held out (at least one of each)."""
    if n_llms < 2:
        raise DataError("leave-LLMs-out needs at least 2 LLMs")
    if not 0 < fraction < 1:
        raise DataError(f"fraction must be in (0, 1); got {fraction}")
    n_out = min(max(1, int(round(fraction * n_llms))), n_llms - 1)
    perm = np.random.default_rng(seed).permutation(n_llms)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def holdout_split(n: int, fraction: float, random_state: int | None = 0) -> tuple[np.ndarray, np.ndarray]:
    """(kept positions, held-out positions) of n prompts: a seeded random ``fraction`` held out, both sorted."""
    if not 0 < float(fraction) < 1:
        raise DataError(f"holdout must be in (0, 1); got {fraction!r}")
    n_out = int(round(float(fraction) * n))
    if n_out < 2 or n - n_out < 2:
        raise DataError(f"holdout {fraction} of {n} training prompts leaves fewer than 2 prompts on one side")
    perm = np.random.default_rng(random_state).permutation(n)
    return np.sort(perm[n_out:]), np.sort(perm[:n_out])


def task_label_array(tasks, n_prompts: int | None) -> np.ndarray:
    if tasks is None:
        if n_prompts is None:
            raise DataError("give tasks or n_prompts")
        return np.zeros(n_prompts, dtype=object)
    labels = pd.Series(tasks).astype(object).where(pd.Series(tasks).notna(), "(none)").to_numpy(dtype=object)
    if n_prompts is not None and len(labels) != n_prompts:
        raise DataError(f"{len(labels)} task labels for {n_prompts} prompts")
    return labels
