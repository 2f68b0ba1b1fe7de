"""benchmarks/m10_study.py's measuring helpers on hand-computed cases (no router is fitted)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import m10_study as ms  # noqa: E402


def test_v_b_and_margin_choice():
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)  # column means 0.5, 0.5
    assert ms.v_b(Y, np.array([0, 1, 0, 0])) == pytest.approx(0.75 / 0.5)
    P = np.array([[0.4, 0.5], [0.6, 0.55]])
    assert ms.choose(P, b=0).tolist() == [1, 0]
    assert ms.choose(P, b=0, margin=0.2).tolist() == [0, 0]  # 0.6 > 0.5: the best single keeps the first prompt
    assert ms.choose(P, b=1, margin=0.1).tolist() == [1, 1]


def test_pair_auc_counts_only_discordant_prompts():
    y_j = np.array([1, 0, 1, 1, 0])
    y_b = np.array([0, 1, 1, 0, 0])  # discordant: prompts 0 (j right), 1 (b right), 3 (j right)
    s_j = np.array([0.9, 0.2, 0.0, 0.3, 0.0])
    s_b = np.array([0.5, 0.5, 9.0, 0.5, 9.0])  # differences on 0, 1, 3: 0.4, -0.3, -0.2
    # positives (0: 0.4, 3: -0.2) against the negative (1: -0.3): both above, AUC 1
    assert ms.pair_auc(s_j, s_b, y_j, y_b) == pytest.approx(1.0)
    s_j2 = s_j.copy()
    s_j2[3] = 0.1  # difference -0.4 now below the negative's -0.3: one of two pairs right
    assert ms.pair_auc(s_j2, s_b, y_j, y_b) == pytest.approx(0.5)


def test_ece_and_log_loss():
    p = np.array([0.1, 0.1, 0.9, 0.9])
    y = np.array([0, 1, 1, 1])
    # two bins: mean p 0.1 vs rate 0.5, mean p 0.9 vs rate 1.0 -> (0.4 * 2 + 0.1 * 2) / 4
    assert ms.ece(p, y, bins=2) == pytest.approx(0.25)
    ll = ms.log_loss(np.array([[0.5, 0.9]]), np.array([[1.0, 0.0]]))
    assert ll == pytest.approx([np.log(2), -np.log(0.1)])


def test_knn_means_never_count_a_training_prompt_itself():
    E = np.array([[1, 0], [1, 0], [0, 1], [0.8, 0.6]], dtype=float)
    Y = np.array([[1.0], [0.0], [1.0], [0.0]])
    train = np.array([0, 1, 2])
    K = ms.knn_means(E, train, Y, k=1)
    # prompt 0's nearest other training prompt is 1 (score 0), prompt 1's is 0 (score 1);
    # prompt 2 (orthogonal to 0 and 1, similarity 0) gets a weight of 1e-6 each: a tie broken by argpartition
    assert K[0, 0] == pytest.approx(0.0) and K[1, 0] == pytest.approx(1.0)
    assert K[3, 0] in (pytest.approx(1.0), pytest.approx(0.0))  # a non-training prompt: its nearest (0 or 1)


def test_needed_at_interpolates_the_mean_over_groups():
    curve = lambda vs: [{"d": d, "v_b": v, "llm_auc": 0.5 + d / 10, "pair_auc": 0.5 + d / 5}  # noqa: E731
                        for d, v in zip((0.0, 1.0, 2.0), vs)]
    curves = [curve((1.00, 1.02, 1.10)), curve((0.96, 1.00, 1.06))]  # means 0.98, 1.01, 1.08
    need = ms.needed_at(curves, 1.05, "v_b")
    t = (1.05 - 1.01) / (1.08 - 1.01)
    assert need["d"] == pytest.approx(1.0 + t)
    assert need["llm_auc"] == pytest.approx(0.6 + t * 0.1)
    assert need["pair_auc"] == pytest.approx(0.7 + t * 0.2)
    assert ms.needed_at(curves, 1.2, "v_b") is None


def test_task_prior_shrinks_and_falls_back_to_the_overall_mean():
    Y = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=float)
    tasks = np.array(["a", "a", "b", "b", "a"])
    S = ms.Setup(Y, np.zeros((5, 1), np.float32), tasks, np.array(["x", "y"]), np.array([0, 1, 2, 3]),
                 np.array([4]), np.array([4]), [])
    P = ms.task_prior(S, shrink=2.0)
    overall = Y[:4].mean(0)  # 0.5, 0.5
    assert P[0] == pytest.approx((Y[:2].sum(0) + 2 * overall) / 4)  # (2 + 1) / 4, (0 + 1) / 4
    one_task = ms.Setup(Y, S.X, np.array(["t"] * 5), S.names, S.train, S.val, S.test, [])
    assert ms.task_prior(one_task, shrink=2.0) == pytest.approx(np.tile(overall, (5, 1)))  # the best single's means


def test_evaluate_counts_wins_and_losses_against_the_best_single():
    # test prompts 0..3; LLM 1 is the best single (b); the router leaves b on prompts 0 and 1
    Y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    S = ms.Setup(Y, np.zeros((4, 1), np.float32), np.array(["t"] * 4), np.array(["x", "y"]),
                 np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]), np.array([0, 1, 2, 3]), [])
    P = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8]])
    out = ms.evaluate(S, P, P, np.array([0, 1]), b=1)
    assert (out["wins"], out["losses"], out["moved_share"]) == (1, 1, 0.5)  # prompt 0 won, prompt 1 lost
    assert out["test_v_b"] == pytest.approx((1 + 0 + 1 + 0) / 4 / 0.5)
    assert out["per_llm"][0] == {"llm": "x", "chosen": 2, "wins": 1, "losses": 1}
    diff = np.array([1, -1, 0, 0])
    assert out["test_v_b_se"] == pytest.approx(diff.std() / 2 / 0.5)
    # a margin of 0.8 ties prompt 0 (0.9 against 0.1 + 0.8): ties go to the first LLM; 0.9 keeps all on b
    assert ms.choose(P, 1, 0.8).tolist() == [0, 1, 1, 1]
    assert ms.v_b(Y, ms.choose(P, 1, 0.9)) == pytest.approx(1.0)
