"""When a refit is due: every ``every_outcomes`` new outcomes, or every ``every_seconds`` seconds (with
at least one new outcome), whichever comes first; a setting left None never triggers."""

from __future__ import annotations

from dataclasses import dataclass

from recroute.errors import DataError


@dataclass(frozen=True)
class Schedule:
    every_outcomes: int | None = 1000
    every_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.every_outcomes is None and self.every_seconds is None:
            raise DataError("a schedule needs every_outcomes or every_seconds")
        if self.every_outcomes is not None and int(self.every_outcomes) < 1:
            raise DataError(f"every_outcomes must be at least 1; got {self.every_outcomes}")
        if self.every_seconds is not None and not float(self.every_seconds) > 0:
            raise DataError(f"every_seconds must be positive; got {self.every_seconds}")

    def due(self, n_outcomes: int, last_outcomes: int, now: float, last_time: float | None) -> bool:
        """Whether to refit with ``n_outcomes`` outcomes in the log, the last refit having seen
        ``last_outcomes`` at time ``last_time`` (None: never refitted; the clock then starts at 0)."""
        new = n_outcomes - last_outcomes
        if new <= 0:
            return False
        if self.every_outcomes is not None and new >= self.every_outcomes:
            return True
        return self.every_seconds is not None and now - (last_time or 0.0) >= self.every_seconds
