"""Exceptions users can act on: each names what is wrong and what was expected."""

from __future__ import annotations


class RecrouteError(Exception):
    """Base class of recroute's own errors."""


class DataError(RecrouteError, ValueError):
    """Bad input data: a file, column, row or shape that is not what recroute expects."""


class FitTooLargeError(DataError):
    """A training set larger than a router family fits within the fit budget (see ``Router.max_fit_cells``).

    ``can_take``: the size the family does fit, in words ("90,000,000 cells", "300 LLMs"), for reports.
    """

    def __init__(self, message: str, can_take: str | None = None) -> None:
        super().__init__(message)
        self.can_take = can_take


class UnsafePickleError(DataError):
    """A pickle asked to build an object that is not plain data (arrays, dicts, lists, strings, numbers)."""


class NotFittedError(RecrouteError, ValueError):
    """A router was used before `fit` was called."""


class NotSupportedError(RecrouteError, ValueError):
    """A router family cannot do what was asked (e.g. onboard a new LLM without retraining)."""


class SavedArtifactError(RecrouteError, ValueError):
    """A saved router or bundle is missing, truncated, tampered with or from an incompatible version."""


def require_finite_rows(X, what: str, hint: str = "") -> None:
    """DataError naming the rows of a 2-D array that hold NaN or inf (``what``: "X", "embeddings")."""
    import numpy as np

    finite = np.isfinite(X).all(axis=1)
    if not finite.all():
        raise DataError(f"{what} contain{'s' if what == 'X' else ''} NaN or inf at {describe_rows(np.flatnonzero(~finite))}{hint}")


def describe_rows(rows, limit: int = 5) -> str:
    """'rows 3, 17, 42 (and 12 more)': a short list of 0-based row numbers for messages."""
    rows = [int(r) for r in rows]
    head = ", ".join(str(r) for r in rows[:limit])
    more = f" (and {len(rows) - limit} more)" if len(rows) > limit else ""
    return f"row{'s' if len(rows) != 1 else ''} {head}{more}"
