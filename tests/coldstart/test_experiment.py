"""The cold-start experiment runner: its pieces by hand, a small real slice end to end, and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute.coldstart.experiment import (
    ROW_KEYS, _pool_mu, llm_folds, plot_coldstart, probability, response_features, run_coldstart,
)
from recroute.data.dataset import RoutingDataset
from recroute.errors import DataError


def test_pool_mu_by_hand():
    P = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.8]])
    Y = np.array([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    # pool (0, 1): picks 0 then 1 -> 0, 0; pool (1, 2): picks 2, 2 -> 1, 1
    assert _pool_mu(P, Y, [np.array([0, 1]), np.array([1, 2])]) == [0.0, 1.0]


def test_llm_folds_hold_every_llm_out_once():
    folds = llm_folds(23, 0.2, seed=0)
    assert len(folds) == 5 and sorted(np.concatenate(folds).tolist()) == list(range(23))
    assert len(llm_folds(7, "loo", seed=0)) == 7
    with pytest.raises(DataError, match="holdout"):
        llm_folds(10, 0.9, seed=0)
    with pytest.raises(DataError, match="at least 3 LLMs"):
        llm_folds(2, 0.2, seed=0)


def test_response_features_are_centred_svd_scores():
    Y = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, np.nan]])
    Z = response_features(Y, dim=2)
    # the NaN takes its LLM's mean (0.5); columns are centred, so the scores are too, and U S V' = Z_c
    filled = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.5]])
    centred = filled - filled.mean(axis=0)
    np.testing.assert_allclose(Z.sum(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(Z @ Z.T, centred @ centred.T, atol=1e-6)


def test_probability_follows_the_score_scale():
    class Logit:
        score_scale = "logit"

    class Raw:
        score_scale = "raw"

    np.testing.assert_allclose(probability(Logit(), np.array([0.0])), [0.5])
    np.testing.assert_allclose(probability(Raw(), np.array([-0.2, 0.4, 1.3])), [0.0, 0.4, 1.0])


@pytest.fixture(scope="module")
def arc_slice(shared_data):
    """60 ARC items x 120 LLMs of the Open LLM Leaderboard v1 (real, binary, no NaN)."""
    folder = shared_data / "open_llm_leaderboard_v1_arc"
    records = pd.read_parquet(folder / "records.parquet")
    prompts = sorted(records["prompt_id"].unique())[:60]
    llms = sorted(records["llm"].unique())[:120]
    part = records[records["prompt_id"].isin(prompts) & records["llm"].isin(llms)]
    return RoutingDataset.from_long(part, name="arc_slice")


@pytest.fixture(scope="module")
def arc_result(arc_slice):
    return run_coldstart(arc_slice, ["knn:k=1", "als:factors=8,iterations=5"], ["random", "anchor_correctness"],
                         ks=(0, 5, 20, 1000), features="responses", max_folds=1, seed=0)


def test_runner_rows_on_a_real_slice(arc_result, arc_slice):
    rows = arc_result.rows
    assert list(rows.columns[: len(ROW_KEYS)]) == list(ROW_KEYS)
    assert sorted(rows["k"].unique()) == [0, 5, 20]  # k = 1000 exceeds the 48 train prompts: skipped
    assert set(rows["router"]) == {"plain_mean", "probe_mean", "knn:k=1", "als:factors=8,iterations=5"}
    plain = rows[rows.router == "plain_mean"]
    assert set(plain["strategy"]) == {"random"} and (plain["auc"] == 0.5).all() and plain["mu_o_ratio"].isna().all()
    routers = rows[~rows.router.isin(["plain_mean", "probe_mean"])]
    assert routers[["mae", "auc", "log_loss", "mu_o_ratio"]].notna().all().all()
    assert (rows["n_llms"] == 24).all()  # one fold of 20 % of 120 LLMs
    knn = routers[(routers.router == "knn:k=1") & (routers.strategy == "anchor_correctness")].set_index("k")
    assert knn.loc[20, "mae"] < knn.loc[0, "mae"]  # probes help
    assert 0.7 < knn.loc[20, "auc"] <= 1.0


def test_plain_mean_rows_recomputed_by_hand(arc_result, arc_slice):
    per = arc_result.per_llm
    Y = arc_slice.dense(np.nan)
    plain = per[(per.router == "plain_mean") & (per.k == 5)]
    for record in plain.itertuples():
        assert record.true == pytest.approx(float(np.nanmean(Y[:, record.llm])))
    assert arc_result.rows.set_index(["router", "k"]).loc[("plain_mean", 5), "mae"] == pytest.approx(
        float(np.mean(np.abs(plain["estimate"] - plain["true"]))))
    # k = 0: the estimate is the base LLMs' mean result, the same for every held-out LLM
    assert per[(per.router == "plain_mean") & (per.k == 0)]["estimate"].nunique() == 1


def test_runner_is_deterministic(arc_slice, arc_result):
    again = run_coldstart(arc_slice, ["knn:k=1", "als:factors=8,iterations=5"], ["random", "anchor_correctness"],
                          ks=(0, 5, 20, 1000), features="responses", max_folds=1, seed=0)
    pd.testing.assert_frame_equal(again.rows, arc_result.rows)


def test_estimator_and_adaptive_rows(arc_slice):
    result = run_coldstart(arc_slice, [], ["random", "adaptive", "adaptive_irt"], ks=(0, 5, 10),
                           estimators=["llm_mixture", "irt", "gp_irt"], max_folds=1, seed=0)
    rows = result.rows.set_index(["router", "strategy", "k"])
    # no probe mean of adaptive probes, no gp-IRT on them (both would average a biased probe choice)
    assert not any(s in ("adaptive", "adaptive_irt") for r, s, _ in rows.index if r in ("probe_mean", "gp_irt"))
    for name in ("llm_mixture", "irt"):
        assert rows.loc[(name, "adaptive", 10), "mae"] < rows.loc[(name, "adaptive", 0), "mae"]
        assert np.isnan(rows.loc[(name, "adaptive", 10), "mu_o_ratio"])  # estimators do not route
    # gp_irt at k probes: lambda * irt + (1 - lambda) * probe mean, recomputed from the per-LLM rows
    per = result.per_llm
    irt = per[(per.router == "irt") & (per.strategy == "random") & (per.k == 5)].set_index("llm")["estimate"]
    gp = per[(per.router == "gp_irt") & (per.strategy == "random") & (per.k == 5)].set_index("llm")["estimate"]
    plain = per[(per.router == "plain_mean") & (per.k == 5)].set_index("llm")["estimate"]
    lam = (gp - plain) / (irt - plain)
    lam = lam[np.abs(irt - plain) > 1e-3]
    assert len(lam) and np.allclose(lam, lam.iloc[0]) and 0 < lam.iloc[0] <= 1
    with pytest.raises(DataError, match="unknown estimator"):
        run_coldstart(arc_slice, [], ["random"], ks=(5,), estimators=["magic"])
    with pytest.raises(DataError, match="at least one router or estimator"):
        run_coldstart(arc_slice, [], ["random"], ks=(5,))


def test_runner_errors(arc_slice):
    with pytest.raises(DataError, match="cannot place new LLMs"):
        run_coldstart(arc_slice, ["cluster"], ["random"], ks=(5,))
    with pytest.raises(DataError, match="unknown probe strategy"):
        run_coldstart(arc_slice, ["knn"], ["clever"], ks=(5,))
    with pytest.raises(DataError, match="neither prompt text nor embeddings"):
        run_coldstart(arc_slice, ["knn"], ["random"], ks=(5,), features="text")


def test_plot(arc_result, tmp_path):
    plot_coldstart(arc_result.rows, tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_writes_tidy_rows(shared_data, tmp_path, arc_slice):
    from recroute.cli.main import app

    folder = tmp_path / "arc_slice"
    arc_slice.to_long().to_parquet(tmp_path / "records.parquet")
    folder.mkdir()
    (tmp_path / "records.parquet").rename(folder / "records.parquet")
    out = tmp_path / "rows.json"
    result = CliRunner().invoke(app, [
        "coldstart", "--dataset", str(folder), "--routers", "knn", "--strategies", "random,informative",
        "--k", "0,5", "--holdout", "0.2", "--max-folds", "1", "--features", "responses", "--json", str(out),
        "--plot", str(tmp_path / "c.png"),
    ])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert {r["router"] for r in rows} == {"knn", "plain_mean", "probe_mean", "llm_mixture"}  # + the default estimator
    assert {r["strategy"] for r in rows if r["router"] == "knn"} == {"random", "informative"}
    assert all(set(ROW_KEYS) <= set(r) for r in rows)
    assert "New-LLM cold start" in result.output
    # plain_mean rows even when random is not among the strategies asked for
    out2 = tmp_path / "rows2.json"
    result = CliRunner().invoke(app, [
        "coldstart", "--dataset", str(folder), "--routers", "knn", "--strategies", "informative", "--k", "0,5",
        "--estimators", "", "--max-folds", "1", "--features", "responses", "--json", str(out2), "--quiet",
    ])
    assert result.exit_code == 0, result.output
    rows = json.loads(out2.read_text())
    assert {(r["router"], r["strategy"]) for r in rows} == {
        ("plain_mean", "random"), ("probe_mean", "informative"), ("knn", "informative")}
    bad = CliRunner().invoke(app, ["coldstart", "--dataset", str(folder), "--k", "five"])
    assert bad.exit_code == 2 and "--k must be" in bad.output
    # the defaults: the best measured recipe (adaptive probes, llm_mixture) beside the plain mean, all folds
    # on this 120-LLM slice
    out3 = tmp_path / "rows3.json"
    result = CliRunner().invoke(app, ["coldstart", "--dataset", str(folder), "--k", "0,5,10", "--json", str(out3), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out3.read_text())
    assert {(r["router"], r["strategy"]) for r in rows} == {("plain_mean", "random"), ("llm_mixture", "adaptive")}
    assert {r["folds"] for r in rows} == {5} and {r["k"] for r in rows} == {0, 5, 10}
    mix = {r["k"]: r["mae"] for r in rows if r["router"] == "llm_mixture"}
    plain = {r["k"]: r["mae"] for r in rows if r["router"] == "plain_mean"}
    assert mix[10] < plain[10] and mix[10] < mix[0]
    for option, value, message in [("--estimators", "magic", "unknown estimator"), ("--max-folds", "0", "--max-folds"),
                                   ("--estimators", "irt:eps=1", "unknown parameters")]:
        bad = CliRunner().invoke(app, ["coldstart", "--dataset", str(folder), option, value])
        assert bad.exit_code == 2 and message in bad.output, bad.output
