"""Leave-one-task-out: hand-computed numbers, same test prompts in both regimes, errors, mmlu_pro, CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.coldstart.new_tasks import (
    ALL,
    IN_DIST,
    LOTO,
    ROW_KEYS,
    check_ms,
    compare,
    leave_one_task_out,
    task_split,
)
from recroute.data.dataset import RoutingDataset
from recroute.data.routereval import build_router_dataset
from recroute.data.synthetic import make_synthetic
from recroute.errors import DataError
from recroute.eval.protocol import build_settings, evaluate_dataset

runner = CliRunner()

# task -> (prompts, the one LLM of a, b, c that is right on all of them, 2-D embedding of all of them)
HAND = {"A": (25, 0, (1.0, 0.0)), "B": (20, 1, (0.0, 1.0)), "C": (10, 2, (-1.0, 0.0)), "D": (15, 0, (0.8, 0.6))}


def hand_dataset() -> RoutingDataset:
    """70 prompts, 3 LLMs; within a task every prompt has the same scores and embedding.

    Split 80/10/10 per task: train A 20, B 16, C 8, D 12 (56); test A 3, B 2, C 1, D 2 (8).
    LLM means a .54, b .29, c .14: all usable, so every group of m = 3 is {a, b, c}.
    """
    rows, tasks, X = [], [], []
    for task, (n, right, e) in HAND.items():
        for _ in range(n):
            y = np.zeros(3)
            y[right] = 1.0
            rows.append(y)
            tasks.append(task)
            X.append(e)
    ids = [f"p{i:03d}" for i in range(len(rows))]
    data = RoutingDataset.from_wide(np.array(rows), ids, ["a", "b", "c"],
                                    prompts=pd.DataFrame({"prompt_id": ids, "task": tasks}))
    data.set_embeddings(np.array(X, dtype=np.float32), "hand")
    return data


@pytest.fixture(scope="module")
def hand_rows() -> pd.DataFrame:
    return leave_one_task_out(hand_dataset(), ["best_single", "knn:k=1", "oracle"], ms=3)


def pick(df, router, task, regime, group="mean"):
    part = df[(df.router == router) & (df.task == task) & (df.regime == regime) & (df.group == group)]
    assert len(part) == 1
    return part.iloc[0]


def test_hand_computed_numbers(hand_rows):
    """best_single: in-dist picks a (train means a 32, b 16, c 8 of 56); without A it picks b (12 vs 16
    of 36); without B, C or D still a. knn k=1: in-dist the nearest training prompt is of the same task;
    without A the nearest is D (cos .8, says a), without B it is D (.6, a), without C it is B (0, b),
    without D it is A (.8, a)."""
    expected = {  # router -> regime -> task -> mu_o
        "best_single": {IN_DIST: {"A": 1, "B": 0, "C": 0, "D": 1, ALL: 5 / 8},
                        LOTO: {"A": 0, "B": 0, "C": 0, "D": 1, ALL: 2 / 8}},
        "knn:k=1": {IN_DIST: {"A": 1, "B": 1, "C": 1, "D": 1, ALL: 1.0},
                    LOTO: {"A": 1, "B": 0, "C": 0, "D": 1, ALL: 5 / 8}},
        "oracle": {IN_DIST: {"A": 1, "B": 1, "C": 1, "D": 1, ALL: 1.0},
                   LOTO: {"A": 1, "B": 1, "C": 1, "D": 1, ALL: 1.0}},
    }
    n_test = {"A": 3, "B": 2, "C": 1, "D": 2, ALL: 8}
    n_train = {IN_DIST: dict.fromkeys(n_test, 56), LOTO: {"A": 36, "B": 40, "C": 48, "D": 44, ALL: 42}}
    for router, regimes in expected.items():
        for regime, tasks in regimes.items():
            for task, mu in tasks.items():
                for group in ("all_strong", "all_weak", "strong_to_weak", "mean"):  # one pool: {a, b, c}
                    row = pick(hand_rows, router, task, regime, group)
                    assert row.mu_o == pytest.approx(mu, abs=1e-12), (router, regime, task, group)
                    assert row.n_test == n_test[task] and row.n_train == n_train[regime][task]
                    # best single on a task's test prompts scores 1 (V_B = mu_o); pooled: a's 5/8
                    assert row.v_b == pytest.approx(mu if task != ALL else mu / (5 / 8), abs=1e-12)
    # AUC: best_single without A scores (a, b, c) = (12, 16, 8)/36 on A's prompts, where only a is right
    assert pick(hand_rows, "best_single", "A", LOTO).auc == pytest.approx(0.5)
    assert pick(hand_rows, "best_single", "B", LOTO).auc == pytest.approx(0.0)  # b scores 0 without B
    assert pick(hand_rows, "best_single", "A", IN_DIST).auc == pytest.approx(1.0)
    assert np.isnan(pick(hand_rows, "oracle", "A", IN_DIST).auc)


def test_rows_schema_and_compare(hand_rows):
    assert list(hand_rows.columns) == list(ROW_KEYS)
    # 3 routers x (3 groups + mean) x (4 tasks + all) x 2 regimes
    assert len(hand_rows) == 3 * 4 * 5 * 2
    assert set(hand_rows.regime) == {IN_DIST, LOTO} and set(hand_rows.m) == {3}
    cmp = compare(hand_rows)
    assert len(cmp) == 3 * 5 and set(cmp.group) == {"mean"}
    row = cmp[(cmp.router == "knn:k=1") & (cmp.task == ALL)].iloc[0]
    assert (row.mu_o_in_dist, row.mu_o_loto, row.mu_o_delta) == pytest.approx((1.0, 5 / 8, -3 / 8))
    assert row.n_test == 8 and row.n_train_loto == 42
    assert len(compare(hand_rows, ("auc",), group=None)) == 3 * 4 * 5
    with pytest.raises(DataError, match="unknown metric"):
        compare(hand_rows, ("e_p",))


@pytest.fixture(scope="module")
def synthetic():
    return make_synthetic(600, 10, 4, random_state=5)


def test_same_test_prompts_and_train_sizes(synthetic):
    data = synthetic
    rd = build_router_dataset(data, build_settings(("easy",)), seed=42, embeddings=data.embeddings)
    split = task_split(data, rd)
    Y = data.dense(fill=0.0)
    entry = rd["easy"][5]["all_strong"]
    cols = data.llm_index(list(entry["model"]))
    # the split maps back to the dataset: the router dataset's rows are these prompts
    np.testing.assert_array_equal(Y[split.train][:, cols], entry["data"]["train_score"])
    np.testing.assert_array_equal(Y[split.test][:, cols], entry["data"]["test_score"])
    np.testing.assert_array_equal(split.test_tasks, data.prompts["task"].to_numpy()[split.test])
    df = leave_one_task_out(data, ["knn", "best_single"], ms=(3, 5))
    for (router, m, group, task), part in df.groupby(["router", "m", "group", "task"]):
        a, b = part.set_index("regime").loc[IN_DIST], part.set_index("regime").loc[LOTO]
        assert a.n_test == b.n_test
        if task != ALL:
            assert a.n_test == np.sum(split.test_tasks == task)
            assert a.n_train - b.n_train == np.sum(split.train_tasks == task) > 0
            assert a.n_train == len(split.train)
    # in distribution, the pooled row is `recroute eval`'s number
    ref = evaluate_dataset(data, ["knn", "best_single"], settings="easy").set_index(["router", "m", "group"])
    mine = df[(df.task == ALL) & (df.regime == IN_DIST)].set_index(["router", "m", "group"])
    np.testing.assert_allclose(mine.loc[ref.index, "mu_o"], ref["mu_o"], atol=1e-12)
    np.testing.assert_allclose(mine.loc[ref.index, "v_b"], ref["v_b"], atol=1e-12)


def test_errors(synthetic):
    data = synthetic
    with pytest.raises(DataError, match="unknown task"):
        leave_one_task_out(data, ["knn"], tasks=["no-such-task"])
    no_task = data.subset()
    no_task.prompts = no_task.prompts.drop(columns=["task"])
    with pytest.raises(DataError, match="no 'task' column"):
        leave_one_task_out(no_task, ["knn"])
    one_task = data.subset()
    one_task.prompts["task"] = "only"
    with pytest.raises(DataError, match="at least 2 tasks"):
        leave_one_task_out(one_task, ["knn"])
    with pytest.raises(DataError, match="pool sizes"):
        check_ms(7)
    with pytest.raises(DataError, match="no routers"):
        leave_one_task_out(data, [])
    with pytest.raises(DataError, match="unknown router"):
        leave_one_task_out(data, ["nope"])
    bare = RoutingDataset(data.scores, data.prompts, data.llms)  # no embeddings, no text
    with pytest.raises(DataError, match="embeddings"):
        leave_one_task_out(bare, ["knn"])


@pytest.fixture(scope="module")
def mmlu_slice():
    from recroute.data.catalog import load_dataset

    data = load_dataset("mmlu_pro")
    keep = np.flatnonzero(data.prompts["task"].isin(["law", "history", "biology"]).to_numpy())[::4]
    return data.subset(prompts=keep)


def test_mmlu_pro_slice(mmlu_slice):
    df = leave_one_task_out(mmlu_slice, ["knn"], ms=5, tasks=["history", "law"])
    assert set(df.task) == {"history", "law", ALL}
    assert len(df) == 4 * 3 * 2  # groups + mean, tasks + all, regimes
    assert np.isfinite(df[["mu_o", "v_b", "auc", "n_train", "fit_seconds"]].to_numpy(dtype=float)).all()
    assert df.mu_o.between(0, 1).all()
    assert (df[df.regime == LOTO].n_train.to_numpy() < df[df.regime == IN_DIST].n_train.to_numpy()).all()


def test_cli_json(tmp_path):
    out = tmp_path / "rows.json"
    result = runner.invoke(app, ["new-tasks", "-d", "mmlu_pro", "-r", "best_single,knn", "--tasks", "history",
                                 "--per-task", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "leave-one-task-out" in result.output and "history" in result.output
    rows = json.loads(out.read_text())
    assert {tuple(sorted(r)) for r in rows} == {tuple(sorted(ROW_KEYS))}
    assert {r["task"] for r in rows} == {"history", ALL} and {r["router"] for r in rows} == {"best_single", "knn"}
    bad = runner.invoke(app, ["new-tasks", "-d", "mmlu_pro", "-r", "knn", "--tasks", "nope", "--quiet"])
    assert bad.exit_code == 2 and "unknown task" in bad.output
