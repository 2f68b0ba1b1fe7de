"""IRT-Router: the MIRT probability by hand, the NIRT variant end to end, new LLMs by MAP ability."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recroute.errors import DataError
from recroute.routers.base import Router
from recroute.routers.irt import IRTRouter


def blocks(n: int, seed: int):
    """X (n, 6) around 3 centres; LLM b is right on block b's prompts only; a 4th LLM never right."""
    rng = np.random.default_rng(seed)
    block = np.arange(n) % 3
    X = (np.eye(6)[block] * 3 + 0.3 * rng.standard_normal((n, 6))).astype(np.float32)
    Y = np.zeros((n, 4), dtype=np.float32)
    Y[np.arange(n), block] = 1
    return X, Y, block


def test_mirt_probability_is_sigmoid_of_a_dot_theta_minus_b():
    router = IRTRouter(n_dims=2, epochs=1).fit(np.array([[1, 0], [0, 1]], dtype=np.float32), np.eye(2, dtype=np.float32))
    with torch.no_grad():
        router.net_.discrimination.weight.zero_()
        router.net_.discrimination.bias.fill_(float(np.log(np.e - 1)))  # softplus -> a = (1, 1)
        router.net_.difficulty.weight.copy_(torch.tensor([[1.0, 0.0]]))  # b = x_0
        router.net_.difficulty.bias.zero_()
        router.net_.theta.copy_(torch.tensor([[0.5, 0.5], [2.0, 0.0]]))
    a, b = router.item_parameters(np.array([[0.5, 7.0]], dtype=np.float32))
    np.testing.assert_allclose(a, [[1, 1]], atol=1e-6)
    np.testing.assert_allclose(b, [0.5], atol=1e-6)
    # LLM 0: 1*.5 + 1*.5 - .5 = .5; LLM 1: 2 - .5 = 1.5
    expected = 1 / (1 + np.exp(-np.array([0.5, 1.5])))
    np.testing.assert_allclose(router.score(np.array([[0.5, 7.0]], dtype=np.float32))[0], expected, atol=1e-6)
    np.testing.assert_allclose(router.abilities(), [[0.5, 0.5], [2, 0]])


@pytest.mark.parametrize("variant", ["mirt", "nirt"])
def test_variants_route_blocks_and_place_a_new_llm(variant, tmp_path):
    X, Y, block = blocks(300, 0)
    Xt, Yt, block_t = blocks(90, 1)
    # trained with a twin of block 0's specialist (column 0); the specialist itself arrives later
    router = IRTRouter(n_dims=4, variant=variant, epochs=40, lr=1e-2, batch_size=32).fit(Y, X)
    assert (router.route(Xt)[0][:, 0] == block_t).mean() >= 0.9
    probes = np.concatenate([np.flatnonzero(block == b)[:8] for b in range(3)])
    grown = router.partial_fit_llms(X[probes], Y[probes, 0], "block0")
    np.testing.assert_allclose(grown.score(Xt)[:, :4], router.score(Xt), atol=1e-6)  # nothing else moved
    choice = grown.route(Xt, candidates=[1, 2, 3, 4])[0][:, 0]  # the twin left out
    assert (choice[block_t == 0] == 4).mean() >= 0.9
    grown.save(tmp_path / variant)
    np.testing.assert_allclose(Router.load(tmp_path / variant).score(Xt), grown.score(Xt), atol=1e-6)


def test_continuous_scores_missing_cells_and_bad_parameters():
    X, Y, _ = blocks(60, 2)
    Y = np.where(np.random.default_rng(0).random(Y.shape) < 0.3, np.nan, 0.8 * Y + 0.1)
    scores = IRTRouter(n_dims=2, epochs=5).fit(Y, X).score(X)
    assert scores.shape == (60, 4) and np.isfinite(scores).all() and ((scores > 0) & (scores < 1)).all()
    with pytest.raises(ValueError, match="variant"):
        IRTRouter(variant="rasch").fit(Y, X)
    with pytest.raises(DataError, match="needs prompt features"):
        IRTRouter().fit(Y)


def test_cell_budget_caps_the_epochs_of_large_pools():
    from recroute.routers.torch_base import epochs_within_budget

    assert epochs_within_budget(20, 24_000, 8_500, 1e9) == 4  # RouterEval's scale: 2.04e8 cells per epoch
    assert epochs_within_budget(20, 9_600, 10, 1e9) == 20
    assert epochs_within_budget(20, 10**6, 10**4, 1e9) == 1  # never below one epoch
    assert epochs_within_budget(7, 10**6, 10**4, None) == 7
    X, Y, _ = blocks(60, 3)
    router = IRTRouter(n_dims=2, epochs=20, cell_budget=2 * 60 * 4).fit(Y, X)
    assert router.training_["epochs_run"] == 2
