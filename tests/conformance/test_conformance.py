"""Every router in the registry through one shared suite.

Parametrized over ``registry.ROUTERS``, so a router cannot be registered without passing it. Checks
that do not apply to a router skip on its capability flags (``needs_features``, ``requires_truth``,
``stochastic``) with a reason, never silently. A router built from fitted routers rather than fitted
from data (``conservative``, ``BUILT``) is built from routers fitted on the same data wherever a check
fits one (:func:`fit_router`), and its own ``fit`` is checked to refuse. Routers that need the true scores (oracle, r_o) run
the truth-based variant of each check (``route_truth`` / ``selection_probs_truth`` /
``expected_mu``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from recroute.data.dataset import RoutingDataset
from recroute.errors import DataError, NotFittedError
from recroute.routers import registry
from recroute.routers.base import Router

NAMES = list(registry.ROUTERS)

# Fast parameters per router (few epochs, small factors). A router not listed runs with its defaults.
FAST_PARAMS: dict[str, dict] = {
    "linear": {"epochs": 5},
    "mlp": {"epochs": 20, "lr": 1e-3},
    "mlc": {"epochs": 10},
    "cluster": {"n_clusters": 3},
    "als": {"factors": 8, "iterations": 8},
    "bpr": {"factors": 8, "iterations": 30},
    "lightfm": {"no_components": 8, "prompt_dim": 16, "epochs": 10},
    "two_tower": {"dim": 16, "hidden": (32,), "epochs": 30, "patience": 30},
    "text_mf": {"dim": 16, "epochs": 30, "patience": 30},
    "soft_cluster": {"n_clusters": 12, "n_partitions": 2},
    "ensemble": {"members": "soft_cluster:n_clusters=12;n_partitions=1+linear:epochs=5", "n_seeds": 2},
    "stack": {"members": "soft_cluster:n_clusters=12;n_partitions=1+logistic+best_single", "n_seeds": 1, "steps": 3},
    "routerdc": {"epochs": 15, "n_clusters": 3},
    "graphrouter": {"epochs": 30},
    "debiased": {"inner": "knn", "ipw": 0.5, "calibration": "isotonic", "tau": 0.1},  # every remedy at once
    "irt": {"n_dims": 8, "epochs": 30, "lr": 1e-2, "batch_size": 64},
    "avengers": {"n_clusters": 6, "top_p": 1},
    "hybrid": {"epochs": 20},
}

D, M = 16, 5
SPECIALIST = np.array([3, 0, 4])  # block b's prompts are answered right only by LLM SPECIALIST[b]
LLM_NAMES = ["alpha", "bravo", "charlie", "delta", "echo"]
_CENTRES = np.random.default_rng(12345).standard_normal((3, D)) * 3.0


def make_blocks(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X float32 (n, D) around 3 centres, Y float32 (n, M) one-hot on each block's specialist, blocks."""
    rng = np.random.default_rng(seed)
    blocks = np.arange(n) % 3
    X = (_CENTRES[blocks] + 0.3 * rng.standard_normal((n, D))).astype(np.float32)
    Y = np.zeros((n, M), dtype=np.float32)
    Y[np.arange(n), SPECIALIST[blocks]] = 1.0
    return X, Y, blocks


X_TRAIN, Y_TRAIN, _ = make_blocks(300, seed=0)
X_TEST, Y_TEST, BLOCKS_TEST = make_blocks(90, seed=1)


def new_router(name: str) -> Router:
    return registry.make_router(name, **FAST_PARAMS.get(name, {}))


# routers built from fitted routers, never fitted from data: name -> (families of the inner routers, params)
BUILT: dict[str, tuple[tuple[str, ...], dict]] = {"conservative": (("knn", "linear"), {"tau": 0.1})}


def fit_router(name: str, data, X: np.ndarray | None = None) -> Router:
    """``name`` fitted on ``data`` (and X); a router of ``BUILT`` built from its inner routers fitted so."""
    if name in BUILT:
        families, params = BUILT[name]
        return registry.router_class(name)(*(fit_router(f, data, X) for f in families), **params)
    return new_router(name).fit(data, X)


def train_dataset(Y: np.ndarray = Y_TRAIN) -> RoutingDataset:
    data = RoutingDataset.from_wide(Y, [f"p{i:04d}" for i in range(len(Y))], LLM_NAMES)
    data.set_embeddings(X_TRAIN, "blocks")
    return data


_FITTED: dict[str, Router] = {}


def fitted(name: str) -> Router:
    """One router per name fitted on the block dataset (cached; tests must not mutate it)."""
    if name not in _FITTED:
        _FITTED[name] = fit_router(name, train_dataset())
    return _FITTED[name]


def scores_or_truth(router: Router, X: np.ndarray, Y_true: np.ndarray) -> np.ndarray:
    """What a router outputs per prompt: scores, or for truth routers the truth-based choice."""
    return router.route_truth(Y_true) if router.requires_truth else router.score(X)


def skip_unless_features(router: Router) -> None:
    if not router.needs_features:
        pytest.skip(f"{router.name} does not use prompt features (needs_features=False)")


# ---------------------------------------------------------------------- registry and parameters
@pytest.mark.parametrize("name", NAMES)
def test_registered_under_its_name(name):
    klass = registry.router_class(name)
    assert issubclass(klass, Router)
    assert klass.name == name, "Router.name must equal the registry name (save/load goes through it)"
    router = new_router(name)
    params = router.get_params()
    assert router.set_params(**params) is router
    assert repr(router).startswith(type(router).__name__)
    assert 0 <= klass.entropy_floor < 1


@pytest.mark.parametrize("name", list(BUILT))
def test_built_router_refuses_to_fit(name):
    from recroute.errors import NotSupportedError

    with pytest.raises(NotSupportedError, match="built from two fitted routers"):
        new_router(name).fit(train_dataset())


@pytest.mark.parametrize("name", NAMES)
def test_not_fitted_error(name):
    router = new_router(name)
    with pytest.raises(NotFittedError):
        if router.requires_truth:
            router.route_truth(Y_TEST)
        else:
            router.score(X_TEST, n=len(X_TEST))
    with pytest.raises(NotFittedError):
        router.save("/nonexistent/never-written")


# ---------------------------------------------------------------------- outputs
@pytest.mark.parametrize("name", NAMES)
def test_output_shapes_and_types(name):
    router = fitted(name)
    assert list(router.llm_names_) == LLM_NAMES
    if router.requires_truth:
        choice = router.route_truth(Y_TEST)
        assert choice.shape == (len(Y_TEST),) and choice.dtype == np.int64
        assert ((choice >= 0) & (choice < M)).all()
        probs = router.selection_probs_truth(Y_TEST)
        with pytest.raises(ValueError, match="route_truth"):
            router.score(X_TEST)
    else:
        scores = router.score(X_TEST)
        assert scores.shape == (len(X_TEST), M) and scores.dtype == router.score_dtype == type(router).score_dtype
        assert router.score_dtype in (np.float32, np.float64)  # float64: conservative (its margin exact)
        assert np.isfinite(scores).all()
        idx, top = router.route(X_TEST, k=2)
        assert idx.shape == top.shape == (len(X_TEST), 2) and idx.dtype == np.int64
        probs = router.selection_probs(X_TEST)
    assert probs.shape == (len(X_TEST), M)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_batch_equals_row_by_row(name):
    router = fitted(name)
    if router.requires_truth:
        batch = router.selection_probs_truth(Y_TEST)
        rows = np.vstack([router.selection_probs_truth(Y_TEST[i : i + 1]) for i in range(len(Y_TEST))])
        np.testing.assert_allclose(batch, rows, atol=1e-12)
    if router.stochastic:
        pytest.skip(f"{name} draws random decisions (stochastic): a row alone gets other draws")
    if router.requires_truth:
        rows = np.concatenate([router.route_truth(Y_TEST[i : i + 1]) for i in range(len(Y_TEST))])
        np.testing.assert_array_equal(router.route_truth(Y_TEST), rows)
        return
    batch = router.score(X_TEST)
    rows = np.vstack([router.score(X_TEST[i : i + 1]) for i in range(len(X_TEST))])
    np.testing.assert_allclose(batch, rows, atol=1e-5, rtol=0)


def scramble_global_generators(seed: int) -> None:
    """Reseed every global generator a router could draw from by mistake (Python, numpy, torch)."""
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_under_random_state(name):
    """Two fits with the router's own seed agree exactly, whatever the global generators hold."""
    scramble_global_generators(1)
    first = fit_router(name, train_dataset())
    scramble_global_generators(2)
    second = fit_router(name, train_dataset())
    np.testing.assert_array_equal(scores_or_truth(first, X_TEST, Y_TEST), scores_or_truth(second, X_TEST, Y_TEST))


@pytest.mark.parametrize("name", NAMES)
def test_save_load_and_pickle_round_trip(name, tmp_path):
    router = fit_router(name, train_dataset())  # its own copy: stochastic routers advance state
    router.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "router.json").exists()
    copies = [Router.load(tmp_path / "saved"), type(router).load(tmp_path / "saved"),
              pickle.loads(pickle.dumps(router))]
    for copy in copies:
        assert type(copy) is type(router) and copy._saved_params() == router._saved_params()
        assert list(copy.llm_names_) == LLM_NAMES
    # every copy starts from the router's state at save time, so mirrored calls must agree
    if router.requires_truth:
        expected = (router.route_truth(Y_TEST), router.selection_probs_truth(Y_TEST), router.expected_mu(Y_TEST))
        for copy in copies:
            np.testing.assert_array_equal(copy.route_truth(Y_TEST), expected[0])
            np.testing.assert_array_equal(copy.selection_probs_truth(Y_TEST), expected[1])
            assert copy.expected_mu(Y_TEST) == expected[2]
        return
    expected = (router.score(X_TEST), router.route(X_TEST, k=2)[0], router.selection_probs(X_TEST))
    for copy in copies:
        np.testing.assert_array_equal(copy.score(X_TEST), expected[0])
        np.testing.assert_array_equal(copy.route(X_TEST, k=2)[0], expected[1])
        np.testing.assert_allclose(copy.selection_probs(X_TEST), expected[2], atol=1e-12)


# ---------------------------------------------------------------------- input errors
@pytest.mark.parametrize("name", NAMES)
def test_wrong_embedding_size_is_a_data_error(name):
    router = fitted(name)
    skip_unless_features(router)
    wrong = np.zeros((4, D + 1), dtype=np.float32)
    with pytest.raises(DataError) as err:
        router.score(wrong)
    assert str(D + 1) in str(err.value) and str(D) in str(err.value)
    with pytest.raises(DataError):
        router.route(wrong)


@pytest.mark.parametrize("name", NAMES)
def test_nan_input_is_a_data_error(name):
    router = fitted(name)
    if router.requires_truth:
        bad = Y_TEST.copy()
        bad[2, 1] = np.nan
        with pytest.raises(DataError, match="row 2"):
            router.route_truth(bad)
        with pytest.raises(DataError):
            router.route_truth(Y_TEST[:, :-1])  # wrong number of LLMs
        return
    skip_unless_features(router)
    bad = X_TEST.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="row 2"):
        router.score(bad)


@pytest.mark.parametrize("name", NAMES)
def test_unobserved_training_cells(name):
    """NaN (not evaluated) training cells are allowed and never leak into the outputs."""
    Y = Y_TRAIN.copy()
    Y[np.random.default_rng(3).random(Y.shape) < 0.2] = np.nan
    router = fit_router(name, train_dataset(Y))
    out = router.selection_probs_truth(Y_TEST) if router.requires_truth else router.score(X_TEST)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_fit_from_matrix_and_features(name):
    router = fit_router(name, Y_TRAIN, X_TRAIN)
    assert list(router.llm_names_) == [f"llm_{j}" for j in range(M)]
    if router.needs_features:
        assert router.n_features_in_ == D
    out = router.route_truth(Y_TEST) if router.requires_truth else router.route(X_TEST)[0]
    assert len(out) == len(X_TEST)


# ---------------------------------------------------------------------- candidates
@pytest.mark.parametrize("name", NAMES)
def test_candidate_restriction(name):
    router = fitted(name)
    allowed = {1, 2}
    if router.requires_truth:
        by_index = router.route_truth(Y_TEST, candidates=[1, 2])
        by_name = router.route_truth(Y_TEST, candidates=["bravo", "charlie"])
        with pytest.raises(DataError, match="zulu"):
            router.route_truth(Y_TEST, candidates=["bravo", "zulu"])
    else:
        by_index = router.route(X_TEST, candidates=[1, 2])[0][:, 0]
        by_name = router.route(X_TEST, candidates=["bravo", "charlie"])[0][:, 0]
        both = router.route(X_TEST, k=2, candidates=[2, 1])[0]
        assert (np.sort(both, axis=1) == [1, 2]).all()
        with pytest.raises(DataError, match="zulu"):
            router.route(X_TEST, candidates=["bravo", "zulu"])
    assert set(by_index.tolist()) <= allowed
    if not router.stochastic or router.requires_truth:  # Random draws anew on every call
        np.testing.assert_array_equal(by_index, by_name)
    else:
        assert set(by_name.tolist()) <= allowed


# ---------------------------------------------------------------------- learning
@pytest.mark.parametrize("name", NAMES)
def test_routes_blocks_to_their_specialists(name):
    router = fitted(name)
    if router.requires_truth:
        choice = router.route_truth(Y_TEST)
        achieved = Y_TEST[np.arange(len(Y_TEST)), choice].mean()
        assert abs(achieved - router.expected_mu(Y_TEST)) <= 0.15
        assert router.expected_mu(Y_TEST) >= 1.0 / M  # never worse than random in expectation
        return
    if router.stochastic:
        pytest.skip(f"{name} routes at random (stochastic): nothing to learn")
    if not router.needs_features:
        pytest.skip(f"{name} does not use prompt features: it routes every prompt alike")
    choice = router.route(X_TEST)[0][:, 0]
    accuracy = (choice == SPECIALIST[BLOCKS_TEST]).mean()
    assert accuracy >= 0.9, f"{name} routed {accuracy:.0%} of prompts to their block's specialist"


# ---------------------------------------------------------------------- new LLMs (cold start)
def _onboarding_case(name: str):
    """A router fitted without "alpha" (block 1's specialist) but with "alpha_twin", who answers like it;
    probes: 6 training prompts per block with alpha's results."""
    Y = np.hstack([Y_TRAIN[:, :1], Y_TRAIN])  # alpha_twin, alpha, bravo, ... (alpha dropped below)
    keep = [0, 2, 3, 4, 5]
    data = RoutingDataset.from_wide(Y[:, keep], [f"p{i:04d}" for i in range(len(Y))],
                                    ["alpha_twin", *LLM_NAMES[1:]])
    data.set_embeddings(X_TRAIN, "blocks")
    router = fit_router(name, data)
    probes = np.concatenate([np.flatnonzero(np.arange(len(X_TRAIN)) % 3 == b)[:6] for b in range(3)])
    return router, X_TRAIN[probes], Y_TRAIN[probes, 0]


@pytest.mark.parametrize("name", NAMES)
def test_new_llm_onboarding(name, tmp_path):
    if not registry.router_class(name).supports_new_llms:
        pytest.skip(f"{name} cannot place new LLMs (supports_new_llms=False): see test_new_llms_not_supported")
    router, X_probe, y_probe = _onboarding_case(name)
    before = router.score(X_TEST).copy()
    grown = router.partial_fit_llms(X_probe, y_probe, "alpha")
    assert grown.n_llms_ == 6 and grown.llm_names_[-1] == "alpha" and router.n_llms_ == 5
    scores = grown.score(X_TEST)
    assert scores.shape == (len(X_TEST), 6) and np.isfinite(scores).all()
    np.testing.assert_allclose(scores[:, :5], before, atol=1e-5)  # nothing else retrained
    np.testing.assert_array_equal(router.score(X_TEST), before)  # the original is untouched
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(Y_TEST[:, 0], scores[:, 5]) >= 0.9
    choice = grown.route(X_TEST, candidates=[1, 2, 3, 4, 5])[0][:, 0]  # alpha_twin excluded
    assert (choice[BLOCKS_TEST == 1] == 5).mean() >= 0.9
    grown.save(tmp_path / "grown")
    np.testing.assert_allclose(Router.load(tmp_path / "grown").score(X_TEST), scores, atol=1e-6)
    # k = 0: no probes, no metadata -> the prior (an average LLM); routable and finite
    blind = router.partial_fit_llms(None, np.zeros((0, 1)), ["newcomer"])
    assert blind.score(X_TEST).shape == (len(X_TEST), 6) and np.isfinite(blind.score(X_TEST)).all()
    with pytest.raises(DataError, match="already in the router"):
        router.partial_fit_llms(X_probe, y_probe, "bravo")
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        router.partial_fit_llms(X_probe, y_probe * 2, "alpha")
    with pytest.raises(DataError, match="features"):
        router.partial_fit_llms(X_probe[:, :3], y_probe, "alpha")


@pytest.mark.parametrize("name", NAMES)
def test_new_llms_not_supported(name):
    if registry.router_class(name).supports_new_llms:
        pytest.skip(f"{name} places new LLMs: see test_new_llm_onboarding")
    from recroute.errors import NotSupportedError

    router = fitted(name)
    with pytest.raises(NotSupportedError, match="cannot place a new LLM"):
        router.partial_fit_llms(X_TRAIN[:3], np.ones(3), "newcomer")
