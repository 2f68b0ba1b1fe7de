"""`recroute encode`: writes float32 .npy rows in prompt order, caches, reports errors clearly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from recroute import RoutingDataset, load_dataset
from recroute.cli.main import app
from recroute.encoders import load_encoder

runner = CliRunner()

TEXTS = [
    "What is the derivative of x^3?",
    "Who was the first president of the United States?",
    "Balance: H2 + O2 -> H2O",
    "Define opportunity cost.",
    "What is the integral of 1/x?",
    "Which organ produces insulin?",
    "Name the largest planet in the solar system.",
    "Translate 'bonjour' into English.",
]


@pytest.fixture
def folder(tmp_path):
    n = len(TEXTS)
    prompts = pd.DataFrame({"prompt_id": [f"q{i}" for i in range(n)], "text": TEXTS})
    data = RoutingDataset.from_wide(
        np.eye(n, 2), prompt_ids=prompts["prompt_id"], llm_names=["x", "y"], prompts=prompts, name="tiny"
    )
    return data.save(tmp_path / "tiny")


def test_encode_minilm_then_cached(folder, tmp_path):
    out = tmp_path / "emb.npy"
    result = runner.invoke(app, ["encode", str(folder), "--out", str(out), "--json", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert "all-MiniLM-L6-v2" in result.output
    X = np.load(out, allow_pickle=False)
    assert X.shape == (len(TEXTS), 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    (row,) = json.loads((tmp_path / "s.json").read_text())
    assert row["n_encoded"] == len(TEXTS) and row["n_from_cache"] == 0 and row["dim"] == 384
    # second run: everything from the cache, same bytes, nothing printed with --quiet
    out2 = tmp_path / "emb2.npy"
    result = runner.invoke(
        app, ["encode", str(folder), "--out", str(out2), "--quiet", "--json", str(tmp_path / "s2.json")]
    )
    assert result.exit_code == 0 and result.output == ""
    assert json.loads((tmp_path / "s2.json").read_text())[0]["n_from_cache"] == len(TEXTS)
    np.testing.assert_array_equal(np.load(out2), X)
    # the file plugs straight into a dataset folder
    np.save(folder / "embeddings.npy", X)
    assert load_dataset(folder).embeddings.shape == (len(TEXTS), 384)


def test_encode_tfidf_saves_its_encoder(folder, tmp_path):
    out = tmp_path / "tfidf.npy"
    result = runner.invoke(app, ["encode", str(folder), "--encoder", "tfidf", "--dim", "4", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    X = np.load(out)
    enc = load_encoder(tmp_path / "tfidf.encoder")
    assert X.shape == (len(TEXTS), 4) and enc.name == "tfidf-svd-4"
    np.testing.assert_array_equal(enc.encode(TEXTS), X)


def test_errors_are_one_clear_line(folder, tmp_path, shared_data):
    result = runner.invoke(app, ["encode", str(shared_data / "open_llm_leaderboard_v2"), "--out", str(tmp_path / "x.npy")])
    assert result.exit_code == 2
    assert "without text" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x.npy").exists()
    result = runner.invoke(app, ["encode", "no_such_dataset"])
    assert result.exit_code == 2 and "no dataset 'no_such_dataset'" in result.output
    result = runner.invoke(app, ["encode", str(folder), "--encoder", "word2vec", "--out", str(tmp_path / "x.npy")])
    assert result.exit_code == 2 and "unknown encoder" in result.output
    result = runner.invoke(app, ["encode", str(folder), "--out", str(tmp_path / "x.txt")])
    assert result.exit_code == 2 and ".npy" in result.output
