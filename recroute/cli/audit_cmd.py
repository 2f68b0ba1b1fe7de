"""``recroute explain`` (why each prompt went to its LLM) and ``recroute audit`` (a router audit on a
dataset or a decision log: JSON rows, PNG plots, one self-contained HTML page)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from recroute.cli.common import err_console, output_console, table_from_rows, user_errors, write_json
from recroute.errors import DataError


def register(app: typer.Typer) -> None:
    app.command("explain")(explain_command)
    app.command("audit")(audit_command)


def _names(candidates: Optional[str]) -> Optional[list[str]]:
    if candidates is None:
        return None
    names = [c.strip() for c in candidates.split(",") if c.strip()]
    if not names:
        raise DataError("--candidates names no LLM")
    return names


def bundle_features(bundle, data, quiet: bool = True) -> np.ndarray | None:
    """float32 (n_prompts, d) features of ``data``'s prompts in the bundle's space: the dataset's own
    embeddings when the bundle's encoder made them (or the bundle has none and the size fits), else encoded."""
    from recroute.encoders import embed_dataset

    if not bundle.router.needs_features:
        return None
    if bundle.encoder is None:
        if data.embeddings is None or data.embeddings.shape[1] != bundle.n_features:
            raise DataError(f"the bundle has no encoder and the dataset carries no {bundle.n_features}-d embeddings")
        return data.embeddings
    return embed_dataset(data, bundle.encoder, show_progress=not quiet)


# ---------------------------------------------------------------------- explain
def explain_command(
    bundle_dir: Path = typer.Option(..., "--bundle", "-b", help="A routing bundle folder (from recroute fit)."),
    prompt: Optional[list[str]] = typer.Option(None, "--prompt", "-p", help="A prompt to explain (repeatable); "
                                               "without it, prompts are read from stdin (text lines or JSONL)."),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Precomputed float32 (n, d) .npy features "
                                              "instead of prompts (a bundle without an encoder)."),
    candidates: Optional[str] = typer.Option(None, "--candidates", "-c", help="Comma-separated LLM names to choose among."),
    cost_weight: Optional[float] = typer.Option(None, "--cost-weight", min=0.0, help="Utility routing: score - weight × cost."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0.0, help="Only LLMs expected to cost at most this."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="The dataset the bundle was fitted on: "
                                          "the evidence prompts get their ids and texts."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the explanations as JSON (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
) -> None:
    """Explain routing decisions: each candidate's P(correct) with its uncertainty, cost and utility, the
    margin to the runner-up, the router's evidence (kNN: the nearest training prompts and each LLM's
    outcome on them) and the counterfactuals (the cost weight at which the choice flips, the excluded LLM
    that would have been chosen).

    Example: recroute explain --bundle mmlu-knn --prompt "What is the derivative of x^2?" --json -
    """
    from recroute.cli.common import open_dataset
    from recroute.cli.serve_cmd import load_embeddings, read_prompts
    from recroute.serve.bundle import RoutingBundle

    with user_errors():
        if prompt and embeddings is not None:
            raise DataError("give --prompt or --embeddings, not both")
        bundle = RoutingBundle.load(bundle_dir)
        names = _names(candidates)
        bundle.check_choice(1, names)
        X = None if embeddings is None else np.asarray(load_embeddings(embeddings, bundle.n_features), dtype=np.float32)
        texts = [None] * len(X) if X is not None else (list(prompt) if prompt else [r["prompt"] for r in read_prompts("-")])
        training = open_dataset(dataset) if dataset else None
        if training is not None:
            missing = [n for n in bundle.llm_names if n not in {str(x) for x in training.llm_names}]
            if missing:
                raise DataError(f"--dataset {dataset} lacks the bundle's LLM(s) {missing[:5]}")
            training = training.subset(llms=bundle.llm_names)
        if X is not None:
            explanations = bundle.explain_embeddings(X, names, cost_weight=cost_weight, max_cost=max_cost,
                                                     training=training)
        else:
            explanations = bundle.explain(texts, names, cost_weight=cost_weight, max_cost=max_cost, training=training)
        rows = [{"index": i, "prompt": t, **e} for i, (t, e) in enumerate(zip(texts, explanations))]
        if json_path:
            write_json(json_path, rows)
    if quiet:
        return
    console = output_console(json_path)
    for row in rows:
        flip = row["counterfactuals"]["flip_up"]
        err = f", flips to {flip['llm']} above cost_weight {flip['cost_weight']:.4g}" if flip else ""
        margin = "-" if row["margin"] is None else f"{row['margin']:.3f}"
        console.print(f"[bold]{row['index']}[/]: {row['llm']} (runner-up {row['runner_up']}, margin {margin}{err})",
                      highlight=False)
        shown = [{"llm": c["llm"], "score": c["score"], "low": c["low"], "high": c["high"], "cost": c["cost"],
                  "utility": c["utility"]} for c in row["candidates"][:5]]
        console.print(table_from_rows("top candidates", shown, ["llm", "score", "low", "high", "cost", "utility"]))


# ---------------------------------------------------------------------- audit
def audit_command(
    bundle_dir: Path = typer.Option(..., "--bundle", "-b", help="A routing bundle folder (from recroute fit)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Prompts with full results to audit on; "
                                          "with --logs: the bundle's training prompts (the drift reference)."),
    logs: Optional[Path] = typer.Option(None, "--logs", help="A decision log (JSONL or Parquet) to audit."),
    cross_fit: int = typer.Option(5, "--cross-fit", min=0, help="Dataset audit: score each prompt with the router "
                                  "refitted on the other K folds (the bundle was fitted on it); 0 = the bundle as is."),
    candidates: Optional[str] = typer.Option(None, "--candidates", "-c", help="Comma-separated LLM names to choose among."),
    window: int = typer.Option(500, "--window", min=1, help="Log audit: decisions per window (shares, E_p, collapse)."),
    drift_window: int = typer.Option(100, "--drift-window", min=2, help="Log audit: prompts per drift test window."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the audit as tidy JSON rows (- = stdout)."),
    html_path: Optional[Path] = typer.Option(None, "--html", help="Write one self-contained HTML report here."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write one PNG per plot into this folder."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cross-fitting folds and the drift reference split."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No findings on the console."),
) -> None:
    """Audit a router: selection shares beside the oracle's, regret per task against the oracle and the best
    single LLM (and where the router loses), calibration, decision-log health over time, drift of live
    prompts from the training prompts, and a ranked list of findings in plain words.

    Example: recroute audit --bundle mmlu-knn --dataset mmlu_pro --html audit.html
    """
    from recroute.audit.audit import audit_dataset
    from recroute.audit.report import write_report
    from recroute.cli.common import open_dataset
    from recroute.serve.bundle import RoutingBundle

    with user_errors():
        if dataset is None and logs is None:
            raise DataError("give --dataset (prompts with results) and/or --logs (a decision log)")
        start = time.perf_counter()
        bundle = RoutingBundle.load(bundle_dir)
        names = _names(candidates)
        data = open_dataset(dataset) if dataset else None
        if logs is not None:
            audit = _audit_logs(bundle, logs, data, window, drift_window, seed, quiet)
        else:
            X = bundle_features(bundle, data, quiet)
            audit = audit_dataset(bundle.router, data, X, candidates=names, cross_fit=cross_fit, random_state=seed)
        audit.summary["seconds"] = round(time.perf_counter() - start, 3)
        written = write_report(audit, html_path, plots, title=f"recroute audit: {bundle.router.name} ({bundle_dir.name})")
        if json_path:
            write_json(json_path, audit.rows())
    if quiet:
        return
    console = output_console(json_path)
    console.print(f"[bold]audit of {bundle.router.name}[/] ({audit.kind}, {audit.summary['seconds']:.1f} s): "
                  f"top findings", highlight=False)
    for i, finding in enumerate(audit.findings[:10], 1):
        console.print(f"{i:>2}. {finding['text']}", highlight=False, soft_wrap=True)
    for what, path in written.items():
        console.print(f"wrote {what}: {path}", highlight=False)


def _audit_logs(bundle, logs: Path, data, window: int, drift_window: int, seed: int, quiet: bool):
    """The decision-log audit, with the router's E_p and drift when the logged prompts can be featurised."""
    from recroute.audit.audit import audit_logs
    from recroute.audit.drift import fit_reference
    from recroute.feedback.logs import read_decision_log

    log = read_decision_log(logs)
    X_log = _log_features(bundle, log, data, quiet)
    reference = X_ref = None
    if data is not None and X_log is not None:
        X_ref = bundle_features(bundle, data, quiet)
        reference = fit_reference(X_ref, random_state=seed)
    elif not quiet:
        err_console.print("[yellow]note:[/] no drift check: give --dataset (the bundle's training prompts) and a log "
                          "whose prompts have ids in it or texts", highlight=False)
    router = bundle.router if X_log is not None or not bundle.router.needs_features else None
    return audit_logs(log, router=router, X_log=X_log, reference=reference, X_reference=X_ref, window=window,
                      drift_window=drift_window)


def _log_features(bundle, log, data, quiet: bool) -> np.ndarray | None:
    """float32 (n_decisions, d) features of the logged prompts: looked up by prompt_id in ``data`` when
    every id is there, else the bundle's encoder on prompt_text; None when neither is possible."""
    if not bundle.router.needs_features:
        return None
    ids = log["prompt_id"]
    if data is not None and ids.notna().all():
        known = {str(p): i for i, p in enumerate(data.prompt_ids)}
        if all(str(p) in known for p in ids):
            X = bundle_features(bundle, data, quiet)
            return np.asarray(X)[[known[str(p)] for p in ids]]
    texts = log["prompt_text"]
    if bundle.encoder is not None and texts.notna().all():
        return bundle.encode([str(t) for t in texts])
    return None
