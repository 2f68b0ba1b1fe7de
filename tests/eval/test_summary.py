"""recroute.eval.summary: router kinds, the wide table and the headline, pinned by hand-computed values."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recroute.eval.summary import headline, router_kind, wide_table


def test_router_kinds():
    assert [router_kind(x) for x in ("oracle", "best_single", "random", "r_o:p=0.5")] == [
        "bound", "bound", "reference", "reference"]
    assert [router_kind(x) for x in ("knn", "linear", "mlp:epochs=30", "cluster", "mlc")] == ["baseline"] * 5
    assert [router_kind(x) for x in ("als", "two_tower", "ensemble:members=two_tower,n_seeds=3", "soft_cluster",
                                     "debiased:router='knn'")] == ["recroute"] * 5


def _frame() -> pd.DataFrame:
    """Mean rows at m = 3 and m = 5 and two timed group rows of two_tower at m = 3."""
    v_b = {3: {"oracle": 1.30, "best_single": 1.0, "knn": 0.95, "linear": 1.02, "als": 1.01, "two_tower": 1.06},
           5: {"oracle": 1.50, "best_single": 1.0, "knn": 1.10, "linear": 1.00, "als": 0.99, "two_tower": 1.05}}
    e_p = {3: {"knn": 1.5, "linear": 1.55, "als": 1.4, "two_tower": 1.57},
           5: {"knn": 2.2, "linear": 2.3, "als": 2.0, "two_tower": 2.31}}
    rows = []
    for m in (3, 5):
        for router, vb in v_b[m].items():
            rows.append({"router": router, "setting": "easy", "m": m, "group": "mean", "v_b": vb,
                         "e_p": e_p[m].get(router, 0.0), "fit_seconds": 9.0, "route_seconds": 9.0})
    for group, fit, route in (("all_strong", 1.0, 0.5), ("all_weak", 2.0, 0.25)):
        rows.append({"router": "two_tower", "setting": "easy", "m": 3, "group": group, "v_b": 1.0, "e_p": 1.0,
                     "fit_seconds": fit, "route_seconds": route})
    return pd.DataFrame(rows)


def test_headline_compares_the_best_of_each_side():
    out = headline(_frame()).set_index("m")
    m3, m5 = out.loc[3], out.loc[5]
    assert (m3["router"], m3["baseline"]) == ("two_tower", "linear")
    assert m3["router_v_b"] == 1.06 and m3["router_e_p"] == 1.57 and m3["baseline_e_p"] == 1.55
    assert m3["delta_v_b"] == pytest.approx(0.04)
    assert m3["headroom"] == pytest.approx(0.06 / 0.30)  # (1.06 - 1) / (1.30 - 1)
    assert (m5["router"], m5["baseline"]) == ("two_tower", "knn")
    assert m5["delta_v_b"] == pytest.approx(-0.05)
    assert m5["headroom"] == pytest.approx(0.05 / 0.50)  # the recroute router's share, though the baseline leads
    assert m5["oracle_v_b"] == 1.5 and m5["best_single_v_b"] == 1.0


def test_headline_with_one_side_missing():
    df = _frame()
    only_baselines = headline(df[~df["router"].isin(["als", "two_tower"])]).set_index("m")
    assert only_baselines.loc[3, "router"] is None and math.isnan(only_baselines.loc[3, "router_v_b"])
    assert only_baselines.loc[3, "baseline"] == "linear" and math.isnan(only_baselines.loc[3, "delta_v_b"])


def test_wide_table_rows_columns_and_seconds():
    wide = wide_table(_frame())
    assert list(wide["router"]) == ["oracle", "best_single", "knn", "linear", "als", "two_tower"]
    assert list(wide.columns) == ["router", "kind", "v_b_m3", "v_b_m5", "e_p_m3", "e_p_m5", "seconds"]
    tt = wide.set_index("router").loc["two_tower"]
    assert (tt["kind"], tt["v_b_m3"], tt["v_b_m5"], tt["e_p_m5"]) == ("recroute", 1.06, 1.05, 2.31)
    assert tt["seconds"] == pytest.approx(3.75)  # (1.0 + 0.5) + (2.0 + 0.25): group rows only
    assert math.isnan(wide.set_index("router").loc["knn", "seconds"])  # no group rows for knn
