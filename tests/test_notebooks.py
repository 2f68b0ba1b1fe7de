"""The notebooks run top to bottom in a fresh kernel (nbclient, the venv's python3 kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(path: Path, timeout: int = 300):
    """Execute a notebook in its own folder; an error in any cell raises CellExecutionError."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    )
    client.execute()
    return nb


def test_scaling_notebook_runs():
    nb = run_notebook(NOTEBOOKS / "scaling.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the figure was drawn


def test_debiasing_notebook_runs():
    nb = run_notebook(NOTEBOOKS / "debiasing.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2  # reliability curves and the front


def test_cold_start_notebook_runs(shared_data):  # real OLLB results from the shared data: not bundled (licence)
    nb = run_notebook(NOTEBOOKS / "cold_start.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the MAE-vs-k curves


def test_cost_notebook_runs(shared_data):  # llmrouter_nim's prices come from the shared data
    nb = run_notebook(NOTEBOOKS / "cost.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the quality–cost figure
    text = "".join(o.get("text", "") for o in outputs)
    assert "AIQ" in text and "budgeted batch" in text


def test_feedback_notebook_runs():
    nb = run_notebook(NOTEBOOKS / "feedback.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # bias and RMSE against the log size


def test_audit_notebook_runs():
    nb = run_notebook(NOTEBOOKS / "audit.ipynb")
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4  # shares, regret, reliability, drift
    text = "".join(o.get("text", "") for o in outputs)
    assert "drift alarm after" in text and "recomputed from the neighbours" in text
