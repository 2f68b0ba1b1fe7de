"""The quality–cost study on any dataset: per-cell costs only or flat prices only, continuous scores,
missing cells, RouterEval's split when there is no split column, and a two-LLM pool."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recroute.cost.tradeoff import cost_ready_spec, evaluation_split, run_tradeoff
from recroute.data.dataset import RoutingDataset
from recroute.data.synthetic import make_synthetic
from recroute.errors import DataError


def _with_cell_costs(data: RoutingDataset, seed: int = 0) -> RoutingDataset:
    """Per-cell costs only (no prices): each LLM's cost level times a per-prompt length factor."""
    rng = np.random.default_rng(seed)
    level = np.geomspace(0.1, 5.0, data.n_llms)[::-1]  # the strongest (first) LLMs are the dearest
    length = rng.uniform(0.5, 2.0, data.n_prompts)
    coo = data.scores.tocoo()
    costs = sp.csr_matrix((level[coo.col] * length[coo.row], (coo.row, coo.col)), shape=data.shape)
    return RoutingDataset(data.scores, data.prompts, data.llms, data.embeddings, data.embedding_name,
                          name="synthetic-cells", cell_costs=costs)


def test_cell_costs_only_continuous_scores_missing_cells():
    data = _with_cell_costs(make_synthetic(500, 12, 4, binary=False, missing_rate=0.2, popularity_skew=0.0,
                                           random_state=1))
    train, test = evaluation_split(data)  # no split column: RouterEval's split
    assert len(test) == pytest.approx(0.1 * len(data), abs=5) and not np.intersect1d(train, test).size
    result = run_tradeoff(data, ["knn:k=10", "logistic"], target_costs=[1.0])
    kinds = {p["kind"] for p in result.points}
    assert kinds == {"single", "zero_router", "oracle", "router"}
    for row in result.summary:
        assert row["aiq"] > row["zero_aiq"]  # skills are visible in the features: routing beats mixing
        assert 0 < row["cost_to_best_fraction"] < 1
        cal = row["cost_calibration"][0]
        assert abs(cal["relative_error"]) < 0.2  # calibrated on held-out training prompts, 50 test prompts


def test_flat_prices_only_and_a_two_llm_pool():
    data = make_synthetic(300, 5, 3, random_state=2)
    data.llms["cost_per_prompt"] = [5.0, 4.0, 3.0, 2.0, 1.0]
    result = run_tradeoff(data, ["logistic"], pool=["llm_0", "llm_4"], at_cost=3.0)
    row = result.summary[0]
    assert {"apgr", "cpt50", "cpt80"} <= set(row)
    assert 0 <= row["apgr"] <= 1.5 and 0 <= row["cpt50"] <= row["cpt80"] <= 1
    assert row["quality_at_cost"] >= row["zero_quality_at_cost"] - 0.05


def test_calibration_choice_and_bad_specs():
    assert cost_ready_spec("knn:k=5") == "knn:k=5"  # already P(correct)
    assert cost_ready_spec("als:factors=8,iterations=5") == "debiased:inner=als:factors=8;iterations=5,calibration='isotonic'"
    assert cost_ready_spec("knn:k=5", "platt") == "debiased:inner=knn:k=5,calibration='platt'"
    data = make_synthetic(100, 3, 2, random_state=0)
    data.llms["cost_per_prompt"] = [1.0, 2.0, 3.0]
    with pytest.raises(DataError, match="does not learn scores"):
        run_tradeoff(data, ["oracle"])
    with pytest.raises(DataError, match="calibration must be"):
        cost_ready_spec("knn", "sigmoid")
