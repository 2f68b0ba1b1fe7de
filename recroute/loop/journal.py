"""The loop journal: one JSON line per event (start, refit, estimate, decision, promotion, onboarding),
appended whole under a lock (``recroute.feedback.logs.append_lines``), and the state a restarted loop
resumes from.

Event lines::

    {"event": "start", "time": float, "live_bundle": str, ...settings}
    {"event": "refit", "time", "n_outcomes": int, "n_train", "n_holdout", "family", "bundle", "fit_s"}
    {"event": "estimate", "time", "family", "n_outcomes", "n", "value_candidate", "value_live", "delta",
     "lower", "upper", "se", "support"}
    {"event": "decision", "time", "n_outcomes", "action": "promote" | "keep", "reason", "bundle"}
        (a shadow's: + "kind": "shadow", "look", "retire" (its looks are spent or it passed: a fresh shadow
        follows), and on a conservative pass "promote_bundle", the bundle holding ConservativeRouter(shadow,
        live, tau) that is promoted)
    {"event": "promoting", "time", "bundle", "kind": "refit" | "onboard" | "restore"}  (before the reload)
    {"event": "promoted", "time", "bundle", "kind", "response": {...}}      (after the gateway said 200)
    {"event": "refused", "time", "bundle", "kind", "reason"}                (the gateway said no: not retried)
    {"event": "onboard", "time", "llm", "probes", "sd", "placed": bool, "bundle", "reason"}
    {"event": "explore", "time", "share", "budget", "n"}
    {"event": "shadowing", "time", "bundle", "epsilon", "tau", "kind": "refit" | "restore" | "retune"}  (before the install)
    {"event": "shadow", "time", "bundle", "checksum", "epsilon", "tau", "kind", "response"}  (the gateway said 200)
    {"event": "shadow_refused", "time", "bundle", "kind", "reason"}        (the gateway said no)
    {"event": "costs", "time", "bundle", "live_costs", "costs", "reason"}  (a bundle's cost source differs from live's)

``--explore shadow``: the shadow in force is the last ``shadow`` event's until a shadow ``decision`` retires
it (so a loop that stops between that decision and the next install fits a fresh shadow instead of gating
a spent one again); a ``shadowing`` without its ``shadow`` is installed again on restart (installing the
same shadow twice is harmless).

A ``promoting`` without its ``promoted`` (the loop died in between) is finished on restart: reloading
the same bundle twice is harmless, so nothing is lost and nothing is counted twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recroute.errors import DataError
from recroute.feedback.logs import append_lines, dumps_line

EVENTS = ("start", "refit", "estimate", "decision", "promoting", "promoted", "refused", "onboard", "explore",
          "shadowing", "shadow", "shadow_refused", "costs")


@dataclass
class LoopState:
    """What the journal says now: the live bundle, the outcome count of the last refit, LLMs onboarded."""

    live_bundle: str | None = None
    last_refit_outcomes: int = 0
    last_refit_time: float | None = None
    refits: int = 0
    promotions: list[dict] = field(default_factory=list)
    pending: dict | None = None  # a "promoting" event not yet followed by "promoted"
    onboarded: dict[str, dict] = field(default_factory=dict)  # llm -> its last onboard event
    shadow: dict | None = None  # the "shadow" event of the shadow installed now
    shadow_pending: dict | None = None  # a "shadowing" event not yet followed by "shadow" / "shadow_refused"


def shadow_looks(events: list[dict], checksum: str | None) -> int:
    """How many looks the shadow with ``checksum`` has had: its ``estimate`` events, less a look's second
    stage (``"stage": "plain"``, the plain refit gated after a conservative pass, which is not a look)."""
    return sum(1 for e in events if e.get("event") == "estimate" and e.get("shadow") == checksum
               and e.get("stage") != "plain")


class Journal:
    """Append-only JSONL journal of the loop at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, event: str, **fields: Any) -> dict:
        """Append one event (``time`` filled in) and return it."""
        return self.append_all([(event, fields)])[0]

    def append_all(self, events: list[tuple[str, dict[str, Any]]]) -> list[dict]:
        """Append several (event, fields) in one write: a crash leaves all of them or none (a refit's
        estimates, the refit and its decision belong together)."""
        records = []
        for event, fields in events:
            if event not in EVENTS:
                raise DataError(f"unknown journal event {event!r}; expected one of {EVENTS}")
            records.append({"event": event, "time": time.time(), **fields})
        append_lines(self.path, [dumps_line(record) for record in records])
        return records

    def events(self) -> list[dict]:
        """Every event in order; a torn last line (a crash mid-write) is skipped, any other bad line is
        a DataError naming it."""
        if not self.path.is_file():
            return []
        lines = self.path.read_text(encoding="utf-8").split("\n")  # not splitlines(): U+2028 etc. may be in a reason
        while lines and not lines[-1].strip():
            lines.pop()
        out = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if number == len(lines):
                    continue
                raise DataError(f"{self.path} line {number}: not valid JSON") from None
            if not isinstance(rec, dict) or rec.get("event") not in EVENTS:
                raise DataError(f"{self.path} line {number}: not a loop journal event")
            out.append(rec)
        return out

    def state(self) -> LoopState:
        """The state after replaying every event."""
        return replay(self.events())


def replay(events: list[dict]) -> LoopState:
    """LoopState from journal events in order."""
    state = LoopState()
    for ev in events:
        kind = ev["event"]
        if kind == "start" and state.live_bundle is None:
            state.live_bundle = ev.get("live_bundle")
        elif kind == "refit":
            state.refits += 1
            state.last_refit_outcomes = int(ev.get("n_outcomes", 0))
            state.last_refit_time = float(ev["time"])
        elif kind == "promoting":
            state.pending = ev
        elif kind == "refused":
            state.pending = None
        elif kind == "promoted":
            state.pending = None
            state.live_bundle = ev["bundle"]
            state.promotions.append(ev)
            if state.shadow is not None and state.shadow["bundle"] == ev["bundle"]:
                state.shadow = None  # the shadow is live now (journals written before "retire")
        elif kind == "decision" and ev.get("kind") == "shadow" and ev.get("retire"):
            state.shadow = None  # passed or its looks spent: the next step fits a fresh one
        elif kind == "shadowing":
            state.shadow_pending = ev
        elif kind == "shadow":
            state.shadow_pending, state.shadow = None, ev
        elif kind == "shadow_refused":
            state.shadow_pending = None
        elif kind == "onboard":
            state.onboarded[ev["llm"]] = ev
    return state
