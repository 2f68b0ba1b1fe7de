"""The loop's incremental log reader on texts that hold Unicode line separators: a logged prompt with
U+0085 (NEL) or U+2028 is one record, as ``read_decision_log`` reads it, and a failed read adds nothing."""

from __future__ import annotations

import json

import pytest

from recroute.errors import DataError
from recroute.feedback.logs import read_decision_log
from recroute.loop.refit import LogTail


def record(i: int, text: str) -> dict:
    return {"event": "decision", "decision_id": f"d{i}", "timestamp": 1.0 + i, "prompt_id": None, "prompt_text": text,
            "candidates": ["a", "b"], "chosen": "a", "propensity": 1.0, "outcome": None}


def test_unicode_line_separators_stay_inside_their_record(tmp_path):
    path = tmp_path / "log.jsonl"
    texts = ["plain", "next\x85line", "para\u2028graph", "form\x0cfeed", "tab\x1dsep"]
    with open(path, "w", encoding="utf-8") as fh:  # written as the gateway writes: UTF-8, not ASCII-escaped
        for i, t in enumerate(texts):
            fh.write(json.dumps(record(i, t), ensure_ascii=False) + "\n")
        fh.write(json.dumps({"event": "outcome", "decision_id": "d1", "timestamp": 9.0, "outcome": 1.0}) + "\n")
    tail = LogTail(path)
    got = tail.read()
    assert got["prompt_text"].tolist() == texts and got["outcome"].tolist()[1] == 1.0
    assert got["prompt_text"].tolist() == read_decision_log(path)["prompt_text"].tolist()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record(5, "more\u2029text"), ensure_ascii=False) + "\n")
    assert tail.read()["prompt_text"].tolist() == [*texts, "more\u2029text"]


def test_a_failed_read_adds_nothing_and_a_later_one_counts_each_record_once(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps(record(0, "a")) + "\n" + json.dumps(record(1, "b")) + "\n{broken\n")
    tail = LogTail(path)
    for _ in range(2):  # the same error each time, nothing kept from the lines before it
        with pytest.raises(DataError, match="record 3: not valid JSON"):
            tail.read()
        assert tail.records == [] and tail.offset == 0
