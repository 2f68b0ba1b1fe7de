"""`recroute fit` and `recroute route` end to end (typer's CliRunner), and `python -m recroute`."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.serve.bundle import RoutingBundle

runner = CliRunner()
MATH = "prove the theorem about the prime number with algebra"
CODE = "my python function has a bug in the loop over the array"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, topics_folder):
    out = tmp_path_factory.mktemp("fit") / "bundle"
    result = runner.invoke(app, ["fit", "--dataset", str(topics_folder), "--router", "knn:k=3",
                                 "--encoder", "tfidf", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    return out


def rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_fit_writes_a_loadable_bundle(fitted, tmp_path, topics_folder):
    bundle = RoutingBundle.load(fitted, encoder="tfidf")
    assert bundle.router.get_params()["k"] == 3 and bundle.router.n_features_in_ == bundle.encoder.dim
    summary = tmp_path / "fit.json"
    result = runner.invoke(app, ["fit", "-d", str(topics_folder), "-r", "best_single", "-o", str(tmp_path / "b"),
                                 "--json", str(summary)])
    assert result.exit_code == 0, result.output
    assert json.loads(summary.read_text())[0]["router"] == "best_single"


def test_route_jsonl_file_to_jsonl_file(fitted, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": MATH, "id": "a"}) + "\n\n" + json.dumps({"prompt": CODE}) + "\n")
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["route", "--bundle", str(fitted), "--input", str(src), "--k", "2",
                                 "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    got = rows(out.read_text())
    assert [r["llm"] for r in got] == ["math-llm", "code-llm"]
    assert [r["index"] for r in got] == [0, 1] and [r["line"] for r in got] == [1, 3]
    assert got[0]["id"] == "a" and "id" not in got[1]
    assert len(got[0]["top_k"]) == 2 and got[0]["top_k"][0]["llm"] == "math-llm"


def test_route_plain_text_from_stdin_with_candidates(fitted):
    result = runner.invoke(app, ["route", "-b", str(fitted), "--candidates", "history-llm,generalist", "-q"],
                           input=f"{MATH}\n{CODE}\n")
    assert result.exit_code == 0, result.output
    got = rows(result.stdout)
    assert len(got) == 2 and {r["llm"] for r in got} <= {"history-llm", "generalist"}


def test_route_embeddings(fitted, tmp_path):
    bundle = RoutingBundle.load(fitted)
    X = bundle.encode([MATH, CODE, MATH])
    np.save(tmp_path / "X.npy", X)
    result = runner.invoke(app, ["route", "-b", str(fitted), "--embeddings", str(tmp_path / "X.npy"), "-q"])
    assert result.exit_code == 0, result.output
    assert [r["llm"] for r in rows(result.stdout)] == ["math-llm", "code-llm", "math-llm"]


def test_route_shows_progress_on_long_input_unless_quiet(fitted, tmp_path):
    src = tmp_path / "many.txt"
    src.write_text("\n".join([MATH, CODE] * 30) + "\n")
    result = runner.invoke(app, ["route", "-b", str(fitted), "-i", str(src), "--batch-size", "8",
                                 "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "routed 60 prompts" in result.stderr
    assert len(rows((tmp_path / "o.jsonl").read_text())) == 60
    quiet = runner.invoke(app, ["route", "-b", str(fitted), "-i", str(src), "-o", str(tmp_path / "q.jsonl"), "-q"])
    assert quiet.exit_code == 0 and quiet.stderr == ""


@pytest.mark.parametrize("args, stdin, message", [
    (["--candidates", "nope"], MATH, "unknown LLM 'nope'"),
    (["--k", "9"], MATH, "k=9 is more than the 4 candidate"),
    (["--k", "0"], MATH, "k must be at least 1"),
    ([], '{"prompt": ""}\n', "line 1: expected an object with a non-empty string"),
    ([], '{"prompt": "ok"}\n{"text": "x"}\n', "line 2: expected an object"),
    ([], '{"prompt": "ok"}\n{broken\n', "line 2: not valid JSON"),
    ([], "\n\n", "no prompts"),
    (["--input", "missing.txt"], "", "no such file"),
    (["--embeddings", "missing.npy"], "", "no such file"),
])
def test_route_errors_are_one_clear_line(fitted, args, stdin, message):
    result = runner.invoke(app, ["route", "-b", str(fitted), "-q", *args], input=stdin)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert "Traceback" not in result.output


def test_route_embeddings_of_the_wrong_width(fitted, tmp_path):
    np.save(tmp_path / "X.npy", np.zeros((2, 3), dtype=np.float32))
    result = runner.invoke(app, ["route", "-b", str(fitted), "--embeddings", str(tmp_path / "X.npy")])
    assert result.exit_code == 2 and "3 columns" in result.stderr


def test_a_damaged_bundle_is_refused(fitted, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(fitted, broken)
    (broken / "router" / "index.faiss").write_bytes(b"junk")
    result = runner.invoke(app, ["route", "-b", str(broken), "-q"], input=MATH)
    assert result.exit_code == 2 and "index.faiss" in result.stderr


def test_python_dash_m_recroute_routes(fitted):
    proc = subprocess.run([sys.executable, "-m", "recroute", "route", "-b", str(fitted), "-q"], input=CODE,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert rows(proc.stdout)[0]["llm"] == "code-llm"
