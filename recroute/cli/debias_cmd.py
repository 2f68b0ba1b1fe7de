"""``recroute debias``: sweep popularity remedies under RouterEval's protocol; mu_o vs selection entropy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import console, user_errors
from recroute.errors import DataError

DEFAULT_ROUTERS = "knn,bpr,two_tower"
DEFAULT_REMEDIES = "logit_adjust,calibrate,capacity,ipw"


def register(app: typer.Typer) -> None:
    app.command("debias")(debias_command)


def debias_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A bundled name (mmlu_pro) or a dataset folder."),
    routers: str = typer.Option(DEFAULT_ROUTERS, "--routers", "-r", help="Comma-separated router specs, e.g. knn,als,two_tower."),
    remedies: str = typer.Option(
        DEFAULT_REMEDIES, "--remedies",
        help="Comma-separated remedies, each with optional strengths: logit_adjust:0.5,1,capacity,ipw:0.25,0.5.",
    ),
    setting: str = typer.Option("easy", "--setting", "-s", help="easy (m = 3, 5), hard (m = 10, 100, 1000) or all."),
    prior: str = typer.Option("positive_rate", "--prior", help="Logit-adjustment prior: positive_rate | selection_share."),
    calibration: str = typer.Option("isotonic", "--calibration", help="Per-LLM calibration map: isotonic | platt."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Encode the prompts (minilm | minilm-onnx | minilm-int8 | static | tfidf) instead of stored embeddings."),
    seed: int = typer.Option(42, "--seed", help="Seed of RouterEval's split and strong_to_weak draws."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the tidy rows as JSON to this file."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the tidy rows as CSV to this file."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the Pareto figure (mu_o vs selection entropy) here (PNG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write files."),
) -> None:
    """Sweep each remedy's strength (IPW, logit adjustment, calibration, capacity) for routers under
    RouterEval's protocol and report mu_o against the aggregate selection entropy, E_p and long-tail mu_o."""
    from recroute.cli.eval_cmd import split_router_list
    from recroute.data.catalog import load_dataset
    from recroute.debias import study
    from recroute.eval import report

    with user_errors():
        specs = split_router_list(routers)
        grids = study.parse_remedies(remedies)
        options = study.StudyOptions(prior=prior, calibration=calibration).check()
        if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise DataError(f"--plot must name a .png (or .pdf, .svg) file; got {plot}")
        start = time.perf_counter()
        data = load_dataset(dataset)
        df = study.study_dataset(data, specs, grids, setting, encoder=encoder, seed=seed, options=options, quiet=quiet)
        elapsed = time.perf_counter() - start
        if json_path:
            report.write_json(study.records(df), json_path)
        if csv_path:
            report.write_csv(df, csv_path)
        if plot:
            study.plot_pareto(df, plot, title=f"{data.name or dataset}: mu_o vs selection entropy")
    if quiet:
        return
    console.print(_table(df, f"Debiasing study on {data.name or dataset} (group means)"))
    console.print(_goal_table(study.goal_summary(df, select_on="val")))
    console.print(f"[dim]{len(df)} rows in {elapsed:.1f} s[/]")


def _table(df, title: str):
    from rich import box
    from rich.table import Table

    from recroute.cli.common import fmt

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                  caption="s: strength; H_sel: selection entropy / log2 m; tail: long-tail mu_o; cov: coverage",
                  caption_justify="left")
    columns = ("router", "m", "remedy", "strength", "mu_o", "selection_entropy", "e_p", "tail_mu_o", "gini", "coverage")
    headers = ("router", "m", "remedy", "s", "mu_o", "H_sel", "E_p", "tail", "gini", "cov")
    for c, h in zip(columns, headers):
        table.add_column(h, justify="left" if c in ("router", "remedy") else "right")
    rows = df[df["group"] == "mean"]
    previous = None
    for row in rows.itertuples(index=False):
        if previous is not None and (row.router, row.m) != previous:
            table.add_section()
        previous = (row.router, row.m)
        table.add_row(*(fmt(getattr(row, c), 3 if c == "strength" else 4) for c in columns))
    return table


def _goal_table(goal):
    from rich import box
    from rich.table import Table

    from recroute.cli.common import fmt

    table = Table(title="Goal: selection entropy +25 % at a mu_o loss <= 0.005 (strength chosen on the validation part; "
                  "test numbers)", box=box.SIMPLE_HEAD, title_justify="left")
    columns = ("router", "m", "remedy", "best_strength", "entropy_gain", "mu_change", "tail_change", "reached")
    headers = ("router", "m", "remedy", "s", "H_sel gain", "mu_o change", "tail change", "reached")
    for c, h in zip(columns, headers):
        table.add_column(h, justify="left" if c in ("router", "remedy") else "right")
    for row in goal.itertuples(index=False):
        table.add_row(*(fmt(getattr(row, c)) if c != "reached" else ("yes" if row.reached else "no") for c in columns))
    return table
