"""Drift: the nearest-neighbour distance test fires after a switch of the prompt distribution, not without one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from recroute.audit.drift import domain_auc, drift_windows, first_alarm, fit_reference, nearest_distance
from recroute.errors import DataError

D = 16


def _cloud(n: int, centre: np.ndarray, rng) -> np.ndarray:
    return (centre + 0.6 * rng.normal(size=(n, D))).astype(np.float32)


def _centres(rng, k: int = 8) -> np.ndarray:
    return rng.normal(size=(k, D))


def _mixture(n: int, centres: np.ndarray, rng) -> np.ndarray:
    pick = rng.integers(0, len(centres), n)
    return (centres[pick] + 0.6 * rng.normal(size=(n, D))).astype(np.float32)


def test_nearest_distance_by_hand():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    q = np.array([[1.0, 1.0], [2.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    assert nearest_distance(ref, q) == pytest.approx([1 - np.sqrt(0.5), 0.0, 1.0], abs=1e-6)


def test_windows_test_each_window_with_a_bonferroni_threshold():
    rng = np.random.default_rng(0)
    train = _mixture(1000, _centres(rng), rng)
    ref = fit_reference(train, calibration=0.2, random_state=0)
    assert len(ref.null) == 200 and len(ref.index_vectors) == 800
    live = ref.distances(_mixture(430, _centres(np.random.default_rng(0)), rng))
    table = drift_windows(ref, live, window=100, alpha=0.01)
    assert table["start"].tolist() == [0, 100, 200, 300] and table["end"].tolist() == [100, 200, 300, 430]  # 30 join the last
    assert (table["threshold"] == 0.01 / 4).all()
    expected = mannwhitneyu(live[300:430], ref.null, alternative="greater").pvalue
    assert table["p_value"].iloc[3] == pytest.approx(expected)
    assert table["fired"].tolist() == (table["p_value"] < 0.0025).tolist()


@pytest.mark.parametrize("seed", range(5))
def test_fires_soon_after_a_switch_and_not_without_one(seed):
    rng = np.random.default_rng(seed)
    centres = _centres(np.random.default_rng(100))
    ref = fit_reference(_mixture(2000, centres, rng), random_state=seed)
    same = _mixture(2000, centres, rng)
    other = _mixture(1000, _centres(np.random.default_rng(200 + seed)), rng)
    switched = np.vstack([same[:1000], other])
    assert first_alarm(drift_windows(ref, ref.distances(same))) is None
    alarm = first_alarm(drift_windows(ref, ref.distances(switched)))
    assert alarm is not None and 1000 < alarm <= 1500


def test_domain_classifier_auc():
    rng = np.random.default_rng(1)
    centres = _centres(rng)
    train, same = _mixture(600, centres, rng), _mixture(600, centres, rng)
    shifted = _cloud(600, 3 * np.ones(D), rng)
    assert abs(domain_auc(train, same) - 0.5) < 0.1
    assert domain_auc(train, shifted) > 0.95
    assert np.isnan(domain_auc(train, same[:5]))


def test_bad_input():
    rng = np.random.default_rng(0)
    ref = fit_reference(_mixture(100, _centres(rng), rng))
    with pytest.raises(DataError, match="features"):
        ref.distances(np.zeros((3, D + 1), dtype=np.float32))
    with pytest.raises(DataError, match="window"):
        drift_windows(ref, np.zeros(10), window=1)
    with pytest.raises(DataError, match="NaN|inf|finite"):
        fit_reference(np.full((50, D), np.nan, dtype=np.float32))
    with pytest.raises(DataError, match="at least"):
        fit_reference(np.ones((10, D), dtype=np.float32))
