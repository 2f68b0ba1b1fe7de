"""Scaling curves: candidate sampling, exact r_o(p) per set, router curves, figure and files."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from recroute.errors import DataError
from recroute.eval import report
from recroute.eval.scaling import (
    P_GRID,
    r_o_curves,
    router_curve,
    routed_mu,
    sample_candidates,
    scaling_curves,
)

# 4 prompts × 4 LLMs
Y = np.array([
    [1.0, 0.0, 0.0, 1.0],
    [0.0, 1.0, 0.0, 0.0],
    [1.0, 1.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.5],
])


def test_sample_candidates_are_distinct_sorted_and_uniform():
    rng = np.random.default_rng(0)
    sets = sample_candidates(10, 3, 20000, rng)
    assert sets.shape == (20000, 3)
    assert (np.diff(sets, axis=1) > 0).all()  # distinct, ascending
    counts = np.bincount(sets.ravel(), minlength=10) / sets.size
    np.testing.assert_allclose(counts, 0.1, atol=0.01)
    assert sample_candidates(4, 4, 2, rng).tolist() == [[0, 1, 2, 3]] * 2
    with pytest.raises(DataError):
        sample_candidates(4, 5, 1, rng)


def test_full_pool_curve_is_exact():
    df = r_o_curves(Y, max_m=4, n_samples=7, min_m=4)
    best = np.mean([1, 1, 1, 0.5])
    mean = np.mean([0.5, 0.25, 0.5, 0.125])
    for row in df.itertuples():
        assert row.mu == pytest.approx(row.p * best + (1 - row.p) * mean)
        assert row.mu_std == pytest.approx(0.0)
    assert sorted(df.p) == list(P_GRID)


def test_m2_curve_converges_to_the_average_over_all_pairs():
    pairs = list(itertools.combinations(range(4), 2))
    oracle = np.mean([Y[:, list(c)].max(axis=1).mean() for c in pairs])
    random = np.mean([Y[:, list(c)].mean() for c in pairs])
    df = r_o_curves(Y, max_m=2, n_samples=20000, seed=1).set_index("p")
    assert df.loc[1.0, "mu"] == pytest.approx(oracle, abs=0.01)
    assert df.loc[0.0, "mu"] == pytest.approx(random, abs=0.01)
    assert df.loc[0.5, "mu"] == pytest.approx((oracle + random) / 2, abs=0.01)


def test_curves_have_the_tidy_schema_and_grow_with_m():
    rng = np.random.default_rng(0)
    Yr = (rng.random((50, 12)) < 0.5).astype(float)
    df = r_o_curves(Yr, max_m=8)
    assert list(df.columns) == ["curve", "p", "m", "mu", "mu_std", "n_samples"]
    assert set(df.m) == set(range(2, 9)) and len(df) == 7 * 11
    oracle = df[df.p == 1.0].set_index("m").mu
    assert oracle.is_monotonic_increasing


def test_router_with_perfect_scores_matches_the_oracle_curve():
    rng = np.random.default_rng(2)
    Yr = (rng.random((40, 9)) < 0.4).astype(float)
    oracle = r_o_curves(Yr, 6, n_samples=30, seed=5)
    perfect = router_curve(Yr, Yr, "perfect", 6, n_samples=30, seed=5)  # same seed: same sets
    np.testing.assert_allclose(perfect.mu.to_numpy(), oracle[oracle.p == 1.0].mu.to_numpy())
    assert perfect.p.isna().all() and set(perfect.curve) == {"perfect"}


def test_routed_mu_by_hand_with_ties_to_the_lower_position():
    scores = np.array([[0.5, 0.5, 0.1, 0.2]] * 4)
    sets = np.array([[0, 1], [2, 3]])
    # set (0, 1): tie -> LLM 0 -> mean of column 0 = 0.5; set (2, 3): LLM 3 -> 0.375
    np.testing.assert_allclose(routed_mu(scores, Y, sets), [0.5, 0.375])


def test_bad_pools_are_refused():
    with pytest.raises(DataError, match="NaN"):
        r_o_curves(np.array([[np.nan, 1.0], [0.0, 1.0]]))
    with pytest.raises(DataError, match="max_m"):
        r_o_curves(Y, max_m=9)
    with pytest.raises(DataError, match="2 LLMs"):
        r_o_curves(np.ones((3, 1)))


def test_scaling_curves_on_a_dataset_with_a_router(tmp_path, synthetic):
    data = synthetic(n_prompts=300, n_llms=10)
    df = scaling_curves(data, max_m=6, router="knn", n_samples=20)
    assert set(df.curve) == {"r_o", "knn"}
    knn = df[df.curve == "knn"].set_index("m").mu
    rand = df[(df.curve == "r_o") & (df.p == 0.0)].set_index("m").mu
    orac = df[(df.curve == "r_o") & (df.p == 1.0)].set_index("m").mu
    assert ((knn > rand) & (knn <= orac)).all()
    report.plot_scaling(df, tmp_path / "fig.png", reference=0.9)
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report.write_json(report.records(df), tmp_path / "rows.json")
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert rows[-1]["curve"] == "knn" and rows[-1]["p"] is None
    report.write_csv(df, tmp_path / "rows.csv")
    assert len(pd.read_csv(tmp_path / "rows.csv")) == len(df)


def test_truth_routers_have_no_router_curve(synthetic):
    with pytest.raises(DataError, match="r_o"):
        scaling_curves(synthetic(), max_m=3, router="oracle")
