"""Decision logs: the agreed JSONL format, atomic appends from threads, outcome joins, validation errors."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest

from recroute.errors import DataError
from recroute.feedback.logs import (
    COLUMNS, DecisionLog, DecisionLogWriter, decision_records, prompt_hash, read_decision_log, write_decision_log,
)


def _decision(**kw):
    rec = {"prompt_id": "p1", "candidates": ["a", "b"], "chosen": "b", "propensity": 0.6}
    rec.update(kw)
    return rec


def test_writer_fills_ids_and_reader_joins_outcomes(tmp_path):
    path = tmp_path / "log.jsonl"
    w = DecisionLogWriter(path)
    w.append([_decision(prompt_text="hi", latency_ms=12.5, fallbacks=["x"]), _decision(prompt_id="p2", outcome=1.0)])
    lines = [json.loads(l) for l in path.read_text().splitlines()]
    assert [l["event"] for l in lines] == ["decision", "decision"]
    assert len(lines[0]["decision_id"]) == 32 and lines[0]["decision_id"] != lines[1]["decision_id"]
    assert lines[0]["prompt_hash"] == prompt_hash("hi") == __import__("hashlib").sha256(b"hi").hexdigest()
    w.append_outcome(lines[0]["decision_id"], 0.25)
    w.append_outcome(lines[0]["decision_id"], 0.75)  # the last one wins
    log = read_decision_log(path)
    assert isinstance(log, DecisionLog) and isinstance(log, pd.DataFrame)
    assert list(log.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert log["outcome"].tolist() == [0.75, 1.0]
    assert log["latency_ms"].iloc[0] == 12.5 and log["fallbacks"].iloc[0] == ["x"]
    assert np.isnan(log["cost"]).all()
    assert log["candidates"].iloc[1] == ["a", "b"]


def test_missing_outcome_is_nan_and_parquet_round_trip(tmp_path):
    recs = decision_records(["a", "b", "c"], ["a", "c"], [1.0, 0.5], prompt_ids=["x", "y"],
                            outcomes=[None, 0.0], costs=[0.1, 0.0], policy="greedy", router="knn")
    path = write_decision_log(recs, tmp_path / "log.parquet")
    log = read_decision_log(path)
    assert np.isnan(log["outcome"].iloc[0]) and log["outcome"].iloc[1] == 0.0
    assert log["candidates"].iloc[0] == ["a", "b", "c"] and log["policy"].iloc[0] == "greedy"
    again = read_decision_log(write_decision_log(log, tmp_path / "again.jsonl"))
    pd.testing.assert_frame_equal(pd.DataFrame(again), pd.DataFrame(log))


def test_threads_append_whole_lines(tmp_path):
    path = tmp_path / "log.jsonl"
    w = DecisionLogWriter(path)
    text = "x" * 5000

    def work(t):
        for i in range(20):
            w.append([_decision(prompt_id=f"{t}-{i}", prompt_text=text)] * 3)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log = read_decision_log(path)
    assert len(log) == 8 * 20 * 3 and log["decision_id"].is_unique


@pytest.mark.parametrize(
    "record, message",
    [
        (_decision(propensity=0.0), "propensity must be a number in \\(0, 1\\]"),
        (_decision(propensity=1.5), "propensity"),
        (_decision(chosen="z"), "chosen 'z' is not among the candidates"),
        (_decision(candidates=["a", "a"], chosen="a"), "more than once"),
        (_decision(candidates=[]), "non-empty list"),
        (_decision(outcome=2.0), "outcome must be a number in \\[0, 1\\]"),
        (_decision(cost=-1.0), "cost must be"),
        (_decision(prompt_id=None), "needs a prompt_id, prompt_text or prompt_hash"),
        (_decision(prompt_id=3), "prompt_id must be a string"),
    ],
)
def test_writer_rejects_bad_records(tmp_path, record, message):
    with pytest.raises(DataError, match=message):
        DecisionLogWriter(tmp_path / "l.jsonl").append([record])
    assert not (tmp_path / "l.jsonl").exists()


def test_reader_errors_name_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    good = {"event": "decision", "decision_id": "d1", "timestamp": 1.0, **_decision()}
    path.write_text(json.dumps(good) + "\n\n{not json\n")
    with pytest.raises(DataError, match="bad.jsonl line 3: not valid JSON"):
        read_decision_log(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match="line 2: duplicate decision_id 'd1'"):
        read_decision_log(path)
    path.write_text(json.dumps(good) + "\n" + json.dumps({"event": "outcome", "decision_id": "zz", "outcome": 1, "timestamp": 2}) + "\n")
    with pytest.raises(DataError, match="line 2: outcome for unknown decision_id 'zz'"):
        read_decision_log(path)
    path.write_text(json.dumps({**good, "propensity": -1}) + "\n")
    with pytest.raises(DataError, match="line 1: propensity"):
        read_decision_log(path)
    with pytest.raises(DataError, match="no such decision log"):
        read_decision_log(tmp_path / "missing.jsonl")


def test_empty_log_reads_as_empty_frame(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    log = read_decision_log(path)
    assert len(log) == 0 and list(log.columns) == list(COLUMNS)
