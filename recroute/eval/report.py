"""Tables, files and plots for evaluation results (nothing here computes a metric).

- ``eval_records(df)``: the tidy JSON rows of :func:`recroute.eval.protocol.evaluate_router_dataset`;
- ``eval_table(df)``: a rich Table (router × setting × m; group means; optionally every group);
- ``shares_table(df)``: the per-LLM selection shares in long form;
- ``plot_scaling(df)``: RouterEval's Fig. 2 from :mod:`recroute.eval.scaling` rows;
- ``write_json`` / ``write_csv``: atomic writes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from recroute.eval.protocol import MEAN, ROW_KEYS


# ---------------------------------------------------------------------- tidy rows and files
def records(df: pd.DataFrame, columns: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
    """JSON-safe list of row dicts (NaN → None, numpy scalars → Python), optionally only ``columns``."""
    part = df if columns is None else df[list(columns)]
    return [{k: _json_value(v) for k, v in row.items()} for row in part.to_dict(orient="records")]


def eval_records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows {router, setting, m, group, mu_o, v_r, v_b, e_p, auc, shares}; group includes "mean".

    ``shares`` maps each candidate LLM to the share of test prompts routed to it (expected shares for
    oracle/r_o/random); None on the mean rows.
    """
    rows = records(df, ROW_KEYS)
    if "share" in df and "llms" in df:
        for row, llms, share in zip(rows, df["llms"], df["share"]):
            row["shares"] = None if llms is None else {str(n): float(s) for n, s in zip(llms, share)}
    return rows


def shares_table(df: pd.DataFrame) -> pd.DataFrame:
    """Long table {router, setting, m, group, llm, share}: where each router sends the test prompts.

    Fitted routers: the share of argmax routes; oracle/r_o/random: the expected share.
    """
    rows = df[df["group"] != MEAN]
    out = []
    for row in rows.itertuples(index=False):
        for llm, share in zip(row.llms, row.share):
            out.append({"router": row.router, "setting": row.setting, "m": row.m, "group": row.group,
                        "llm": llm, "share": share})
    return pd.DataFrame(out, columns=["router", "setting", "m", "group", "llm", "share"])


def _json_value(v: Any) -> Any:
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_json_value(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_json(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write a list of rows as JSON atomically (NaN written as null)."""
    text = json.dumps([{k: _json_value(v) for k, v in r.items()} for r in rows], indent=1, allow_nan=False)
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text + "\n"))


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a DataFrame as CSV atomically."""
    return atomic_write(Path(path), lambda tmp: df.to_csv(tmp, index=False))


def atomic_write(path: Path, writer: Callable[[str], Any]) -> Path:
    """Call ``writer(tmp_path)`` on a temp file beside ``path``, then rename it into place."""
    from recroute.atomic import atomic_file

    with atomic_file(path) as tmp:
        writer(str(tmp))
    return path


# ---------------------------------------------------------------------- rich table
def eval_table(df: pd.DataFrame, groups: bool = False, title: str = ""):
    """A rich Table: one row per (router, m) group mean, or every group too when ``groups``.

    The setting is implied by m (easy: 3, 5; hard: 10, 100, 1000), so it is not a column.
    """
    from rich import box
    from rich.table import Table

    table = Table(title=title or None, box=box.SIMPLE_HEAD)
    table.add_column("router", no_wrap=True)
    table.add_column("m", justify="right", no_wrap=True)
    if groups:
        table.add_column("group", no_wrap=True)
    for name in ("mu_o", "V_R", "V_B", "E_p", "AUC"):
        table.add_column(name, justify="right", no_wrap=True)
    rows = df if groups else df[df["group"] == MEAN]
    previous = None
    for row in rows.itertuples(index=False):
        if previous is not None and row.router != previous:
            table.add_section()
        previous = row.router
        cells = [str(row.router), str(row.m)] + ([str(row.group)] if groups else [])
        cells += [_fmt(v) for v in (row.mu_o, row.v_r, row.v_b, row.e_p, row.auc)]
        table.add_row(*cells, style="bold" if groups and row.group == MEAN else None)
    return table


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.4f}"


# ---------------------------------------------------------------------- scaling figure
def plot_scaling(df: pd.DataFrame, path: str | Path | None = None, title: str = "", reference: float | None = None):
    """A matplotlib Figure of mu vs m: one line per r_o p (random → oracle), one dashed line per router.

    ``reference``: RouterEval's Perf(ref), drawn as a horizontal line. Written to ``path`` (PNG by
    suffix) atomically when given. Drawn on an Agg canvas without pyplot: it never opens a window,
    never changes the global backend, and needs no closing (a notebook still displays it).
    """
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    cmap = colormaps["viridis"]
    for p, part in df[df["curve"] == "r_o"].groupby("p"):
        label = {0.0: "random (p=0)", 1.0: "oracle (p=1)"}.get(float(p), f"r_o p={p:g}")
        ax.plot(part["m"], part["mu"], color=cmap(float(p)), lw=2 if p in (0.0, 1.0) else 1, label=label)
    styles = [("crimson", "o"), ("darkorange", "s"), ("black", "^"), ("royalblue", "D"), ("magenta", "v")]
    for i, (curve, part) in enumerate(df[df["curve"] != "r_o"].groupby("curve", sort=False)):
        color, marker = styles[i % len(styles)]
        ax.plot(part["m"], part["mu"], "--", marker=marker, color=color, ms=3, lw=1.5, label=str(curve))
    if reference:
        ax.axhline(reference, color="grey", ls=":", label=f"reference {reference:.3f}")
    ax.set_xlabel("number of candidate LLMs m")
    ax.set_ylabel("mu_o (mean test score)")
    ax.set_title(title or "Routing quality vs number of candidates")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    if path is not None:
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        atomic_write(Path(path), lambda tmp: fig.savefig(tmp, dpi=120, format=fmt))
    return fig
