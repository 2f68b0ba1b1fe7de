"""Costs in the data layer: prices and per-cell costs read, validated, saved and turned into (n, m) costs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute.data.costs import DEFAULT_OUTPUT_TOKENS, Prices, count_prompt_tokens
from recroute.data.dataset import RoutingDataset
from recroute.errors import DataError


def _records(cost=None):
    rec = pd.DataFrame({"prompt_id": ["p0", "p0", "p1", "p1", "p2"], "llm": ["a", "b", "a", "b", "a"],
                        "score": [1.0, 0.0, 0.0, 1.0, 1.0]})
    if cost is not None:
        rec["cost"] = cost
    return rec


PROMPTS = pd.DataFrame({"prompt_id": ["p0", "p1", "p2"], "text": ["hello world", None, "one two three four"]})


def test_token_prices_by_hand():
    llms = pd.DataFrame({"llm": ["a", "b"], "input_price_per_mtok": [1.0, 10.0], "output_price_per_mtok": [2.0, 20.0],
                         "output_tokens": [100, None]})
    data = RoutingDataset.from_long(_records(), PROMPTS, llms)
    tokens = np.array([10.0, 20.0, 30.0])
    C = data.costs(prompt_tokens=tokens)
    # a: 1e-6 * (1 * t + 2 * 100); b: 1e-6 * (10 * t + 20 * DEFAULT_OUTPUT_TOKENS)
    np.testing.assert_allclose(C[:, 0], (tokens + 200) * 1e-6)
    np.testing.assert_allclose(C[:, 1], (10 * tokens + 20 * DEFAULT_OUTPUT_TOKENS) * 1e-6)
    np.testing.assert_allclose(data.costs(pricing="price_index"), [[3.0, 30.0]] * 3)
    # output tokens overridable per call
    C2 = data.costs(prompt_tokens=tokens, output_tokens=0)
    np.testing.assert_allclose(C2, np.outer(tokens, [1.0, 10.0]) * 1e-6)
    # the selected prompts only
    assert data.costs(prompts=[2], prompt_tokens=[30.0]).shape == (1, 2)


def test_prompt_tokens_from_the_minilm_tokenizer_with_a_fallback():
    counts = count_prompt_tokens(["hello world", None, "one two three four"])
    assert counts.tolist() == [2.0, 3.0, 4.0]  # the missing text counts the median of the others
    assert count_prompt_tokens([None], missing=7.0).tolist() == [7.0]


def test_cell_costs_win_where_observed_then_prices(tmp_path):
    llms = pd.DataFrame({"llm": ["a", "b"], "cost_per_prompt": [0.5, 2.0]})
    data = RoutingDataset.from_long(_records([0.1, None, 0.3, 4.0, 0.2]), PROMPTS, llms)
    np.testing.assert_allclose(data.costs(), [[0.1, 2.0], [0.3, 4.0], [0.2, 2.0]])
    # saved and reloaded with the cost column (null where unobserved)
    back = RoutingDataset.load(data.save(tmp_path / "d"))
    np.testing.assert_allclose(back.costs(), data.costs())
    assert pd.read_parquet(tmp_path / "d" / "records.parquet")["cost"].isna().sum() == 1
    # subsets keep the costs aligned
    np.testing.assert_allclose(data.subset(prompts=[1, 2], llms=["b"]).costs(), [[4.0], [2.0]])


def test_cell_costs_alone_fall_back_to_the_llm_mean():
    data = RoutingDataset.from_long(_records([0.1, 1.0, 0.3, 3.0, 0.2]), PROMPTS)
    np.testing.assert_allclose(data.costs(), [[0.1, 1.0], [0.3, 3.0], [0.2, 2.0]])
    assert data.prices().per_prompt.tolist() == pytest.approx([0.2, 2.0])


@pytest.mark.parametrize("bad, match", [(-1.0, "finite numbers >= 0; found -1.0 at row 2"),
                                        (float("inf"), "finite numbers >= 0"),
                                        ("x", "column cost")])
def test_bad_cell_costs_name_the_row(bad, match):
    cost = pd.Series([0.1, 0.2, bad, 0.3, 0.4], dtype=object)
    with pytest.raises(DataError, match=match):
        RoutingDataset.from_long(_records(cost), PROMPTS)


def test_nan_cell_cost_in_parquet_is_an_error_null_is_missing(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(_records(), preserve_index=False)
    bad = table.append_column("cost", pa.array([0.1, 0.2, np.nan, 0.3, 0.4], from_pandas=False))
    pq.write_table(bad, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="bad.parquet: column 'cost': costs must be finite numbers >= 0; found nan at row 2"):
        RoutingDataset.from_long(tmp_path / "bad.parquet", PROMPTS)
    ok = table.append_column("cost", pa.array([0.1, 0.2, None, 0.3, 0.4], type=pa.float64()))
    pq.write_table(ok, tmp_path / "ok.parquet")
    data = RoutingDataset.from_long(tmp_path / "ok.parquet", PROMPTS)
    assert data.costs()[1, 0] == pytest.approx(0.25)  # the unrecorded cell falls back to the LLM mean


@pytest.mark.parametrize("column, value, match", [
    ("input_price_per_mtok", -1.0, "'input_price_per_mtok' must be a finite number >= 0; LLM 'b'"),
    ("cost_per_prompt", "cheap", "not numeric for LLM 'b'"),
    ("cost_per_prompt", float("inf"), "finite number >= 0"),
])
def test_bad_prices_name_the_llm(column, value, match):
    llms = pd.DataFrame({"llm": ["a", "b"], column: pd.Series([1.0, value], dtype=object)})
    with pytest.raises(DataError, match=match):
        RoutingDataset.from_long(_records(), PROMPTS, llms)


def test_missing_and_unknown_prices_are_errors():
    llms = pd.DataFrame({"llm": ["a", "b"], "cost_per_prompt": [1.0, np.nan]})
    data = RoutingDataset.from_long(_records(), PROMPTS, llms)
    with pytest.raises(DataError, match=r"no price for 1 LLM\(s\) \['b'\]"):
        data.costs()
    with pytest.raises(DataError, match="prices for unknown LLM"):
        data.costs(prices={"a": {"cost_per_prompt": 1.0}, "zz": {"cost_per_prompt": 1.0}})
    with pytest.raises(DataError, match=r"no price for LLM\(s\) \['b'\]"):
        data.costs(prices={"a": {"cost_per_prompt": 1.0}})
    np.testing.assert_allclose(data.costs(prices={"a": {"cost_per_prompt": 1.0}, "b": {"cost_per_prompt": 2.0}}),
                               [[1.0, 2.0]] * 3)
    with pytest.raises(DataError, match="has no costs"):
        RoutingDataset.from_long(_records(), PROMPTS).costs()


def test_prices_round_trip_json():
    p = Prices.from_table(pd.DataFrame({"llm": ["a", "b"], "input_price_per_mtok": [1.0, None],
                                        "output_price_per_mtok": [2.0, None], "cost_per_prompt": [None, 0.5]}))
    back = Prices.from_dict(p.to_dict())
    np.testing.assert_array_equal(back.priced, [True, True])
    np.testing.assert_allclose(back.expected(np.array([1e6]))[0], [1.0 + 2.0 * DEFAULT_OUTPUT_TOKENS / 1e6, 0.5])


def test_routereval_pickle_round_trip_keeps_costs():
    llms = pd.DataFrame({"llm": ["a", "b"], "cost_per_prompt": [0.5, 2.0]})
    rec = pd.concat([_records(), pd.DataFrame({"prompt_id": ["p2"], "llm": ["b"], "score": [0.0]})])
    prompts = PROMPTS.assign(task="t")
    data = RoutingDataset.from_long(rec, prompts, llms)
    rd = data.to_routereval(settings={"easy": (2,)}, costs=data.costs())
    block = next(iter(rd["easy"][2].values()))["data"]
    assert {"train_cost", "val_cost", "test_cost"} <= set(block)
    back = RoutingDataset.from_routereval(rd)
    # RouterEval's prompt ids are positions in prompt-id order (here the dataset's order)
    assert back.prompt_ids.tolist() == ["0", "1", "2"]
    np.testing.assert_allclose(back.costs()[:, back.llm_index(["a", "b"])], data.costs())
