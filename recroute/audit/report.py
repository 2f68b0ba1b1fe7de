"""An audit as PNG plots and one self-contained HTML page (plots inlined as base64 PNG, no script, no
network: it opens from a file anywhere).

``figures(audit)`` -> {name: (title, PNG bytes)}; ``render_html(audit)`` -> the page; ``write_report``
writes the page and/or the PNGs atomically.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np
import pandas as pd

from recroute.audit.audit import Audit

MAX_TABLE_ROWS = 40
TOP_LLMS_PLOTTED = 12


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return buf.getvalue()


def _figure(width: float = 8.0, height: float = 4.0):
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


def _shares_plot(shares: pd.DataFrame) -> bytes:
    top = shares.sort_values(["share", "oracle_share"], ascending=False, kind="stable").head(TOP_LLMS_PLOTTED)
    fig, ax = _figure(8, 0.35 * len(top) + 1.2)
    y = np.arange(len(top))
    ax.barh(y - 0.2, 100 * top["share"], height=0.4, label="router")
    ax.barh(y + 0.2, 100 * top["oracle_share"], height=0.4, label="oracle")
    ax.set_yticks(y, top["llm"])
    ax.invert_yaxis()
    ax.set_xlabel("share of prompts (%)")
    ax.legend(loc="lower right")
    return _png(fig)


def _regret_plot(regret: pd.DataFrame) -> bytes:
    tasks = regret.iloc[1:].sort_values("regret_best", ascending=False, kind="stable")
    fig, ax = _figure(8, 0.35 * len(tasks) + 1.2)
    y = np.arange(len(tasks))
    ax.barh(y - 0.2, tasks["regret_best"], height=0.4, label="vs the best single LLM on the task")
    ax.barh(y + 0.2, tasks["regret_oracle"], height=0.4, label="vs the oracle")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, tasks["task"].astype(str))
    ax.invert_yaxis()
    ax.set_xlabel("regret (score points)")
    ax.legend(loc="lower right")
    return _png(fig)


def _reliability_plot(bins: pd.DataFrame, calibration: pd.DataFrame) -> bytes:
    fig, ax = _figure(6, 5)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--", label="calibrated")
    for llm in calibration.sort_values("share", ascending=False, kind="stable")["llm"].head(4):
        part = bins[bins["llm"] == llm]
        ece = float(calibration.loc[calibration["llm"] == llm, "ece"].iloc[0])
        ax.plot(part["mean_score"], part["accuracy"], marker="o", label=f"{llm} (ECE {ece:.3f})")
    ax.set_xlabel("predicted P(correct)")
    ax.set_ylabel("observed accuracy")
    ax.legend(fontsize=8)
    return _png(fig)


def _log_shares_plot(shares: pd.DataFrame, windows: pd.DataFrame) -> bytes:
    wide = shares.pivot_table(index="window", columns="llm", values="share", fill_value=0.0)
    wide = wide.reindex(windows["window"], fill_value=0.0)
    top = wide.sum().sort_values(ascending=False, kind="stable").index[:6]
    other = wide.drop(columns=top).sum(axis=1)
    fig, ax = _figure()
    x = windows["end"].to_numpy()
    ax.stackplot(x, *[100 * wide[c].to_numpy() for c in top], 100 * other.to_numpy(),
                 labels=[*map(str, top), "others"])
    ax.set_xlabel("decisions")
    ax.set_ylabel("share of the window (%)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def _log_entropy_plot(windows: pd.DataFrame) -> bytes:
    fig, ax = _figure()
    x = windows["end"].to_numpy()
    ax.plot(x, windows["selection_entropy_bits"], marker="o", label="selection entropy of the window (bits)")
    if windows["e_p"].notna().any():
        ax.plot(x, windows["e_p"].astype(float), marker="s", label="E_p (router's per-prompt entropy, bits)")
    ax.set_xlabel("decisions")
    ax.set_ylabel("bits")
    ax.legend()
    return _png(fig)


def _drift_plot(drift: pd.DataFrame) -> bytes:
    fig, ax = _figure()
    x = drift["end"].to_numpy()
    ax.plot(x, drift["median_distance"], marker="o", label="median distance to the nearest training prompt")
    ax.axhline(float(drift["null_median"].iloc[0]), color="grey", ls="--", label="training prompts (null)")
    fired = drift[drift["fired"]]
    if len(fired):
        ax.scatter(fired["end"], fired["median_distance"], color="red", zorder=3, label="window fired")
    ax.set_xlabel("decisions")
    ax.set_ylabel("cosine distance")
    ax.legend()
    return _png(fig)


def figures(audit: Audit) -> dict[str, tuple[str, bytes]]:
    """{name: (title, PNG bytes)} for the tables the audit holds."""
    t = audit.tables
    out: dict[str, tuple[str, bytes]] = {}
    if "shares" in t:
        out["shares"] = ("Selection share per LLM, router vs oracle", _shares_plot(t["shares"]))
    if "regret" in t:
        out["regret"] = ("Regret per task", _regret_plot(t["regret"]))
    if "reliability" in t:
        out["reliability"] = ("Reliability of the most chosen LLMs", _reliability_plot(t["reliability"], t["calibration"]))
    if "log_windows" in t:
        out["log_shares"] = ("Shares over time", _log_shares_plot(t["log_shares"], t["log_windows"]))
        out["log_entropy"] = ("Selection entropy and E_p over time", _log_entropy_plot(t["log_windows"]))
    if "drift" in t:
        out["drift"] = ("Drift: live prompts vs the training prompts", _drift_plot(t["drift"]))
    return out


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 7px;
text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}ol li{margin:.3em 0}
img{max-width:100%;border:1px solid #eee}.note{color:#666;font-size:.9em}"""


def _table_html(frame: pd.DataFrame) -> str:
    shown = frame.head(MAX_TABLE_ROWS)
    more = f"<p class='note'>{len(frame) - len(shown)} more rows in the JSON output.</p>" if len(frame) > len(shown) else ""
    return shown.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", escape=True, border=0) + more


def render_html(audit: Audit, title: str = "recroute audit", plots: dict[str, tuple[str, bytes]] | None = None) -> str:
    """The whole report as one HTML page (UTF-8 text, no external resource)."""
    plots = figures(audit) if plots is None else plots
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{e(title)}</h1>"]
    summary = "".join(f"<tr><th>{e(str(k))}</th><td>{e(_cell(v))}</td></tr>" for k, v in audit.summary.items())
    parts.append(f"<h2>Summary</h2><table>{summary}</table>")
    parts.append("<h2>Findings</h2>")
    if audit.findings:
        parts.append("<ol>" + "".join(f"<li>{e(f['text'])}</li>" for f in audit.findings) + "</ol>")
    else:
        parts.append("<p>No finding.</p>")
    for name, (caption, png) in plots.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"<h2>{e(caption)}</h2><img class='plot' id='plot-{e(name)}' alt='{e(caption)}' "
                     f"src='data:image/png;base64,{data}'>")
    for name, table in audit.tables.items():
        parts.append(f"<h2>Table: {e(name)}</h2>{_table_html(table)}")
    parts.append("</body></html>")
    return "\n".join(parts)


def _cell(value) -> str:
    if isinstance(value, float):
        return "-" if not np.isfinite(value) else f"{value:.4g}"
    return "-" if value is None else str(value)


def write_report(audit: Audit, html_path: str | Path | None = None, plots_dir: str | Path | None = None,
                 title: str = "recroute audit") -> dict[str, str]:
    """Write the HTML page and/or one PNG per plot (atomically); returns {what: path}."""
    from recroute.atomic import atomic_file

    plots = figures(audit)
    written: dict[str, str] = {}
    if plots_dir is not None:
        folder = Path(plots_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, (_, png) in plots.items():
            with atomic_file(folder / f"{name}.png") as tmp:
                Path(tmp).write_bytes(png)
            written[name] = str(folder / f"{name}.png")
    if html_path is not None:
        with atomic_file(Path(html_path)) as tmp:
            Path(tmp).write_text(render_html(audit, title, plots), encoding="utf-8")
        written["html"] = str(html_path)
    return written
