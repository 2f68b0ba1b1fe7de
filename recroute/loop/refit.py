"""A gateway's decision log as training data, and a candidate router refitted on it.

The gateway logs each routed text (``--log-prompt-text``) with its candidates, choice, propensity and
(later) outcome. :func:`log_data` turns the decisions that have an outcome into a
:class:`~recroute.feedback.bandit.Bandit` over the live bundle's LLMs, with the texts encoded by the
bundle's own encoder (cached by text, ``recroute.encoders.encode_cached``).

:func:`fit_candidate` is ``recroute fit --logs --method dr`` on a slice of the log: every candidate cell
of every logged prompt filled by doubly-robust completion (``recroute.feedback.learn.dr_matrix`` with a
cross-fitted reward model), clipped to [0, 1], stacked under the **anchor**: the full-information
results the live router started from (optional), so a refit never knows less than the start.
:func:`split_recent` keeps the most recent decisions out of training: the gate evaluates there.

**Anchored reward model** (``anchor_reward=True``; :meth:`Anchor.prior` as the ``prior`` of
``recroute.feedback.ope.reward_model``): the reward model q of the DR
completion and of the gate is fitted on the anchor's full-information results stacked over the log's
observed cells, instead of on the log alone. A log at a 2 % exploration budget reveals the greedy LLM's
outcome on almost every prompt and any other LLM's on a few: a reward model fitted on it knows little
about exactly the choices a candidate changes. The anchor holds every LLM's result on its prompts, and
those prompts never arrive as traffic, so q stays independent of the decisions it corrects or evaluates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recroute.errors import DataError
from recroute.feedback.bandit import Bandit, bandit_from_log
from recroute.feedback.learn import dr_matrix
from recroute.feedback.ope import DEFAULT_REWARD_ROUTER, fit_predict_log, reward_model
from recroute.routers.base import scores_among


@dataclass
class Anchor:
    """Full-information results: X float32 (k, d) (None for a feature-free router), Y float (k, m) with
    NaN = unobserved, in the live bundle's LLM order ``llm_names``."""

    X: np.ndarray | None
    Y: np.ndarray
    llm_names: list[str]

    def with_llms(self, names: list[str]) -> "Anchor":
        """The anchor over ``names`` (the same LLMs first, in order; new ones NaN)."""
        col = {n: j for j, n in enumerate(self.llm_names)}
        Y = np.full((len(self.Y), len(names)), np.nan, dtype=np.float64)
        for j, n in enumerate(names):
            if n in col:
                Y[:, j] = self.Y[:, col[n]]
        return Anchor(self.X, Y, list(names))

    def prior(self, names: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
        """(Y float64 (k, len(names)), X (k, d) or None): the anchor over ``names`` as the ``prior`` of
        ``recroute.feedback.ope.reward_model`` / ``fit_predict_log`` (the anchored reward model)."""
        known = self if list(self.llm_names) == list(names) else self.with_llms(list(names))
        return np.asarray(known.Y, dtype=np.float64), known.X


def anchor_from_dataset(data, bundle) -> Anchor:
    """The anchor from a RoutingDataset holding the start set (its texts encoded with the bundle's
    encoder; an LLM of the bundle missing from the data is NaN)."""
    names = bundle.llm_names
    X = None
    if bundle.router.needs_features:
        if not data.has_text or any(t is None for t in data.texts):
            raise DataError("the anchor dataset needs prompt texts (to encode them with the bundle's encoder)")
        X = encode_texts(bundle, [str(t) for t in data.texts])
    full = data.dense(np.nan)
    col = {str(n): j for j, n in enumerate(data.llm_names)}
    Y = np.full((data.n_prompts, len(names)), np.nan)
    for j, n in enumerate(names):
        if n in col:
            Y[:, j] = full[:, col[n]]
    return Anchor(X, Y, names)


def encode_texts(bundle, texts: list[str]) -> np.ndarray:
    """float32 (n, d) features of ``texts`` from the bundle's encoder, through the embedding cache."""
    from recroute.encoders import encode_cached

    if bundle.encoder is None:
        raise DataError("the live bundle has no encoder: the loop cannot compute prompt features of logged texts")
    return np.asarray(encode_cached(bundle.encoder, texts), dtype=np.float32)


@dataclass
class LogData:
    """The decisions with an outcome, in log order: ``bandit.rows`` index X (the distinct prompts);
    ``decision_ids`` (n,); ``texts`` per distinct prompt; ``bundle_checksums`` (n,) the bundle that made
    each decision (the gateway's ``bundle_checksum``), None where the log does not say; ``logging``
    float64 (n, m): the logging policy's probabilities over the bandit's LLMs at each decision (the
    gate's design standard error), None where unknown."""

    bandit: Bandit
    X: np.ndarray | None
    texts: list[str]
    decision_ids: np.ndarray
    bundle_checksums: np.ndarray | None = None
    logging: np.ndarray | None = None


class LogTail:
    """A JSONL decision log read incrementally: each :meth:`read` parses only the complete lines
    appended since the last one (a line still being written waits for the next read) and returns the
    whole validated DecisionLog (``recroute.feedback.logs.decision_log_from_records``: outcomes joined,
    the last one wins). A file that shrank (replaced or rotated) is read again from its start."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.offset = 0
        self.records: list[dict] = []
        self.where: list[str] = []

    def read(self) -> pd.DataFrame:
        import json

        from recroute.feedback.logs import decision_log_from_records

        if not self.path.is_file():
            raise DataError(f"{self.path}: no such decision log")
        size = self.path.stat().st_size
        if size < self.offset:
            self.offset, self.records, self.where = 0, [], []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            chunk = fh.read(size - self.offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        line_no = len(self.where) + 1
        records, where = [], []
        # lines end at b"\n" only: str.splitlines() would also cut a logged prompt text at U+0085, U+2028, ...
        for raw in complete.split(b"\n"):
            if raw.strip():
                try:
                    rec = json.loads(raw.decode("utf-8", errors="surrogateescape"))
                except json.JSONDecodeError as exc:
                    raise DataError(f"{self.path} record {line_no}: not valid JSON ({exc.msg})") from None
                if not isinstance(rec, dict):
                    raise DataError(f"{self.path} record {line_no}: expected a JSON object; got {type(rec).__name__}")
                records.append(rec)
                where.append(f"{self.path} record {line_no}")
                line_no += 1
        self.records += records  # only once every new line parsed: a failed read adds nothing (read again later)
        self.where += where
        self.offset += len(complete)
        return decision_log_from_records(self.records, self.where, source=str(self.path))


def log_data(log: pd.DataFrame, bundle, llm_names: list[str] | None = None, routers: dict | None = None) -> LogData:
    """LogData of a DecisionLog for ``bundle`` (features from its encoder); columns ``llm_names``
    (default the bundle's LLMs; every logged candidate must be one of them); ``routers`` (bundle checksum
    -> router) recomputes the logging probabilities (:func:`logging_probabilities`)."""
    names = list(bundle.llm_names if llm_names is None else llm_names)
    has = log["outcome"].notna()
    bandit, prompts = bandit_from_log(log, names)
    texts = prompts["prompt_text"]
    X = None
    if bundle.router.needs_features:
        if texts.isna().any():
            raise DataError("logged decisions lack prompt_text: run the gateway with --log-prompt-text so the loop "
                            "can compute the prompts' features")
        X = encode_texts(bundle, [str(t) for t in texts])
    made_by = log.loc[has, "bundle_checksum"].to_numpy(dtype=object) if "bundle_checksum" in log.columns else None
    data = LogData(bandit, X, [None if pd.isna(t) else str(t) for t in texts],
                   log.loc[has, "decision_id"].to_numpy(dtype=object), made_by)
    if routers is not None and "policy" in log.columns:
        data.logging = logging_probabilities(data, log.loc[has, "policy"].to_numpy(dtype=object), routers)
    return data


def logging_probabilities(data: LogData, policies, routers: dict) -> np.ndarray | None:
    """float64 (n, m): the logging policy's probabilities at each decision of ``data``, recomputed from
    the router that made it (``routers``: bundle checksum -> fitted router over the bandit's LLMs) and
    the logged policy spec ``policies`` (n,); None when one decision's bundle or policy is unknown or a
    recomputed probability of the logged choice is not its logged propensity (a cost-weighted utility,
    a near-tie decided differently): the gate then falls back to its support count."""
    from recroute.feedback.policies import parse_policy

    bandit = data.bandit
    n = len(bandit)
    if data.bundle_checksums is None or policies is None or len(policies) != n:
        return None
    P0 = np.zeros((n, bandit.n_llms))
    keys = [(str(b), str(p)) for b, p in zip(data.bundle_checksums, policies)]
    for key in set(keys):
        router = routers.get(key[0])
        if router is None or key[1] in ("None", "nan") or list(map(str, router.llm_names_)) != list(map(str, bandit.llm_names)):
            return None
        at = np.array([k == key for k in keys])
        rows = bandit.rows[at]
        scores = scores_among(router, None if data.X is None or not router.needs_features else data.X[rows],
                              bandit.allowed[at], len(rows))  # a conservative router: among the candidates
        try:
            P0[at] = parse_policy(key[1]).probabilities(scores, bandit.allowed[at])
        except ValueError:
            return None
    if not np.allclose(P0[np.arange(n), bandit.chosen], bandit.propensity, rtol=1e-4, atol=1e-9):
        return None
    return P0


def split_recent(n: int, holdout: float | int) -> tuple[np.ndarray, np.ndarray]:
    """(train positions, holdout positions) of n decisions in log order: the last ``holdout`` (a count,
    or a share when below 1) are held out."""
    k = int(round(holdout * n)) if isinstance(holdout, float) and holdout < 1 else int(holdout)
    if not 0 < k < n:
        raise DataError(f"a holdout of {holdout} leaves no decision on one side of {n}")
    return np.arange(n - k), np.arange(n - k, n)


def fit_candidate(spec: str, bandit: Bandit, X: np.ndarray | None, anchor: Anchor | None = None,
                  reward_router: str = DEFAULT_REWARD_ROUTER, folds: int = 2, seed: int = 0,
                  anchor_reward: bool = False, prefill: np.ndarray | None = None):
    """A router of ``spec`` fitted on the anchor (full information) stacked over the DR-completed log.

    ``X`` (n_prompts, d): features indexed by ``bandit.rows``; the reward model (``reward_router``) is
    cross-fitted over ``folds`` of the decisions (``recroute.feedback.ope.reward_model``), fitted on the
    anchor too when ``anchor_reward`` (module docstring). ``prefill`` (n_prompts, m) float, NaN = none:
    values for the logged prompts' cells that the completion leaves empty because the LLM was never a
    candidate there (an LLM onboarded after those decisions: its placement's predicted results).
    """
    from recroute.routers.registry import make_router

    router = make_router(spec)
    if len(bandit) < max(2, folds):
        raise DataError(f"a refit needs at least {max(2, folds)} decisions with an outcome; got {len(bandit)}")
    prior = anchor.prior([str(n) for n in bandit.llm_names]) if anchor_reward and anchor is not None else None
    q = reward_model(bandit, X, reward_router, folds, seed, prior=prior)
    uniq, Y = dr_matrix(bandit, q, clip=(0.0, 1.0))
    if prefill is not None:
        fill = np.asarray(prefill, dtype=np.float64)
        if fill.ndim != 2 or fill.shape[1] != bandit.n_llms or (len(uniq) and fill.shape[0] <= uniq.max()):
            raise DataError(f"prefill has shape {fill.shape}; expected (n_prompts, {bandit.n_llms}) covering the logged rows")
        Y = np.where(np.isnan(Y), fill[uniq], Y)
    keep = ~np.isnan(Y).all(axis=1)
    uniq, Y = uniq[keep], Y[keep]
    feats = None if X is None else np.asarray(X, dtype=np.float32)[uniq]
    if anchor is not None:
        if list(anchor.llm_names) != [str(n) for n in bandit.llm_names]:
            anchor = anchor.with_llms([str(n) for n in bandit.llm_names])
        Y = np.vstack([anchor.Y, Y])
        if feats is not None:
            feats = np.vstack([anchor.X, feats])
    router.fit(Y.astype(np.float32), feats if router.needs_features else None)
    router.llm_names_ = np.asarray(bandit.llm_names, dtype=object)
    return router


def holdout_reward(bandit: Bandit, X: np.ndarray | None, train: np.ndarray, hold: np.ndarray,
                   reward_router: str = DEFAULT_REWARD_ROUTER, anchor: Anchor | None = None) -> np.ndarray:
    """float64 (len(hold), m) q for the held-out decisions from ``reward_router`` fitted on the training
    decisions only (so q is independent of the decisions the gate evaluates), and on the ``anchor``'s
    full-information results when one is given (module docstring)."""
    rows = bandit.rows[hold]
    uniq, inv = np.unique(rows, return_inverse=True)
    prior = None if anchor is None else anchor.prior([str(n) for n in bandit.llm_names])
    return fit_predict_log(reward_router, bandit.take(train), X, uniq, prior)[inv]
