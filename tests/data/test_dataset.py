"""RoutingDataset constructors, views, statistics and round trips, on hand-made and real data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute import RoutingDataset, load_dataset
from recroute.errors import DataError

NAN = np.nan


@pytest.fixture
def tiny() -> RoutingDataset:
    # p0: a=1, b=0 ; p1: a=0, (b missing) ; p2: a=1, b=1, c=0.5
    records = pd.DataFrame(
        {
            "prompt_id": ["p0", "p0", "p1", "p2", "p2", "p2"],
            "llm": ["a", "b", "a", "a", "b", "c"],
            "score": [1.0, 0.0, 0.0, 1.0, 1.0, 0.5],
        }
    )
    prompts = pd.DataFrame({"prompt_id": ["p0", "p1", "p2"], "text": ["x", "y", "z"], "task": ["t1", "t1", "t2"]})
    return RoutingDataset.from_long(records, prompts=prompts, name="tiny")


def test_observed_zero_is_not_missing(tiny):
    assert tiny.shape == (3, 3)
    assert tiny.n_observed == 6
    mask = tiny.observed_mask()
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    dense = tiny.dense()
    assert dense[0, 1] == 0.0 and np.isnan(dense[1, 1]) and np.isnan(dense[0, 2])
    np.testing.assert_array_equal(tiny.dense(fill=-1.0)[1], [0.0, -1.0, -1.0])
    assert tiny.dense().dtype == np.float32


def test_statistics_hand_computed(tiny):
    stats = tiny.llm_stats().set_index("llm")
    assert stats.loc["a", "accuracy"] == pytest.approx(2 / 3)
    assert stats.loc["b", "accuracy"] == pytest.approx(0.5)
    assert stats.loc["c", "accuracy"] == pytest.approx(0.5)
    assert stats.loc["b", "coverage"] == pytest.approx(2 / 3)
    assert stats.loc["c", "n_observed"] == 1
    prompts = tiny.prompt_stats().set_index("prompt_id")
    assert prompts.loc["p2", "oracle"] == 1.0 and prompts.loc["p1", "oracle"] == 0.0
    assert prompts.loc["p2", "mean"] == pytest.approx(2.5 / 3)
    assert tiny.oracle_score() == pytest.approx(2 / 3)
    assert tiny.best_single_llm() == ("a", pytest.approx(2 / 3))
    assert tiny.score_type == "continuous"
    assert tiny.density == pytest.approx(6 / 9)


def test_task_stats(tiny):
    by_task = tiny.benchmark_stats("task").set_index("task")
    assert by_task.loc["t1", "n_prompts"] == 2
    assert by_task.loc["t2", "oracle"] == 1.0
    with pytest.raises(DataError, match="no prompt column"):
        tiny.benchmark_stats("nope")


def test_subset_by_names_indices_and_masks(tiny):
    part = tiny.subset(prompts=["p2", "p0"], llms=["c", "a"])
    assert list(part.prompt_ids) == ["p2", "p0"] and list(part.llm_names) == ["c", "a"]
    np.testing.assert_array_equal(part.dense(), [[0.5, 1.0], [NAN, 1.0]])
    assert part.n_observed == 3
    same = tiny.subset(prompts=np.array([True, False, True]), llms=[0, 2])
    assert same.n_prompts == 2 and same.n_llms == 2
    with pytest.raises(DataError, match="unknown LLM name"):
        tiny.subset(llms=["zzz"])
    with pytest.raises(DataError, match="out of range"):
        tiny.subset(prompts=[7])


def test_wide_round_trip(tiny):
    wide = tiny.to_wide()
    back = RoutingDataset.from_wide(wide)
    np.testing.assert_array_equal(back.observed_mask(), tiny.observed_mask())
    np.testing.assert_array_equal(back.dense(-1), tiny.dense(-1))
    assert list(back.llm_names) == list(tiny.llm_names)


def test_from_wide_numpy_and_names():
    data = RoutingDataset.from_wide(np.array([[1.0, NAN], [0.0, 0.0]]), llm_names=["x", "y"])
    assert data.n_observed == 3 and list(data.prompt_ids) == ["0", "1"]
    assert data.score_type == "binary"


def test_long_round_trip(tiny):
    back = RoutingDataset.from_long(tiny.to_long(), prompts=tiny.prompts)
    np.testing.assert_array_equal(back.dense(-1), tiny.dense(-1))
    assert back.prompts["text"].tolist() == ["x", "y", "z"]


def test_save_load_round_trip_keeps_everything(tmp_path, tiny):
    tiny.set_embeddings(np.arange(9, dtype=np.float32).reshape(3, 3), "toy")
    empty_row = tiny.subset(llms=["c"])  # p0 and p1 have no result for c: kept as unobserved rows
    for data in (tiny, empty_row):
        out = data.save(tmp_path / "ds")
        back = RoutingDataset.load(out)
        assert back.shape == data.shape
        np.testing.assert_array_equal(back.dense(-1), data.dense(-1))
        pd.testing.assert_frame_equal(back.prompts, data.prompts)
        np.testing.assert_array_equal(back.embeddings, data.embeddings)
        assert back.embedding_name == "toy"
    assert not list(tmp_path.glob(".ds.*")), "temp folders left behind"


def test_save_is_atomic_on_failure(tmp_path, tiny, monkeypatch):
    target = tiny.save(tmp_path / "ds")
    before = sorted(p.name for p in target.iterdir())
    import recroute.data.io as io

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.pq, "write_table", boom)
    with pytest.raises(OSError):
        tiny.save(target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert RoutingDataset.load(target).n_observed == tiny.n_observed
    assert not list(tmp_path.glob(".ds.*"))


def test_csv_input(tmp_path, tiny):
    path = tmp_path / "records.csv"
    tiny.to_long().to_csv(path, index=False)
    back = RoutingDataset.from_long(path)
    np.testing.assert_array_equal(back.dense(-1), tiny.dense(-1))


DATASETS = [
    "mmlu_pro",
    "llmrouter_nim",
    "open_llm_leaderboard_v2",
    "open_llm_leaderboard_v1_arc",
    "open_llm_leaderboard_v1_gsm8k",
    "open_llm_leaderboard_v1_mmlu",
    "open_llm_leaderboard_v1_truthfulqa",
]


@pytest.mark.filterwarnings("ignore:.*dropping.*:UserWarning")
@pytest.mark.parametrize("name", DATASETS)
def test_every_shared_folder_loads_with_independent_statistics(shared_data, name):
    folder = shared_data / name
    data = load_dataset(folder)
    records = pd.read_parquet(folder / "records.parquet")
    prompts = pd.read_parquet(folder / "prompts.parquet")
    # independent computation with pandas on the raw files
    assert data.n_prompts == prompts.prompt_id.nunique() == records.prompt_id.nunique()
    assert data.n_llms == records.llm.nunique()
    assert data.n_observed == len(records)
    acc = records.groupby("llm").score.mean()
    ours = data.llm_stats().set_index("llm")["accuracy"]
    np.testing.assert_allclose(ours.loc[acc.index].to_numpy(), acc.to_numpy(), rtol=1e-6)
    best = records.groupby("prompt_id").score.max()
    assert data.oracle_score() == pytest.approx(best.mean(), rel=1e-6)
    assert data.best_single_llm()[0] == acc.idxmax()
    pivot = records.pivot(index="prompt_id", columns="llm", values="score")
    wide = data.to_wide().loc[pivot.index, pivot.columns]
    np.testing.assert_array_equal(np.isnan(wide.to_numpy()), np.isnan(pivot.to_numpy()))
    assert data.score_type == ("binary" if set(np.unique(records.score)) <= {0.0, 1.0} else "continuous")


def test_bundled_mmlu_pro_matches_shared_readme_figures():
    data = load_dataset("mmlu_pro")
    assert data.shape == (12032, 31)
    assert data.n_prompts * data.n_llms - data.n_observed == 1748
    assert data.best_single_llm()[0].startswith("gpt-4o")
    assert round(data.best_single_llm()[1], 3) == 0.721
    assert round(data.oracle_score(), 3) == 0.955
    assert data.has_text and data.prompts["task"].nunique() == 14


def test_unknown_dataset_name():
    with pytest.raises(DataError, match="no dataset 'nope'"):
        load_dataset("nope")
