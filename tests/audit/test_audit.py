"""Router audits: regret, shares and calibration pinned by hand; the README kNN bundle's top findings on
MMLU-Pro against a hand computation; the decision-log audit (windows, collapse, fallbacks, drift)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recroute.audit.audit import audit_dataset, audit_logs, cross_fit_scores, regret_table, share_tables
from recroute.errors import DataError

NAN = np.nan


def test_regret_table_by_hand():
    Y = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, NAN], [1, 1, 0], [0, 0, 1]], dtype=np.float64)
    tasks = np.array(["a", "a", "a", "b", "b", "b"], dtype=object)
    choice = np.array([0, 1, 2, 0, 0, 1])
    t = regret_table(Y, choice, tasks, ["x", "y", "z"]).set_index("task")
    assert t.loc["a", "routed"] == pytest.approx(1 / 3) and t.loc["a", "best_llm"] == "x"  # x and z tie at 2/3
    assert t.loc["a", "regret_best"] == pytest.approx(100 / 3) and t.loc["a", "regret_oracle"] == pytest.approx(200 / 3)
    assert (t.loc["a", "lost_to"], t.loc["a", "n_lost"], t.loc["a", "lost_share"]) == ("z", 1, 1.0)
    assert t.loc["b", "best_llm"] == "y" and t.loc["b", "regret_best"] == pytest.approx(100 / 3)
    assert (t.loc["b", "top_llm"], t.loc["b", "top_share"]) == ("x", pytest.approx(2 / 3))
    assert (t.loc["b", "lost_to"], t.loc["b", "n_lost"]) == ("x", 1)
    assert t.loc["(all)", "best_llm"] == "z" and t.loc["(all)", "best"] == pytest.approx(0.6)  # 3 of 5 observed
    assert t.loc["(all)", "regret_best"] == pytest.approx(100 * (0.6 - 2 / 6))
    overall, per_task = share_tables(Y, choice, tasks, ["x", "y", "z"])
    assert overall["share"].tolist() == pytest.approx([3 / 6, 2 / 6, 1 / 6])
    # oracle: uniform over the right LLMs (an unobserved cell counts as wrong)
    assert overall["oracle_share"].tolist() == pytest.approx([(0.5 + 0.5 + 0.5) / 6, (0.5 + 1 + 0.5) / 6,
                                                             (0.5 + 1 + 1) / 6])
    assert set(per_task["task"]) == {"a", "b"}


@pytest.fixture(scope="module")
def readme_audit(mmlu):
    """The README's bundle (``recroute fit --dataset mmlu_pro --router knn``: default kNN on every prompt),
    audited on the bundled MMLU-Pro with 5-fold cross-fitting."""
    from recroute.routers.knn import KNNRouter

    router = KNNRouter().fit(mmlu, mmlu.embeddings)
    return router, audit_dataset(router, mmlu, mmlu.embeddings, cross_fit=5, random_state=0)


def test_top_findings_name_the_tasks_with_the_largest_regret(mmlu, readme_audit):
    from sklearn.model_selection import KFold

    from recroute.routers.knn import KNNRouter

    _, audit = readme_audit
    choice = np.empty(mmlu.n_prompts, dtype=np.int64)  # by hand: refit on 4 folds, route the fifth
    for train, test in KFold(5, shuffle=True, random_state=0).split(np.arange(mmlu.n_prompts)):
        fold = KNNRouter().fit(mmlu.subset(prompts=train), mmlu.embeddings[train])
        choice[test] = fold.route(mmlu.embeddings[test])[0][:, 0]
    long = mmlu.to_long()
    long = long.assign(task=mmlu.prompts.set_index("prompt_id").loc[long["prompt_id"], "task"].to_numpy())
    best = long.groupby(["task", "llm"])["score"].mean().groupby("task").max()
    Y = mmlu.dense(np.nan)
    routed = pd.Series(Y[np.arange(mmlu.n_prompts), choice], index=mmlu.prompts["task"].to_numpy())
    regret = (100 * (best - routed.groupby(level=0).mean())).sort_values(ascending=False)
    top3 = list(regret.index[:3])
    findings = audit.findings
    assert [f["task"] for f in findings if f["kind"] == "regret"][:3] == top3
    assert top3 == [f.get("task") for f in findings[:5] if f["kind"] == "regret"][:3]
    first = next(f for f in findings if f["kind"] == "regret")
    assert first["regret_best"] == pytest.approx(regret.iloc[0]) and first["task"] in first["text"]
    assert audit.summary["routed"] == pytest.approx(np.nanmean(Y[np.arange(mmlu.n_prompts), choice]))


def test_dataset_audit_tables(readme_audit):
    router, audit = readme_audit
    shares = audit.tables["shares"]
    assert shares["share"].sum() == pytest.approx(1) and shares["oracle_share"].sum() == pytest.approx(1)
    cal = audit.tables["calibration"]
    assert cal["share"].sum() == pytest.approx(1) and np.isfinite(cal["ece"]).all()
    bins = audit.tables["reliability"]
    assert set(bins["llm"]) <= set(map(str, router.llm_names_)) and (bins["count"] > 0).all()
    assert 0 < audit.summary["calibration_changed_share"] < 1
    rows = audit.rows()
    assert rows[0]["section"] == "summary" and {r["section"] for r in rows} >= {"finding", "regret", "shares"}


def test_cross_fit_scores_never_see_the_prompt(mmlu):
    from recroute.routers.knn import KNNRouter

    data = mmlu.subset(prompts=np.arange(600))
    router = KNNRouter(k=1).fit(data, data.embeddings)
    inside = router.score(data.embeddings)
    crossed, _ = cross_fit_scores(router, data, data.embeddings, folds=3)
    Y = np.nan_to_num(data.dense(np.nan))
    assert np.allclose(inside, Y)  # k = 1 in-sample: each prompt is its own neighbour
    assert not np.allclose(crossed, Y)
    with pytest.raises(DataError, match="folds"):
        cross_fit_scores(router, data, data.embeddings, folds=1)


def _log(n: int = 1500, collapse_from: int = 1000):
    names = ["a", "b", "c"]
    rows = []
    for i in range(n):
        chosen = "a" if i >= collapse_from else names[i % 3]
        fallbacks = ["b:timeout"] if i % 100 == 0 else (["c:status_502", "b:connect"] if i % 50 == 25 else [])
        rows.append({"event": "decision", "decision_id": f"d{i}", "timestamp": 1.7e9 + 60.0 * i,
                     "prompt_id": f"p{i}", "candidates": names, "chosen": chosen, "propensity": 1.0,
                     "outcome": float(chosen != "c"), "fallbacks": fallbacks})
    from recroute.feedback.logs import decision_log_from_records

    return decision_log_from_records(rows)


def test_log_audit_windows_collapse_fallbacks():
    audit = audit_logs(_log(), window=250)
    w = audit.tables["log_windows"]
    assert w["start"].tolist() == [0, 250, 500, 750, 1000, 1250]
    assert w["top_share"].iloc[4:].tolist() == [1.0, 1.0]
    assert w["selection_entropy_bits"].iloc[0] == pytest.approx(np.log2(3), abs=0.01)
    col = audit.tables["collapses"]
    assert col[["llm", "start", "end", "windows"]].values.tolist() == [["a", 1000, 1500, 2]]
    fb = audit.tables["fallbacks"].set_index(["llm", "kind"])["count"]
    assert fb[("b", "timeout")] == 15 and fb[("c", "status_502")] == 30 and fb[("b", "connect")] == 30
    llms = audit.tables["log_llms"].set_index("llm")
    assert llms.loc["a", "decisions"] == 334 + 500 and llms.loc["c", "outcome"] == 0.0
    kinds = [f["kind"] for f in audit.findings]
    assert "collapse" in kinds and "fallbacks" in kinds and "outcomes" in kinds
    assert "drift" not in audit.tables and audit.summary["drift_alarm_at"] is None
    assert audit.summary["from_utc"] == "2023-11-14 22:13:20"  # 1.7e9 unix seconds


def test_log_audit_with_router_and_drift():
    from recroute.audit.drift import fit_reference
    from recroute.routers.knn import KNNRouter

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(6, 16))
    train = (centres[rng.integers(0, 6, 1500)] + 0.6 * rng.normal(size=(1500, 16))).astype(np.float32)
    live = (centres[rng.integers(0, 6, 1500)] + 0.6 * rng.normal(size=(1500, 16))).astype(np.float32)
    live[1000:] = (rng.normal(size=(500, 16)) * 3).astype(np.float32)
    Y = (rng.random((1500, 3)) < 0.5).astype(np.float32)
    from recroute.data.dataset import RoutingDataset

    data = RoutingDataset.from_wide(Y, [f"t{i}" for i in range(1500)], ["a", "b", "c"])
    router = KNNRouter(k=5).fit(data, train)
    audit = audit_logs(_log(), router=router, X_log=live, reference=fit_reference(train), X_reference=train, window=250)
    assert audit.tables["log_windows"]["e_p"].notna().all()
    assert 1000 < audit.summary["drift_alarm_at"] <= 1500
    assert audit.findings[0]["kind"] == "drift"
    days = audit.tables["drift_days"]
    assert days["n"].sum() == 1500 and len(days) == 2  # 25 hours of decisions, one a minute
    with pytest.raises(DataError, match="features"):
        audit_logs(_log(), router=router, X_log=live[:10], reference=fit_reference(train))
