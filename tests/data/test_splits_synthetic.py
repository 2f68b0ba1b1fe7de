"""Random, leave-task-out and leave-LLMs-out splits; the synthetic generator."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.data.splits import leave_llms_out, leave_task_out, random_split, routereval_split
from recroute.data.synthetic import make_synthetic, write_synthetic_parquet
from recroute.errors import DataError


def test_routereval_split_sizes_use_integer_floors():
    tasks = np.array(["a"] * 15 + ["b"] * 7)
    split = routereval_split(tasks)
    # a: int(12.0)=12 train, int(13.5)-12=1 val, 2 test; b: int(5.6)=5, int(6.3)-5=1, 1
    assert split.sizes() == (17, 2, 3)
    assert set(split.train[:12]) <= set(range(15)) and set(split.train[12:]) <= set(range(15, 22))
    everything = np.concatenate([split.train, split.val, split.test])
    assert sorted(everything.tolist()) == list(range(22))


def test_random_split_partitions_and_is_seeded():
    a, b = random_split(100, test_size=0.2, val_size=0.1, seed=3), random_split(100, test_size=0.2, val_size=0.1, seed=3)
    assert a.sizes() == (70, 10, 20)
    np.testing.assert_array_equal(a.test, b.test)
    assert len(set(a.train) | set(a.val) | set(a.test)) == 100
    with pytest.raises(DataError):
        random_split(10, test_size=0.0)


def test_leave_task_out():
    tasks = np.array(["x", "y", "x", "z"])
    split = leave_task_out(tasks, "x")
    np.testing.assert_array_equal(split.test, [0, 2])
    np.testing.assert_array_equal(split.train, [1, 3])
    with pytest.raises(DataError, match=r"unknown task\(s\) \['w'\]"):
        leave_task_out(tasks, ["w"])


def test_leave_llms_out():
    kept, held = leave_llms_out(10, 0.2, seed=1)
    assert len(held) == 2 and len(kept) == 8 and not set(kept) & set(held)
    kept, held = leave_llms_out(3, 0.9)
    assert len(kept) == 1 and len(held) == 2
    with pytest.raises(DataError):
        leave_llms_out(1)


def test_synthetic_controls_skew_missing_and_type():
    data = make_synthetic(400, 8, 4, popularity_skew=2.0, missing_rate=0.3, random_state=0)
    assert data.shape == (400, 8)
    assert 0.6 < data.density < 0.8
    assert (np.diff(data.scores.indptr) >= 1).all()  # each prompt keeps a result
    acc = data.llm_stats()["accuracy"].to_numpy()
    assert acc[0] > acc[-1]  # strength sorted: llm_0 is the most popular
    assert data.score_type == "binary" and data.embeddings.shape == (400, 32)
    cont = make_synthetic(50, 4, 2, binary=False, random_state=0)
    assert cont.score_type == "continuous"
    again = make_synthetic(400, 8, 4, popularity_skew=2.0, missing_rate=0.3, random_state=0)
    np.testing.assert_array_equal(again.dense(-1), data.dense(-1))


def test_synthetic_parquet_streams_and_loads(tmp_path):
    from recroute import RoutingDataset

    path = tmp_path / "big.parquet"
    n = write_synthetic_parquet(path, 230, 17, block_prompts=50)
    assert n == 230 * 17
    data = RoutingDataset.from_long(path)
    assert data.shape == (230, 17) and data.n_observed == n
    assert data.prompt_ids[0] == "p0" and data.llm_names[16] == "llm_16"
