"""Every bad input gets a specific error naming the file, column and rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute import RoutingDataset
from recroute.errors import DataError


def records(**overrides) -> pd.DataFrame:
    base = {"prompt_id": ["p0", "p0", "p1", "p1"], "llm": ["a", "b", "a", "b"], "score": [1.0, 0.0, 0.0, 1.0]}
    base.update(overrides)
    return pd.DataFrame(base)


def test_missing_columns_named(tmp_path):
    path = tmp_path / "r.parquet"
    records().drop(columns=["score"]).to_parquet(path)
    with pytest.raises(DataError, match=r"r\.parquet: missing column \['score'\]"):
        RoutingDataset.from_long(path)


def test_empty_results():
    with pytest.raises(DataError, match="no records"):
        RoutingDataset.from_long(records().iloc[:0])


def test_non_numeric_scores_name_rows(tmp_path):
    path = tmp_path / "r.csv"
    records(score=["1", "0", "oops", "1"]).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"r\.csv: column 'score' is not numeric at row 2 \(e\.g\. 'oops'\)"):
        RoutingDataset.from_long(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_scores(bad):
    with pytest.raises(DataError, match=r"column .score. has (NaN or inf|an empty or NaN value) at row 3"):
        RoutingDataset.from_long(records(score=[1.0, 0.0, 0.0, bad]))


def test_empty_score_cell(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("prompt_id,llm,score\np0,a,1\np0,b,\n")
    with pytest.raises(DataError, match=r"column .score. has an empty or NaN value at row 1"):
        RoutingDataset.from_long(path)


def test_empty_ids():
    with pytest.raises(DataError, match=r"column 'llm' is empty at row 1"):
        RoutingDataset.from_long(records(llm=["a", None, "a", "b"]))


def test_scores_outside_unit_interval_and_rescale():
    with pytest.raises(DataError, match=r"scores must lie in \[0, 1\]; found 10\.0 at rows 0, 1, 3.*rescale=True"):
        RoutingDataset.from_long(records(score=[10.0, 5.0, 0.0, 10.0]))
    data = RoutingDataset.from_long(records(score=[10.0, 5.0, 0.0, 10.0]), rescale=True)
    np.testing.assert_allclose(data.dense(), [[1.0, 0.5], [0.0, 1.0]])


def test_duplicates_error_or_explicit_aggregation():
    dup = pd.concat([records(), pd.DataFrame({"prompt_id": ["p0"], "llm": ["a"], "score": [0.0]})], ignore_index=True)
    with pytest.raises(DataError, match=r"repeated \(prompt_id, llm\) pairs at rows 0, 4"):
        RoutingDataset.from_long(dup)
    expected = {"mean": 0.5, "max": 1.0, "min": 0.0, "first": 1.0, "last": 0.0}
    for policy, value in expected.items():
        data = RoutingDataset.from_long(dup, duplicates=policy)
        assert data.dense()[0, 0] == value, policy
        assert data.n_observed == 4
    with pytest.raises(DataError, match="duplicates must be one of"):
        RoutingDataset.from_long(dup, duplicates="sum")


def test_metadata_ids_unknown_to_results_and_unused_rows():
    prompts = pd.DataFrame({"prompt_id": ["p0"], "text": ["hello"]})
    with pytest.raises(DataError, match=r"1 prompt_id value\(s\) are unknown to prompts DataFrame: \['p1'\]"):
        RoutingDataset.from_long(records(), prompts=prompts)
    kept = RoutingDataset.from_long(records(), prompts=prompts, unknown_metadata="keep")
    assert kept.texts == ["hello", None]
    llms = pd.DataFrame({"llm": ["a", "b", "ghost"], "size": [7, 70, 1]})
    with pytest.warns(UserWarning, match=r"dropping 1 llm row\(s\) with no result.*ghost"):
        data = RoutingDataset.from_long(records(), llms=llms)
    assert list(data.llms["llm"]) == ["a", "b"] and list(data.llms["size"]) == [7, 70]


def test_metadata_table_problems(tmp_path):
    with pytest.raises(DataError, match=r"prompts DataFrame: missing column \['prompt_id'\]"):
        RoutingDataset.from_long(records(), prompts=pd.DataFrame({"id": ["p0"]}))
    with pytest.raises(DataError, match=r"column 'llm' repeats 'a' at rows 0, 1"):
        RoutingDataset.from_long(records(), llms=pd.DataFrame({"llm": ["a", "a", "b"]}))
    with pytest.raises(DataError, match="llms file not found"):
        RoutingDataset.from_long(records(), llms=tmp_path / "nope.parquet")


def test_unreadable_and_unsupported_files(tmp_path):
    bad = tmp_path / "r.parquet"
    bad.write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match=r"cannot read records file .*r\.parquet"):
        RoutingDataset.from_long(bad)
    odd = tmp_path / "r.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported extension '.xlsx'"):
        RoutingDataset.from_long(odd)


def test_wide_shape_and_value_errors():
    with pytest.raises(DataError, match=r"shape \(2, 2\) but 3 prompt ids and 2 LLM names"):
        RoutingDataset.from_wide(np.zeros((2, 2)), prompt_ids=["a", "b", "c"])
    with pytest.raises(DataError, match="must be 2-D"):
        RoutingDataset.from_wide(np.zeros(3))
    with pytest.raises(DataError, match="no observed cell"):
        RoutingDataset.from_wide(np.full((2, 2), np.nan))
    with pytest.raises(DataError, match="inf at row 1"):
        RoutingDataset.from_wide(np.array([[0.0, 1.0], [np.inf, 0.0]]))
    with pytest.raises(DataError, match=r"found 2\.0 at row 0"):
        RoutingDataset.from_wide(np.array([[2.0, 1.0], [0.0, 0.0]]))


def test_embeddings_shape_and_nan(tmp_path):
    data = RoutingDataset.from_long(records())
    with pytest.raises(DataError, match=r"embeddings must have shape \(n_prompts=2, d\); got \(3, 4\)"):
        data.set_embeddings(np.zeros((3, 4)), "x")
    with pytest.raises(DataError, match="NaN or inf at row 1"):
        data.set_embeddings(np.array([[0.0], [np.nan]]), "x")


def test_corrupt_dataset_folder(tmp_path):
    folder = RoutingDataset.from_long(records()).save(tmp_path / "ds")
    (folder / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match=r"dataset\.json: not valid JSON"):
        RoutingDataset.load(folder)
    (folder / "dataset.json").unlink()
    (folder / "records.parquet").unlink()
    with pytest.raises(DataError, match="no records.parquet"):
        RoutingDataset.load(folder)
