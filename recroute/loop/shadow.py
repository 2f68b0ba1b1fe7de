"""Shadow exploration: the exploration budget spent where the next candidate differs from live, and
the candidate gated on exactly the decisions that explored it.

After a refit the candidate becomes the **shadow**: it serves nobody by itself, but on a prompt where
its choice s differs from live's l the live policy serves s with probability ε and l otherwise; where
they agree it serves l (greedy). With d the share of prompts where they differ, ε = min(cap, budget / d)
(``epsilon_for``) keeps the expected off-greedy share ε·d within the budget. d is only known once the
shadow has served, so its first ε comes from estimates on recent logged decisions
(:func:`first_disagreement`: the shadow itself there, which trained on them, and the same form refitted
without them; :func:`first_epsilon`: the larger plus one standard error), and the loop retunes ε from
the served d after each look. Compared with ε-greedy over the top k (each explored choice ε/k, many of them choices no
candidate takes, and the candidate's own choice possibly outside the top k, never explorable), every
explored decision here tests the candidate: π0(s) = ε, e.g. 0.07 at a 2 % budget and d = 0.3, against
0.0067 for ε-greedy over the top 3.

Through the gateway the shadow bundle holds the plain refit and the gateway applies the margin tau
(:func:`conservative_scores`); the loop gates ``ConservativeRouter(refit, live, tau)``
(recroute/routers/conservative.py, live's choice among each decision's candidates, as the gateway's) and,
when it passes, the plain refit second at the same level (:func:`shallow_promotion`, a fixed-sequence
test); it promotes the shadow's own bundle when both pass, else a bundle holding the conservative router.

At the next refit the shadow is gated against live (``recroute.loop.gate.compare`` with the logging
probabilities, so the design interval applies) on the decisions logged since it became the shadow: it
never trained on them, and the reward model is fitted on the decisions before them. Promoted or not,
the next candidate is then fitted on every decision so far (no held-out share is lost to training)
and becomes the next shadow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recroute.errors import DataError
from recroute.feedback.policies import check_scores, greedy_matrix
from recroute.loop.gate import GateResult, compare, promotion_decision
from recroute.loop.refit import LogData, holdout_reward, split_recent
from recroute.routers.conservative import ConservativeRouter


class Conservative(ConservativeRouter):
    """The simulator's conservative router (``recroute.loop.simulate``): a
    :class:`~recroute.routers.conservative.ConservativeRouter` (the refit's greedy choice s where
    S(s) > S(l) + ``tau``, else live's l, l taken among each decision's candidates by
    :meth:`score_among`, as the gateway takes it) whose levels' scores are kept for the last feature
    array scored (:meth:`parts`): the same array scored again (the live router inside a shadow, a
    router's true mu_o on the stream) costs no second scoring of any level.

    Why conservative: the gate's power depends on the gain per *differing* decision, not on how many
    differ (with the budget spread over the n_d differing decisions, z ≈ δ_d sqrt(budget n / m2)); a
    refit that flips 70 % of near-tied choices for a small total gain is hard to prove, its confident
    part is not. Saved, it loads as a ConservativeRouter (the same scores: what the gateway's shadow
    serving and ``recroute loop run --explore shadow`` gate and promote)."""

    stochastic = False
    requires_truth = False

    def __init__(self, refit, live, tau: float) -> None:
        if not tau >= 0:
            raise DataError(f"tau must be >= 0; got {tau}")
        super().__init__(refit, live, tau)
        self._last: tuple | None = None  # (X, n, parts, taus): the same feature array is scored once

    def parts(self, X: np.ndarray | None, n: int) -> tuple[list[np.ndarray], list[float]]:
        if self._last is not None and self._last[0] is X and self._last[1] == n:
            return list(self._last[2]), list(self._last[3])
        S, taus = super().parts(X, n)  # ConservativeRouter's levels (an inner Conservative keeps its own)
        self._last = (X, n, S, taus)
        return list(S), list(taus)


def shadow_probabilities(live_scores: np.ndarray, shadow_scores: np.ndarray, allowed: np.ndarray | None,
                         epsilon: float) -> np.ndarray:
    """float64 (n, m) logging probabilities: live's greedy choice, and where the shadow's greedy choice
    differs, (1 - ε) on live's and ε on the shadow's (ties: the lower index, as routing)."""
    if not 0.0 <= epsilon <= 1.0:
        raise DataError(f"the shadow's exploration probability must be in [0, 1]; got {epsilon}")
    S, A = check_scores(live_scores, allowed)
    T, _ = check_scores(shadow_scores, A)
    G_l, G_s = greedy_matrix(S, A), greedy_matrix(T, A)
    return np.where((G_l != G_s).any(axis=1, keepdims=True), (1.0 - epsilon) * G_l + epsilon * G_s, G_l)


def disagreement(live_scores: np.ndarray, shadow_scores: np.ndarray, allowed: np.ndarray | None) -> float:
    """The share of rows (n, m scores) where the two greedy choices among ``allowed`` differ."""
    S, A = check_scores(live_scores, allowed)
    T, _ = check_scores(shadow_scores, A)
    return float(np.mean(greedy_matrix(S, A).argmax(axis=1) != greedy_matrix(T, A).argmax(axis=1)))


def shadow_epsilon(live_scores: np.ndarray, shadow_scores: np.ndarray, allowed: np.ndarray | None, budget: float,
                   cap: float = 0.5) -> float:
    """ε = min(cap, budget / d), d the share of these (recent) prompts where the two greedy choices
    differ: the expected off-greedy share ε·d is at most ``budget``; ``cap`` when they never differ."""
    return epsilon_for(disagreement(live_scores, shadow_scores, allowed), budget, cap)


def epsilon_for(d: float, budget: float, cap: float = 0.5) -> float:
    """min(cap, budget / d) (``cap`` at d = 0): the shadow's ε for a disagreement share d."""
    if not 0.0 <= budget <= 1.0 or not 0.0 <= cap <= 1.0:
        raise DataError(f"budget and cap must be shares in [0, 1]; got {budget}, {cap}")
    if not 0.0 <= d <= 1.0:
        raise DataError(f"a disagreement share must be in [0, 1]; got {d}")
    return cap if d == 0 else min(cap, budget / d)


def retune_epsilon(d: float, epsilon: float, budget: float, cap: float = 0.5, tolerance: float = 0.02) -> float | None:
    """The shadow's ε set again from the share d of the decisions it served where its choice differed
    from live's: ``epsilon_for(d, budget, cap)``; None when that is within ``tolerance`` (relative) of
    ``epsilon`` (left as it is). The loop (``recroute.loop.runner.retuned_epsilon``) and the stream
    simulator both retune after a look that keeps the shadow."""
    new = epsilon_for(d, budget, cap)
    return None if abs(new - epsilon) <= tolerance * epsilon else new


def heldout_disagreement(live, probe, X: np.ndarray | None, allowed: np.ndarray) -> float:
    """d: the share of logged decisions (features ``X`` (n, d) or None, their own candidates ``allowed``
    bool (n, m)) where ``probe``'s greedy choice differs from ``live``'s, both scored among those
    candidates (``scores_among``: a conservative router's live choice as the gateway takes it).

    The first ε of a shadow is set from it with ``probe`` the *served* policy (conservative over live) of
    a refit fitted on the decisions before these (the shadow itself trained on them: there it agrees
    with live more often than on the new prompts it will serve, and ε = budget / d overshot the budget
    by 7–10 % until the first retune)."""
    from recroute.routers.base import scores_among

    A = np.asarray(allowed, dtype=bool)
    n = len(A)
    if n == 0:
        raise DataError("no logged decision to estimate the shadow's disagreement with live on")
    live_scores = scores_among(live, X if live.needs_features else None, A, n)
    return disagreement(live_scores, scores_among(probe, X if probe.needs_features else None, A, n), A)


def first_disagreement(live, shadow, bandit, X: np.ndarray | None, holdout: float, served,
                       which: tuple[str, ...] = ("trained", "heldout")) -> dict[str, float]:
    """Estimates of a fresh shadow's disagreement d with ``live`` on new prompts, before it serves: on the
    most recent ``holdout`` decisions of ``bandit`` (``split_recent``; features ``X`` (n_rows, d) or None
    indexed by ``bandit.rows``), each among its own logged candidates (``heldout_disagreement``):

    - ``d_trained``: ``shadow`` (the served policy, fitted on every decision) there: it trained on them;
    - ``d_heldout``: ``served(bandit.take(train))``, the same form refitted on the decisions before them.

    Each is biased, in opposite directions seen so far: on its own training prompts a refit agreed with
    live less often than on new ones in the stream simulator, more often through the gateway (tau 0); the
    held-out refit has fewer decisions and departed from live less often. :func:`first_epsilon` sets the
    first ε from the larger, plus its sampling error; ``n_recent``: the number of recent decisions."""
    train, recent = split_recent(len(bandit), holdout)
    part = bandit.take(recent)
    feats = None if X is None else X[part.rows]
    out: dict[str, float] = {"n_recent": len(recent)}
    if "trained" in which:
        out["d_trained"] = heldout_disagreement(live, shadow, feats, part.allowed)
    if "heldout" in which:
        out["d_heldout"] = heldout_disagreement(live, served(bandit.take(train)), feats, part.allowed)
    if len(out) == 1:
        raise DataError(f"which names no estimate (trained, heldout): {which!r}")
    return out


FIRST_Z = 1.0  # the first ε's margin in standard errors of d (chosen on the stream simulator's seeds 0-2)


def first_epsilon(estimates: dict[str, float], budget: float, cap: float = 0.5, z: float = FIRST_Z) -> float:
    """A fresh shadow's first ε from :func:`first_disagreement`'s ``estimates``: ``epsilon_for`` of
    d + z sqrt(d (1 - d) / n) (at most 1), d the larger estimate, n (``n_recent``) the decisions it was measured on, so
    the expected off-greedy share ε·d of its first look stays within ``budget`` unless d is more than z
    standard errors above both estimates (seeds 0-2: z = 0 left it 1.5 % over at tau 0)."""
    ds = [v for k, v in estimates.items() if k.startswith("d_")]
    if not ds or not estimates.get("n_recent", 0) > 0:
        raise DataError(f"no disagreement estimate with its number of decisions: {estimates!r}")
    d = max(ds)
    return epsilon_for(min(1.0, d + z * float(np.sqrt(d * (1.0 - d) / estimates["n_recent"]))), budget, cap)


def look_alpha(alpha: float, look: int, max_looks: int | None = None) -> float:
    """The level of the ``look``-th (1, 2, ...) test of one shadow on its growing window: alpha / (j (j + 1)),
    the last of ``max_looks`` taking what is left, alpha / max_looks. The levels sum to alpha, so the chance
    that a worse shadow ever passes stays at most alpha/2 (one-sided) however often it is tested (a union
    bound: no optional-stopping bias)."""
    if look < 1 or (max_looks is not None and not 1 <= look <= max_looks):
        raise DataError(f"look {look} is not in 1..{max_looks or 'inf'}")
    return alpha / max_looks if look == max_looks else alpha / (look * (look + 1))


def gate_shadow(shadow, live, data: LogData, since: int, alpha: float = 0.05, margin: float = 0.0,
                reward_router: str = "linear", seed: int = 0, anchor=None) -> tuple[GateResult, bool, str]:
    """(gate result, promote?, reason) of the shadow against live on the decisions at positions >= ``since``
    of ``data`` (those logged while it was the shadow; ``data.logging`` required), the reward model
    fitted on the decisions before them, and on the ``anchor``'s full-information results when one is
    given (``recroute.loop.refit.Anchor.prior``: the anchor's prompts never arrive as traffic, so q
    stays independent of the gated decisions)."""
    stage = gate_sequence([("shadow", shadow)], live, data, since, alpha, margin, reward_router, seed, anchor)[0]
    return stage.result, stage.ok, stage.reason


@dataclass(frozen=True)
class Stage:
    """One hypothesis of a fixed-sequence gate: its name, the policy tested, its gate result, passed?, reason."""

    stage: str
    router: object
    result: GateResult
    ok: bool
    reason: str


def gate_sequence(policies: list[tuple[str, object]], live, data: LogData, since: int, alpha: float = 0.05,
                  margin: float = 0.0, reward_router: str = "linear", seed: int = 0, anchor=None) -> list[Stage]:
    """A fixed-sequence test of ``policies`` ((stage name, router), in order) against live, each on the same
    decisions (positions >= ``since`` of ``data``, ``data.logging`` required) with the same reward model
    (fitted once, as :func:`gate_shadow`'s) at the same level ``alpha``; the i-th is tested only when every
    earlier one passed, so the stages tested are a prefix: all passed but perhaps the last. Family-wise the
    chance that any tested policy worse than live passes stays at most alpha's: a policy's test can make the
    first false pass only when every earlier (true) hypothesis passed, and that test alone has level alpha."""
    if data.logging is None:
        raise DataError("gating a shadow needs the logging probabilities of its decisions")
    if not policies:
        raise DataError("a fixed-sequence gate needs at least one policy")
    for name, router in policies:
        if [str(n) for n in router.llm_names_] != [str(n) for n in data.bandit.llm_names]:
            raise DataError(f"the {name} policy routes to other LLMs than the log's: refit it before gating")
    n = len(data.bandit)
    if not 0 < since < n - 1:
        raise DataError(f"the shadow's window starts at decision {since} of {n}: nothing to train or to gate on")
    train, hold = np.arange(since), np.arange(since, n)
    q = holdout_reward(data.bandit, data.X, train, hold, reward_router, anchor)
    recent = data.bandit.take(hold)
    feats = None if data.X is None else data.X[recent.rows]
    out: list[Stage] = []
    for name, router in policies:
        result = compare(recent, feats, router, live, q, alpha, seed, logging=data.logging[hold])
        ok, reason = promotion_decision(result, margin)
        out.append(Stage(name, router, result, ok, reason))
        if not ok:
            break  # the next hypothesis is never tested: what keeps the family-wise error at alpha
    return out


def shallow_promotion(conservative, plain, live, data: LogData, since: int, alpha: float = 0.05,
                      margin: float = 0.0, reward_router: str = "linear", seed: int = 0,
                      anchor=None) -> tuple[list[Stage], Stage | None]:
    """(the stages tested, the one to promote or None): the shadow's served policy ``conservative`` (over
    live) gated first; when it passes and ``plain`` (its inner refit, one level; None at tau 0 where the
    served policy is the refit) is given, the plain refit is gated next at the same level on the same
    decisions (:func:`gate_sequence`). The last stage that passed is promoted: the plain refit when both
    passed (live's depth stays 1), else the conservative policy (one level deeper than live)."""
    policies = [("conservative" if plain is not None else "shadow", conservative)]
    if plain is not None:
        policies.append(("plain", plain))
    stages = gate_sequence(policies, live, data, since, alpha, margin, reward_router, seed, anchor)
    passed = [s for s in stages if s.ok]
    return stages, (passed[-1] if passed else None)


def policy_depth(router) -> int:
    """The number of inner (non-conservative) routers a request scores: 1 for a plain router, 1 + the
    live chain's for a conservative router (its refit and every level below)."""
    if isinstance(router, ConservativeRouter):
        return policy_depth(router.refit) + policy_depth(router.live)
    return 1


def conservative_scores(live_scores: np.ndarray, refit_scores: np.ndarray, allowed: np.ndarray | None,
                        tau: float) -> np.ndarray:
    """float64 (n, m): the refit's scores plus ``tau`` on live's greedy choice among the ``allowed``
    LLMs: :class:`Conservative`'s rule with live's choice taken among each decision's candidates, as the
    gateway serves a shadow (its greedy choice is the refit's s only where S(s) > S(l) + tau)."""
    if not tau >= 0:
        raise DataError(f"tau must be >= 0; got {tau}")
    S, A = check_scores(live_scores, allowed)
    T, _ = check_scores(refit_scores, A)
    T = T.copy()
    T[np.arange(len(T)), greedy_matrix(S, A).argmax(axis=1)] += float(tau)
    return T


def logged_shadow_probabilities(live_choice: np.ndarray, shadow_choice: np.ndarray, allowed: np.ndarray,
                                epsilon: np.ndarray) -> np.ndarray:
    """float64 (n, m) logging probabilities of decisions served with a shadow, rebuilt from what the
    gateway logged (live's choice l, the conservative shadow's choice s, both int (n,) column indices,
    ε (n,) and the candidates ``allowed`` (n, m)): :func:`shadow_probabilities` of the one-hot choices,
    so no rescoring (which can break a near-tie differently) enters the rebuilt design."""
    n, m = allowed.shape
    eps = np.broadcast_to(np.asarray(epsilon, dtype=np.float64), (n,))
    L, T = np.zeros((n, m)), np.zeros((n, m))
    L[np.arange(n), live_choice] = 1.0
    T[np.arange(n), shadow_choice] = 1.0
    if not (allowed[np.arange(n), live_choice] & allowed[np.arange(n), shadow_choice]).all():
        raise DataError("a logged live or shadow choice is not among its decision's candidates")
    out = np.empty((n, m))
    for e in np.unique(eps):  # one call per distinct ε (a shadow's decisions share one)
        at = eps == e
        out[at] = shadow_probabilities(L[at], T[at], allowed[at], float(e))
    return out
