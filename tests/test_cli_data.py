"""`recroute data info` and `recroute data convert` end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from recroute import RoutingDataset
from recroute.cli.main import app
from recroute.data.synthetic import make_synthetic

runner = CliRunner()


def test_info_json_on_bundled_data(tmp_path):
    out = tmp_path / "info.json"
    result = runner.invoke(app, ["data", "info", "mmlu_pro", "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["n_prompts"] == 12032 and report["n_llms"] == 31
    assert report["score_type"] == "binary" and report["best_llm"] == "gpt-4o-2024-05-13"
    assert len(report["llms"]) == 31 and len(report["tasks"]) == 14
    assert abs(report["oracle"] - 0.9545) < 1e-3


def test_info_prints_table(shared_data):
    result = runner.invoke(app, ["data", "info", str(shared_data / "open_llm_leaderboard_v2"), "--top", "3"])
    assert result.exit_code == 0, result.output
    assert "21,606 prompts" in result.output and "per benchmark" in result.output


def test_info_bad_input_is_one_clean_line(tmp_path):
    (tmp_path / "records.csv").write_text("prompt_id,llm\nx,y\n")
    result = runner.invoke(app, ["data", "info", str(tmp_path)])
    assert result.exit_code == 2
    assert "missing column ['score']" in result.output and "Traceback" not in result.output


def test_convert_between_all_formats(tmp_path):
    data = make_synthetic(120, 9, 3, random_state=2)
    folder = data.save(tmp_path / "ds")
    expected = data.dense(-1)
    for fmt, name in [("parquet", "long.parquet"), ("csv", "long.csv"), ("wide-parquet", "wide.parquet"),
                      ("wide-csv", "wide.csv"), ("folder", "copy")]:
        result = runner.invoke(app, ["data", "convert", str(folder), str(tmp_path / name), "--to", fmt, "-q"])
        assert result.exit_code == 0, result.output
    long = RoutingDataset.from_long(tmp_path / "long.parquet")
    np.testing.assert_array_equal(long.dense(-1), expected)
    long_csv = RoutingDataset.from_long(tmp_path / "long.csv")
    np.testing.assert_allclose(long_csv.dense(-1), expected)
    result = runner.invoke(app, ["data", "convert", str(tmp_path / "wide.csv"), str(tmp_path / "from_wide"), "--from", "wide", "-q"])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(RoutingDataset.load(tmp_path / "from_wide").dense(-1), expected)
    assert pd.read_parquet(tmp_path / "wide.parquet").shape == (120, 10)
    result = runner.invoke(app, ["data", "convert", str(folder), str(tmp_path / "x.pkl"), "--to", "routereval", "-q"])
    assert result.exit_code == 0, result.output
    back = RoutingDataset.from_routereval(tmp_path / "x.pkl")
    assert back.n_prompts == 120


def test_convert_rejects_unknown_format(tmp_path):
    folder = make_synthetic(20, 3, 1).save(tmp_path / "ds")
    result = runner.invoke(app, ["data", "convert", str(folder), str(tmp_path / "o"), "--to", "xml"])
    assert result.exit_code == 2 and "unknown output format 'xml'" in result.output
