"""Every RouterEval metric, the split, the candidate groups and the label rule, pinned by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recroute.data.labels import multi_hot_labels, process_label
from recroute.data.splits import routereval_split
from recroute.eval import metrics
from recroute.eval.groups import can_select, oracle_of, select_candidates

# 3 prompts × 3 LLMs; row 1 is all zero
Y = np.array([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.5, 1.0, 0.0]])


# ---------------------------------------------------------------------- mu_o, V_B, V_R
def test_mu_o_takes_the_chosen_cells():
    assert metrics.mu_o(Y, np.array([0, 1, 1])) == pytest.approx((1 + 0 + 1) / 3)
    assert metrics.mu_o(Y, np.array([1, 2, 2])) == pytest.approx(0.0)


def test_v_b_divides_by_the_best_single_llm_on_test():
    # column means 0.5, 1/3, 1/3
    assert metrics.best_single_score(Y) == pytest.approx(0.5)
    assert metrics.v_b(2 / 3, Y) == pytest.approx(4 / 3)


def test_v_r_and_reference_scores():
    assert metrics.reference_score("mmlu_pro") == 0.637
    assert metrics.reference_score("MMLU-Pro") == 0.637
    assert metrics.reference_score("harness_truthfulqa_mc_0") == 0.669
    assert metrics.reference_score("gsm8k") == 0.92
    assert metrics.reference_score("nonexistent") is None
    assert metrics.reference_score(None) is None
    assert metrics.v_r(0.4597, 0.92) == pytest.approx(0.4597 / 0.92)
    assert math.isnan(metrics.v_r(0.5, None))


# ---------------------------------------------------------------------- E_p
def test_entropy_in_bits_per_row_and_its_mean():
    probs = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.25, 0.5]])
    np.testing.assert_allclose(metrics.entropy_bits(probs), [1.0, 0.0, 1.5])
    assert metrics.e_p(probs) == pytest.approx(2.5 / 3)
    assert metrics.e_p(np.full((4, 8), 1 / 8)) == pytest.approx(3.0)  # uniform over m: log2(m)


def test_entropy_floor_drops_small_terms():
    eps = 1e-5
    probs = np.array([[1 - eps, eps]])
    big = -(1 - eps) * math.log2(1 - eps)
    small = -eps * math.log2(eps)
    assert metrics.e_p(probs) == pytest.approx(big + small, rel=1e-9)  # default floor 1e-10 keeps eps
    assert metrics.e_p(probs, floor=1e-4) == pytest.approx(big, rel=1e-9)  # cluster/MLC floor drops it
    assert metrics.e_p(np.array([[1.0, 1e-11]])) == pytest.approx(0.0)  # p <= 1e-10 counts 0


# ---------------------------------------------------------------------- softmax and truth distributions
def test_softmax_rows_and_shift_invariance():
    np.testing.assert_allclose(metrics.softmax(np.array([[0.0, math.log(2)]])), [[1 / 3, 2 / 3]])
    np.testing.assert_allclose(metrics.softmax(np.array([[1000.0, 1000.0 + math.log(3)]])), [[0.25, 0.75]])
    np.testing.assert_allclose(metrics.softmax(np.zeros((2, 4))), np.full((2, 4), 0.25))


def test_oracle_distribution_is_proportional_to_scores_and_uniform_on_zero_rows():
    expected = np.array([[0.5, 0.0, 0.5], [1 / 3, 1 / 3, 1 / 3], [1 / 3, 2 / 3, 0.0]])
    np.testing.assert_allclose(metrics.oracle_distribution(Y), expected)


def test_r_o_distribution_mixes_oracle_and_uniform():
    out = metrics.r_o_distribution(Y, 0.5)
    np.testing.assert_allclose(out[0], [0.25 + 1 / 6, 1 / 6, 0.25 + 1 / 6])
    np.testing.assert_allclose(out[1], [1 / 3] * 3)  # all-zero row: uniform either way
    np.testing.assert_allclose(metrics.r_o_distribution(Y, 0.0), np.full((3, 3), 1 / 3))
    np.testing.assert_allclose(metrics.r_o_distribution(Y, 1.0), metrics.oracle_distribution(Y))
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_r_o_expected_mu_by_hand():
    # per prompt: best = 1, 0, 1; mean = 2/3, 0, 1/2
    assert metrics.r_o_expected_mu(Y, 1.0) == pytest.approx(2 / 3)
    assert metrics.r_o_expected_mu(Y, 0.0) == pytest.approx((2 / 3 + 0 + 0.5) / 3)
    assert metrics.r_o_expected_mu(Y, 0.5) == pytest.approx((0.5 + 1 / 3 + 0 + 0.5 + 0.25) / 3)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_r_o_monte_carlo_agrees_with_the_exact_expectation(p):
    Yr = (np.random.default_rng(3).random((500, 5)) < 0.4).astype(float)
    exact = metrics.r_o_expected_mu(Yr, p)
    assert metrics.r_o_monte_carlo_mu(Yr, p, runs=1000, seed=1) == pytest.approx(exact, abs=0.01)


# ---------------------------------------------------------------------- shares and AUC
def test_selection_shares():
    np.testing.assert_allclose(metrics.selection_shares(np.array([0, 2, 2, 1]), 4), [0.25, 0.25, 0.5, 0.0])


def test_cell_auc_by_hand():
    truth = np.array([[1.0, 0.0], [1.0, 0.0]])
    # positives score 0.8 and 0.4; negatives 0.6 and 0.2: 3 of 4 pairs ordered -> 0.75
    assert metrics.cell_auc(truth, np.array([[0.8, 0.6], [0.4, 0.2]])) == pytest.approx(0.75)
    assert metrics.cell_auc(truth, np.array([[0.9, 0.1], [0.8, 0.2]])) == pytest.approx(1.0)
    assert metrics.cell_auc(truth, np.array([[0.1, 0.9], [0.2, 0.8]])) == pytest.approx(0.0)
    assert metrics.cell_auc(truth, np.full((2, 2), 0.3)) == pytest.approx(0.5)  # ties count one half
    # continuous truths are binarised at 0.5
    assert metrics.cell_auc(np.array([[0.7, 0.2]]), np.array([[0.9, 0.1]])) == pytest.approx(1.0)
    assert math.isnan(metrics.cell_auc(np.ones((2, 2)), np.random.rand(2, 2)))


# ---------------------------------------------------------------------- split
def test_routereval_split_matches_a_hand_computation_with_the_global_seed():
    tasks = np.array(["b", "a", "b", "a", "a", "b", "a", "b", "a", "a", "b", "a", "b", "a", "a", "b", "a"])
    # first appearance order: b, then a
    np.random.seed(42)
    parts = {"train": [], "val": [], "test": []}
    for task in ("b", "a"):
        idx = np.flatnonzero(tasks == task)
        np.random.shuffle(idx)
        n = len(idx)
        parts["train"] += list(idx[: int(0.8 * n)])
        parts["val"] += list(idx[int(0.8 * n): int(0.9 * n)])
        parts["test"] += list(idx[int(0.9 * n):])
    split = routereval_split(tasks)
    assert split.train.tolist() == parts["train"]
    assert split.val.tolist() == parts["val"]
    assert split.test.tolist() == parts["test"]
    # b: 7 prompts -> 5/1/1; a: 10 prompts -> 8/1/1
    assert split.sizes() == (13, 2, 2)


# ---------------------------------------------------------------------- candidate groups
# 20 prompts, 15 LLMs; each LLM is correct on a hand-chosen set of prompts, so its mean is |set|/20.
SUPPORTS = {
    "A": {0},                                   # 0.05: at or below 0.1, dropped
    "B": {0, 1},                                # 0.10: not above 0.1, dropped
    "C": {0, 1, 2},                             # 0.15: first usable
    "D": {3, 4, 5, 6},
    "E": {0, 1, 2, 3, 4},
    "F": set(range(6)),
    "G": set(range(8)),
    "H": set(range(10)),                        # the weakest group's last member (remainder)
    "I": {0, *range(9, 20)},                    # H + I cover every prompt
    "J": set(range(14)),
    "P": set(range(2, 18)),
    "Q": set(range(17)),
    "R": {*range(16), 18, 19},                  # 0.90: kept (not above 0.9)
    "Y": set(range(19)),                        # 0.95: dropped
    "Z": set(range(20)),                        # 1.00: dropped
}
COLUMN_ORDER = ["Q", "A", "H", "Z", "C", "P", "E", "J", "B", "R", "G", "Y", "D", "I", "F"]


def hand_matrix() -> np.ndarray:
    Ym = np.zeros((20, len(COLUMN_ORDER)))
    for j, name in enumerate(COLUMN_ORDER):
        Ym[sorted(SUPPORTS[name]), j] = 1.0
    return Ym


def names(idx) -> list[str]:
    return [COLUMN_ORDER[i] for i in idx]


def test_all_weak_window_ties_keep_the_earliest_window():
    # window = max(15 // 5, 2) = 3 usable LLMs: C, D, E; windows (C, D) and (D, E) both cover 7 prompts
    assert names(select_candidates(hand_matrix(), 2, "all_weak")) == ["C", "D"]


def test_all_strong_window_within_the_highest_usable_llms():
    # window: P, Q, R (Y and Z are above 0.9); (P, Q) covers 18 prompts, (Q, R) 19
    assert names(select_candidates(hand_matrix(), 2, "all_strong")) == ["Q", "R"]


def test_window_is_at_least_m():
    # m = 4 > 15 // 5: the window holds exactly 4 LLMs, so there is one candidate window
    assert names(select_candidates(hand_matrix(), 4, "all_weak")) == ["C", "D", "E", "F"]
    assert names(select_candidates(hand_matrix(), 4, "all_strong")) == ["J", "P", "Q", "R"]


def test_strong_to_weak_remainder_goes_to_the_weakest_group():
    # 11 usable LLMs in 2 rank groups: sizes 6 (C..H) and 5 (I..R). H + I is the only full cover.
    Ym = hand_matrix()
    picked = names(select_candidates(Ym, 2, "strong_to_weak", np.random.RandomState(42)))
    assert picked == ["H", "I"]
    assert oracle_of(Ym[:, [COLUMN_ORDER.index(n) for n in picked]]) == 1.0


def test_can_select_counts_usable_llms():
    means = hand_matrix().mean(axis=0)
    assert can_select(means, 11) and not can_select(means, 12)


# ---------------------------------------------------------------------- labels
def test_label_rule():
    scores = np.array([[0.5, 0.48, 0.2], [0.0, 0.0, 0.0], [1.0, 0.94, 0.95]])
    expected = np.array([[1, 1, 0], [1, 1, 1], [1, 0, 1]], dtype=np.float32)  # 0.48 >= 0.95 * 0.5
    np.testing.assert_array_equal(process_label(scores), expected)
    np.testing.assert_array_equal(multi_hot_labels(scores), expected)
    binary = np.array([[1.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(multi_hot_labels(binary), binary)  # binary scores are their own labels


def test_llms_with_equal_means_keep_their_position_order():
    """40 LLMs in 4 blocks of equal means: the order (and so every group) is by position within a block."""
    from recroute.eval.groups import usable_range

    means = np.repeat([0.3, 0.5, 0.2, 0.7], 10)
    order, first, last = usable_range(means)
    np.testing.assert_array_equal(order, np.r_[20:30, 0:10, 10:20, 30:40])
    assert (first, last) == (0, 40)
    Y = np.tile(means, (8, 1))  # every prompt: each LLM's mean (a valid score matrix with these means)
    np.testing.assert_array_equal(select_candidates(Y, 3, "all_weak"), [20, 21, 22])  # oracle ties: first window
    np.testing.assert_array_equal(select_candidates(Y, 3, "all_strong"), [32, 33, 34])  # top 8: 32-39
