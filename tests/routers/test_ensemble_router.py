"""ensemble: weighted mean of member routers' P(correct), members bagged over seeds."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.routers.base import Router
from recroute.routers.ensemble import EnsembleRouter, member_specs
from recroute.routers.registry import make_router

RNG = np.random.default_rng(0)
X = RNG.standard_normal((240, 8)).astype(np.float32)
Y = (RNG.random((240, 3)) < 1 / (1 + np.exp(-X[:, :3] * 2))).astype(np.float32)
X_NEW = RNG.standard_normal((30, 8)).astype(np.float32)


def test_member_specs_from_the_command_line():
    assert member_specs("knn:k=3;metric='l2'+ linear") == ["knn:k=3,metric='l2'", "linear"]
    assert member_specs(("two_tower", "knn:k=5")) == ["two_tower", "knn:k=5"]
    router = make_router("ensemble:members=knn:k=3;metric='l2'+linear:epochs=2,n_seeds=1")
    assert router.members == "knn:k=3;metric='l2'+linear:epochs=2" and router.n_seeds == 1
    with pytest.raises(DataError, match="empty"):
        member_specs(" + ")


def test_score_is_the_weighted_mean_of_seed_averaged_members():
    router = EnsembleRouter(members="knn:k=7+linear:epochs=3", n_seeds=2, weights=(1, 3), random_state=5).fit(Y, X)
    knn = make_router("knn:k=7").fit(Y, X).score(X_NEW)  # no random_state: fitted once
    linear = np.mean([make_router("linear:epochs=3", random_state=s).fit(Y, X).score(X_NEW) for s in (5, 6)], axis=0)
    assert [len(c) for c in router.members_] == [1, 2]
    np.testing.assert_allclose(router.score(X_NEW), 0.25 * knn + 0.75 * linear, rtol=1e-5)
    np.testing.assert_allclose(router.member_scores(X_NEW), np.stack([knn, linear]), rtol=1e-5)


def test_feature_free_members_need_no_features():
    router = EnsembleRouter(members="best_single", n_seeds=3).fit(Y)
    assert not router.needs_features
    np.testing.assert_allclose(router.score(None, n=2), np.tile(Y.mean(axis=0), (2, 1)), rtol=1e-6)


def test_unbounded_members_need_calibration(tmp_path):
    with pytest.raises(DataError, match="calibration"):
        EnsembleRouter(members="als:factors=4;iterations=3", n_seeds=1).fit(Y, X)
    router = EnsembleRouter(members="als:factors=4;iterations=3+knn:k=9", n_seeds=1, calibration="platt").fit(Y, X)
    S = router.score(X_NEW)
    assert ((S >= 0) & (S <= 1)).all()
    router.save(tmp_path / "ens")
    copy = Router.load(tmp_path / "ens")
    assert isinstance(copy, EnsembleRouter)
    np.testing.assert_array_equal(copy.score(X_NEW), S)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"members": "ensemble"}, "cannot itself"),
        ({"members": "oracle"}, "oracle"),
        ({"members": "nonsense"}, "unknown router"),
        ({"n_seeds": 0}, "n_seeds"),
        ({"weights": (1, 2)}, "weights"),
        ({"weights": (-1,)}, "weights"),
        ({"calibration": "magic"}, "calibration"),
    ],
)
def test_bad_parameters_are_data_errors(params, message):
    params = {"members": "knn", **params}
    with pytest.raises(DataError, match=message):
        EnsembleRouter(**params).fit(Y, X)
