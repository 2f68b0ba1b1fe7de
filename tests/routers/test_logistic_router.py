"""The per-LLM logistic regression router: scikit-learn's fit per LLM, soft targets as sample weights."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from recroute.routers.registry import make_router


def test_matches_sklearn_per_llm_and_handles_soft_and_constant_targets():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    hard = (X[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(np.float32)
    soft = np.clip(0.5 + 0.3 * X[:, 1], 0, 1).astype(np.float32)
    Y = np.stack([hard, soft, np.ones(60, dtype=np.float32)], axis=1)
    Y[:5, 0] = np.nan  # unobserved cells are left out of LLM 0's fit
    router = make_router("logistic:C=0.5").fit(Y, X)
    S = router.score(X)
    ref = LogisticRegression(C=0.5, max_iter=500).fit(X[5:], hard[5:])
    np.testing.assert_allclose(S[:, 0], ref.predict_proba(X)[:, 1], atol=1e-5)
    # a soft target y is a positive of weight y plus a negative of weight 1 - y
    Xd = np.concatenate([X, X])
    yd = np.concatenate([np.ones(60), np.zeros(60)])
    wd = np.concatenate([soft, 1 - soft])
    ref = LogisticRegression(C=0.5, max_iter=500).fit(Xd, yd, sample_weight=wd)
    np.testing.assert_allclose(S[:, 1], ref.predict_proba(X)[:, 1], atol=1e-4)
    # an LLM that is always right scores its clipped rate everywhere
    np.testing.assert_allclose(S[:, 2], 1 - 1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="C must be > 0"):
        make_router("logistic:C=0").fit(Y, X)
