"""`recroute logs simulate`, `recroute ope`, `recroute fit --logs` and `recroute route --policy --log` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.data.synthetic import make_synthetic
from recroute.feedback.logs import read_decision_log

runner = CliRunner()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    data = make_synthetic(500, 5, 3, missing_rate=0.1, random_state=2)
    return data.save(tmp_path_factory.mktemp("data") / "synth")


@pytest.fixture(scope="module")
def log_path(folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("logs") / "log.jsonl"
    summary = out.with_suffix(".json")
    result = runner.invoke(app, ["logs", "simulate", "--dataset", str(folder), "--n", "1500", "--out", str(out),
                                 "--seed", "3", "--json", str(summary), "--quiet"])
    assert result.exit_code == 0, result.output
    row = json.loads(summary.read_text())[0]
    assert row["n"] == 1500 and row["policy"] == "epsilon_greedy:epsilon=0.2" and row["router"] == "knn"
    return out


def test_simulated_log_is_a_valid_decision_log(log_path):
    log = read_decision_log(log_path)
    assert len(log) == 1500 and log.outcome.notna().all()
    assert set(np.round(log.propensity, 6)) <= {round(0.8 + 0.2 / k, 6) for k in range(1, 6)} | {
        round(0.2 / k, 6) for k in range(1, 6)}


def test_ope_rows_carry_the_truth(folder, log_path, tmp_path):
    out = tmp_path / "ope.json"
    result = runner.invoke(app, ["ope", "--logs", str(log_path), "--dataset", str(folder), "--routers",
                                 "best_single,random,knn@softmax:temperature=0.1", "--estimators", "ips,dr",
                                 "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [(r["target"], r["estimator"]) for r in rows][:2] == [("best_single", "ips"), ("best_single", "dr")]
    assert len(rows) == 6
    for r in rows:
        assert r["lower"] <= r["value"] <= r["upper"] and 0 <= r["true_mu_o"] <= 1
        assert abs(r["value"] - r["true_mu_o"]) < 0.15


def test_ope_errors_are_one_line(folder, log_path):
    result = runner.invoke(app, ["ope", "--logs", str(log_path), "--dataset", str(folder), "--routers", "knn",
                                 "--estimators", "magic", "--quiet"])
    assert result.exit_code == 2 and "unknown estimator" in result.output
    result = runner.invoke(app, ["ope", "--logs", str(log_path), "--routers", "knn", "--quiet"])
    assert result.exit_code == 2 and "prompt_text" in result.output


def test_fit_from_logs_then_route_with_a_policy_and_log(folder, log_path, tmp_path):
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["fit", "--logs", str(log_path), "--dataset", str(folder), "--router", "knn:k=10",
                                 "--out", str(bundle), "--quiet"])
    assert result.exit_code == 0, result.output
    X = np.random.default_rng(0).normal(size=(6, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    decisions = tmp_path / "decisions.jsonl"
    log = tmp_path / "route-log.jsonl"
    result = runner.invoke(app, ["route", "--bundle", str(bundle), "--embeddings", str(tmp_path / "x.npy"),
                                 "--policy", "softmax:temperature=0.5", "--seed", "1", "--log", str(log),
                                 "--out", str(decisions), "--quiet"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in decisions.read_text().splitlines()]
    written = read_decision_log(log)
    assert len(lines) == len(written) == 6
    assert [d["llm"] for d in lines] == written.chosen.tolist()
    np.testing.assert_allclose([d["propensity"] for d in lines], written.propensity)
    assert written.prompt_id.tolist() == [str(i) for i in range(6)]
    assert (written.policy == "softmax:temperature=0.5").all()
    result = runner.invoke(app, ["route", "--bundle", str(bundle), "--embeddings", str(tmp_path / "x.npy"),
                                 "--policy", "greedy", "--k", "2", "--quiet"])
    assert result.exit_code == 2 and "--k must be 1" in result.output


def test_fit_from_a_text_only_log_with_tfidf(tmp_path):
    """No dataset: the log's prompt texts are encoded (TF-IDF fitted on them) and its candidates are the LLMs."""
    from recroute.feedback.logs import DecisionLogWriter

    rng = np.random.default_rng(0)
    words = {"a": "integral algebra prime proof theorem".split(), "b": "python bug loop array class".split()}
    records = []
    for i in range(120):
        topic = "a" if i % 2 else "b"
        chosen = str(rng.choice(["a", "b"]))
        records.append({"prompt_text": " ".join(rng.choice(words[topic], 4)) + f" {i}", "candidates": ["a", "b"],
                        "chosen": chosen, "propensity": 0.5, "outcome": float(chosen == topic)})
    log = tmp_path / "text.jsonl"
    DecisionLogWriter(log).append(records)
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["fit", "--logs", str(log), "--router", "knn:k=5", "--encoder", "tfidf",
                                 "--out", str(bundle), "--quiet"])
    assert result.exit_code == 0, result.output
    prompts = tmp_path / "p.txt"
    prompts.write_text("prime theorem proof\npython loop class\n")
    out = tmp_path / "d.jsonl"
    result = runner.invoke(app, ["route", "--bundle", str(bundle), "--input", str(prompts), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["llm"] for line in out.read_text().splitlines()] == ["a", "b"]
