"""Adaptive probing: the expected-variance criterion by hand and against brute force, live probing,
the LLM-mixture posterior by hand, and adaptive beating random probes on synthetic 2PL data."""

from __future__ import annotations

import numpy as np
import pytest

from recroute.coldstart.adaptive import (
    Support,
    adaptive_probes,
    expected_variance,
    irt_support,
    llm_support,
    posterior,
    predict,
    probe_live,
)
from recroute.coldstart.irt import fit_irt, sigmoid
from recroute.coldstart.probes import select_probes
from recroute.errors import DataError


def test_expected_variance_by_hand():
    # two support points, prior 1/2 each; prompt 0 separates them (P .9 / .1), prompt 1 does not (.5 / .5)
    P = np.array([[0.9, 0.1], [0.5, 0.5]])
    support = Support(P, P, np.array([0.5, 0.5]))
    ev = expected_variance(support, np.array([[0.5, 0.5]]), np.zeros((1, 2), bool))
    # probing 0 leaves V1 / 2 = .25 at both points: variance 0; probing 1 leaves V0 / 2 = (.45, .05)
    # with an unchanged posterior: variance .25 * .4^2 = .04
    np.testing.assert_allclose(ev, [[0.0, 0.04]], atol=1e-6)


def test_expected_variance_matches_brute_force():
    rng = np.random.default_rng(1)
    n, S, m = 7, 5, 3
    P, V = rng.uniform(0.05, 0.95, (n, S)), rng.uniform(0, 1, (n, S))
    support = Support(P, V, np.full(S, 1 / S))
    w = rng.dirichlet(np.ones(S), m)
    probed = rng.random((m, n)) < 0.3
    ev = expected_variance(support, w, probed)
    for j in range(m):
        for i in range(n):
            rest = ~probed[j].copy()
            rest[i] = False
            target = V[rest].sum(0) / n
            total = 0.0
            for like in (P[i], 1 - P[i]):
                z = (w[j] * like).sum()
                post = w[j] * like / z
                total += z * (post @ target**2 - (post @ target) ** 2)
            assert ev[j, i] == pytest.approx(total, abs=1e-6)


def test_llm_mixture_posterior_by_hand():
    Y = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    support = llm_support(Y, eps=0.2)
    # prompt 0 right: likelihood .8 (LLM 0) vs .2 (LLM 1)
    np.testing.assert_allclose(posterior(support, [[0]], [[1.0]]), [[0.8, 0.2]])
    pred = predict(support, [[0]], [[1.0]])
    np.testing.assert_allclose(pred[:, 0], [1.0, 1.0, 0.2])  # prompt 2: 0 * .8 + 1 * .2
    with pytest.raises(DataError, match="eps"):
        llm_support(Y, eps=0.6)


def test_adaptive_asks_the_separating_prompt_first_and_answers_live():
    # LLM 0 right everywhere, LLM 1 wrong on prompt 2 only: only prompt 2 tells them apart
    Y = np.array([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    support = llm_support(Y, eps=0.1)
    asked = []
    rows, results = probe_live(support, lambda i: asked.append(i) or float(Y[i, 1]), 2)
    assert rows[0] == 2 and asked == list(rows) and len(set(rows)) == 2
    np.testing.assert_array_equal(results, Y[rows, 1])
    rows, _ = probe_live(support, lambda i: float(Y[i, 1]), 2, candidates=[0, 1, 3])
    assert set(rows) <= {0, 1, 3}
    probes = select_probes("adaptive", 3, Y=Y, answer=lambda i: float(Y[i, 0]))
    assert probes.results is not None and list(probes.rows) == sorted(probes.rows)
    np.testing.assert_array_equal(probes.results, Y[probes.rows, 0])
    with pytest.raises(DataError, match="answer"):
        select_probes("adaptive", 2, Y=Y)
    with pytest.raises(DataError, match="results in \\[0, 1\\]"):
        probe_live(support, lambda i: 3.0, 1)


def test_adaptive_beats_random_probes_on_synthetic_2pl():
    rng = np.random.default_rng(0)
    n, m, new = 80, 600, 150
    a, b, theta = rng.uniform(0.5, 2.5, n), rng.normal(0, 1.5, n), rng.normal(0, 1, m + new)
    Y = (rng.random((n, m + new)) < sigmoid(a[:, None] * theta + b[:, None])).astype(float)
    base, held = Y[:, :m], Y[:, m:]
    fit = fit_irt(base)
    truth = held.mean(0)
    k = 12
    for support in (llm_support(base, 0.2, fit, 0.3), irt_support(fit)):
        rows, res = adaptive_probes(support, lambda r: held[r, np.arange(new)], k, n_new=new)
        assert all(len(set(r)) == k for r in rows)
        adaptive_mae = np.abs(predict(support, rows, res).mean(0) - truth).mean()
        random_rows = np.stack([rng.choice(n, k, replace=False) for _ in range(new)])
        random_res = held[random_rows, np.arange(new)[:, None]]
        random_mae = np.abs(predict(support, random_rows, random_res).mean(0) - truth).mean()
        assert adaptive_mae < 0.9 * random_mae
