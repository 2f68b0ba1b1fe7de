"""What a RouterEval results table says, in a few numbers (nothing here prints).

- ``router_kind(label)``: "bound" (oracle, best single LLM), "reference" (random, r_o(p)),
  "baseline" (RouterEval's learned baselines: kNN, LinearR, MLPR, C-cluster, MLC) or "recroute"
  (every other router: matrix factorization, two-tower, ensembles, ...);
- ``wide_table(df)``: one row per router, V_B and E_p per m (group means) and the seconds spent;
- ``headline(df)``: per (setting, m), the best recroute router against the best RouterEval baseline
  by mean V_B, with the best single LLM and the oracle as bounds.

``df`` is the tidy frame of :func:`recroute.eval.protocol.evaluate_router_dataset` (one row per router,
setting, m and group, plus the ``group == "mean"`` rows).
"""

from __future__ import annotations

import math

import pandas as pd

from recroute.eval.protocol import MEAN

BOUNDS = ("oracle", "best_single")
REFERENCES = ("random", "r_o")
ROUTEREVAL_BASELINES = ("knn", "linear", "mlp", "cluster", "mlc")
KINDS = ("bound", "reference", "baseline", "recroute")


def router_kind(label: str) -> str:
    """The kind of a router label (``"knn"``, ``"r_o:p=0.5"``, ``"ensemble:members=two_tower"``)."""
    name = str(label).split(":", 1)[0].strip()
    if name in BOUNDS:
        return "bound"
    if name in REFERENCES:
        return "reference"
    if name in ROUTEREVAL_BASELINES:
        return "baseline"
    return "recroute"


def _means(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["group"] == MEAN]


def wide_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per router (first-seen order): ``router, kind, v_b_m{m}..., e_p_m{m}..., seconds``.

    ``v_b_m{m}`` / ``e_p_m{m}`` are the group means at each m (ascending); ``seconds`` is the fit plus
    routing time summed over every group the router was evaluated on (NaN when the frame has no timings).
    """
    means = _means(df)
    ms = sorted(int(m) for m in means["m"].unique())
    routers = list(dict.fromkeys(means["router"]))
    rows = []
    for router in routers:
        part = means[means["router"] == router]
        by_m = {int(r.m): r for r in part.itertuples(index=False)}
        row = {"router": router, "kind": router_kind(router)}
        for metric in ("v_b", "e_p"):
            for m in ms:
                row[f"{metric}_m{m}"] = float(getattr(by_m[m], metric)) if m in by_m else math.nan
        groups = df[(df["router"] == router) & (df["group"] != MEAN)]
        if {"fit_seconds", "route_seconds"} <= set(df.columns) and len(groups):
            row["seconds"] = float(groups["fit_seconds"].sum() + groups["route_seconds"].sum())
        else:
            row["seconds"] = math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _best(part: pd.DataFrame) -> pd.Series | None:
    """The row with the highest V_B (the first one on ties); None when no row has a finite V_B."""
    finite = part[part["v_b"].notna()]
    if finite.empty:
        return None
    return finite.loc[finite["v_b"].idxmax()]


def headline(df: pd.DataFrame) -> pd.DataFrame:
    """Per (setting, m): the best recroute router against the best RouterEval baseline (by mean V_B).

    Columns: ``setting, m, router, router_v_b, router_e_p, baseline, baseline_v_b, baseline_e_p,
    delta_v_b`` (router - baseline), ``best_single_v_b, oracle_v_b`` and ``headroom`` = the share of the
    gap from the best single LLM (V_B 1) to the oracle that the best recroute router closes
    ((V_B - 1) / (oracle V_B - 1); negative below the best single LLM; NaN without an oracle row or a
    recroute router). A side with no router is None/NaN.
    """
    means = _means(df).copy()
    means["kind"] = means["router"].map(router_kind)
    rows = []
    for (setting, m), part in means.groupby(["setting", "m"], sort=False):
        ours = _best(part[part["kind"] == "recroute"])
        base = _best(part[part["kind"] == "baseline"])
        bounds = {name: part[part["router"].str.split(":").str[0] == name]["v_b"] for name in BOUNDS}
        oracle = float(bounds["oracle"].iloc[0]) if len(bounds["oracle"]) else math.nan
        single = float(bounds["best_single"].iloc[0]) if len(bounds["best_single"]) else 1.0
        row = {
            "setting": setting, "m": int(m),
            "router": None if ours is None else ours["router"],
            "router_v_b": math.nan if ours is None else float(ours["v_b"]),
            "router_e_p": math.nan if ours is None else float(ours["e_p"]),
            "baseline": None if base is None else base["router"],
            "baseline_v_b": math.nan if base is None else float(base["v_b"]),
            "baseline_e_p": math.nan if base is None else float(base["e_p"]),
        }
        row["delta_v_b"] = row["router_v_b"] - row["baseline_v_b"]
        row["best_single_v_b"] = single
        row["oracle_v_b"] = oracle
        gap = oracle - 1.0
        row["headroom"] = (row["router_v_b"] - 1.0) / gap if gap > 0 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)
