"""``recroute coldstart``: hold LLMs out, onboard each from k probes per strategy, measure the placement."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import check_outputs, output_console, user_errors, write_csv, write_json
from recroute.errors import DataError

# The best recipe measured on the four Open LLM Leaderboard v1 sets (benchmarks/results/coldstart.md):
# adaptive probing under the mixture of the existing LLMs, estimated by that mixture.
DEFAULT_ROUTERS = ""
DEFAULT_ESTIMATORS = "llm_mixture"
DEFAULT_STRATEGIES = "adaptive"
DEFAULT_KS = "0,5,10,20,30,50"


def register(app: typer.Typer) -> None:
    app.command("coldstart")(coldstart_command)


def coldstart_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A bundled name (mmlu_pro) or a dataset folder."),
    routers: str = typer.Option(DEFAULT_ROUTERS, "--routers", "-r", help="Comma-separated router specs that place new LLMs (knn, knn:k=1, als, lightfm, two_tower, text_mf, irt); default none."),
    estimators: str = typer.Option(DEFAULT_ESTIMATORS, "--estimators", "-e", help="Comma-separated router-free estimators: llm_mixture, irt, gp_irt (specs like llm_mixture:eps=0.1); '' for none."),
    strategies: str = typer.Option(
        DEFAULT_STRATEGIES, "--strategies", "-s",
        help="Comma-separated probe strategies: random, stratified, anchor_embedding, anchor_correctness, informative, adaptive, adaptive_irt.",
    ),
    k: str = typer.Option(DEFAULT_KS, "--k", help="Comma-separated probe counts (values above the train prompts are skipped)."),
    holdout: str = typer.Option("0.2", "--holdout", help="Share of LLMs held out per fold (0.2 = 5 folds), or 'loo'."),
    max_folds: str = typer.Option("auto", "--max-folds", help="Run only the first folds: a number, 'all', or 'auto' (one fold from 1,000 LLMs, else all)."),
    test_size: float = typer.Option(0.2, "--test-size", help="Share of prompts kept out of training, for mu_o."),
    pool_size: int = typer.Option(5, "--pool-size", help="LLMs in each routing pool (the new one + the closest base LLMs)."),
    features: str = typer.Option("auto", "--features", help="Prompt features: auto | text | responses."),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", "-e",
        help="Encode the prompts (minilm | minilm-onnx | minilm-int8 | static | tfidf) instead of stored embeddings.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the splits and the random probe draws."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the tidy rows (router, strategy, k, mae, auc, log_loss, mu_o_ratio, ...) as JSON (- = stdout)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the tidy rows as CSV (- = stdout)."),
    per_llm_csv: Optional[Path] = typer.Option(None, "--per-llm-csv", help="Write one row per held-out LLM, router, strategy and k (- = stdout)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the MAE-vs-k curves here (PNG)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write files."),
) -> None:
    """New-LLM cold start: each held-out LLM is estimated from k probe results by router-free estimators
    and placed into routers trained without it; reports the error of its estimated mean result (MAE),
    per-prompt AUC and log-loss, and (routers) mu_o against a router that saw it fully. plain_mean (k
    random probes) is always included.

    With no options it runs the best recipe measured on the four Open LLM Leaderboard v1 sets: adaptive
    probing under the mixture of the existing LLMs, estimated by that mixture (llm_mixture), one fold of
    20 % held-out LLMs on sets of 1,000 LLMs or more.

    Example: recroute coldstart --dataset mmlu_pro --k 5,10,20,30,50 --json coldstart.json
    """
    from recroute.cli.eval_cmd import split_router_list
    from recroute.coldstart import experiment
    from recroute.data.catalog import load_dataset

    with user_errors():
        check_outputs(json=json_path, csv=csv_path, per_llm_csv=per_llm_csv)
        specs = split_router_list(routers)
        estimator_list = split_router_list(estimators)
        folds = _max_folds(max_folds)
        strategy_list = [s.strip() for s in strategies.split(",") if s.strip()]
        ks = _parse_ks(k)
        if plot is not None and plot.suffix.lower() not in (".png", ".pdf", ".svg"):
            raise DataError(f"--plot must name a .png (or .pdf, .svg) file; got {plot}")
        if not 0 < test_size < 1:
            raise DataError(f"--test-size must be in (0, 1); got {test_size}")
        start = time.perf_counter()
        data = load_dataset(dataset)
        X = None
        if encoder is not None and features != "responses":
            from recroute.eval.protocol import dataset_embeddings

            X = dataset_embeddings(data, None, encoder)
        result = experiment.run_coldstart(
            data, specs, strategy_list, ks, X=X, estimators=estimator_list,
            holdout=holdout if holdout == "loo" else _fraction(holdout), max_folds=folds, test_size=test_size,
            pool_size=pool_size, features=features, seed=seed, quiet=quiet,
        )
        elapsed = time.perf_counter() - start
        if json_path:
            write_json(json_path, result.records())
        if csv_path:
            write_csv(csv_path, result.rows)
        if per_llm_csv:
            write_csv(per_llm_csv, result.per_llm)
        if plot:
            experiment.plot_coldstart(result.rows, plot, title=f"{data.name or dataset}: new-LLM cold start")
    if quiet:
        return
    console = output_console(json_path, csv_path, per_llm_csv)
    console.print(_table(result.rows, f"New-LLM cold start on {data.name or dataset}"))
    console.print(f"[dim]{len(result.rows)} rows, {int(result.rows['n_llms'].max())} held-out LLMs, "
                  f"{int(result.rows['folds'].max())} fold(s), {elapsed:.1f} s[/]")


def _parse_ks(text: str) -> list[int]:
    try:
        ks = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DataError(f"--k must be comma-separated non-negative integers; got {text!r}") from None
    if not ks or min(ks) < 0:
        raise DataError(f"--k must be comma-separated non-negative integers; got {text!r}")
    return ks


def _max_folds(text: str) -> int | str | None:
    text = text.strip().lower()
    if text in ("auto", "all"):
        return "auto" if text == "auto" else None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise DataError(f"--max-folds must be a positive number, 'all' or 'auto'; got {text!r}")
    return value


def _fraction(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise DataError(f"--holdout must be a fraction in (0, 0.5] or 'loo'; got {text!r}") from None


def _table(rows, title: str):
    from rich import box
    from rich.table import Table

    from recroute.cli.common import fmt

    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left",
                  caption="mae: |estimated - true| mean result; auc, log_loss: unprobed prompts; "
                          "mu_o_ratio: vs a router that saw the LLM fully", caption_justify="left")
    for column in ("router", "strategy", "k", "mae", "auc", "log_loss", "mu_o_ratio"):
        table.add_column(column, justify="left" if column in ("router", "strategy") else "right")
    for row in rows.sort_values(["router", "strategy", "k"], kind="stable").to_dict("records"):
        table.add_row(str(row["router"]), str(row["strategy"]), str(row["k"]),
                      *(fmt(row[c]) for c in ("mae", "auc", "log_loss", "mu_o_ratio")))
    return table
