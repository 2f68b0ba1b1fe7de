"""stack: families blended by forward selection on the validation part, and the shared validation mechanism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.eval.protocol import GroupData, evaluate_group, iter_group_data
from recroute.routers.base import Router, ValidationPart
from recroute.routers.registry import make_router
from recroute.routers.stack import StackRouter, forward_selection, learning_families, log_loss

RNG = np.random.default_rng(0)
X = RNG.standard_normal((200, 6)).astype(np.float32)
# LLM 0 is right exactly when x_0 > 0, LLM 1 when x_0 <= 0, LLM 2 on 30 % of the prompts at random
Y = np.stack([X[:, 0] > 0, X[:, 0] <= 0, RNG.random(200) < 0.3], axis=1).astype(np.float32)
X_VAL = RNG.standard_normal((60, 6)).astype(np.float32)
Y_VAL = np.stack([X_VAL[:, 0] > 0, X_VAL[:, 0] <= 0, RNG.random(60) < 0.3], axis=1).astype(np.float32)
MEMBERS = "logistic+best_single"


def test_log_loss_by_hand():
    P = np.array([[0.5, 0.8], [0.2, 0.9]])
    Y_ = np.array([[1.0, np.nan], [0.0, 0.5]])
    expected = -(math.log(0.5) + math.log(0.8) + 0.5 * math.log(0.9) + 0.5 * math.log(0.1)) / 3
    assert log_loss(P, Y_) == pytest.approx(expected)
    with pytest.raises(DataError, match="no observed cell"):
        log_loss(P, np.full((2, 2), np.nan))


def test_forward_selection_by_hand():
    Y_ = np.array([[1.0, 0.0], [0.0, 1.0]])
    good, bad, half = Y_ * 0.8 + 0.1, 0.9 - Y_ * 0.8, np.full((2, 2), 0.5)
    # step 1 takes the best member; more steps never add a member that only makes the blend worse
    np.testing.assert_array_equal(forward_selection(np.stack([bad, good, half]), Y_, 1), [0, 1, 0])
    np.testing.assert_array_equal(forward_selection(np.stack([bad, good, half]), Y_, 4), [0, 1, 0])
    # two members wrong in opposite directions: their even blend beats either alone
    over, under = np.array([[0.99, 0.4], [0.4, 0.99]]), np.array([[0.6, 0.01], [0.01, 0.6]])
    np.testing.assert_array_equal(forward_selection(np.stack([over, under]), Y_, 2), [0.5, 0.5])


def test_chooses_on_the_validation_part_it_is_given():
    agrees = StackRouter(members=MEMBERS, n_seeds=1, steps=1, cv_below=0).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    assert agrees.chosen_ == ["logistic"]
    # validation prompts whose LLM 0 / 1 results contradict training: the constant family wins there
    flipped = Y_VAL[:, [1, 0, 2]]
    contradicts = StackRouter(members=MEMBERS, n_seeds=1, steps=1, cv_below=0).fit(Y, X, validation=ValidationPart(flipped, X_VAL))
    assert contradicts.chosen_ == ["best_single"]
    assert contradicts.validation_losses_[1] < contradicts.validation_losses_[0]


def test_score_is_the_weighted_blend_of_the_kept_members():
    router = StackRouter(members=MEMBERS, n_seeds=1, steps=10, refit=False, cv_below=0).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    logistic = make_router("logistic").fit(Y, X).score(X_VAL)
    best = make_router("best_single").fit(Y).score(None, n=len(X_VAL))
    parts = dict(zip(router.chosen_, router.weights_))
    expected = parts.get("logistic", 0) * logistic + parts.get("best_single", 0) * best
    assert router.weights_.sum() == pytest.approx(1.0) and (router.weights_ > 0).all()
    np.testing.assert_allclose(router.score(X_VAL), expected, rtol=1e-5)


def test_refit_trains_the_kept_members_on_training_and_validation():
    router = StackRouter(members="best_single", n_seeds=1, steps=1, refit=True)
    router.fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    np.testing.assert_allclose(router.score(None, n=1)[0], np.vstack([Y, Y_VAL]).mean(axis=0), rtol=1e-6)


def test_without_validation_it_holds_out_a_seeded_share_of_training():
    router = StackRouter(members="best_single", n_seeds=1, steps=1, refit=False, cv_below=0, random_state=3).fit(Y)
    from recroute.data.splits import holdout_split

    fit_rows, held = holdout_split(len(Y), StackRouter.validation_share, 3)
    assert len(held) == 20 and len(fit_rows) == 180
    np.testing.assert_allclose(router.score(None, n=1)[0], Y[fit_rows].mean(axis=0), rtol=1e-6)
    # the default refits the kept family on the fitted and the held-out prompts: all of Y
    refitted = StackRouter(members="best_single", n_seeds=1, steps=1, random_state=3).fit(Y)
    np.testing.assert_allclose(refitted.score(None, n=1)[0], Y.mean(axis=0), rtol=1e-6)
    again = StackRouter(members=MEMBERS, n_seeds=1, random_state=3).fit(Y, X)
    np.testing.assert_array_equal(StackRouter(members=MEMBERS, n_seeds=1, random_state=3).fit(Y, X).score(X_VAL),
                                  again.score(X_VAL))


def test_save_load_round_trip(tmp_path):
    router = StackRouter(members=MEMBERS, n_seeds=1).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    router.save(tmp_path / "stack")
    copy = Router.load(tmp_path / "stack")
    assert isinstance(copy, StackRouter) and copy.chosen_ == router.chosen_
    np.testing.assert_array_equal(copy.score(X_VAL), router.score(X_VAL))


@pytest.mark.parametrize(
    "validation, message",
    [
        (ValidationPart(Y_VAL[:, :2], X_VAL), "n_llms=3"),
        (ValidationPart(Y_VAL, X_VAL[:, :4]), "features"),
        (ValidationPart(Y_VAL, None), "needs prompt features"),
        ((Y_VAL, X_VAL), "ValidationPart"),
    ],
)
def test_bad_validation_is_a_data_error(validation, message):
    with pytest.raises(DataError, match=message):
        StackRouter(members=MEMBERS, n_seeds=1).fit(Y, X, validation=validation)


@pytest.mark.parametrize("members, message", [("oracle", "cannot be a member"), ("stack", "cannot be a member"),
                                               ("ensemble", "cannot be a member"), ("nonsense", "unknown router")])
def test_bad_members(members, message):
    with pytest.raises(DataError, match=message):
        StackRouter(members=members).fit(Y, X)


def test_all_members_are_the_learning_families():
    names = learning_families()
    assert "two_tower" in names and "best_single" in names
    assert not {"stack", "ensemble", "debiased", "oracle", "r_o", "random"} & set(names)
    assert make_router("stack:members=all").member_list() == names


def _group(Y_val: np.ndarray) -> GroupData:
    return GroupData("easy", 3, "all_strong", np.array(["a", "b", "c"]), X, X_VAL, Y, Y_VAL.astype(np.float64),
                     X_VAL, Y_val)


def test_protocol_hands_the_validation_part_only_to_routers_that_use_it():
    flipped = Y_VAL[:, [1, 0, 2]]
    stack = StackRouter(members=MEMBERS, n_seeds=1, steps=1, cv_below=0)
    row = evaluate_group(stack, _group(flipped))
    assert stack.chosen_ == ["best_single"]  # chose on the group's validation part, not on test
    assert row["v_b"] == pytest.approx(1.0)  # best_single routes everything to the best test LLM here
    logistic = make_router("logistic")
    evaluate_group(logistic, _group(flipped))  # ignores it: trained on the training part only
    np.testing.assert_allclose(logistic.coef_, make_router("logistic").fit(Y, X).coef_)


def test_iter_group_data_carries_the_validation_part():
    Y_all = np.vstack([Y, Y_VAL]) * 0.5 + 0.25  # continuous: trained (and validated) on labels
    rd = {"easy": {3: {"all_strong": {"data": {"train_score": Y_all[:200], "val_score": Y_all[200:],
                                                "test_score": Y_all[200:]},
                                       "model": np.array(["a", "b", "c"], dtype=object)}}},
          "embedding": {"train_embed": X, "val_embed": X_VAL, "test_embed": X_VAL}}
    (gd,) = iter_group_data(rd, ("easy",), target="label")
    np.testing.assert_array_equal(gd.X_val, X_VAL)
    from recroute.data.labels import process_label

    np.testing.assert_array_equal(gd.Y_val, process_label(Y_all[200:]))
    assert isinstance(gd.validation(), ValidationPart)
    (raw,) = iter_group_data(rd, ("easy",), target="score")
    np.testing.assert_allclose(raw.Y_val, Y_all[200:])


def test_the_stack_never_reads_the_test_part():
    """Two groups equal but for their test prompts (features and truth) give the same fitted stack."""
    rng = np.random.default_rng(5)
    other_test = GroupData("easy", 3, "all_strong", np.array(["a", "b", "c"]), X, rng.standard_normal((40, 6)).astype(np.float32),
                           Y, rng.integers(0, 2, (40, 3)).astype(np.float64), X_VAL, Y_VAL)
    fitted = [StackRouter(members=MEMBERS, n_seeds=1, steps=3) for _ in range(2)]
    evaluate_group(fitted[0], _group(Y_VAL))
    evaluate_group(fitted[1], other_test)
    assert fitted[0].chosen_ == fitted[1].chosen_
    np.testing.assert_array_equal(fitted[0].weights_, fitted[1].weights_)
    np.testing.assert_array_equal(fitted[0].score(X_VAL), fitted[1].score(X_VAL))


# ---------------------------------------------------------------------- the selection rule (issue 23, stack-select)
from recroute.routers.stack import fold_ids, one_se_choice, routed_gains  # noqa: E402


def test_routed_gains_by_hand():
    P = np.array([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.6]],    # member 0 picks LLM 0, 1, 0 (a tie: the first)
                  [[0.1, 0.9], [0.7, 0.3], [0.1, 0.2]]])   # member 1 picks LLM 1, 0, 1
    Y_ = np.array([[1.0, 0.0], [0.0, 1.0], [np.nan, 1.0]])
    # row 2: member 0's choice (LLM 0) is unobserved, so the row is left out for both members
    np.testing.assert_array_equal(routed_gains(P, Y_), [[1.0, 1.0], [0.0, 0.0]])


def test_one_se_rule_by_hand():
    Y_ = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    sharp = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])      # routes all four right, log loss 0.105
    soft = np.array([[0.6, 0.4], [0.4, 0.6], [0.6, 0.4], [0.6, 0.4]])       # right on three (row 3 wrong)
    wrong = np.array([[0.1, 0.9], [0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])      # wrong on all four
    index, table = one_se_choice(np.stack([soft, sharp, wrong]), Y_)
    # mu_o 0.75, 1, 0; against the best (sharp): soft's paired differences are (0, 0, 0, 1): mean 0.25,
    # se = std([0, 0, 0, 1], ddof=1) / 2 = 0.25, within one se; wrong's (1, 1, 1, 1): mean 1 > se 0
    np.testing.assert_allclose(table["mu_o"], [0.75, 1.0, 0.0])
    np.testing.assert_allclose(table["se"], [0.25, 0.0, 0.0])
    assert table["within"] == [1.0, 1.0, 0.0] and index == 1  # sharp also has the lower log loss
    # a member within one se with the lower log loss is kept over the best mu_o: the loss is steadier
    calibrated = np.where(Y_ == 1, 0.7, 0.3)
    calibrated[3] = [0.55, 0.45]  # wrong on row 3 only, but near 0.5 there
    overconfident = np.where(Y_ == 1, 0.999, 0.001)
    overconfident[0] = [0.0001, 0.9999]  # right on rows 1 to 3, confidently wrong on row 0
    index, table = one_se_choice(np.stack([overconfident, calibrated]), Y_)
    assert table["mu_o"] == [0.75, 0.75] and table["log_loss"][1] < table["log_loss"][0] and index == 1
    # a member with strictly lower mu_o, within one se of the best, wins on its lower log loss: hesitant
    # routes all four right at 0.51 (log loss -ln 0.51 = 0.673); steady is right on three at 0.9 and wrong on
    # row 3 at 0.55 / 0.45 (log loss (3 * -ln 0.9 + -ln 0.45) / 4 = 0.279); paired differences (0, 0, 0, 1)
    hesitant = np.where(Y_ == 1, 0.51, 0.49)
    steady = np.where(Y_ == 1, 0.9, 0.1)
    steady[3] = [0.55, 0.45]
    index, table = one_se_choice(np.stack([hesitant, steady]), Y_)
    np.testing.assert_allclose(table["mu_o"], [1.0, 0.75])
    np.testing.assert_allclose(table["log_loss"], [-math.log(0.51), (3 * -math.log(0.9) - math.log(0.45)) / 4])
    assert table["within"] == [1.0, 1.0] and index == 1
    # fewer than two observed rows: no standard error, the log loss alone decides
    index, table = one_se_choice(np.stack([soft[:1], sharp[:1]]), Y_[:1])
    assert index == 1 and table["within"] == [1.0, 1.0] and table["se"] == [math.inf, math.inf]


def test_fold_ids_are_balanced_and_seeded():
    ids = fold_ids(23, 5, seed=1)
    assert sorted(np.bincount(ids)) == [4, 4, 5, 5, 5]  # 23 rows: three folds of 5, two of 4
    np.testing.assert_array_equal(ids, fold_ids(23, 5, seed=1))
    assert not np.array_equal(ids, fold_ids(23, 5, seed=2))


def test_small_validation_is_cross_fitted_on_training_and_validation():
    stack = StackRouter(members=MEMBERS, n_seeds=1, cv_folds=4, random_state=7)
    specs, P, Y_rows, fitted, mode = stack.candidates(Y, X, ValidationPart(Y_VAL, X_VAL))
    assert mode == "cross-fitted (4 folds)" and fitted is None and specs == ["logistic", "best_single"]
    Y_all = np.vstack([Y, Y_VAL])
    np.testing.assert_array_equal(Y_rows, Y_all)
    folds = fold_ids(len(Y_all), 4, 7)
    for k in range(4):  # best_single's out-of-fold P: the other folds' per-LLM means
        np.testing.assert_allclose(P[1, folds == k], np.tile(Y_all[folds != k].mean(axis=0), ((folds == k).sum(), 1)), rtol=1e-6)
    # 60 validation prompts that contradict training decide the choice on their own (validation mode) but
    # not out of fold over all 260 prompts, where logistic still routes most prompts right
    flipped = Y_VAL[:, [1, 0, 2]]
    assert StackRouter(members=MEMBERS, n_seeds=1, cv_below=0).fit(Y, X, validation=ValidationPart(flipped, X_VAL)).chosen_ == ["best_single"]
    crossed = StackRouter(members=MEMBERS, n_seeds=1).fit(Y, X, validation=ValidationPart(flipped, X_VAL))
    assert crossed.chosen_ == ["logistic"] and crossed.selection_["rows"] == 260
    assert crossed.selection_["mode"] == "cross-fitted (5 folds)"
    # the kept family is refitted on training + validation, with n_seeds, whatever refit says
    alone = StackRouter(members="best_single", n_seeds=1, refit=False).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    np.testing.assert_allclose(alone.score(None, n=1)[0], Y_all.mean(axis=0), rtol=1e-6)


def test_cross_fit_is_charged_against_the_fit_budget():
    stack = StackRouter(members="logistic+best_single", n_seeds=3, cv_folds=5)
    three, one = stack._bagged("logistic").fit_cell_limit(), stack._bagged("logistic", n_seeds=1).fit_cell_limit()
    n_cells = 1_000_000
    assert stack._budget_share("logistic", n_cells, cross_fit=True) == pytest.approx(4 * n_cells / one + n_cells / three)
    assert stack._budget_share("logistic", n_cells, cross_fit=False) == pytest.approx(2 * n_cells / three)
    assert stack._budget_share("best_single", n_cells, cross_fit=True) == 0.0
    # a matrix where logistic's cross-fit no longer fits keeps it in the validation mode's list
    n_big = int(1.05 / (4 / one + 1 / three))
    assert stack.members_within_budget(n_big, 3, cross_fit=True) == ["best_single"]
    assert stack.members_within_budget(n_big, 3) == ["logistic", "best_single"]


@pytest.mark.parametrize("params, message", [({"select": "mu_o"}, "select must be one of"),
                                             ({"cv_folds": 1}, "cv_folds must be at least 2"),
                                             ({"select": "one_se", "steps": 10}, "keeps one member")])
def test_bad_selection_settings(params, message):
    with pytest.raises(DataError, match=message):
        StackRouter(members=MEMBERS, n_seeds=1, **params).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))


def test_log_loss_selection_keeps_the_first_rule():
    by_loss = StackRouter(members=MEMBERS, n_seeds=1, select="log_loss", cv_below=0).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    assert by_loss.chosen_ == [by_loss.selection_["members"][int(np.argmin(by_loss.validation_losses_))]]
    assert set(by_loss.selection_) == {"mode", "rows", "members", "log_loss"}


def test_cross_fitted_stack_never_reads_the_test_part_and_saves_its_evidence(tmp_path):
    rng = np.random.default_rng(5)
    other_test = GroupData("easy", 3, "all_strong", np.array(["a", "b", "c"]), X, rng.standard_normal((40, 6)).astype(np.float32),
                           Y, rng.integers(0, 2, (40, 3)).astype(np.float64), X_VAL, Y_VAL)
    fitted = [StackRouter(members=MEMBERS, n_seeds=1) for _ in range(2)]
    evaluate_group(fitted[0], _group(Y_VAL))
    evaluate_group(fitted[1], other_test)
    assert fitted[0].selection_ == fitted[1].selection_ and fitted[0].selection_["mode"].startswith("cross-fitted")
    np.testing.assert_array_equal(fitted[0].score(X_VAL), fitted[1].score(X_VAL))
    fitted[0].save(tmp_path / "stack")
    copy = Router.load(tmp_path / "stack")
    assert copy.selection_ == fitted[0].selection_


def test_auto_uses_the_one_se_rule_only_on_a_cross_fitted_choice():
    on_validation = StackRouter(members=MEMBERS, n_seeds=1, cv_below=0).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    assert on_validation.selection_["mode"] == "validation" and "se" not in on_validation.selection_
    assert on_validation.chosen_ == [MEMBERS.split("+")[int(np.argmin(on_validation.validation_losses_))]]
    crossed = StackRouter(members=MEMBERS, n_seeds=1).fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    table = crossed.selection_
    assert table["mode"].startswith("cross-fitted") and len(table["se"]) == 2
    within = np.flatnonzero(table["within"])
    assert crossed.chosen_ == [table["members"][within[np.argmin(np.asarray(table["log_loss"])[within])]]]
    forced = StackRouter(members=MEMBERS, n_seeds=1, cv_below=0, select="one_se").fit(Y, X, validation=ValidationPart(Y_VAL, X_VAL))
    assert forced.selection_["mode"] == "validation" and "se" in forced.selection_
