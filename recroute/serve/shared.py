"""What the workers of one gateway host share, in shared memory: the selection window of the collapse
watch, each upstream's circuit breaker and rate-limit block, and the bundle every worker should serve
(hot reload).

The supervisor (``recroute.serve.workers``) makes one :class:`HostState` before it spawns the workers
and hands it to each (multiprocessing, spawn context); a single-process gateway makes its own. Every
change takes the state's one lock (a POSIX semaphore, about a microsecond uncontended); reads that
may race with a change read plain numbers and never tear a decision.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from recroute.errors import DataError

logger = logging.getLogger("recroute.gateway")

MAX_PATH_BYTES = 4096  # the published bundle path and checksum, as JSON
CHECKSUM_BYTES = 64  # sha256 hex
CLOSED, OPEN, HALF_OPEN = 0.0, 1.0, 2.0
_STATE_NAMES = {CLOSED: "closed", OPEN: "open", HALF_OPEN: "half_open"}
_FIELDS = 5  # per LLM: state, consecutive failures, opened_at, probe_at, blocked_until (monotonic s)


def _ctx():
    return mp.get_context("spawn")


# ---------------------------------------------------------------------- the selection window
class SharedWindow:
    """The last ``size`` routed choices over ``names`` and their counts, shared by every worker.

    The same interface as ``gateway_metrics.SelectionWindow`` (add, len, full, entropy, counts), kept
    in a ring of LLM indices with a count per LLM. ``collapsed_flag`` remembers whether the collapse
    warning was given, so that one worker (not each) logs each change.
    """

    def __init__(self, names: Sequence[str], size: int, lock=None) -> None:
        if size < 1:
            raise ValueError(f"the entropy window must hold at least 1 request; got {size}")
        ctx = _ctx()
        self.names = list(names)
        self.size = int(size)
        self._index = {n: j for j, n in enumerate(self.names)}
        self.lock = lock if lock is not None else ctx.Lock()
        self._ring = ctx.RawArray("i", [-1] * self.size)
        self._counts = ctx.RawArray("q", len(self.names))
        self._added = ctx.RawValue("q", 0)
        self._flag = ctx.RawValue("b", 0)

    def add(self, llm: str) -> None:
        j = self._index[llm]
        with self.lock:
            slot = self._added.value % self.size
            old = self._ring[slot]
            if old >= 0:
                self._counts[old] -= 1
            self._ring[slot] = j
            self._counts[j] += 1
            self._added.value += 1

    def __len__(self) -> int:
        return min(self._added.value, self.size)

    @property
    def full(self) -> bool:
        return self._added.value >= self.size

    @property
    def counts(self) -> Counter:
        """Counter {llm: routed choices in the window} (LLMs with none left out)."""
        values = np.frombuffer(self._counts, dtype=np.int64)
        return Counter({self.names[j]: int(values[j]) for j in np.flatnonzero(values > 0)})

    def entropy(self) -> float:
        values = np.frombuffer(self._counts, dtype=np.int64)
        values = values[values > 0].astype(np.float64)
        if not values.size:
            return 0.0
        p = values / values.sum()
        return max(0.0, float(-(p * np.log2(p)).sum()))

    def flip_collapsed(self, collapsed: bool) -> bool:
        """Record the collapse state; True when it changed (the caller logs the change)."""
        with self.lock:
            changed = bool(self._flag.value) != collapsed
            self._flag.value = int(collapsed)
        return changed


# ---------------------------------------------------------------------- circuit breakers
@dataclass(frozen=True)
class BreakerSettings:
    """``failures``: consecutive failures (connect error, timeout, closed, 5xx) that open an LLM's
    breaker (0: no breaker); ``cooldown_s``: how long it stays open before one half-open probe;
    ``max_retry_after_s``: the longest a 429's ``Retry-After`` keeps an LLM out of routing."""

    failures: int = 5
    cooldown_s: float = 30.0
    max_retry_after_s: float = 300.0

    def __post_init__(self) -> None:
        if isinstance(self.failures, bool) or not isinstance(self.failures, int) or self.failures < 0:
            raise DataError(f"breaker failures must be an integer >= 0 (0: no breaker); got {self.failures!r}")
        for name in ("cooldown_s", "max_retry_after_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise DataError(f"breaker {name} must be a positive number of seconds; got {value!r}")


class Breakers:
    """One circuit breaker and rate-limit block per LLM, shared by the workers of a host.

    closed --(``failures`` consecutive failures)--> open --(``cooldown_s``)--> one half-open probe:
    its success closes the breaker, its failure opens it for another cooldown (a probe that never
    reports, e.g. its worker died, is replaced after a cooldown). A 429 keeps the LLM out until its
    ``Retry-After`` (capped) passes. Times are ``time.monotonic()`` seconds (one clock per host).
    """

    def __init__(self, names: Sequence[str], settings: BreakerSettings | None = None, lock=None) -> None:
        ctx = _ctx()
        self.names = list(names)
        self.settings = settings or BreakerSettings()
        self.lock = lock if lock is not None else ctx.Lock()
        self._cells = ctx.RawArray("d", _FIELDS * len(self.names))
        self._troubled = ctx.RawValue("b", 0)  # 0: every breaker closed and nothing rate-limited (the fast path)
        self.all_available = np.ones(len(self.names), dtype=bool)  # returned as is (read-only)
        self.all_available.setflags(write=False)

    def _view(self) -> np.ndarray:
        return np.frombuffer(self._cells, dtype=np.float64).reshape(len(self.names), _FIELDS)

    def available(self, now: float | None = None) -> np.ndarray:
        """bool (n_llms,): LLMs routing may choose: breaker closed (or due a probe), not rate-limited."""
        if not self._troubled.value:
            return self.all_available
        now = time.monotonic() if now is None else now
        cells = self._view()
        state, opened, probe, blocked = cells[:, 0], cells[:, 2], cells[:, 3], cells[:, 4]
        cooldown = self.settings.cooldown_s
        ok = (state == CLOSED) | ((state == OPEN) & (now - opened >= cooldown)) | \
             ((state == HALF_OPEN) & (now - probe >= cooldown))
        ok &= blocked <= now
        if ok.all() and (state == CLOSED).all():
            with self.lock:  # troubles over (a change meanwhile sets the flag again after this)
                if (self._view()[:, 0] == CLOSED).all() and (self._view()[:, 4] <= now).all():
                    self._troubled.value = 0
        return ok

    def acquire(self, j: int, now: float | None = None) -> bool:
        """Whether a request may be sent to LLM ``j`` now; the first request to an open breaker whose
        cooldown has passed becomes its half-open probe (the others are refused meanwhile)."""
        now = time.monotonic() if now is None else now
        cell = self._view()[j]
        if cell[4] > now:
            return False
        if cell[0] == CLOSED:
            return True
        with self.lock:
            cooldown = self.settings.cooldown_s
            if (cell[0] == OPEN and now - cell[2] >= cooldown) or (cell[0] == HALF_OPEN and now - cell[3] >= cooldown):
                cell[0], cell[3] = HALF_OPEN, now
                return True
            return cell[0] == CLOSED

    def success(self, j: int) -> None:
        """LLM ``j`` answered (any status below 500 but 429): close its breaker."""
        cell = self._view()[j]
        if cell[0] == CLOSED and cell[1] == 0:
            return
        with self.lock:
            reopened = cell[0] != CLOSED
            cell[0], cell[1] = CLOSED, 0.0
        if reopened:
            logger.warning("circuit breaker of %s closed: it answered again, it is back in routing", self.names[j])

    def failure(self, j: int, now: float | None = None) -> None:
        """LLM ``j`` failed (connect error, timeout, closed, 5xx): count it; open the breaker at the
        threshold, or again when the failure was the half-open probe."""
        if self.settings.failures == 0:
            return
        now = time.monotonic() if now is None else now
        cell = self._view()[j]
        with self.lock:
            cell[1] += 1
            opens = cell[0] == HALF_OPEN or (cell[0] == CLOSED and cell[1] >= self.settings.failures)
            if opens:
                cell[0], cell[2] = OPEN, now
                self._troubled.value = 1
        if opens:
            logger.warning("circuit breaker of %s open after %d consecutive failures: out of routing for %.3g s",
                           self.names[j], int(cell[1]), self.settings.cooldown_s)

    def rate_limited(self, j: int, retry_after_s: float | None, now: float | None = None) -> None:
        """LLM ``j`` answered 429: out of routing for ``retry_after_s`` (capped; None: not blocked)."""
        if retry_after_s is None or retry_after_s <= 0:
            return
        now = time.monotonic() if now is None else now
        cell = self._view()[j]
        with self.lock:
            cell[4] = max(cell[4], now + min(retry_after_s, self.settings.max_retry_after_s))
            self._troubled.value = 1

    def describe(self, now: float | None = None) -> dict:
        """{llm: {"state", "consecutive_failures", "out_for_s"}} for /healthz."""
        now = time.monotonic() if now is None else now
        cells, ok = self._view(), self.available(now)
        out = {}
        for j, name in enumerate(self.names):
            state, failures, opened, _, blocked = cells[j]
            wait = max(opened + self.settings.cooldown_s - now if state == OPEN else 0.0, blocked - now, 0.0)
            out[name] = {"state": _STATE_NAMES[state], "consecutive_failures": int(failures),
                         "rate_limited": bool(blocked > now), "in_routing": bool(ok[j]), "out_for_s": round(wait, 3)}
        return out

    def wait_s(self, mask: np.ndarray, now: float | None = None) -> float:
        """Seconds until the first LLM of ``mask`` (bool (n_llms,)) is back in routing."""
        now = time.monotonic() if now is None else now
        cells = self._view()[mask]
        waits = np.maximum(np.where(cells[:, 0] != CLOSED, cells[:, 2] + self.settings.cooldown_s - now, 0.0),
                           cells[:, 4] - now)
        return float(max(0.0, waits.min())) if waits.size else 0.0


# ---------------------------------------------------------------------- the bundle to serve
class ReloadBoard:
    """The bundle every worker should serve (path, checksum, generation) and the checksum each
    worker slot serves now; the same for the shadow bundle served beside it (``POST /admin/shadow``).

    A reload publishes a new generation; each worker notices it (its watcher polls the generation,
    and a poke signal wakes it at once), loads and verifies the bundle, swaps it in and reports its
    checksum in its slot; the worker that was asked to reload waits for the others' reports.
    """

    def __init__(self, path: str | None, checksum: str | None, n_slots: int, lock=None) -> None:
        ctx = _ctx()
        self.lock = lock if lock is not None else ctx.Lock()
        self.n_slots = int(n_slots)
        self._generation = ctx.RawValue("q", 0)
        self._desired = ctx.RawArray("c", MAX_PATH_BYTES)
        self._served = ctx.RawArray("c", CHECKSUM_BYTES * self.n_slots)
        self._pids = ctx.RawArray("q", self.n_slots)
        self._shadow_generation = ctx.RawValue("q", 0)
        self._shadow = ctx.RawArray("c", MAX_PATH_BYTES)  # JSON {"bundle", "checksum", "epsilon", "tau"} or null
        self._shadow_served = ctx.RawArray("c", CHECKSUM_BYTES * self.n_slots)
        self._shadow.value = b"null"
        self.publish(path, checksum)

    @property
    def generation(self) -> int:
        return self._generation.value

    def publish(self, path: str | None, checksum: str | None) -> int:
        """Ask every worker to serve the bundle at ``path`` (``checksum``: what its verification gave,
        None when not yet verified, e.g. on SIGHUP); returns the new generation."""
        doc = json.dumps({"bundle": None if path is None else str(path), "checksum": checksum}).encode()
        if len(doc) >= MAX_PATH_BYTES:
            raise DataError(f"the bundle path is too long ({len(doc)} bytes of JSON; at most {MAX_PATH_BYTES - 1})")
        with self.lock:
            self._desired.value = doc
            self._generation.value += 1
            return self._generation.value

    def desired(self) -> tuple[int, str | None, str | None]:
        """(generation, bundle path, checksum or None) to serve."""
        with self.lock:
            doc = json.loads(self._desired.value.decode())
            return self._generation.value, doc["bundle"], doc["checksum"]

    def publish_shadow(self, shadow: dict | None) -> int:
        """Ask every worker to serve the shadow ``{"bundle", "checksum", "epsilon", "tau"}`` beside its
        bundle (None: no shadow); returns the new shadow generation."""
        doc = json.dumps(shadow).encode()
        if len(doc) >= MAX_PATH_BYTES:
            raise DataError(f"the shadow bundle path is too long ({len(doc)} bytes of JSON; at most {MAX_PATH_BYTES - 1})")
        with self.lock:
            self._shadow.value = doc
            self._shadow_generation.value += 1
            return self._shadow_generation.value

    def desired_shadow(self) -> tuple[int, dict | None]:
        """(shadow generation, the shadow to serve or None)."""
        with self.lock:
            return self._shadow_generation.value, json.loads(self._shadow.value.decode())

    def report_shadow(self, slot: int, checksum: str | None) -> None:
        """Worker ``slot`` now serves the shadow ``checksum`` (None: none)."""
        raw = (checksum or "").encode()[:CHECKSUM_BYTES].ljust(CHECKSUM_BYTES, b"\0")
        with self.lock:
            self._shadow_served[slot * CHECKSUM_BYTES:(slot + 1) * CHECKSUM_BYTES] = raw

    def report(self, slot: int, checksum: str | None, pid: int | None = None) -> None:
        """Worker ``slot`` (pid ``pid``, default this process) now serves ``checksum``."""
        raw = (checksum or "").encode()[:CHECKSUM_BYTES].ljust(CHECKSUM_BYTES, b"\0")
        with self.lock:
            self._served[slot * CHECKSUM_BYTES:(slot + 1) * CHECKSUM_BYTES] = raw
            self._pids[slot] = os.getpid() if pid is None else pid

    def workers(self) -> list[dict]:
        """[{"slot", "pid", "checksum", "shadow_checksum"}] of the worker slots whose process is alive."""
        out = []
        with self.lock:
            rows = [(slot, self._pids[slot], bytes(self._served[slot * CHECKSUM_BYTES:(slot + 1) * CHECKSUM_BYTES]),
                     bytes(self._shadow_served[slot * CHECKSUM_BYTES:(slot + 1) * CHECKSUM_BYTES]))
                    for slot in range(self.n_slots)]
        for slot, pid, raw, shadow in rows:
            if pid > 0 and _alive(pid):
                out.append({"slot": slot, "pid": int(pid), "checksum": raw.rstrip(b"\0").decode() or None,
                            "shadow_checksum": shadow.rstrip(b"\0").decode() or None})
        return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------- the whole host
class HostState:
    """The shared state of one gateway host: the selection window, the breakers, the reload board,
    and the folder where workers leave their metrics (None for a single process)."""

    def __init__(self, llms: Sequence[str], window: int, breaker: BreakerSettings | None = None,
                 bundle_path: str | None = None, checksum: str | None = None, n_slots: int = 1,
                 metrics_dir: str | None = None) -> None:
        lock = _ctx().Lock()
        self.llms = list(llms)
        self.window = SharedWindow(self.llms, window, lock)
        self.breakers = Breakers(self.llms, breaker, lock)
        self.board = ReloadBoard(bundle_path, checksum, n_slots, lock)
        self.metrics_dir = metrics_dir
        self.pokes = _ctx().RawValue("q", 0)  # metrics-flush requests; each worker answers by writing its file
        self.secret = os.urandom(16)  # signs decision ids, so any worker knows the ids of every other

    def poke(self) -> int:
        """A new metrics-flush request number (the workers answer it in their metrics files)."""
        with self.board.lock:
            self.pokes.value += 1
            return self.pokes.value
