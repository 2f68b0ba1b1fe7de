"""LinearR, MLPR and MLC: masking, seeding, thread hygiene, MLC's labels and selection distribution."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recroute.routers.linear import LinearRouter, MLPRouter
from recroute.data.labels import multi_hot_labels
from recroute.routers.mlc import MLCRouter

FAST = {
    "linear": lambda **kw: LinearRouter(epochs=3, **kw),
    "mlp": lambda **kw: MLPRouter(epochs=3, hidden_size=16, **kw),
    "mlc": lambda **kw: MLCRouter(epochs=3, hidden_size=16, **kw),
}

rng = np.random.default_rng(0)
X = rng.standard_normal((120, 6)).astype(np.float32)
Y = (rng.random((120, 4)) < 0.5).astype(np.float32)


@pytest.mark.parametrize("name", list(FAST))
def test_unobserved_cells_do_not_train(name):
    """Cells that are NaN contribute nothing: any value there gives the same fit as NaN."""
    Y_nan = Y.copy()
    Y_nan[:, 3] = np.nan
    Y_nan[::3, 0] = np.nan
    fit_nan = FAST[name]().fit(Y_nan, X)
    assert np.isfinite(fit_nan.score(X)).all()
    # LLM 3 was never observed: its output layer gets no gradient beyond Adam's zero updates
    last = fit_nan.net_[-1] if isinstance(fit_nan.net_, torch.nn.Sequential) else fit_nan.net_
    fresh = FAST[name]()._build_net(X.shape[1], Y.shape[1])
    fresh_last = fresh[-1] if isinstance(fresh, torch.nn.Sequential) else fresh
    torch.testing.assert_close(last.weight[3], fresh_last.weight[3])
    torch.testing.assert_close(last.bias[3], fresh_last.bias[3])


@pytest.mark.parametrize("name", list(FAST))
def test_seeded_without_touching_global_torch_state(name):
    threads = torch.get_num_threads()
    torch.manual_seed(1)
    state = torch.get_rng_state()
    a = FAST[name](random_state=5).fit(Y, X).score(X)
    assert torch.equal(torch.get_rng_state(), state), "fit must not consume torch's global RNG"
    assert torch.get_num_threads() == threads, "fit must restore torch's thread setting"
    torch.manual_seed(2)
    np.testing.assert_array_equal(a, FAST[name](random_state=5).fit(Y, X).score(X))
    assert not np.array_equal(a, FAST[name](random_state=6).fit(Y, X).score(X))


@pytest.mark.parametrize("name", list(FAST))
def test_scores_are_probabilities(name):
    router = FAST[name]().fit(Y, X)
    scores = router.score(X)
    assert ((scores > 0) & (scores < 1)).all()
    logits = router._logits(X)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-6)


def test_linear_and_mlp_selection_probs_are_softmax_of_scores():
    from recroute.eval.metrics import softmax

    for router in (FAST["linear"]().fit(Y, X), FAST["mlp"]().fit(Y, X)):
        np.testing.assert_allclose(router.selection_probs(X), softmax(router.score(X)))
        assert router.entropy_floor == 1e-10


def test_multi_hot_labels_by_hand():
    binary = np.array([[1, 0, np.nan]], dtype=np.float32)
    np.testing.assert_array_equal(multi_hot_labels(binary), binary)
    cont = np.array([[0.5, 0.96, 1.0, np.nan], [0.0, 0.0, np.nan, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(multi_hot_labels(cont), [[0, 1, 1, np.nan], [1, 1, np.nan, 1]])


def test_mlc_selection_probs_are_relu_normalised_or_uniform():
    router = MLCRouter(epochs=1, hidden_size=8).fit(Y, X)
    with torch.no_grad():
        out = router.net_[-1]
        out.weight.zero_()
        out.bias.copy_(torch.tensor([2.0, -1.0, 0.0, 6.0]))
    np.testing.assert_allclose(router.selection_probs(X[:2]), [[0.25, 0, 0, 0.75]] * 2)
    with torch.no_grad():
        out.bias.copy_(torch.tensor([-2.0, -1.0, 0.0, -6.0]))
    np.testing.assert_allclose(router.selection_probs(X[:2]), np.full((2, 4), 0.25))
    assert router.entropy_floor == 1e-4


@pytest.mark.parametrize("bad", [{"lr": 0.0}, {"epochs": 0}, {"batch_size": 0}])
def test_bad_training_parameters_are_named(bad):
    with pytest.raises(ValueError, match="must"):
        LinearRouter(**bad).fit(Y, X)
