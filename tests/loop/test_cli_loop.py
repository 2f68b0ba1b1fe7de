"""``recroute loop status`` on a journal, and bad input to ``recroute loop`` as one error line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from recroute.cli.main import app
from recroute.loop.journal import Journal

runner = CliRunner()


def test_status_lists_refits_promotions_and_onboardings(tmp_path):
    j = Journal(tmp_path / "loop.jsonl")
    j.append("start", live_bundle="/b0")
    j.append("estimate", family="knn", n_outcomes=1000, delta=0.02, lower=0.01, upper=0.03, support=40)
    j.append("refit", n_outcomes=1000)
    j.append("decision", n_outcomes=1000, action="promote", reason="lower bound +0.0100 > margin", bundle="/b1")
    j.append("promoting", bundle="/b1", kind="refit")
    j.append("promoted", bundle="/b1", kind="refit", response={"checksum": "abc"})
    j.append("onboard", llm="new-llm", probes=37, sd=0.019, placed=True, bundle="/b2")
    j.append("promoting", bundle="/b2", kind="onboard")
    j.append("refused", bundle="/b2", kind="onboard", reason="422: bad bundle")
    result = runner.invoke(app, ["loop", "status", "--journal", str(tmp_path / "loop.jsonl"), "--json", "-"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["event"] for r in rows] == ["refit", "promoted", "onboard", "refused"]
    assert rows[0]["delta"] == 0.02 and rows[0]["action"] == "promote" and rows[1]["detail"] == "/b1"
    assert rows[2]["detail"].startswith("37 probes") and rows[3]["detail"] == "422: bad bundle"
    assert "live bundle: /b1; 1 refit(s), 1 promotion(s)" in " ".join(result.stderr.split())


def test_bad_input_is_one_error_line(tmp_path):
    result = runner.invoke(app, ["loop", "status", "--journal", str(tmp_path / "none.jsonl")])
    assert result.exit_code == 2 and "no such journal" in result.stderr
    result = runner.invoke(app, ["loop", "run", "--log", str(tmp_path / "l.jsonl"), "--bundle", str(tmp_path / "nob"),
                                 "--journal", str(tmp_path / "j.jsonl"), "--gateway", "http://127.0.0.1:1"])
    assert result.exit_code == 2 and "no such bundle folder" in result.stderr
    result = runner.invoke(app, ["loop", "run", "--log", "l", "--bundle", str(tmp_path), "--journal", "j",
                                 "--gateway", "ftp://x", "--admin-key-env", "LOOP_TEST_UNSET_KEY"])
    assert result.exit_code == 2 and "LOOP_TEST_UNSET_KEY" in result.stderr
