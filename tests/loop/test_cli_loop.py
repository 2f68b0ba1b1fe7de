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


def test_status_shows_the_shadow_and_its_gates(tmp_path):
    j = Journal(tmp_path / "loop.jsonl")
    j.append("start", live_bundle="/b0")
    j.append("refit", n_outcomes=500, fitted=True)
    j.append("shadowing", bundle="/s1", epsilon=0.04, tau=0.0, kind="refit")
    j.append("shadow", bundle="/s1", checksum="c1", epsilon=0.04, tau=0.0, kind="refit", response={})
    j.append("estimate", family="knn", n_outcomes=1000, shadow="c1", look=1, delta=0.03, lower=-0.01, upper=0.07,
             support=9)
    j.append("decision", n_outcomes=1000, action="keep", reason="lower bound -0.0100 is not above the margin",
             bundle="/s1", kind="shadow", look=1)
    j.append("refit", n_outcomes=1000, fitted=False)
    result = runner.invoke(app, ["loop", "status", "--journal", str(tmp_path / "loop.jsonl"), "--json", "-"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["event"] for r in rows] == ["shadow", "shadow gate"]
    assert rows[0]["family"] == "c1" and rows[0]["detail"] == "/s1 (epsilon 0.04, tau 0)"
    assert rows[1]["lower"] == -0.01 and rows[1]["action"] == "keep"
    assert "shadow: /s1 (checksum c1, epsilon 0.04, tau 0, 1 look(s))" in " ".join(result.stderr.split())
    j.append("shadowing", bundle="/s2", epsilon=0.05, tau=0.0, kind="refit")  # the loop died before the answer
    result = runner.invoke(app, ["loop", "status", "--journal", str(tmp_path / "loop.jsonl")])
    assert "shadow: /s1 (checksum c1, epsilon 0.04, tau 0, 1 look(s)); install of /s2 (epsilon 0.05) pending" in \
        " ".join(result.output.split())


def test_bad_explore_options_are_one_error_line(tmp_path):
    bundle = tmp_path / "b"
    bundle.mkdir()
    result = runner.invoke(app, ["loop", "run", "--log", str(tmp_path / "l.jsonl"), "--bundle", str(bundle),
                                 "--journal", str(tmp_path / "j.jsonl"), "--gateway", "http://127.0.0.1:1",
                                 "--explore", "sideways"])
    assert result.exit_code == 2 and "--explore must be epsilon or shadow; got 'sideways'" in result.stderr
