"""``recroute eval`` (RouterEval's protocol) and ``recroute scaling`` (RouterEval's Fig. 2)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import check_outputs, output_console, user_errors, write_csv, write_json
from recroute.errors import DataError

# RouterEval's baselines, with RouterEval's settings (the previous default: `--routers baselines`)
BASELINE_ROUTERS = "random,best_single,oracle,r_o:p=0.5,knn,linear,mlp,cluster,mlc"
# the main job: the baselines beside recroute's own routers. MLPR with 30 epochs instead of RouterEval's
# 100 keeps the whole run near 2.5 CPU-minutes on 2 cores (MLPR alone: 115 CPU-s at 100 epochs, 34 at 30,
# with as high a V_B on MMLU-Pro; benchmarks/results/main_job*.json); --routers baselines keeps 100.
MAIN_ROUTERS = ("random,best_single,oracle,r_o:p=0.5,knn,linear,mlp:epochs=30,cluster,mlc,"
                "als,two_tower,ensemble:members=two_tower")
PRESETS = {"main": MAIN_ROUTERS, "baselines": BASELINE_ROUTERS}
DEFAULT_ROUTERS = "main"
ALWAYS = ("random", "oracle")


def register(app: typer.Typer) -> None:
    app.command("eval")(eval_command)
    app.command("scaling")(scaling_command)


def split_router_list(text: str) -> list[str]:
    """``"random,r_o:p=0.5,seed=1,knn"`` -> ["random", "r_o:p=0.5,seed=1", "knn"].

    A comma-separated piece holding ``=`` but no ``:`` continues the previous router's parameters.
    A piece naming a preset (``main``, ``baselines``; see PRESETS) stands for its router list.
    """
    specs: list[str] = []
    for piece in (p.strip() for p in text.split(",")):
        if not piece:
            continue
        if piece in PRESETS:
            specs += split_router_list(PRESETS[piece])
            continue
        if "=" in piece and ":" not in piece and specs and ":" in specs[-1]:
            specs[-1] += "," + piece
        else:
            specs.append(piece)
    return specs


def with_references(specs: list[str]) -> list[str]:
    """The specs with random and oracle put first when absent (every table shows both bounds)."""
    from recroute.routers.registry import parse_router_spec

    names = {parse_router_spec(s)[0] for s in specs}
    return [r for r in ALWAYS if r not in names] + specs


def eval_command(
    dataset: Optional[str] = typer.Option(
        None, "--dataset", "-d", help="A bundled name (mmlu_pro), a dataset folder, or a RouterEval .pkl."
    ),
    routereval: Optional[Path] = typer.Option(
        None, "--routereval", help="A downloaded RouterEval router_dataset pickle (read safely)."
    ),
    benchmark: Optional[str] = typer.Option(
        None, "--benchmark", help="Benchmark name for V_R's reference score (mmlu_pro, gsm8k, ...)."
    ),
    routers: str = typer.Option(
        DEFAULT_ROUTERS, "--routers", "-r",
        help="Comma-separated specs, e.g. knn,r_o:p=0.5; presets: main (RouterEval's baselines beside recroute's "
             "routers) and baselines (RouterEval's baselines with their official settings).",
    ),
    setting: str = typer.Option("all", "--setting", "-s", help="easy (m = 3, 5), hard (m = 10, 100, 1000) or all."),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", "-e", help="Re-encode the prompts (minilm | minilm-onnx | minilm-int8 | static | tfidf | lexical, or parts joined by +, e.g. minilm-onnx+lexical) instead of stored embeddings; tfidf/lexical are fitted on the training prompts."
    ),
    monte_carlo: int = typer.Option(
        0, "--monte-carlo", help="Estimate oracle/r_o/random by RouterEval's Monte Carlo with this many runs (0: exact)."
    ),
    long: bool = typer.Option(False, "--long", help="Show mu_o, V_R, V_B, E_p and AUC per router and m."),
    groups: bool = typer.Option(False, "--groups", help="Show every candidate group, not only the group means."),
    seed: int = typer.Option(42, "--seed", help="Seed of RouterEval's split and strong_to_weak draws."),
    backend: str = typer.Option(
        "serial", "--backend", help="Where the router × group grid runs: serial | process (local spawn pool) | ray."
    ),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="Threads for torch, FAISS and BLAS in this process (default: every core); "
                                       "the rows are the same for any number."
    ),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the tidy rows as JSON to this file (- = stdout)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the tidy rows as CSV to this file (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write --json/--csv."),
) -> None:
    """Evaluate routers exactly as RouterEval does: mu_o, V_R, V_B, E_p per candidate group and m.

    By default (--routers main) RouterEval's baselines run beside recroute's own routers (ALS, the
    two-tower router and its bagged ensemble), with the oracle and the best single LLM as bounds; a short
    summary follows the table. --routers baselines runs RouterEval's baselines with their official settings.

    Example: recroute eval --dataset mmlu_pro --routers knn,als,two_tower --setting easy
    """
    from recroute.eval import report

    with user_errors():
        check_outputs(json=json_path, csv=csv_path)
        specs = with_references(split_router_list(routers))
        if (dataset is None) == (routereval is None):
            raise DataError("give exactly one of --dataset NAME|PATH and --routereval FILE.pkl")
        if monte_carlo < 0:
            raise DataError(f"--monte-carlo must be 0 (exact) or a positive number of runs; got {monte_carlo}")
        from recroute.eval.backends import check_backend

        check_backend(backend)
        start = time.perf_counter()
        with eval_threads(threads):
            df, label = _run_eval(dataset, routereval, benchmark, specs, setting, encoder, monte_carlo or None, seed,
                                  quiet, backend)
        elapsed = time.perf_counter() - start
        if json_path:
            write_json(json_path, report.eval_records(df))
        if csv_path:
            write_csv(csv_path, df[list(report.ROW_KEYS)])
    if quiet:
        return
    out = output_console(json_path, csv_path)
    if long or groups:
        out.print(report.eval_table(df, groups=groups, title=f"RouterEval protocol on {label}"))
    else:
        out.print(story_table(df, f"RouterEval protocol on {label}: group means over all_strong, all_weak, "
                                  "strong_to_weak"))
    for line in summary_lines(df):
        out.print(line, highlight=False)
    if "main" in (p.strip() for p in routers.split(",")):
        out.print("[dim]note: the main run trains MLPR for 30 epochs (RouterEval: 100) to stay within about "
                  "5 minutes on 2 cores; --routers baselines runs RouterEval's baselines with their official "
                  "settings.[/]")
    missing = sorted(set(_requested_settings(setting)) - set(df["setting"]))
    if missing:
        out.print(f"[yellow]note:[/] no candidate pool large enough for setting(s) {', '.join(missing)}")
    out.print(f"[dim]{len(df)} rows in {elapsed:.1f} s[/]")


def story_table(df, title: str):
    """A rich Table, one row per router: its kind, V_B and E_p per m (group means) and the seconds spent."""
    from rich import box
    from rich.table import Table

    from recroute.cli.common import fmt
    from recroute.eval.summary import wide_table

    wide = wide_table(df)
    ms = [int(c.split("_m")[1]) for c in wide.columns if c.startswith("v_b_m")]
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False,
                  caption="V_B: mu_o / best single LLM on the test split (higher is better); E_p: mean entropy of "
                          "the per-prompt selection (bits); s: fit + routing seconds over all groups",
                  caption_justify="left")
    table.add_column("router", overflow="fold", min_width=10)
    table.add_column("kind", no_wrap=True)
    for metric in ("V_B", "E_p"):
        for m in ms:
            table.add_column(f"{metric}\nm={m}", justify="right", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)
    previous = None
    for row in wide.to_dict("records"):
        if previous is not None and row["kind"] != previous:
            table.add_section()
        previous = row["kind"]
        table.add_row(row["router"], row["kind"], *(fmt(row[f"v_b_m{m}"], 3) for m in ms),
                      *(fmt(row[f"e_p_m{m}"], 2) for m in ms), fmt(row["seconds"], 0))
    return table


def summary_lines(df) -> list[str]:
    """A few sentences: per m, the best recroute router's V_B and E_p against the best RouterEval baseline's."""
    from recroute.eval.summary import headline

    lines = []
    for row in headline(df).to_dict("records"):
        sides = [f"{row[k]} ({label}) V_B {row[f'{p}_v_b']:.3f}, E_p {row[f'{p}_e_p']:.2f}"
                 for k, p, label in (("router", "router", "recroute"), ("baseline", "baseline", "RouterEval baseline"))
                 if row[k] is not None]
        if not sides:
            continue
        text = f"m={row['m']}: " + " vs ".join(sides)
        if len(sides) == 2:
            text += f": {row['delta_v_b']:+.3f} V_B"
        if row["headroom"] > 0:
            text += f", {row['headroom']:.0%} of the way from the best single LLM to the oracle"
        lines.append(text + f" (oracle {row['oracle_v_b']:.3f}).")
    if lines:
        lines.insert(0, "[bold]Summary[/] (best by V_B at each m; V_B 1.000 = always choosing the best LLM of the pool on the test split):")
    return lines


def _requested_settings(setting: str) -> tuple[str, ...]:
    from recroute.eval.protocol import check_settings

    return check_settings(setting)


@contextmanager
def eval_threads(threads: int | None):
    """torch's and FAISS's pools and BLAS at ``threads`` threads while the evaluation runs (None: as they are)."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    from recroute.threads import apply_threads, current_threads, resolve_threads

    previous = current_threads()
    apply_threads(resolve_threads(threads), load=True)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        apply_threads(previous)


def _run_eval(dataset, routereval, benchmark, specs, setting, encoder, monte_carlo, seed, quiet, backend="serial"):
    """(results DataFrame, display label) for a dataset or a RouterEval pickle."""
    from recroute.eval.protocol import check_settings, evaluate_dataset, evaluate_router_dataset

    settings = check_settings(setting)
    source = routereval if routereval is not None else dataset
    if routereval is not None or str(source).endswith(".pkl"):
        from recroute.data.routereval import load_router_dataset
        from recroute.eval.protocol import reembed_router_dataset

        rd = load_router_dataset(Path(source))
        if encoder:
            rd = reembed_router_dataset(rd, encoder, show_progress=not quiet)
        present = [s for s in settings if rd.get(s)]
        if not present:
            raise DataError(f"{source}: no candidate group for setting(s) {', '.join(settings)}")
        df = evaluate_router_dataset(
            rd, specs, benchmark, present, monte_carlo_runs=monte_carlo, quiet=quiet, backend=backend
        )
        return df, Path(source).name
    from recroute.data.catalog import load_dataset

    data = load_dataset(source)
    df = evaluate_dataset(
        data, specs, settings, encoder=encoder, seed=seed, benchmark=benchmark,
        monte_carlo_runs=monte_carlo, quiet=quiet, backend=backend,
    )
    return df, data.name or str(source)


def scaling_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A bundled name (mmlu_pro) or a dataset folder."),
    max_m: Optional[int] = typer.Option(None, "--max-m", help="Largest number of candidates (default: the whole pool)."),
    out: Path = typer.Option(..., "--out", "-o", help="Write the figure here (PNG)."),
    router: Optional[str] = typer.Option(
        None, "--router", help="Also draw trained routers' curves (e.g. knn or knn,best_single)."
    ),
    samples: int = typer.Option(100, "--samples", help="Candidate sets drawn per m."),
    seed: int = typer.Option(0, "--seed", help="Seed of the candidate-set draws."),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", "-e", help="Encode prompts (minilm | minilm-onnx | minilm-int8 | static | tfidf) for --router."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write the tidy curve rows as JSON (- = stdout)."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write the tidy curve rows as CSV (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing; only write files."),
) -> None:
    """RouterEval's scaling curves: r_o(p) (p = 0, 0.1, ..., 1) and a router vs the number of candidates.

    Example: recroute scaling --dataset mmlu_pro --router knn --max-m 10 --out scaling.png
    """
    from recroute.data.catalog import load_dataset
    from recroute.eval import metrics, report
    from recroute.eval.protocol import dataset_benchmark
    from recroute.eval.scaling import scaling_curves

    with user_errors():
        if samples < 1:
            raise DataError(f"--samples must be at least 1; got {samples}")
        data = load_dataset(dataset)
        routers = split_router_list(router) if router else None
        df = scaling_curves(data, max_m, routers, n_samples=samples, seed=seed, encoder=encoder)
        reference = metrics.reference_score(dataset_benchmark(data))
        report.plot_scaling(df, out, title=f"{data.name or dataset}: routing vs number of candidates",
                            reference=reference)
        if json_path:
            write_json(json_path, report.records(df))
        if csv_path:
            write_csv(csv_path, df)
    if quiet:
        return
    shown = output_console(json_path, csv_path)
    shown.print(_scaling_table(df))
    shown.print(f"figure written to {out}")


def _scaling_table(df):
    """A rich Table of mu at a few m: random, r_o(0.5), oracle and any router."""
    import numpy as np
    from rich.table import Table

    ms = sorted(df["m"].unique())
    shown = sorted({ms[0], ms[-1], *ms[:: max(1, len(ms) // 6)]})
    table = Table(title="mu_o vs number of candidates m (mean over sampled sets)")
    table.add_column("curve")
    for m in shown:
        table.add_column(f"m={m}", justify="right")
    curves = [("random", df[(df.curve == "r_o") & np.isclose(df.p, 0.0)]),
              ("r_o p=0.5", df[(df.curve == "r_o") & np.isclose(df.p, 0.5)]),
              ("oracle", df[(df.curve == "r_o") & np.isclose(df.p, 1.0)])]
    curves += [(str(c), part) for c, part in df[df.curve != "r_o"].groupby("curve", sort=False)]
    for name, part in curves:
        by_m = dict(zip(part["m"], part["mu"]))
        table.add_row(name, *(f"{by_m[m]:.4f}" if m in by_m else "-" for m in shown))
    return table

