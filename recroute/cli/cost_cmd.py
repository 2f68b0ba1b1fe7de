"""``recroute tradeoff``: quality–cost curves of routers beside single LLMs, the zero router and the oracle."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import console, user_errors, write_json
from recroute.errors import DataError


def register(app: typer.Typer) -> None:
    app.command("tradeoff")(tradeoff_command)


def tradeoff_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A bundled name or a dataset folder with prices or per-cell costs."),
    routers: str = typer.Option("knn", "--routers", "-r", help="Comma-separated router specs, e.g. knn,linear,two_tower."),
    pool: Optional[str] = typer.Option(None, "--pool", help="Comma-separated LLM names to route among (default: all)."),
    pricing: str = typer.Option("tokens", "--pricing", help="tokens (cell costs, else price × tokens) | price_index (in + out $/Mtok)."),
    split: str = typer.Option("auto", "--split", help="auto (the split column, else RouterEval's) | column | routereval."),
    calibration: str = typer.Option("auto", "--calibration", help="Per-LLM calibration first: auto (non-probability scores) | none | isotonic | platt."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="minilm | minilm-onnx | minilm-int8 | static | tfidf (default: the dataset's embeddings, else minilm-onnx)."),
    at_cost: Optional[float] = typer.Option(None, "--at-cost", help="Also report the quality reached at this mean cost per prompt."),
    target_cost: Optional[str] = typer.Option(None, "--target-cost", help="Comma-separated mean costs to calibrate lambda for (held-out training prompts)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the tidy rows (points, then summaries) as JSON (- = stdout)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the quality–cost figure here (PNG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write files."),
) -> None:
    """Sweep the cost weight lambda of utility routing (score - lambda · cost) for each router and report
    AIQ, the cost to reach the best single LLM, and for two-LLM pools APGR / CPT.

    Example: recroute tradeoff --dataset path/to/llmrouter_nim --routers knn,linear --pricing price_index --json t.json --plot t.png
    """
    from recroute.cli.eval_cmd import split_router_list
    from recroute.cost.tradeoff import plot_tradeoff, run_tradeoff
    from recroute.data.catalog import load_dataset

    with user_errors():
        specs = split_router_list(routers)
        names = [p.strip() for p in pool.split(",") if p.strip()] if pool else None
        targets = []
        if target_cost:
            try:
                targets = [float(t) for t in target_cost.split(",") if t.strip()]
            except ValueError:
                raise DataError(f"--target-cost must be comma-separated numbers; got {target_cost!r}") from None
        if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise DataError(f"--plot must name a .png (or .pdf, .svg) file; got {plot}")
        start = time.perf_counter()
        data = load_dataset(dataset)
        result = run_tradeoff(data, specs, pool=names, encoder=encoder, pricing=pricing, split=split,
                              calibration=calibration, at_cost=at_cost, target_costs=targets, quiet=quiet)
        elapsed = time.perf_counter() - start
        if json_path:
            _write_rows(json_path, result.rows())
        if plot:
            plot_tradeoff(result, plot, title=f"{data.name or dataset}: quality vs cost ({pricing})")
    if quiet:
        return
    console.print(_table(result, f"Quality–cost trade-off on {data.name or dataset} ({result.meta['n_test']} test prompts)"))
    console.print(f"[dim]{elapsed:.1f} s[/]")


def _write_rows(path: str, rows: list[dict]) -> None:
    """JSON rows to a file (atomic) or, for "-", to standard output."""
    if path != "-":
        write_json(path, rows)
        return
    import json
    import sys

    from recroute.cli.common import _clean

    sys.stdout.write(json.dumps(_clean(rows), indent=2) + "\n")


SHORT = {"aiq_ratio": "aiq/zero", "max_quality": "max_q", "cost_to_best_fraction": "cost@best",
         "realised_cost_to_best_fraction": "realised", "quality_at_cost": "q@cost"}


def _table(result, title: str):
    from recroute.cli.common import table_from_rows

    columns = ["router", "aiq", "zero_aiq", "aiq_ratio", "max_quality", "cost_to_best_fraction",
               "realised_cost_to_best_fraction"]
    rows = result.summary
    if any("quality_at_cost" in r for r in rows):
        columns.append("quality_at_cost")
    if any("apgr" in r for r in rows):
        columns += ["apgr", "cpt50", "cpt80"]
    short = [{SHORT.get(k, k): v for k, v in r.items()} for r in rows]
    table = table_from_rows(title, short, [SHORT.get(c, c) for c in columns], digits=3)
    table.caption = ("aiq/zero: AIQ over the zero router's; cost@best: cost to reach the best single LLM's quality "
                     "on the hull, as a share of its cost; realised: the same on realised points")
    table.caption_justify = "left"
    return table
