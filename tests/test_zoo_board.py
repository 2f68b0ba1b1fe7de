"""benchmarks/zoo.py's rendering: refused pools, failed runs and the union of several checkpoints,
on tiny hand-made checkpoints (no router is fitted)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zoo  # noqa: E402

REFUSAL = "sw_ranking fits a Bradley-Terry model ...; it takes at most 300 LLMs, got 1000: fit it on a candidate subset"


def _row(router, dataset, seed, m, v_b, refused=None):
    row = {"dataset": dataset, "router": router, "seed": seed, "setting": "easy" if m < 10 else "hard", "m": m,
           "mu_o": v_b / 2, "v_r": math.nan, "v_b": v_b, "e_p": 1.0, "auc": 0.6, "fit_seconds": 1.0,
           "route_seconds": 0.1, "run_seconds": 5.0, "load_start": 2.0, "load_end": 3.0}
    if refused:
        row.update({k: math.nan for k in ("mu_o", "v_b", "e_p", "auc", "fit_seconds", "route_seconds")}, refused=refused)
    return row


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def board(tmp_path, monkeypatch):
    """zoo.md rendered from two checkpoints: a's lines first, b's (one rerunning a's) after."""
    monkeypatch.setattr(zoo, "recorded_rows", lambda: [])  # only these lines, not the recorded results
    a = _write(tmp_path / "a.jsonl", [
        _row("knn", "s1", 0, 3, 1.00), _row("knn", "s1", 0, 5, 1.02), _row("knn", "s1", 0, 10, 0.96),
        _row("sw_ranking", "s2", 0, 3, 1.00), _row("sw_ranking", "s2", 0, 10, 1.10),
        _row("sw_ranking", "s2", 0, 1000, 0.0, refused=REFUSAL),
        _row("linear", "s1", 0, 3, 1.01), _row("linear", "s1", 0, 5, 1.03),  # seeded, one seed so far
        _row("lim", "s1", 0, 3, 1.04), _row("lim", "s1", 0, 5, 0.0, refused="takes at most 1,000 cells"),
        {"dataset": "s2", "router": "mlp", "seed": 0, "error": "RuntimeError: boom"},
        {"kind": "tradeoff", "router": "knn", "aiq": 0.5, "zero_aiq": 0.4, "aiq_ratio": 1.25,
         "cost_to_best": 1.0, "cost_to_best_fraction": 0.5, "max_quality": 0.6},
    ])
    b = _write(tmp_path / "b.jsonl", [
        {"dataset": "s2", "router": "sw_ranking", "seed": 0, "error": "DataError: an older run's failure"},
        _row("knn", "s1", 1, 3, 0.98), _row("knn", "s1", 1, 5, 1.04), _row("knn", "s1", 1, 10, 0.94),
        _row("knn", "s1", 0, 3, 1.06),  # a's run again (a rerun in a later file): this copy counts
    ])
    out = tmp_path / "zoo"
    zoo.render([a, b], out)
    return out.with_suffix(".md").read_text(), json.loads(out.with_suffix(".json").read_text())


def test_the_union_of_checkpoints_counts_each_run_once(board):
    md, doc = board
    # knn on s1: seeds 0 and 1 (seed 0's m = 3 rerun in b: 1.06), mean over m = 3, 5, 10 and both seeds
    # = (1.06 + 1.02 + 0.96 + 0.98 + 1.04 + 0.94) / 6
    assert "| knn | 1.0000 | - |" in md
    assert "| knn | 1.0200 ±0.057 | 1.0300 ±0.014 | 0.9500 ±0.014 |" in md  # std over seeds of (1.06, 0.98)
    assert doc["seeds"] == [0, 1]
    assert len(doc["rows"]) == 3 + 3 + 3 + 2 + 2  # knn (2 seeds × 3 m), sw_ranking (3 m), linear, lim (2 m)
    assert "| linear | 1.0200 ¹ | - |" in md  # a seeded family with one of its three seeds is marked


def test_a_refused_pool_shows_its_reason_and_the_rest_is_measured(board):
    md, doc = board
    # sw_ranking on s2: m = 3 and 10 measured, m = 1000 refused (outside the board's m): (1.00 + 1.10) / 2
    assert "| sw_ranking | - | 1.0500 |" in md
    assert f"| sw_ranking | s2 | 1000 | {REFUSAL} |" in md
    sw = md[md.index("## s2"):].splitlines()
    assert any(line.startswith("| sw_ranking | 1.0000 | 1.1000 | refused |") for line in sw)
    # a refusal inside m = 3, 5, 10 makes the board's cell "refused", never the mean of the other m
    assert "| lim | refused | - |" in md
    assert "| lim | s1 | 5 | takes at most 1,000 cells |" in md


def test_a_recorded_row_with_more_seeds_stays_while_the_rerun_has_one_seed(monkeypatch):
    recorded = [{**_row("knn", "s1", seed, 3, v_b), "source": "quality.json"} for seed, v_b in ((0, 1.1), (1, 1.3))]
    monkeypatch.setattr(zoo, "recorded_rows", lambda: recorded)
    one = zoo.pd.DataFrame([_row("knn", "s1", 0, 3, 1.0)])
    shown = zoo.summarise(zoo.with_recorded(one))
    assert shown.v_b.tolist() == [pytest.approx(1.2)] and shown.source.tolist() == ["quality.json"]
    two = zoo.pd.DataFrame([_row("knn", "s1", 0, 3, 1.0), _row("knn", "s1", 1, 3, 0.9)])
    shown = zoo.summarise(zoo.with_recorded(two))
    assert shown.v_b.tolist() == [pytest.approx(0.95)] and shown.source.tolist() == ["this run"]


def test_failed_runs_are_listed_unless_a_later_run_measured_them(board):
    md, doc = board
    assert [(e["router"], e["dataset"]) for e in doc["errors"]] == [("mlp", "s2")]
    assert "| mlp | s2 | 0 | RuntimeError: boom |" in md and "older run's failure" not in md
    assert [r["router"] for r in doc["tradeoff"]] == ["knn"]
    assert "| knn | 0.5000 | 0.4000 | 1.250× | 50.0% |" in md
