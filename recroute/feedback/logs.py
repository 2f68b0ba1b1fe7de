"""Decision logs: one routing decision per line (JSON Lines), outcomes that arrive later, a validated reader.

Decision line::

    {"event": "decision", "decision_id": str (uuid4 hex, unique), "timestamp": float (unix seconds),
     "prompt_id": str|null, "prompt_text": str|null, "prompt_hash": str|null (sha256 hex of the UTF-8 text),
     "candidates": [str, ...], "chosen": str, "propensity": float in (0, 1], "outcome": float in [0, 1]|null,
     "cost": float >= 0|null, "policy": str|null, "router": str|null, ...extra keys kept}

Outcome line (an outcome that arrives later; the reader joins it onto its decision, the last one wins)::

    {"event": "outcome", "decision_id": str, "outcome": float in [0, 1], "timestamp": float}

``DecisionLogWriter(path).append(records)`` appends whole lines with one ``write`` on a file opened in
append mode, under a thread lock and an exclusive ``flock`` (safe across threads and processes).
``read_decision_log(path)`` reads JSONL or Parquet (one row per decision; an ``event`` column may carry
outcome rows too) and returns a :class:`DecisionLog`: a pandas DataFrame of decisions with the columns
above (``outcome``/``cost`` NaN where missing), outcomes joined, every row validated.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from recroute.errors import DataError

COLUMNS = (
    "event", "decision_id", "timestamp", "prompt_id", "prompt_text", "prompt_hash", "candidates",
    "chosen", "propensity", "outcome", "cost", "policy", "router",
)
_OPTIONAL_STR = ("prompt_id", "prompt_text", "prompt_hash", "policy", "router")


class DecisionLog(pd.DataFrame):
    """A validated table of decisions (one row each) with the decision-log columns; extra columns kept."""

    _metadata = ["source"]

    @property
    def _constructor(self):
        return DecisionLog


def prompt_hash(text: str) -> str:
    """sha256 hex of the UTF-8 text."""
    return hashlib.sha256(str(text).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------- writing
class DecisionLogWriter:
    """Appends validated decision and outcome lines to a JSONL file; thread- and process-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.suffix.lower() == ".parquet":
            raise DataError(f"{self.path}: a decision log is appended as JSON Lines; use a .jsonl path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Validate and append decisions (fills ``decision_id``, ``timestamp``, ``event`` and
        ``prompt_hash`` (from ``prompt_text``) when missing); all lines or none are written."""
        now = time.time()
        lines = []
        for i, record in enumerate(records):
            rec = complete_decision(record, now)
            check_decision(rec, where=f"record {i}")
            lines.append(_dumps(rec))
        self._write(lines)

    def append_outcome(self, decision_id: str, outcome: float, timestamp: float | None = None) -> None:
        """Append an outcome line for an earlier decision."""
        rec = {"event": "outcome", "decision_id": decision_id, "outcome": outcome,
               "timestamp": time.time() if timestamp is None else timestamp}
        check_outcome(rec, where="outcome")
        self._write([_dumps(rec)])

    def _write(self, lines: list[str]) -> None:
        with self._lock:
            append_lines(self.path, lines)


def append_lines(path: str | Path, lines: Sequence[str]) -> None:
    """Append whole lines (each without its newline) to ``path`` with one ``write`` under an exclusive
    ``flock``: a reader or another writer never sees half of them; a torn last line left by a writer
    killed mid-line is cut first (the JSONL files' one writer)."""
    if not lines:
        return
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)  # read: the last byte
    try:
        _flock(fd, True)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                _cut_torn_tail(fd, size, Path(path))
            view = memoryview(data)
            while view:  # one write for a regular file; loop only on a short write
                view = view[os.write(fd, view):]
        finally:
            _flock(fd, False)
    finally:
        os.close(fd)


def dumps_line(record: dict[str, Any]) -> str:
    """One compact JSON line for a record (numpy values made plain, NaN as null)."""
    return _dumps(record)


def recent_decision_ids(path: str | Path, n: int) -> list[str]:
    """The ``decision_id`` of the last ``n`` decisions of a JSONL log (oldest first); [] when there is no
    file. Unreadable lines (a torn last line) are skipped: this only seeds which ids may get feedback."""
    path = Path(path)
    if not path.is_file():
        return []
    ids: dict[str, None] = {}
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if '"decision"' not in line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("event", "decision") == "decision" and isinstance(rec.get("decision_id"), str):
                ids[rec["decision_id"]] = None
                if len(ids) > 2 * n:
                    ids = dict.fromkeys(list(ids)[-n:])
    return list(ids)[-n:]


def _cut_torn_tail(fd: int, size: int, path: Path) -> None:
    """Truncate a last line that has no newline: a write cut short (its writer was killed mid-line;
    whole lines are written under the lock, so no one finishes it). Called holding the lock."""
    end = size
    while end > 0:
        start = max(0, end - (1 << 16))
        found = os.pread(fd, end - start, start).rfind(b"\n")
        if found >= 0:
            end = start + found + 1
            break
        end = start
    os.ftruncate(fd, end)
    warnings.warn(f"{path}: removed a torn last line ({size - end} bytes cut short mid-write) before appending",
                  stacklevel=4)


def _flock(fd: int, lock: bool) -> None:
    try:
        import fcntl
    except ImportError:  # not POSIX: the thread lock and O_APPEND remain
        return
    fcntl.flock(fd, fcntl.LOCK_EX if lock else fcntl.LOCK_UN)


def _dumps(record: dict[str, Any]) -> str:
    return json.dumps(_plain(record), ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def complete_decision(record: dict[str, Any], now: float | None = None) -> dict[str, Any]:
    """A copy with ``event``, ``decision_id``, ``timestamp`` and ``prompt_hash`` filled where missing."""
    if not isinstance(record, dict):
        raise DataError(f"a decision must be a dict; got {type(record).__name__}")
    rec = dict(record)
    rec.setdefault("event", "decision")
    if rec.get("decision_id") is None:
        rec["decision_id"] = uuid.uuid4().hex
    if rec.get("timestamp") is None:
        rec["timestamp"] = time.time() if now is None else now
    if rec.get("prompt_hash") is None and isinstance(rec.get("prompt_text"), str):
        rec["prompt_hash"] = prompt_hash(rec["prompt_text"])
    for key in COLUMNS:
        rec.setdefault(key, None)
    return rec


def decision_records(
    candidates: Sequence[str] | Sequence[Sequence[str]],
    chosen: Sequence[str],
    propensity: Sequence[float],
    *,
    prompt_ids: Sequence[str | None] | None = None,
    prompt_texts: Sequence[str | None] | None = None,
    outcomes: Sequence[float | None] | None = None,
    costs: Sequence[float | None] | None = None,
    policy: str | None = None,
    router: str | None = None,
    extra: dict[str, Sequence[Any]] | None = None,
) -> list[dict[str, Any]]:
    """Decision dicts for n decisions. ``candidates``: one list of names shared by all, or one per decision."""
    n = len(chosen)
    shared = len(candidates) > 0 and isinstance(candidates[0], str)
    if not shared and len(candidates) != n:
        raise DataError(f"{len(candidates)} candidate lists for {n} decisions")

    def column(values, name):
        if values is None:
            return [None] * n
        if len(values) != n:
            raise DataError(f"{name} has {len(values)} entries for {n} decisions")
        return list(values)

    ids, texts = column(prompt_ids, "prompt_ids"), column(prompt_texts, "prompt_texts")
    outs, cost = column(outcomes, "outcomes"), column(costs, "costs")
    props = column(propensity, "propensity")
    extras = {k: column(v, k) for k, v in (extra or {}).items()}
    shared_list = [str(c) for c in candidates] if shared else None
    out = []
    for i in range(n):
        rec = {
            "prompt_id": None if ids[i] is None else str(ids[i]),
            "prompt_text": texts[i],
            "candidates": shared_list if shared else [str(c) for c in candidates[i]],
            "chosen": str(chosen[i]),
            "propensity": float(props[i]),
            "outcome": _num(outs[i]),
            "cost": _num(cost[i]),
            "policy": policy,
            "router": router,
        }
        for key, values in extras.items():
            rec[key] = values[i]
        out.append(rec)
    return out


def _num(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


# ---------------------------------------------------------------------- validation
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_decision(rec: dict[str, Any], where: str) -> None:
    """DataError naming ``where`` and the field when a decision record breaks the format."""
    if rec.get("event") != "decision":
        raise DataError(f"{where}: event must be 'decision'; got {rec.get('event')!r}")
    _check_id(rec.get("decision_id"), where)
    _check_timestamp(rec.get("timestamp"), where)
    for key in _OPTIONAL_STR:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise DataError(f"{where}: {key} must be a string or null; got {type(rec[key]).__name__}")
    if rec.get("prompt_id") is None and rec.get("prompt_text") is None and rec.get("prompt_hash") is None:
        raise DataError(f"{where}: a decision needs a prompt_id, prompt_text or prompt_hash")
    cands = rec.get("candidates")
    if isinstance(cands, np.ndarray):
        cands = cands.tolist()
    if not isinstance(cands, (list, tuple)) or not cands or not all(isinstance(c, str) for c in cands):
        raise DataError(f"{where}: candidates must be a non-empty list of LLM names; got {cands!r}")
    if len(set(cands)) != len(cands):
        dup = sorted({c for c in cands if list(cands).count(c) > 1})
        raise DataError(f"{where}: candidates list LLM(s) {dup} more than once")
    if not isinstance(rec.get("chosen"), str) or rec["chosen"] not in cands:
        raise DataError(f"{where}: chosen {rec.get('chosen')!r} is not among the candidates {list(cands)[:10]}")
    p = rec.get("propensity")
    if not _is_number(p) or not 0.0 < float(p) <= 1.0:
        raise DataError(f"{where}: propensity must be a number in (0, 1]; got {p!r}")
    _check_outcome_value(rec.get("outcome"), where, allow_null=True)
    c = rec.get("cost")
    if c is not None and (not _is_number(c) or not float(c) >= 0 or math.isinf(float(c))):
        raise DataError(f"{where}: cost must be a finite number >= 0 or null; got {c!r}")


def check_outcome(rec: dict[str, Any], where: str) -> None:
    """DataError naming ``where`` when an outcome line is malformed."""
    _check_id(rec.get("decision_id"), where)
    _check_outcome_value(rec.get("outcome"), where, allow_null=False)
    _check_timestamp(rec.get("timestamp"), where)


def _check_id(value, where: str) -> None:
    if not isinstance(value, str) or not value:
        raise DataError(f"{where}: decision_id must be a non-empty string; got {value!r}")


def _check_timestamp(value, where: str) -> None:
    if not _is_number(value) or not math.isfinite(float(value)):
        raise DataError(f"{where}: timestamp must be a finite number (unix seconds); got {value!r}")


def _check_outcome_value(value, where: str, allow_null: bool) -> None:
    if value is None and allow_null:
        return
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise DataError(f"{where}: outcome must be a number in [0, 1]{' or null' if allow_null else ''}; got {value!r}")


# ---------------------------------------------------------------------- reading
def read_decision_log(path: str | Path) -> DecisionLog:
    """Read and validate a decision log (``.jsonl``/``.json`` lines or ``.parquet``); outcomes joined."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such decision log")
    if path.suffix.lower() == ".parquet":
        try:
            table = pd.read_parquet(path)
        except Exception as exc:
            raise DataError(f"{path}: cannot read Parquet ({type(exc).__name__}: {exc})") from None
        records = [{k: _from_frame(v) for k, v in row.items()} for row in table.to_dict("records")]
        where = [f"{path} row {i}" for i in range(len(records))]
    else:
        records, where = _read_jsonl(path)
    return decision_log_from_records(records, where, source=str(path))


def _from_frame(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [_from_frame(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if value is pd.NaT or value is pd.NA:
        return None
    return value


def _read_jsonl(path: Path) -> tuple[list[dict], list[str]]:
    """Records and their "FILE line N" of a JSONL log. A last line without its newline that is not
    valid JSON is a write cut short (a writer killed mid-line): skipped with a warning."""
    records, where = [], []
    with open(path, encoding="utf-8", errors="surrogateescape") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                if not line.endswith("\n") and not fh.read(1):
                    warnings.warn(f"{path} line {number}: a torn last line (cut short mid-write, "
                                  f"{len(line)} characters) was skipped", stacklevel=3)
                    break
                raise DataError(f"{path} line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(rec, dict):
                raise DataError(f"{path} line {number}: expected a JSON object; got {type(rec).__name__}")
            records.append(rec)
            where.append(f"{path} line {number}")
    return records, where


def decision_log_from_records(
    records: Iterable[dict[str, Any]], where: Sequence[str] | None = None, source: str = "records"
) -> DecisionLog:
    """Validate decision and outcome records (in order) and build the joined DecisionLog."""
    records = list(records)
    where = list(where) if where is not None else [f"{source} record {i}" for i in range(len(records))]
    decisions: list[dict[str, Any]] = []
    position: dict[str, int] = {}
    outcomes: list[tuple[dict[str, Any], str]] = []
    for rec, at in zip(records, where):
        event = rec.get("event") or "decision"
        if event == "outcome":
            check_outcome(rec, at)
            outcomes.append((rec, at))
            continue
        rec = {**{k: None for k in COLUMNS}, **rec, "event": "decision"}
        check_decision(rec, at)
        if rec["decision_id"] in position:
            raise DataError(f"{at}: duplicate decision_id {rec['decision_id']!r} (already used by an earlier decision)")
        position[rec["decision_id"]] = len(decisions)
        rec["candidates"] = list(rec["candidates"])
        decisions.append(rec)
    for rec, at in outcomes:  # the last outcome for a decision wins
        idx = position.get(rec["decision_id"])
        if idx is None:
            raise DataError(f"{at}: outcome for unknown decision_id {rec['decision_id']!r}")
        decisions[idx]["outcome"] = float(rec["outcome"])
        decisions[idx]["outcome_timestamp"] = float(rec["timestamp"])
    return _frame(decisions, source)


def _frame(decisions: list[dict[str, Any]], source: str) -> DecisionLog:
    extra = []
    for rec in decisions:
        extra.extend(k for k in rec if k not in COLUMNS and k not in extra)
    columns = list(COLUMNS) + extra
    frame = pd.DataFrame.from_records(decisions, columns=columns) if decisions else pd.DataFrame(columns=columns)
    for key in ("timestamp", "propensity", "outcome", "cost"):
        frame[key] = pd.to_numeric(frame[key], errors="coerce").astype(np.float64)
    for key in ("decision_id", "chosen", "event"):
        frame[key] = frame[key].astype(object)
    log = DecisionLog(frame)
    log.source = source
    return log


def write_decision_log(log: pd.DataFrame | Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write decisions atomically as JSONL (any other suffix) or Parquet (``.parquet``); validated first."""
    from recroute.atomic import atomic_file

    path = Path(path)
    if isinstance(log, pd.DataFrame):
        records = [{k: _from_frame(v) for k, v in row.items()} for row in log.to_dict("records")]
    else:
        records = [complete_decision(r) for r in log]
    checked = decision_log_from_records(records, source=str(path))
    with atomic_file(path) as tmp:
        if path.suffix.lower() == ".parquet":
            pd.DataFrame(checked).to_parquet(tmp, index=False)
        else:
            rows = [{k: _from_frame(v) for k, v in row.items()} for row in pd.DataFrame(checked).to_dict("records")]
            tmp.write_text("".join(_dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path
