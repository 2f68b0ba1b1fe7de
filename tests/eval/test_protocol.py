"""The protocol runner: the official fixture's numbers, end-to-end pickles, and the invariants."""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from recroute.data.routereval import build_router_dataset, load_router_dataset
from recroute.errors import DataError
from recroute.eval import metrics
from recroute.eval.protocol import (
    GROUP_ORDER,
    ROW_KEYS,
    evaluate_dataset,
    evaluate_router_dataset,
    iter_group_data,
)
from recroute.routers import registry
from recroute.routers.base import Router

# the shared data: ../shared beside the repository, or $RECROUTE_SHARED
SHARED = Path(os.environ.get("RECROUTE_SHARED", Path(__file__).resolve().parents[2].parent / "shared"))
FIXTURE = SHARED / "routereval" / "llmrouter_nim_router_dataset.pkl"
REFERENCE = SHARED / "routereval" / "llmrouter_nim_reference.json"

# reference key -> (recroute spec, tolerance): deterministic routers to 3 decimals, Monte Carlo 0.01.
# kNN is checked against the range its tie orders allow (test_routereval_fixture.py) and, here, the
# protocol's kNN rows against that study's own values.
FIXTURE_ROUTERS = {
    "cluster": ("cluster", 1e-3),
    "oracle": ("oracle", 1e-3),
    "r_o_0.5": ("r_o:p=0.5", 0.01),
    "random": ("random", 0.01),
}


# ---------------------------------------------------------------------- the official fixture
@pytest.fixture(scope="module")
def routereval_pickle():
    for path in (FIXTURE, REFERENCE):
        if not path.exists():
            pytest.skip(f"shared RouterEval fixture not found at {path} (set RECROUTE_SHARED)")
    return FIXTURE


@pytest.fixture(scope="module")
def fixture_results(routereval_pickle):
    reference = json.loads(REFERENCE.read_text())["results"]
    specs = [spec for spec, _ in FIXTURE_ROUTERS.values() if _router_available(spec)] + ["knn"]
    rd = load_router_dataset(routereval_pickle)
    return evaluate_router_dataset(rd, specs, None, ("easy",)), reference


def _router_available(spec: str) -> bool:
    name = registry.parse_router_spec(spec)[0]
    return importlib.util.find_spec(registry.ROUTERS[name][0]) is not None


@pytest.mark.parametrize("ref_name", list(FIXTURE_ROUTERS))
def test_fixture_reproduces_the_official_numbers(fixture_results, ref_name):
    df, reference = fixture_results
    spec, tol = FIXTURE_ROUTERS[ref_name]
    if not _router_available(spec):
        pytest.skip(f"router module for {spec!r} is not written yet")
    label = registry.spec_label(spec)
    checked = 0
    for key, by_router in reference.items():
        setting, m, group = key.split("/")
        row = df[(df.router == label) & (df.setting == setting) & (df.m == int(m[2:])) & (df.group == group)]
        assert len(row) == 1, key
        row = row.iloc[0]
        ref = by_router[ref_name]
        # the reference's group means are rounded to 4 decimals
        assert row.mu_o == pytest.approx(ref["mu"], abs=tol), (key, "mu")
        assert row.v_b == pytest.approx(ref["vb"], abs=tol), (key, "vb")
        assert row.e_p == pytest.approx(ref["ep"], abs=max(tol, 1e-3)), (key, "ep")
        checked += 1
    assert checked == 8  # m = 3, 5 × (three groups + mean)


def test_fixture_knn_rows_are_the_tie_studys_values(fixture_results, routereval_pickle):
    from recroute.eval.ties import tie_ranges

    df, _ = fixture_results
    ties = tie_ranges(load_router_dataset(routereval_pickle), ("easy",), k=5)
    rows = df[df.router == "knn"].merge(ties, on=["setting", "m", "group"], suffixes=("", "_ties"))
    assert len(rows) == 8
    for metric in ("mu_o", "v_b", "e_p"):
        np.testing.assert_allclose(rows[metric], rows[f"{metric}_ties"], rtol=0, atol=1e-12)


def test_fixture_rows_have_the_tidy_schema(fixture_results):
    df, _ = fixture_results
    assert set(ROW_KEYS) <= set(df.columns)
    assert set(df.group) == {*GROUP_ORDER, "mean"}
    assert df.v_r.isna().all()  # no benchmark given: no reference score


def test_monte_carlo_option_reproduces_the_official_estimator(routereval_pickle):
    rd = load_router_dataset(routereval_pickle)
    exact = evaluate_router_dataset(rd, ["r_o:p=0.5"], settings="easy")
    mc = evaluate_router_dataset(rd, ["r_o:p=0.5"], settings="easy", monte_carlo_runs=1000, seed=3)
    np.testing.assert_allclose(mc.mu_o, exact.mu_o, atol=0.01)
    np.testing.assert_allclose(mc.e_p, exact.e_p)  # E_p is the distribution's, never sampled


# ---------------------------------------------------------------------- helpers
class SpyRouter(Router):
    """Records the training target it was fitted on; scores = training means (feature-free)."""

    name = "spy"
    needs_features = False
    seen: ClassVar[list[np.ndarray]] = []

    def __init__(self) -> None:
        pass

    def _fit(self, Y, X):
        SpyRouter.seen.append(Y.copy())
        self.means_ = np.nanmean(Y, axis=0)

    def _score(self, X, n):
        return np.broadcast_to(self.means_, (n, self.n_llms_)).copy()


class FailingRouter(SpyRouter):
    name = "failing"

    def _score(self, X, n):
        raise RuntimeError("boom")


class LimitedRouter(SpyRouter):
    """Declares a fit limit of 1,000 cells: a pool of 3 LLMs × 240 training prompts fits, 5 LLMs do not."""

    name = "limited"
    max_fit_cells = 1000.0


@pytest.fixture
def spy_routers(monkeypatch):
    monkeypatch.setitem(registry.ROUTERS, "spy", (__name__, "SpyRouter"))
    monkeypatch.setitem(registry.ROUTERS, "failing", (__name__, "FailingRouter"))
    monkeypatch.setitem(registry.ROUTERS, "limited", (__name__, "LimitedRouter"))
    SpyRouter.seen.clear()
    yield


# ---------------------------------------------------------------------- end to end on built pickles
@pytest.mark.parametrize("continuous", [False, True])
def test_built_pickle_evaluates_end_to_end(continuous, synthetic):
    data = synthetic(continuous=continuous)
    df = evaluate_dataset(data, ["random", "oracle", "best_single", "r_o:p=0.5", "knn"], settings="easy")
    assert set(df.setting) == {"easy"} and set(df.m) == {3, 5}
    assert len(df) == 5 * 2 * 4
    assert df[list(("mu_o", "v_b", "e_p"))].notna().all().all()
    groups = df[df.group != "mean"]
    for (router, m), part in groups.groupby(["router", "m"]):
        mean = df[(df.router == router) & (df.m == m) & (df.group == "mean")].iloc[0]
        for col in ("mu_o", "v_r", "v_b", "e_p"):
            assert mean[col] == pytest.approx(part[col].mean())  # plain mean over the three groups
        assert part.group.tolist() == list(GROUP_ORDER)
    rand = df[df.router == "random"]
    np.testing.assert_allclose(rand.e_p, np.log2(rand.m))  # Random's E_p = log2(m)
    assert (df[df.router == "best_single"].v_b <= 1 + 1e-12).all()
    assert (df[df.router == "best_single"].e_p == 0).all()
    oracle = df[df.router == "oracle"].set_index(["m", "group"]).mu_o
    for router, part in df.groupby("router"):
        assert (part.set_index(["m", "group"]).mu_o <= oracle + 1e-12).all(), router
    np.testing.assert_allclose(df.v_r, df.mu_o / 0.92)  # the dataset's single benchmark: gsm8k
    shares = groups.share.map(sum)
    np.testing.assert_allclose(shares, 1.0)


def test_knn_auc_is_informative_on_a_learnable_dataset(synthetic):
    df = evaluate_dataset(synthetic(n_prompts=600), ["knn"], settings="easy")
    assert df[df.router == "knn"].auc.mean() > 0.6


def test_v_r_is_nan_without_a_single_benchmark(synthetic):
    data = synthetic(benchmark=None)
    df = evaluate_dataset(data, ["oracle"], settings="easy")
    assert df.v_r.isna().all()
    df = evaluate_dataset(data, ["oracle"], settings="easy", benchmark="mmlu_pro")
    np.testing.assert_allclose(df.v_r, df.mu_o / 0.637)


def test_training_target_follows_test_router(spy_routers, synthetic):
    # continuous scores: train_label; binary: the scores themselves
    rd = build_router_dataset(synthetic(continuous=True), {"easy": (3,)})
    evaluate_router_dataset(rd, ["spy"], settings="easy")
    for seen, gd in zip(SpyRouter.seen, iter_group_data(rd, ("easy",))):
        np.testing.assert_array_equal(seen, rd["easy"][3][gd.group]["data"]["train_label"])
    SpyRouter.seen.clear()
    evaluate_router_dataset(rd, ["spy"], settings="easy", target="score")
    np.testing.assert_array_equal(SpyRouter.seen[0], rd["easy"][3]["all_strong"]["data"]["train_score"])
    SpyRouter.seen.clear()
    rd_bin = build_router_dataset(synthetic(), {"easy": (3,)}, labels="always")
    evaluate_router_dataset(rd_bin, ["spy"], settings="easy")
    np.testing.assert_array_equal(SpyRouter.seen[0], rd_bin["easy"][3]["all_strong"]["data"]["train_score"])


def test_a_failing_router_raises_and_names_the_group(spy_routers, synthetic):
    rd = build_router_dataset(synthetic(), {"easy": (3,)})
    with pytest.raises(RuntimeError, match="boom") as info:
        evaluate_router_dataset(rd, ["oracle", "failing"], settings="easy")
    assert any("failing" in note and "easy/m=3/all_strong" in note for note in info.value.__notes__)


def test_a_refused_pool_is_recorded_and_the_other_pools_go_on(spy_routers, synthetic, monkeypatch):
    from recroute.errors import FitTooLargeError

    monkeypatch.delenv("RECROUTE_FIT_LIMIT", raising=False)
    rd = build_router_dataset(synthetic(), {"easy": (3, 5)})
    n_train = len(rd["easy"][5]["all_strong"]["data"]["train_score"])
    assert n_train * 3 <= 1000 < n_train * 5  # 240 training prompts: 720 cells fit, 1,200 do not
    with pytest.raises(FitTooLargeError, match="at most 1,000 cells") as info:
        evaluate_router_dataset(rd, ["limited"], settings="easy")  # the default raises
    assert any("easy/m=5/all_strong" in note for note in info.value.__notes__)
    df = evaluate_router_dataset(rd, ["limited", "spy"], settings="easy", refusals="record")
    limited, spy = df[df.router == "limited"], df[df.router == "spy"]
    assert len(limited) == 8  # m = 3 and 5, three groups and the mean each
    refused = limited[limited.m == 5]
    assert refused.refused.str.contains(f"got {n_train} × 5 = {n_train * 5:,}").all()
    assert refused[["mu_o", "v_b", "e_p", "auc"]].isna().all().all()
    fitted = limited[limited.m == 3]
    assert fitted.refused.isna().all() and spy.refused.isna().all()
    # the pool that fits: the same numbers as the unlimited spy router (same scores, same groups)
    np.testing.assert_allclose(fitted.v_b.to_numpy(), spy[spy.m == 3].v_b.to_numpy())
    with pytest.raises(DataError, match="refusals must be one of"):
        evaluate_router_dataset(rd, ["spy"], settings="easy", refusals="skip")


def test_bad_inputs_give_clear_errors(synthetic):
    data = synthetic()
    rd = build_router_dataset(data, {"easy": (3,)})
    with pytest.raises(DataError, match="unknown router"):
        evaluate_router_dataset(rd, ["nope"], settings="easy")
    with pytest.raises(DataError, match="unknown setting"):
        evaluate_router_dataset(rd, ["oracle"], settings="medium")
    with pytest.raises(DataError, match="no candidate group"):
        evaluate_router_dataset(rd, ["oracle"], settings="hard")
    del rd["embedding"]
    with pytest.raises(DataError, match="need prompt embeddings"):
        evaluate_router_dataset(rd, ["oracle", "knn"], settings="easy")
    out = evaluate_router_dataset(rd, ["oracle", "best_single"], settings="easy")  # feature-free: fine
    assert len(out) == 8


def test_hard_alone_sees_the_same_groups_as_easy_then_hard(synthetic):
    data = synthetic(n_llms=60, n_prompts=120)
    both = evaluate_dataset(data, ["oracle"], settings=("easy", "hard"))
    hard = evaluate_dataset(data, ["oracle"], settings="hard")
    timing = ["fit_seconds", "route_seconds"]
    pd.testing.assert_frame_equal(
        both[both.setting == "hard"].drop(columns=timing).reset_index(drop=True),
        hard.drop(columns=timing).reset_index(drop=True),
    )
    assert set(hard.m) == {10}  # m = 100 and 1000 need larger pools


def test_quiet_prints_nothing(capsys, synthetic):
    evaluate_dataset(synthetic(), ["oracle"], settings="easy", quiet=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_exact_expectation_matches_metrics(synthetic):
    rd = build_router_dataset(synthetic(continuous=True), {"easy": (3,)})
    df = evaluate_router_dataset(rd, ["oracle", "random", "r_o:p=0.3"], settings="easy")
    for gd in iter_group_data(rd, ("easy",)):
        rows = df[(df.group == gd.group)].set_index("router")
        assert rows.loc["oracle", "mu_o"] == pytest.approx(metrics.r_o_expected_mu(gd.Y_test, 1.0))
        assert rows.loc["random", "mu_o"] == pytest.approx(metrics.r_o_expected_mu(gd.Y_test, 0.0))
        assert rows.loc["r_o:p=0.3", "mu_o"] == pytest.approx(metrics.r_o_expected_mu(gd.Y_test, 0.3))
        assert rows.loc["oracle", "e_p"] == pytest.approx(metrics.e_p(metrics.oracle_distribution(gd.Y_test)))
        assert math.isnan(rows.loc["oracle", "auc"])
