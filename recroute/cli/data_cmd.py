"""``recroute data info`` and ``recroute data convert``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import open_dataset, output_console, table_from_rows, user_errors, write_json

data_app = typer.Typer(help="Inspect and convert evaluation-result datasets.\n\nExample: recroute data info mmlu_pro",
                       no_args_is_help=True)

FORMATS = ("folder", "parquet", "csv", "wide-parquet", "wide-csv", "routereval")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def dataset_info(data) -> dict:
    """Everything `data info` reports, as plain JSON-able data."""
    from recroute.data.costs import cost_table

    summary = data.summary()
    llm_stats = data.llm_stats().sort_values("accuracy", ascending=False)
    costs = cost_table(data)
    return {
        "name": summary.name,
        "n_prompts": summary.n_prompts,
        "n_llms": summary.n_llms,
        "n_observed": summary.n_observed,
        "density": summary.density,
        "score_type": summary.score_type,
        "has_text": summary.has_text,
        "has_embeddings": summary.has_embeddings,
        "embedding_name": data.embedding_name,
        "oracle": summary.oracle,
        "best_llm": summary.best_llm,
        "best_accuracy": summary.best_accuracy,
        "benchmarks": data.benchmark_stats().to_dict(orient="records"),
        "tasks": data.benchmark_stats("task").to_dict(orient="records"),
        "llms": llm_stats.to_dict(orient="records"),
        "costs": None if costs is None else costs.to_dict(orient="records"),
    }


@data_app.command("info")
def info(
    dataset: str = typer.Argument(
        ..., help="A bundled name (mmlu_pro), a dataset folder, a long or wide .parquet/.csv file or a RouterEval .pkl."
    ),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Also write the report as JSON to this file (- = stdout)."),
    top: int = typer.Option(15, help="How many LLMs to list in the table (all go to --json)."),
    source_format: str = typer.Option(
        "auto", "--from", help="Input format: auto, folder, long, wide, routereval (auto guesses from the path)."
    ),
    prompts: Optional[Path] = typer.Option(None, help="Prompt table for a long input file."),
    llms: Optional[Path] = typer.Option(None, help="LLM table for a long input file."),
    duplicates: str = typer.Option("error", help="Repeated (prompt, LLM) pairs: error, mean, max, min, first, last."),
    rescale: bool = typer.Option(False, help="Min-max scores outside [0, 1] into [0, 1] instead of refusing them."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write --json."),
) -> None:
    """Shape, density, score type, per-benchmark and per-LLM accuracy, oracle and best single LLM.

    Reads the same inputs as `recroute data convert`.

    Example: recroute data info mmlu_pro --top 5
    """
    with user_errors():
        data = open_dataset(dataset, source_format, prompts, llms, duplicates, rescale)
        report = dataset_info(data)
        if json_path:
            write_json(json_path, report)
    if quiet:
        return
    console = output_console(json_path)
    console.print(
        f"[bold]{report['name']}[/]: {report['n_prompts']:,} prompts × {report['n_llms']:,} LLMs, "
        f"{report['n_observed']:,} observed cells (density {report['density']:.4f}), {report['score_type']} scores, "
        f"text: {'yes' if report['has_text'] else 'no'}, embeddings: {report['embedding_name'] or 'none'}"
    )
    console.print(
        f"oracle (best observed score per prompt): [bold]{report['oracle']:.4f}[/]   "
        f"best single LLM: [bold]{report['best_llm']}[/] {report['best_accuracy']:.4f}"
    )
    console.print(
        table_from_rows(
            "per benchmark",
            report["benchmarks"],
            ["benchmark", "n_prompts", "n_observed", "oracle", "best_llm", "best_accuracy"],
        )
    )
    if 1 < len(report["tasks"]) <= 60:
        console.print(
            table_from_rows(
                "per task", report["tasks"], ["task", "n_prompts", "oracle", "best_llm", "best_accuracy"]
            )
        )
    shown = report["llms"][:top]
    title = f"per LLM (top {len(shown)} of {report['n_llms']} by accuracy over observed cells)"
    console.print(table_from_rows(title, shown, ["llm", "accuracy", "n_observed", "coverage"]))
    if report["costs"]:
        columns = [c for c in report["costs"][0] if any(row[c] is not None for row in report["costs"])]
        console.print(table_from_rows("costs per LLM (prices; observed per-cell costs)", report["costs"][:top], columns, 6))


@data_app.command("convert")
def convert(
    source: str = typer.Argument(
        ..., help="Input: bundled name, dataset folder, long or wide .parquet/.csv, or RouterEval .pkl."
    ),
    out: Path = typer.Argument(..., help="Output path (a folder for 'folder', a file otherwise)."),
    to: str = typer.Option("folder", "--to", help=f"Output format: {', '.join(FORMATS)}."),
    source_format: str = typer.Option(
        "auto", "--from", help="Input format: auto, folder, long, wide, routereval (auto guesses from the path)."
    ),
    prompts: Optional[Path] = typer.Option(None, help="Prompt table for a long input file."),
    llms: Optional[Path] = typer.Option(None, help="LLM table for a long input file."),
    duplicates: str = typer.Option("error", help="Repeated (prompt, LLM) pairs: error, mean, max, min, first, last."),
    rescale: bool = typer.Option(False, help="Min-max scores outside [0, 1] into [0, 1] instead of refusing them."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Convert between long Parquet/CSV, wide matrices, dataset folders and RouterEval pickles.

    Example: recroute data convert mmlu_pro mmlu_pro.parquet --to parquet
    """
    with user_errors():
        data = open_dataset(source, source_format, prompts, llms, duplicates, rescale)
        written = write_dataset(data, out, to)
    if not quiet:
        output_console().print(f"wrote {data!r} as {to} to {written}")


def write_dataset(data, out: Path, to: str) -> Path:
    """Write ``data`` in the format ``to`` (see FORMATS); files are written atomically."""
    from recroute.data.io import write_frame
    from recroute.data.routereval import save_router_dataset
    from recroute.errors import DataError

    if to == "folder":
        return data.save(out)
    if to in ("parquet", "csv"):
        return write_frame(data.to_long(), out, to)
    if to in ("wide-parquet", "wide-csv"):
        return write_frame(data.to_wide().reset_index(), out, to.split("-")[1])
    if to == "routereval":
        return save_router_dataset(data.to_routereval(), out)
    raise DataError(f"unknown output format {to!r}; expected one of {', '.join(FORMATS)}")
