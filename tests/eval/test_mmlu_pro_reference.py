"""On the bundled MMLU-Pro set, recroute reproduces what RouterEval's own scripts measured.

Reference (issue text): RouterEval's scripts on a RouterEval pickle of MMLU-Pro with MiniLM
embeddings, mean V_B over the three groups: PRknn 0.969 / 0.955 / 0.861 (m = 3, 5, 10), C-cluster
1.005 / 1.026 / 0.998, oracle 1.34 / 1.51 / 1.54.
"""

from __future__ import annotations

import pytest

from recroute import load_dataset
from recroute.eval.protocol import evaluate_dataset

REFERENCE = {
    "knn": {3: 0.969, 5: 0.955, 10: 0.861},
    "cluster": {3: 1.005, 5: 1.026, 10: 0.998},
    "oracle": {3: 1.34, 5: 1.51, 10: 1.54},
}


@pytest.fixture(scope="module")
def results():
    data = load_dataset("mmlu_pro")
    X = data.embedding_sets["all-MiniLM-L6-v2"]  # pinned: the reference was measured on torch MiniLM embeddings
    df = evaluate_dataset(data, list(REFERENCE), settings=("easy", "hard"), X=X)
    return df[df.group == "mean"].set_index(["router", "m"])["v_b"]


@pytest.mark.parametrize("router", list(REFERENCE))
def test_mean_v_b_matches_routereval_scripts(results, router):
    for m, expected in REFERENCE[router].items():
        digits = len(str(expected).split(".")[1])
        assert round(results[(router, m)], digits) == pytest.approx(expected), (router, m, results[(router, m)])
