"""Stochastic routing policies: turn a router's scores into a choice and the propensity of that choice.

A policy maps scores (n, m) and an optional candidate mask allowed (n, m) to a selection distribution
over the allowed LLMs; ``choose`` draws one LLM per row and returns its probability (the propensity the
decision log records). Specs: ``"greedy"``, ``"epsilon_greedy:epsilon=0.2"``,
``"softmax:temperature=0.1"``.

    probabilities(scores, allowed=None) -> float64 (n, m), rows sum to 1, 0 where not allowed
    choose(scores, allowed, rng) -> (chosen int64 (n,), propensity float64 (n,))
"""

from __future__ import annotations

import numpy as np

from recroute.errors import DataError, describe_rows


class Policy:
    """Base class; subclasses implement ``_probabilities(scores, allowed)`` on checked inputs."""

    name: str = "policy"
    deterministic: bool = False

    @property
    def spec(self) -> str:
        """The string ``parse_policy`` turns back into this policy."""
        return self.name

    def __repr__(self) -> str:
        return f"Policy({self.spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and other.spec == self.spec

    def __hash__(self) -> int:
        return hash(self.spec)

    def probabilities(self, scores, allowed=None) -> np.ndarray:
        """float64 (n, m) selection probabilities; each row sums to 1 over its allowed LLMs."""
        S, A = check_scores(scores, allowed)
        return self._probabilities(S, A)

    def choose(self, scores, allowed=None, rng=None) -> tuple[np.ndarray, np.ndarray]:
        """(chosen llm position int64 (n,), propensity float64 (n,)) drawn from ``probabilities``.

        ``rng``: a numpy Generator, an int seed or None (fresh entropy); greedy never draws.
        """
        P = self.probabilities(scores, allowed)
        if self.deterministic:
            chosen = np.argmax(P, axis=1).astype(np.int64)
        else:
            rng = np.random.default_rng(rng)
            chosen = sample_rows(P, rng)
        return chosen, P[np.arange(len(P)), chosen]

    def _probabilities(self, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Greedy(Policy):
    """All mass on the highest allowed score; ties go to the lower index (as ``Router.route``)."""

    name = "greedy"
    deterministic = True

    def _probabilities(self, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        return greedy_matrix(S, A)


class EpsilonGreedy(Policy):
    """(1 - epsilon) on the greedy choice plus epsilon spread uniformly over the allowed LLMs, or over
    the ``top_k`` highest-scoring allowed ones (ties: the lower index): exploring only plausible LLMs
    wastes less and gives each explored choice a larger propensity (epsilon / top_k, not epsilon / m)."""

    name = "epsilon_greedy"

    def __init__(self, epsilon: float = 0.1, top_k: int | None = None) -> None:
        epsilon = float(epsilon)
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon_greedy: epsilon must be in [0, 1]; got {epsilon}")
        if top_k is not None and (float(top_k) != int(top_k) or int(top_k) < 1):
            raise ValueError(f"epsilon_greedy: top_k must be a whole number >= 1; got {top_k}")
        self.epsilon = epsilon
        self.top_k = None if top_k is None else int(top_k)

    @property
    def spec(self) -> str:
        return f"epsilon_greedy:epsilon={self.epsilon:g}" + ("" if self.top_k is None else f",top_k={self.top_k}")

    def _probabilities(self, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        explore = A if self.top_k is None else top_k_mask(S, A, self.top_k)
        uniform = explore / explore.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * greedy_matrix(S, A) + self.epsilon * uniform


class Softmax(Policy):
    """P(j) proportional to exp(score_j / temperature) over the allowed LLMs."""

    name = "softmax"

    def __init__(self, temperature: float = 0.1) -> None:
        temperature = float(temperature)
        if not (np.isfinite(temperature) and temperature > 0):
            raise ValueError(f"softmax: temperature must be a positive number; got {temperature}")
        self.temperature = temperature

    @property
    def spec(self) -> str:
        return f"softmax:temperature={self.temperature:g}"

    def _probabilities(self, S: np.ndarray, A: np.ndarray) -> np.ndarray:
        z = np.where(A, S / self.temperature, -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        e = np.where(A, np.exp(z), 0.0)
        return e / e.sum(axis=1, keepdims=True)


POLICIES: dict[str, type[Policy]] = {"greedy": Greedy, "epsilon_greedy": EpsilonGreedy, "softmax": Softmax}
_PARAMS = {"greedy": (), "epsilon_greedy": ("epsilon", "top_k"), "softmax": ("temperature",)}


def parse_policy(spec: str | Policy | None) -> Policy:
    """A policy from ``"greedy"``, ``"epsilon_greedy:epsilon=0.2"`` or ``"softmax:temperature=0.1"``.

    None gives greedy; a Policy is returned as is.
    """
    if spec is None:
        return Greedy()
    if isinstance(spec, Policy):
        return spec
    text = str(spec).strip()
    name, _, rest = text.partition(":")
    name = name.strip().lower().replace("-", "_")
    if name not in POLICIES:
        raise ValueError(f"unknown policy {spec!r}; expected one of {sorted(POLICIES)} (e.g. 'epsilon_greedy:epsilon=0.2')")
    params: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or key not in _PARAMS[name]:
            raise ValueError(
                f"policy {spec!r}: bad parameter {item!r}; {name} takes "
                f"{', '.join(k + '=NUMBER' for k in _PARAMS[name]) or 'no parameters'}"
            )
        try:
            params[key] = float(value)
        except ValueError:
            raise ValueError(f"policy {spec!r}: {key} must be a number; got {value.strip()!r}") from None
    return POLICIES[name](**params)


# ---------------------------------------------------------------------- helpers
def check_scores(scores, allowed=None) -> tuple[np.ndarray, np.ndarray]:
    """(float64 scores (n, m), bool allowed (n, m)); every row needs an allowed LLM with a finite score."""
    S = np.asarray(scores, dtype=np.float64)
    if S.ndim != 2 or S.shape[1] == 0:
        raise DataError(f"scores must be a 2-D (n_prompts, n_llms) array with at least one LLM; got shape {S.shape}")
    if allowed is None:
        A = np.ones(S.shape, dtype=bool)
    else:
        A = np.asarray(allowed)
        if A.dtype != bool:
            raise DataError(f"allowed must be a boolean mask; got dtype {A.dtype}")
        if A.ndim == 1:
            A = np.broadcast_to(A[None, :], S.shape)
        if A.shape != S.shape:
            raise DataError(f"allowed has shape {A.shape} but scores have shape {S.shape}")
    empty = ~A.any(axis=1)
    if empty.any():
        raise DataError(f"no allowed candidate at {describe_rows(np.flatnonzero(empty))} of the scores")
    bad = (A & ~np.isfinite(S)).any(axis=1)
    if bad.any():
        raise DataError(f"scores contain NaN or inf for an allowed LLM at {describe_rows(np.flatnonzero(bad))}")
    return S, np.ascontiguousarray(A)


def top_k_mask(S: np.ndarray, A: np.ndarray, k: int) -> np.ndarray:
    """bool (n, m): the k highest allowed scores per row (fewer where fewer are allowed); ties: the lower index."""
    order = np.argsort(np.where(A, -S, np.inf), axis=1, kind="stable")[:, :k]
    out = np.zeros(S.shape, dtype=bool)
    np.put_along_axis(out, order, True, axis=1)
    return out & A


def greedy_matrix(S: np.ndarray, A: np.ndarray) -> np.ndarray:
    """float64 (n, m) one-hot of the highest allowed score per row (ties: the lower index)."""
    best = np.argmax(np.where(A, S, -np.inf), axis=1)
    P = np.zeros(S.shape, dtype=np.float64)
    P[np.arange(len(S)), best] = 1.0
    return P


def sample_rows(P: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """int64 (n,) one draw per row of the row-stochastic P (n, m); never a zero-probability column."""
    cum = np.cumsum(P, axis=1)
    u = rng.random(len(P)) * cum[:, -1]
    # first column whose cumulative mass exceeds u: its own probability is > 0
    chosen = (cum <= u[:, None]).sum(axis=1)
    last_positive = P.shape[1] - 1 - np.argmax(P[:, ::-1] > 0, axis=1)  # guards u rounding up to the total
    return np.minimum(chosen, last_positive).astype(np.int64)
