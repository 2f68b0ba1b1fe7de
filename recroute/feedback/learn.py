"""Learning routers from a decision log.

Three ways to turn a log into training data for any router family:

- ``naive``: the revealed cells only (each cell's mean outcome), NaN elsewhere: the baseline, biased
  toward what the logging policy liked (missing not at random).
- ``dr``: counterfactual completion. For decision i and every candidate a, the doubly-robust pseudo-outcome
  ``q(x_i, a) + 1{a = a_i} (r_i - q(x_i, a_i)) / p_i`` is unbiased for the true Y(x_i, a) whenever the
  propensity is right and q is independent of the decision (cross-fitted); a prompt's cell is the mean over
  its decisions. Every candidate cell of every logged prompt is filled, so any router that fits a matrix
  trains on it unchanged (one shared mechanism). Pseudo-outcomes leave [0, 1] by design (by up to 1/p);
  ``fit_from_log`` clips them to [0, 1] by default (``clip=None`` keeps the unbiased, high-variance values):
  clipped, an exploratory cell revealed once keeps about its outcome and an unrevealed cell the reward
  model's value, which trades a little bias for far less variance (see docs/feedback.md for measurements).
- ``ips``: the revealed cells weighted by inverse propensity (Schnabel et al. 2016): cell weight
  ``(sum of 1/p_i over the prompt's decisions that chose a) / (the prompt's number of decisions)``, whose
  expectation is 1 for every candidate cell, so the weighted loss is unbiased for the full-information loss.
  Torch routers take the weights in their one training loop (``cell_weights``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from recroute.errors import DataError, NotSupportedError
from recroute.feedback.bandit import Bandit, log_matrix
from recroute.feedback.ope import DEFAULT_REWARD_ROUTER, reward_model

if TYPE_CHECKING:
    from recroute.routers.base import Router

METHODS = ("naive", "dr", "ips")


def dr_matrix(bandit: Bandit, q_hat: np.ndarray, clip: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(unique rows (u,), float64 (u, m)) doubly-robust pseudo-outcomes; NaN where never a candidate.

    q_hat (n, m): the reward model's predictions at each decision (cross-fitted; see ``reward_model``).
    """
    n, m = len(bandit), bandit.n_llms
    q = np.asarray(q_hat, dtype=np.float64)
    if q.shape != (n, m):
        raise DataError(f"q_hat has shape {q.shape}; expected ({n}, {m})")
    gamma = np.where(bandit.allowed, q, 0.0)
    idx = np.arange(n)
    gamma[idx, bandit.chosen] += (bandit.reward - q[idx, bandit.chosen]) / bandit.propensity
    uniq, inv = np.unique(bandit.rows, return_inverse=True)
    total = np.zeros((len(uniq), m))
    count = np.zeros((len(uniq), m))
    np.add.at(total, inv, gamma)
    np.add.at(count, inv, bandit.allowed.astype(np.float64))
    with np.errstate(invalid="ignore"):
        out = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    if clip is not None:
        out = np.clip(out, clip[0], clip[1])
    return uniq, out


def ips_matrix(bandit: Bandit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique rows (u,), revealed means (u, m) NaN elsewhere, inverse-propensity cell weights (u, m))."""
    uniq, Y = log_matrix(bandit)
    _, inv = np.unique(bandit.rows, return_inverse=True)
    m = bandit.n_llms
    weight = np.zeros((len(uniq), m))
    np.add.at(weight, (inv, bandit.chosen), 1.0 / bandit.propensity)
    decisions = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    return uniq, Y, weight / decisions[:, None]


def fit_from_log(
    router: "str | Router",
    bandit: Bandit,
    X: np.ndarray | None,
    method: str = "dr",
    *,
    q_hat: np.ndarray | None = None,
    reward_router: "str | Router" = DEFAULT_REWARD_ROUTER,
    folds: int = 2,
    clip: tuple[float, float] | None = (0.0, 1.0),
    seed: int = 0,
) -> "Router":
    """Fit ``router`` (spec or unfitted router) on a log by ``method`` ("naive", "dr", "ips"); returns it fitted.

    X: prompt features indexed by ``bandit.rows``. "dr" uses ``q_hat`` (n, m) or a reward model
    (``reward_router`` cross-fitted over ``folds``), its pseudo-outcomes clipped to ``clip`` (None: not clipped);
    "ips" needs a router that takes ``cell_weights`` (the torch routers).
    """
    from recroute.routers.registry import make_router

    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    rtr = make_router(router) if isinstance(router, str) else router
    weights = None
    if method == "naive":
        uniq, Y = log_matrix(bandit)
    elif method == "dr":
        if q_hat is None:
            q_hat = reward_model(bandit, X, reward_router, folds, seed)
        uniq, Y = dr_matrix(bandit, q_hat, clip)
    else:
        if not _takes_weights(rtr):
            raise NotSupportedError(
                f"router {rtr.name!r} has no per-cell weights; the IPS-weighted fit needs a torch router "
                "(linear, mlp, mlc, two_tower, text_mf); use method='dr' for any router"
            )
        uniq, Y, weights = ips_matrix(bandit)
    keep = ~np.isnan(Y).all(axis=1)
    uniq, Y = uniq[keep], Y[keep]
    feats = None
    if rtr.needs_features:
        if X is None:
            raise DataError(f"router {rtr.name!r} needs prompt features X for the logged prompts")
        feats = np.asarray(X, dtype=np.float32)[uniq]
    if weights is not None:
        rtr.fit(Y.astype(np.float32), feats, cell_weights=weights[keep])
    else:
        rtr.fit(Y.astype(np.float32), feats)
    rtr.llm_names_ = np.asarray(bandit.llm_names, dtype=object)
    return rtr


def _takes_weights(router) -> bool:
    import inspect

    return "cell_weights" in inspect.signature(router.fit).parameters
