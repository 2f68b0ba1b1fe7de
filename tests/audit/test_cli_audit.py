"""`recroute explain` and `recroute audit` end to end on a small TF-IDF kNN bundle over MMLU-Pro prompts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from recroute.audit.explain import choice_from_neighbours
from recroute.cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECROUTE_CACHE", str(tmp_path / "embedding-cache"))


@pytest.fixture(scope="module")
def small(mmlu, tmp_path_factory):
    """(dataset folder, bundle folder): 301 prompts, a TF-IDF kNN bundle fitted on all of them."""
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    root = tmp_path_factory.mktemp("cli-audit")
    data = mmlu.subset(prompts=np.arange(0, mmlu.n_prompts, 40))
    folder = data.save(root / "ds")
    encoder = get_encoder("tfidf", dim=32)
    X = encoder.fit_encode(data.texts)
    bundle = RoutingBundle.build(KNNRouter(k=5).fit(data, X), encoder).save(root / "bundle")
    return data, folder, bundle


def test_explain_json(small):
    data, folder, bundle = small
    result = runner.invoke(app, ["explain", "-b", str(bundle), "-d", str(folder), "--json", "-",
                                 "-p", data.texts[3], "-p", "What is the integral of x squared?"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["index"] for r in rows] == [0, 1]
    for row in rows:
        assert choice_from_neighbours(row) == row["llm"]
        assert all(n["text"] and n["prompt_id"] for n in row["evidence"]["neighbours"])
    assert rows[0]["evidence"]["neighbours"][0]["prompt_id"] == str(data.prompt_ids[3])  # itself, distance 0


def test_explain_embeddings_without_an_encoder(small, tmp_path):
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data, folder, _ = small
    bare = RoutingBundle.build(KNNRouter(k=3).fit(data, data.embeddings)).save(tmp_path / "bare")
    np.save(tmp_path / "q.npy", data.embeddings[:4])
    result = runner.invoke(app, ["explain", "-b", str(bare), "--embeddings", str(tmp_path / "q.npy"), "--json", "-", "-q"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert len(rows) == 4 and all(choice_from_neighbours(r) == r["llm"] for r in rows)
    assert [r["evidence"]["neighbours"][0]["row"] for r in rows] == [0, 1, 2, 3]  # each prompt is its own nearest


def test_explain_reads_stdin_and_prints_a_table(small):
    _, _, bundle = small
    result = runner.invoke(app, ["explain", "-b", str(bundle)], input="a question about law\n")
    assert result.exit_code == 0, result.output
    assert "runner-up" in result.stdout and "top candidates" in result.stdout


def test_audit_dataset_writes_json_html_plots(small, tmp_path):
    _, folder, bundle = small
    out = tmp_path / "out"
    result = runner.invoke(app, ["audit", "-b", str(bundle), "-d", str(folder), "--cross-fit", "3",
                                 "--json", str(tmp_path / "audit.json"), "--html", str(tmp_path / "audit.html"),
                                 "--plots", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "audit.json").read_text())
    assert rows[0]["section"] == "summary" and rows[0]["cross_fit"] == 3 and rows[0]["n_prompts"] == 301
    assert any(r["section"] == "finding" for r in rows) and "top findings" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == ["regret.png", "reliability.png", "shares.png"]
    assert (tmp_path / "audit.html").read_text().count("data:image/png;base64,") == 3


def test_audit_logs_with_drift(small, tmp_path):
    data, folder, bundle = small
    ids = data.prompt_ids
    log = tmp_path / "log.jsonl"
    names = [str(n) for n in data.llm_names]
    log.write_text("".join(json.dumps({"decision_id": f"d{i}", "timestamp": 1.7e9 + i, "prompt_id": str(ids[i % len(ids)]),
                                       "candidates": names, "chosen": names[i % 3], "propensity": 1.0,
                                       "outcome": None}) + "\n" for i in range(400)))
    result = runner.invoke(app, ["audit", "-b", str(bundle), "--logs", str(log), "-d", str(folder), "--window", "100",
                                 "--json", "-", "-q"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert rows[0]["kind"] == "logs" and rows[0]["n_decisions"] == 400
    assert len([r for r in rows if r["section"] == "log_windows"]) == 4
    assert len([r for r in rows if r["section"] == "drift"]) == 4  # 100-prompt drift windows


@pytest.mark.parametrize("args, message", [
    (["audit"], "give --dataset"),
    (["explain", "-p", "hi", "-c", "no-such-llm"], "unknown LLM"),
    (["audit", "--logs", "missing.jsonl"], "no such decision log"),
])
def test_bad_input_is_one_error_line(small, args, message):
    _, _, bundle = small
    result = runner.invoke(app, [args[0], "-b", str(bundle), *args[1:]])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith("error:") and message in result.stderr and len(result.stderr.strip().splitlines()) == 1
