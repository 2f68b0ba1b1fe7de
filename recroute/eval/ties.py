"""How far the order of tied kNN neighbours can move RouterEval's numbers.

Where a query's k-th and (k+1)-th nearest training prompts are at equal distance (duplicates or
near-duplicates within ``TIE_TOL``), which of them is a neighbour is a convention: recroute takes the
lower training position (:func:`recroute.routers.knn.choose_neighbours`); sklearn's brute-force search,
which RouterEval's knn.py calls, takes whatever its CPU's partition kernel leaves in front. This module
enumerates every neighbour set the tied prompts allow and reports, per candidate group, the range of
mu_o, V_B and E_p they span beside recroute's own value: an official number printed on another
machine is reproduced when it lies in that range.

A query whose tied prompts allow more than ``max_sets`` neighbour sets is bounded conservatively
(mu_o by the lowest and highest test score among its candidates, E_p by 0 and log2 m) and counted in
``n_bounded``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import combinations
from math import comb, log2
from typing import Sequence

import numpy as np
import pandas as pd

from recroute.eval import metrics
from recroute.eval.protocol import MEAN, GroupData, iter_group_data
from recroute.routers.knn import KNNRouter, neighbour_mean_scores


@dataclass(frozen=True)
class TieRange:
    """recroute's value of mu_o / V_B / E_p on one group and the range the tie orders allow."""

    mu_o: float
    mu_o_lo: float
    mu_o_hi: float
    v_b: float
    v_b_lo: float
    v_b_hi: float
    e_p: float
    e_p_lo: float
    e_p_hi: float
    n_tied: int       # test prompts whose neighbour set a tie decides
    n_decisive: int   # of those, prompts whose routed test score depends on the tie order
    n_bounded: int    # prompts with too many neighbour sets to enumerate (bounded conservatively)

    def contains(self, metric: str, value: float, slack: float = 0.0) -> bool:
        """Whether ``value`` lies in the range of ``metric`` ("mu_o", "v_b" or "e_p") widened by ``slack``."""
        return getattr(self, f"{metric}_lo") - slack <= value <= getattr(self, f"{metric}_hi") + slack


def knn_tie_range(router: KNNRouter, X_test: np.ndarray, Y_test: np.ndarray, max_sets: int = 5000) -> TieRange:
    """The TieRange of a fitted flat ``KNNRouter`` on test features X (n, d) and true scores Y (n, m)."""
    Y_test = np.asarray(Y_test, dtype=np.float64)
    n, m = Y_test.shape
    scores = router.score(X_test)
    choice = np.argmax(scores, axis=1)
    routed = Y_test[np.arange(n), choice]
    entropy = metrics.entropy_bits(router.selection_probs(X_test), router.entropy_floor)
    lo_mu, hi_mu, lo_ep, hi_ep = routed.copy(), routed.copy(), entropy.copy(), entropy.copy()
    n_decisive = n_bounded = 0
    tied = router.tied_neighbours(X_test)
    for query, nearer, band, room in tied:
        if comb(len(band), room) > max_sets:
            lo_mu[query], hi_mu[query] = Y_test[query].min(), Y_test[query].max()
            lo_ep[query], hi_ep[query] = 0.0, log2(m)
            n_bounded += 1
            n_decisive += 1
            continue
        sets = np.array([np.r_[nearer, chosen] for chosen in combinations(band, room)], dtype=np.int64)
        options = neighbour_mean_scores(router.train_scores_, sets)  # (n_sets, m)
        outcome = Y_test[query, np.argmax(options, axis=1)]
        ent = metrics.entropy_bits(metrics.softmax(options), router.entropy_floor)
        lo_mu[query], hi_mu[query] = min(outcome.min(), routed[query]), max(outcome.max(), routed[query])
        lo_ep[query], hi_ep[query] = min(ent.min(), entropy[query]), max(ent.max(), entropy[query])
        n_decisive += int(outcome.min() != outcome.max())
    best = metrics.best_single_score(Y_test)
    mu, lo, hi = float(routed.mean()), float(lo_mu.mean()), float(hi_mu.mean())
    return TieRange(mu, lo, hi, mu / best, lo / best, hi / best, float(entropy.mean()), float(lo_ep.mean()),
                    float(hi_ep.mean()), len(tied), n_decisive, n_bounded)


def tie_ranges(router_dataset: dict, settings: Sequence[str] = ("easy",), k: int = 5,
               max_sets: int = 5000) -> pd.DataFrame:
    """One row per (setting, m, group) plus a ``mean`` row per (setting, m): kNN(k)'s tie ranges.

    Each group's router is fitted as the protocol fits it (``train_embed``, the group's training
    target); a mean row averages its groups' values and bounds (the groups' ties are independent).
    """
    rows = []
    for gd in iter_group_data(router_dataset, settings):
        rows.append({"setting": gd.setting, "m": gd.m, "group": gd.group, **asdict(_group_range(gd, k, max_sets))})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    means = df.groupby(["setting", "m"], sort=False).mean(numeric_only=True).reset_index()
    means["group"] = MEAN
    return pd.concat([df, means[df.columns]], ignore_index=True)


def _group_range(gd: GroupData, k: int, max_sets: int) -> TieRange:
    router = KNNRouter(k=k).fit(gd.Y_train, gd.X_train)
    return knn_tie_range(router, gd.X_test, gd.Y_test, max_sets)
