"""RouterEval router_dataset pickles: safe reading, validation, round trips and exact construction."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pandas as pd
import pytest

from recroute import RoutingDataset, load_dataset
from recroute.data.routereval import (
    build_router_dataset,
    iter_groups,
    load_router_dataset,
    safe_load_pickle,
    save_router_dataset,
)
from recroute.data.synthetic import make_synthetic
from recroute.errors import DataError, UnsafePickleError


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /tmp/recroute_pwned",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path):
    marker = "/tmp/recroute_pwned"
    if os.path.exists(marker):
        os.remove(marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"easy": Evil()}))
    with pytest.raises(UnsafePickleError, match=r"refusing to load (posix|os)\.system"):
        safe_load_pickle(path)
    assert not os.path.exists(marker)


def test_object_array_with_foreign_objects_is_refused():
    payload = pickle.dumps({"model": np.array([{"x": 1}], dtype=object)})
    with pytest.raises(UnsafePickleError, match="object array holds a dict"):
        safe_load_pickle(payload)


def test_truncated_pickle(tmp_path, routereval_fixture):
    path = tmp_path / "cut.pkl"
    path.write_bytes(routereval_fixture.read_bytes()[:5000])
    with pytest.raises(DataError, match="not a readable pickle"):
        safe_load_pickle(path)


def test_fixture_reads_safely_and_converts(routereval_fixture):
    rd = load_router_dataset(routereval_fixture)
    groups = list(iter_groups(rd))
    assert len(groups) == 6
    data = RoutingDataset.from_routereval(routereval_fixture)
    assert data.shape == (6108, 9)
    assert data.n_observed == 6108 * 9  # dense pickle: every cell observed, zeros included
    assert data.embeddings.shape == (6108, 384)
    assert data.prompts["split"].value_counts().to_dict() == {"train": 4884, "val": 611, "test": 613}
    assert data.prompt_ids[0] == "0" and data.prompt_ids[-1] == "6107"


@pytest.mark.filterwarnings("ignore:.*dropping.*:UserWarning")
def test_build_reproduces_the_official_fixture_exactly(shared_data, routereval_fixture):
    """recroute's construction equals RouterEval's get_router_dataset.py output, array for array."""
    data = load_dataset(shared_data / "llmrouter_nim")
    ref = safe_load_pickle(routereval_fixture)
    ours = build_router_dataset(data, {"easy": (3, 5)}, prompt_order="sorted", labels="always")
    for key in ("train_indices", "val_indices", "test_indices"):
        np.testing.assert_array_equal(ours["split_index"][key], ref["split_index"][key])
    for part in ("train", "val", "test"):
        assert (ours["prompt"][f"{part}_prompt"] == ref["prompt"][f"{part}_prompt"]).all()
    for setting, m, group, entry in iter_groups(ref):
        mine = ours[setting][m][group]
        assert list(mine["model"]) == list(entry["model"]), (m, group)
        for key, arr in entry["data"].items():
            np.testing.assert_array_equal(mine["data"][key], arr, err_msg=f"{m}/{group}/{key}")


@pytest.mark.parametrize("binary", [True, False])
def test_round_trip_dataset_pickle_dataset(tmp_path, binary):
    data = make_synthetic(200, 12, 3, binary=binary, random_state=1)
    rd = build_router_dataset(data, {"easy": (3, 5), "hard": (10,)}, prompt_order="dataset")
    assert set(rd["hard"]) == {10}
    assert ("train_label" in rd["easy"][3]["all_strong"]["data"]) == (not binary)
    path = save_router_dataset(rd, tmp_path / "x_router_dataset.pkl")
    back = RoutingDataset.from_routereval(path)
    used = sorted({str(n) for _, _, _, e in iter_groups(rd) for n in e["model"]})
    original = data.subset(llms=used).dense(0.0)
    ours = back.subset(llms=used).dense()
    # back is in benchmark order (positions), which is the dataset order here
    np.testing.assert_array_equal(ours, original)
    np.testing.assert_allclose(back.embeddings, data.embeddings)


def test_sorted_order_does_not_depend_on_row_order():
    data = make_synthetic(120, 8, 3, random_state=4)
    shuffled = data.subset(prompts=np.random.default_rng(0).permutation(120), llms=[7, 3, 1, 0, 2, 4, 6, 5])
    a, b = build_router_dataset(data, {"easy": (3,)}), build_router_dataset(shuffled, {"easy": (3,)})
    for setting, m, group, entry in iter_groups(a):
        other = b[setting][m][group]
        assert list(entry["model"]) == list(other["model"])
        np.testing.assert_array_equal(entry["data"]["test_score"], other["data"]["test_score"])


def test_hard_settings_skip_pools_that_are_too_small():
    data = make_synthetic(100, 6, 2, random_state=0)
    rd = build_router_dataset(data)
    assert rd["hard"] == {} and set(rd["easy"]) <= {3, 5}


def test_inconsistent_pickles_are_rejected(routereval_fixture):
    rd = safe_load_pickle(routereval_fixture)
    rd["easy"][3]["all_strong"]["data"]["test_score"] = rd["easy"][3]["all_strong"]["data"]["test_score"][:-1]
    with pytest.raises(DataError, match=r"easy/3/all_strong/test_score has shape \(612, 3\); expected \(613, 3\)"):
        load_router_dataset(rd)
    rd = safe_load_pickle(routereval_fixture)
    rd["easy"][5]["all_weak"]["data"]["train_score"][:, 0] = 0.123  # same LLM, other scores elsewhere
    with pytest.raises(DataError, match="has different scores"):
        RoutingDataset.from_routereval(rd)
    with pytest.raises(DataError, match="missing key 'split_index'"):
        load_router_dataset({"easy": {}})
    with pytest.raises(DataError, match="expected a dict or a pickle path, got list"):
        load_router_dataset([1, 2])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="expected a dict at the top level"):
        load_router_dataset(pickle.dumps([1, 2]))


def test_missing_pickle_file(tmp_path):
    with pytest.raises(DataError, match="RouterEval pickle not found"):
        safe_load_pickle(tmp_path / "nope.pkl")


def test_long_wide_pickle_parquet_chain_loses_nothing(tmp_path):
    data = make_synthetic(150, 8, 3, random_state=3)
    wide = RoutingDataset.from_wide(data.to_wide(), prompts=data.prompts, llms=data.llms)
    long = RoutingDataset.from_long(wide.to_long(), prompts=wide.prompts, llms=wide.llms)
    long.set_embeddings(data.embeddings, "synthetic")
    folder = RoutingDataset.load(long.save(tmp_path / "ds"))
    for other in (wide, long, folder):
        np.testing.assert_array_equal(other.dense(-1), data.dense(-1))
        assert list(other.llm_names) == list(data.llm_names)
    pd.testing.assert_frame_equal(folder.llms, data.llms)
