"""RouterDC: its two contrastive losses by hand, the positive/negative choice, and the router's scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recroute.routers.registry import make_router
from recroute.routers.routerdc import ranked_pairs, routerdc_batch_loss, sample_llm_loss, sample_sample_loss


def test_sample_llm_loss_by_hand():
    pos = torch.tensor([[0.5]])
    neg = torch.tensor([[0.1, -0.2]])
    both = sample_llm_loss(pos, neg, torch.tensor([[[True, True]]]))
    # -log(e^.5 / (e^.5 + e^.1 + e^-.2)) = log(1 + e^-.4 + e^-.7)
    assert float(both) == pytest.approx(math.log(1 + math.exp(-0.4) + math.exp(-0.7)), rel=1e-6)
    one = sample_llm_loss(pos, neg, torch.tensor([[[False, True]]]))
    assert float(one) == pytest.approx(math.log(1 + math.exp(-0.7)), rel=1e-6)
    none = sample_llm_loss(pos, neg, torch.tensor([[[False, False]]]))
    assert float(none) == 0.0  # a positive with no valid negative adds nothing
    # two prompts, two positives: the sum over positives, the mean over prompts
    pos2 = torch.tensor([[0.0, 1.0], [2.0, 0.0]])
    neg2 = torch.tensor([[0.0], [1.0]])
    valid = torch.tensor([[[True], [True]], [[True], [False]]])
    expected = ((math.log(2) + math.log(1 + math.exp(-1))) + math.log(1 + math.exp(-1))) / 2
    assert float(sample_llm_loss(pos2, neg2, valid)) == pytest.approx(expected, rel=1e-6)


def test_sample_sample_loss_by_hand():
    # clusters {0, 1} and {2, 3}: each row's partner and its two negatives are forced
    E = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]]), dim=1)
    clusters = torch.tensor([0, 0, 1, 1])
    S = (E @ E.T).numpy()
    partner, negatives = [1, 0, 3, 2], [[2, 3], [2, 3], [0, 1], [0, 1]]
    expected = np.mean([np.log(np.exp(S[i, partner[i]]) + np.exp(S[i, negatives[i]]).sum()) - S[i, partner[i]]
                        for i in range(4)])
    torch.manual_seed(0)
    assert float(sample_sample_loss(E, clusters, 2)) == pytest.approx(expected, rel=1e-6)
    # nobody has a partner: 0, and still differentiable
    lone = sample_sample_loss(E.clone().requires_grad_(), torch.tensor([0, 1, 2, 3]), 2)
    assert float(lone.detach()) == 0.0 and lone.requires_grad


def test_ranked_pairs_picks_best_and_worst_and_breaks_ties_at_random():
    Y = np.array([[0.2, 0.9, 0.5, 0.1], [np.nan, 1.0, 0.0, 0.0]])
    pos, neg, valid = ranked_pairs(Y, top_k=2, last_k=1, random_state=0)
    assert pos[0].tolist() == [1, 2] and neg[0].tolist() == [3]
    assert valid[0].all()
    assert pos[1, 0] == 1 and neg[1, 0] in (2, 3)  # the NaN cell is neither
    assert valid[1, 0, 0] and not valid[1, 1, 0]  # second positive (0.0) does not beat a 0.0 negative
    # ties: among three equally right LLMs every one becomes the first positive sometimes
    tied = np.tile([1.0, 1.0, 1.0, 0.0], (300, 1))
    first = ranked_pairs(tied, 1, 1, random_state=1)[0][:, 0]
    assert set(first.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(first, ranked_pairs(tied, 1, 1, random_state=1)[0][:, 0])
    assert ranked_pairs(Y, top_k=9, last_k=9, random_state=0)[0].shape == (2, 4)  # capped at n_llms


def test_batch_loss_adds_the_weighted_cluster_term():
    E = torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    L = torch.nn.functional.normalize(torch.randn(2, 3, generator=torch.Generator().manual_seed(1)), dim=1)
    pos, neg, valid = (torch.from_numpy(a) for a in ranked_pairs(np.eye(6, 2), 1, 1, 0))
    clusters = torch.tensor([0, 0, 0, 1, 1, 1])
    torch.manual_seed(0)
    plain = routerdc_batch_loss(E, L, pos, neg, valid, clusters, 0.5, 0.0, 2)
    sims = E @ L.T / 0.5
    expected = sample_llm_loss(sims.gather(1, pos), sims.gather(1, neg), valid)
    assert float(plain) == pytest.approx(float(expected), rel=1e-6)
    torch.manual_seed(0)
    weighted = routerdc_batch_loss(E, L, pos, neg, valid, clusters, 0.5, 2.0, 2)
    torch.manual_seed(0)
    assert float(weighted) == pytest.approx(float(plain) + 2.0 * float(sample_sample_loss(E, clusters, 2)), rel=1e-6)


def test_router_scores_are_scaled_cosines():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    Y = (X[:, :3] > 0).astype(np.float32)  # LLM j is right where feature j is positive
    router = make_router("routerdc", epochs=20, temperature=0.5, n_clusters=2).fit(Y, X)
    E = router.encode(X[:10])
    np.testing.assert_allclose(np.linalg.norm(E, axis=1), 1.0, atol=1e-5)
    llms = torch.nn.functional.normalize(router.net_.llm_embedding.weight, dim=1).detach().numpy()
    np.testing.assert_allclose(router.score(X[:10]), (E @ llms.T) / 0.5, atol=1e-5)
    assert np.abs(router.score(X)).max() <= 1 / 0.5 + 1e-5
    test = rng.standard_normal((200, 6)).astype(np.float32)
    choice = router.route(test)[0][:, 0]
    truth = (test[:, :3] > 0)[np.arange(200), choice]
    assert truth.mean() >= 0.8  # routes to an LLM that is right far more often than chance (~0.5)
    with pytest.raises(ValueError, match="temperature"):
        make_router("routerdc", temperature=0).fit(Y, X)


def test_train_batches_stops_at_max_steps():
    from recroute.routers.torch_base import train_batches

    net = torch.nn.Linear(2, 1)
    seen = []

    def batch_loss(rows):
        seen.append(len(rows))
        return net(torch.ones(len(rows), 2)).pow(2).mean()

    info = train_batches(net, 10, batch_loss, lr=0.1, weight_decay=0.0, epochs=5, batch_size=4,
                         random_state=0, max_steps=7)
    assert info["steps"] == 7 and info["epochs_run"] == 3 and seen == [4, 4, 2, 4, 4, 2, 4]
    info = train_batches(net, 10, batch_loss, lr=0.1, weight_decay=0.0, epochs=2, batch_size=4, random_state=0)
    assert info["steps"] == 6 and info["epochs_run"] == 2
