"""The HTML audit report in a real headless Chromium (over its DevTools protocol): the page loads with no
console error or uncaught exception and every plot image is decoded. Skipped where no Chromium is installed
(`.ci/run` installs Debian's `chromium`)."""

from __future__ import annotations

import numpy as np
import pytest

from cdp_browser import Chromium, find_browser
from recroute.audit.audit import audit_dataset, audit_logs
from recroute.audit.report import figures, render_html, write_report

pytestmark = pytest.mark.skipif(find_browser() is None, reason="no Chromium on PATH (apt-get install -y chromium)")
pytest.importorskip("websockets", reason="the DevTools client needs websockets")


@pytest.fixture(scope="module")
def browser():
    with Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def dataset_audit(mmlu):
    from recroute.routers.knn import KNNRouter

    data = mmlu.subset(prompts=np.arange(0, mmlu.n_prompts, 12))  # 1,003 prompts of every task
    router = KNNRouter().fit(data, data.embeddings)
    return audit_dataset(router, data, data.embeddings, cross_fit=3)


def test_checker_sees_errors_and_broken_images(browser, tmp_path):
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><title>bad</title></head><body>"
                    "<img id='broken' src='data:image/png;base64,AAAA'>"
                    "<script>console.error('boom'); undefinedFunction();</script></body></html>")
    got = browser.load(page)
    assert any("boom" in e for e in got["errors"]) and any("uncaught" in e for e in got["errors"])
    assert got["images"] == [{"id": "broken", "complete": True, "width": 0, "height": 0}]


def test_dataset_report_loads_cleanly_with_every_plot(browser, dataset_audit, tmp_path):
    written = write_report(dataset_audit, tmp_path / "audit.html", tmp_path / "plots", title="kNN audit")
    got = browser.load(written["html"])
    assert got["errors"] == [] and got["title"] == "kNN audit"
    plots = [i for i in got["images"] if i["id"].startswith("plot-")]
    assert {i["id"] for i in plots} == {f"plot-{name}" for name in ("shares", "regret", "reliability")}
    assert all(i["complete"] and i["width"] > 100 and i["height"] > 100 for i in plots)
    assert all((tmp_path / "plots" / f"{name}.png").stat().st_size > 1000 for name in ("shares", "regret", "reliability"))
    html = (tmp_path / "audit.html").read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # nothing to fetch


def test_log_report_with_drift_loads_cleanly(browser, tmp_path):
    from recroute.audit.drift import fit_reference
    from recroute.feedback.logs import decision_log_from_records

    rng = np.random.default_rng(0)
    train = rng.normal(size=(600, 8)).astype(np.float32)
    live = np.vstack([rng.normal(size=(300, 8)), 4 + rng.normal(size=(300, 8))]).astype(np.float32)
    log = decision_log_from_records([
        {"decision_id": f"d{i}", "timestamp": 1.7e9 + 300.0 * i, "prompt_id": f"p{i}", "candidates": ["a", "b"],
         "chosen": "ab"[i % 2] if i < 400 else "a", "propensity": 1.0, "outcome": float(i % 3 == 0),
         "fallbacks": ["b:timeout"] if i % 40 == 0 else []} for i in range(600)])
    audit = audit_logs(log, X_log=live, reference=fit_reference(train), X_reference=train, window=100)
    page = tmp_path / "logs.html"
    page.write_text(render_html(audit, "log audit"))
    got = browser.load(page)
    assert got["errors"] == []
    assert {i["id"] for i in got["images"]} == {f"plot-{name}" for name in figures(audit)} == {
        "plot-log_shares", "plot-log_entropy", "plot-drift"}
    assert all(i["complete"] and i["width"] > 100 for i in got["images"])
