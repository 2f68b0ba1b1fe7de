"""``recroute new-tasks``: routers on prompts of a task never seen in training (leave-one-task-out)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from recroute.cli.common import console, user_errors
from recroute.errors import DataError

DEFAULT_ROUTERS = "best_single,knn,cluster,two_tower"


def register(app: typer.Typer) -> None:
    app.command("new-tasks")(new_tasks_command)


def new_tasks_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A bundled name (mmlu_pro) or a dataset folder."),
    routers: str = typer.Option(DEFAULT_ROUTERS, "--routers", "-r", help="Comma-separated router specs, e.g. knn,cluster."),
    m: str = typer.Option("5", "--m", help="Candidate pool size(s), comma-separated (RouterEval's 3, 5, 10, 100, 1000)."),
    tasks: str | None = typer.Option(None, "--tasks", help="Hold out only these tasks (comma-separated; default all)."),
    encoder: str | None = typer.Option(None, "--encoder", "-e", help="Encode the prompts (minilm | minilm-onnx | minilm-int8 | static | tfidf) instead of stored embeddings."),
    seed: int = typer.Option(42, "--seed", help="Seed of RouterEval's split and strong_to_weak draws."),
    per_task: bool = typer.Option(False, "--per-task", help="Also show every held-out task, not only the pooled row."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the tidy rows as JSON to this file."),
    csv_path: Path | None = typer.Option(None, "--csv", help="Write the tidy rows as CSV to this file."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write --json/--csv."),
) -> None:
    """Compare each router fitted on every task (in-distribution) with the router fitted without the
    task of the test prompts (leave-one-task-out), on the same RouterEval test prompts."""
    from recroute.cli.eval_cmd import split_router_list
    from recroute.coldstart.new_tasks import compare, leave_one_task_out
    from recroute.data.catalog import load_dataset
    from recroute.eval import report

    with user_errors():
        specs = split_router_list(routers)
        ms = _int_list(m)
        held = [t.strip() for t in tasks.split(",") if t.strip()] if tasks is not None else None
        start = time.perf_counter()
        data = load_dataset(dataset)
        df = leave_one_task_out(data, specs, ms, encoder=encoder, seed=seed, tasks=held, quiet=quiet)
        elapsed = time.perf_counter() - start
        if json_path:
            report.write_json(report.records(df), json_path)
        if csv_path:
            report.write_csv(df, csv_path)
    if quiet:
        return
    summary = compare(df)
    name = data.name or dataset
    console.print(_table(summary[summary["task"] == "all"], f"New tasks on {name}: in-distribution vs "
                         "leave-one-task-out (group means, all held-out tasks pooled)", per_task=False))
    if per_task:
        console.print(_table(summary[summary["task"] != "all"], f"New tasks on {name}: per held-out task", per_task=True))
    console.print(f"[dim]{len(df)} rows in {elapsed:.1f} s[/]")


def _int_list(text: str) -> list[int]:
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise DataError(f"--m must be comma-separated integers; got {text!r}") from None
    if not values:
        raise DataError("--m: give at least one pool size")
    return values


def _table(summary, title: str, per_task: bool):
    """A rich Table of compare() rows: in-dist and LOTO mu_o (and V_B on the pooled table), differences."""
    from rich import box
    from rich.table import Table

    from recroute.cli.common import fmt

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                  caption="mu_o, V_B: in-distribution; LOTO: leave-one-task-out; Δ = LOTO − in-distribution "
                  "(negative: worse on an unseen task)",
                  caption_justify="left")
    metrics = ("mu_o",) if per_task else ("mu_o", "v_b")
    columns = ["router", "m", *(["task"] if per_task else []), "n_test"]
    headers = ["router", "m", *(["task"] if per_task else []), "n"]
    for metric in metrics:
        label = "mu_o" if metric == "mu_o" else "V_B"
        columns += [f"{metric}_in_dist", f"{metric}_loto", f"{metric}_delta"]
        headers += [label, "LOTO", "Δ"]
    for c, h in zip(columns, headers):
        table.add_column(h, justify="left" if c in ("router", "task") else "right", no_wrap=True)
    previous = None
    for row in summary.itertuples(index=False):
        if per_task and previous is not None and (row.router, row.m) != previous:
            table.add_section()
        previous = (row.router, row.m)
        table.add_row(*(fmt(getattr(row, c), 3) for c in columns))
    return table
