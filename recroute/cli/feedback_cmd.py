"""``recroute logs simulate`` (decision logs simulated from full-information data) and ``recroute ope``
(off-policy evaluation of routers from a decision log)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import typer

from recroute.cli.common import console, err_console, table_from_rows, user_errors, write_json
from recroute.errors import DataError

logs_app = typer.Typer(help="Decision logs: simulate them from full-information data.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(logs_app, name="logs")
    app.command("ope")(ope_command)


def _names(text: Optional[str]) -> list[str] | None:
    if text is None:
        return None
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise DataError("--candidates names no LLM")
    return names


def dataset_features(data, encoder: Optional[str], quiet: bool) -> np.ndarray | None:
    """float32 (n_prompts, d): the dataset's embeddings, else its texts encoded (``encoder`` or the default)."""
    if encoder is None and data.embeddings is not None:
        return data.embeddings
    if not data.has_text:
        return None
    from recroute.encoders import DEFAULT_ENCODER, embed_dataset, get_encoder

    out = embed_dataset(data, get_encoder(encoder or DEFAULT_ENCODER), show_progress=not quiet)
    return np.asarray(out if isinstance(out, np.ndarray) else out.embeddings, dtype=np.float32)


def group_candidates(data, group: Optional[str], m: int) -> list[str] | None:
    """The LLM names of RouterEval's candidate group (easy/hard m, seed 42), or None without a group."""
    if group is None:
        return None
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.groups import GROUPS, SETTINGS

    if group not in GROUPS:
        raise DataError(f"--group must be one of {GROUPS}; got {group!r}")
    setting = next((s for s, sizes in SETTINGS.items() if m in sizes), None)
    if setting is None:
        raise DataError(f"--m must be one of RouterEval's pool sizes {sorted(v for s in SETTINGS.values() for v in s)}")
    from recroute.eval.protocol import build_settings

    rd = build_router_dataset(data, build_settings([setting]))
    entry = (rd.get(setting) or {}).get(m)
    if not entry:
        raise DataError(f"the dataset has too few LLMs with a mean score in (0.1, 0.9] for a pool of m={m}")
    return [str(n) for n in entry[group]["model"]]


# ---------------------------------------------------------------------- logs simulate
@logs_app.command("simulate")
def simulate_command(
    dataset: str = typer.Option(..., "--dataset", "-d", help="A bundled name (mmlu_pro) or a dataset folder."),
    n: int = typer.Option(..., "--n", "-n", min=1, help="Number of logged decisions."),
    out: Path = typer.Option(..., "--out", "-o", help="Decision log to write (.jsonl or .parquet)."),
    router: str = typer.Option("knn", "--router", "-r", help="The logging router's spec."),
    policy: str = typer.Option("epsilon_greedy:epsilon=0.2", "--policy", help="The logging policy."),
    split: str = typer.Option("test", "--split", help="RouterEval split part the prompts are drawn from."),
    router_split: str = typer.Option("train", "--router-split", help="Split part the logging router is fitted on."),
    candidates: Optional[str] = typer.Option(None, "--candidates", "-c", help="Comma-separated LLMs (default: all)."),
    group: Optional[str] = typer.Option(None, "--group", help="RouterEval candidate group: all_strong, all_weak, strong_to_weak."),
    m: int = typer.Option(5, "--m", help="Size of the --group pool."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the draws."),
    with_text: bool = typer.Option(False, "--with-text", help="Store each prompt's text in the log."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="minilm | minilm-onnx | minilm-int8 | static | tfidf (default: stored embeddings, else minilm-onnx)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write a summary row as JSON (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary on stderr."),
) -> None:
    """Simulate a decision log: a logging policy routes prompts drawn from a split; only the chosen cell is revealed.

    Example: recroute logs simulate --dataset mmlu_pro --n 20000 --out logs.jsonl
    """
    from recroute.data.catalog import load_dataset
    from recroute.feedback.logs import write_decision_log
    from recroute.feedback.simulate import fit_logging_policy, simulate_logs

    with user_errors():
        if candidates is not None and group is not None:
            raise DataError("give --candidates or --group, not both")
        data = load_dataset(dataset)
        cands = _names(candidates) or group_candidates(data, group, m)
        X = dataset_features(data, encoder, quiet)
        logging = fit_logging_policy(data, router, policy, split=router_split, X=X)
        log = simulate_logs(data, logging, n, seed=seed, split=split, candidates=cands, X=X, with_text=with_text)
        write_decision_log(log, out)
        info = dict(log.attrs["simulation"])
        row = {"dataset": data.name or dataset, "log": str(out), **info, "mean_outcome": float(log.outcome.mean()),
               "router_split": router_split, "candidates": cands}
        if json_path:
            write_json(json_path, [row])
    if not quiet:
        skipped = info["prompts_without_candidates"]
        err_console.print(
            f"wrote {n:,} decisions of {info['router']} ({info['policy']}) on the {split} part to {out}; mean outcome "
            f"{row['mean_outcome']:.4f}; {info['unobserved_candidate_cells']:,} unobserved cells were never offered"
            + (f", {skipped} prompt(s) without an observed candidate never drawn" if skipped else ""), highlight=False)


# ---------------------------------------------------------------------- ope
def ope_command(
    logs: Path = typer.Option(..., "--logs", "-l", help="A decision log (.jsonl or .parquet)."),
    routers: str = typer.Option(..., "--routers", "-r",
                                help="Comma-separated targets: router specs (fitted on --dataset's --fit-split) or "
                                     "routing bundle folders; ROUTER@POLICY for a stochastic target "
                                     "(knn@softmax:temperature=0.1)."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d",
                                          help="The full data the log came from: features, and each target's true mu_o."),
    fit_split: str = typer.Option("train", "--fit-split", help="Split part of --dataset the router specs are fitted on."),
    reward_router: str = typer.Option("linear", "--reward-router", help="Router spec of the reward model (DM, DR)."),
    folds: int = typer.Option(2, "--folds", min=1, help="Cross-fitting folds of the reward model (1 = in-sample)."),
    estimators: str = typer.Option("dm,ips,snips,dr,switch_dr", "--estimators", help="Comma-separated estimators."),
    interval: str = typer.Option("normal", "--interval", help="normal | bootstrap."),
    alpha: float = typer.Option(0.05, "--alpha", help="1 - the intervals' confidence level."),
    tau: float = typer.Option(20.0, "--tau", help="Switch-DR's weight threshold."),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="minilm | minilm-onnx | minilm-int8 | static | tfidf (default: stored embeddings, else minilm-onnx)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the folds and the bootstrap."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the rows as JSON (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
) -> None:
    """Estimate each target router's mu_o from a decision log (DM, IPS, SNIPS, DR, Switch-DR with intervals).

    Example: recroute ope --logs logs.jsonl --dataset mmlu_pro --routers knn:k=20,linear,best_single --json ope.json
    """
    from recroute.cli.eval_cmd import split_router_list
    from recroute.eval.protocol import progress_steps
    from recroute.feedback.bandit import bandit_from_log
    from recroute.feedback.logs import read_decision_log
    from recroute.feedback.ope import evaluate_targets, reward_model, target_probabilities

    with user_errors():
        log = read_decision_log(logs)
        specs = split_router_list(routers)
        if not specs:
            raise DataError("--routers names no target")
        ests = [e.strip() for e in estimators.split(",") if e.strip()]
        data = X = truth = None
        if dataset is not None:
            from recroute.data.catalog import load_dataset

            data = load_dataset(dataset)
            X = dataset_features(data, encoder, quiet)
            bandit, _ = bandit_from_log(log, data.llm_names, data.prompt_ids)
            truth = data.dense(np.nan)[bandit.rows].astype(np.float64)
        else:
            names = _bundle_names(specs) or sorted({c for cands in log.candidates for c in cands})
            bandit, prompts = bandit_from_log(log, names)
            X = _log_features(prompts, encoder)
        if len(bandit) < 2:
            raise DataError(f"{logs}: fewer than 2 decisions with an outcome")
        rows = []
        with progress_steps(quiet, len(specs) + 1) as progress:
            progress.start(f"reward model {reward_router}")
            q = reward_model(bandit, X, reward_router, folds, seed)
            progress.done()
            for spec in specs:
                progress.start(spec)
                router, policy, feats = _target(spec, data, X, bandit, fit_split, log)
                probs = target_probabilities(router, feats, bandit.allowed, policy)
                df = evaluate_targets(bandit, None, {spec: probs}, q_hat=q, estimators=ests, alpha=alpha,
                                      interval=interval, tau=tau, seed=seed)
                for r in df.to_dict("records"):
                    if truth is not None:
                        r["true_mu_o"] = float(np.where(probs > 0, probs * np.nan_to_num(truth), 0.0).sum(1).mean())
                        r["error"] = r["value"] - r["true_mu_o"]
                    rows.append(r)
                progress.done()
        if json_path:
            write_json(json_path, rows)
    if not quiet:
        cols = ["target", "estimator", "value", "lower", "upper"] + (["true_mu_o", "error"] if truth is not None else [])
        console.print(table_from_rows(f"off-policy estimates from {len(bandit):,} decisions ({logs})", rows, cols))
        if truth is not None:
            console.print("true_mu_o: the target's exact mean score over the logged decisions' prompts and candidates")


def _target(spec: str, data, X, bandit, fit_split: str, log):
    """(fitted router, policy, features of the logged decisions for it) for one target spec."""
    from recroute.feedback.ope import parse_target

    router_spec, policy = parse_target(spec)
    path = Path(router_spec)
    if path.is_dir():
        from recroute.serve.bundle import RoutingBundle

        bundle = RoutingBundle.load(path)
        router = bundle.router
        _check_names(router, bandit)
        feats = None
        if router.needs_features:
            texts = log.loc[log.outcome.notna(), "prompt_text"]
            if texts.isna().any():
                if data is None or not data.has_text:
                    raise DataError(f"bundle {path}: the log has no prompt_text to encode (and --dataset has no texts)")
                texts = np.asarray(data.texts, dtype=object)[bandit.rows]
            feats = bundle.encode([str(t) for t in texts])
        return router, policy, feats
    if data is None:
        raise DataError(f"target {router_spec!r} is a router spec: give --dataset to fit it on (or a bundle folder)")
    from recroute.feedback.simulate import split_positions
    from recroute.routers.registry import make_router

    router = make_router(router_spec)
    rows = split_positions(data, fit_split)
    if router.needs_features and X is None:
        raise DataError(f"router {router_spec!r} needs prompt features: the dataset has no embeddings and no text")
    router.fit(data.dense(np.nan)[rows], X[rows] if router.needs_features else None)
    return router, policy, (X[bandit.rows] if router.needs_features else None)


def _check_names(router, bandit) -> None:
    names = [str(n) for n in router.llm_names_]
    if names != [str(n) for n in bandit.llm_names]:
        raise DataError(f"the bundle routes to {names[:6]}..., not the log's LLMs {list(bandit.llm_names)[:6]}...; "
                        "give --dataset so both use the dataset's LLM order")


def _bundle_names(specs: list[str]) -> list[str] | None:
    """The LLM order of the first routing-bundle target (without --dataset the columns follow it)."""
    from recroute.feedback.ope import parse_target

    for spec in specs:
        path = Path(parse_target(spec)[0])
        if path.is_dir():
            from recroute.serve.bundle import RoutingBundle

            return [str(n) for n in RoutingBundle.load(path).llm_names]
    return None


def _log_features(prompts, encoder) -> np.ndarray:
    """Features of a log's distinct prompts (no dataset): their texts encoded with ``encoder`` (a name,
    default DEFAULT_ENCODER, or an encoder; an unfitted TF-IDF is fitted on these texts first)."""
    texts = prompts["prompt_text"]
    if texts.isna().any():
        raise DataError("without --dataset every decision needs prompt_text (to compute prompt features)")
    from recroute.encoders import DEFAULT_ENCODER, encode_cached, get_encoder

    enc = get_encoder(encoder or DEFAULT_ENCODER) if encoder is None or isinstance(encoder, str) else encoder
    texts = [str(t) for t in texts]
    if getattr(enc, "is_fitted", True) is False:
        enc.fit(texts)
    return np.asarray(encode_cached(enc, texts), dtype=np.float32)


# ---------------------------------------------------------------------- fit --logs (called by recroute fit)
def fit_router_on_logs(logs: Path, dataset: Optional[str], router_spec: str, method: str, reward_router: str,
                       encoder: Optional[str], quiet: bool):
    """(fitted router, encoder or None, summary) for ``recroute fit --logs``: the router learns from a log.

    With a dataset the log's prompt ids index its prompts and features; without one the log's prompt texts
    are encoded (``encoder``, default DEFAULT_ENCODER) and the LLMs are the candidates named in the log.
    """
    from recroute.cli.serve_cmd import fit_features
    from recroute.encoders import DEFAULT_ENCODER, get_encoder
    from recroute.feedback.bandit import bandit_from_log
    from recroute.feedback.learn import fit_from_log
    from recroute.feedback.logs import read_decision_log
    from recroute.routers.registry import make_router

    log = read_decision_log(logs)
    router = make_router(router_spec)
    if dataset is not None:
        from recroute.data.catalog import load_dataset

        data = load_dataset(dataset)
        offered = {c for cands in log.candidates for c in cands}
        names = [str(n) for n in data.llm_names if str(n) in offered]  # the LLMs the log can teach about
        bandit, _ = bandit_from_log(log, names if names else data.llm_names, data.prompt_ids)
        enc, X, _ = fit_features(data, router, encoder, quiet)
        if X is None:  # a feature-free router: the reward model still needs features
            X = dataset_features(data, encoder, quiet)
        source = data.name or dataset
    else:
        names = sorted({c for cands in log.candidates for c in cands})
        bandit, prompts = bandit_from_log(log, names)
        enc = get_encoder(encoder or DEFAULT_ENCODER)
        X = _log_features(prompts, enc)  # fits a TF-IDF encoder on the log's texts
        enc = enc if router.needs_features else None
        source = str(logs)
    if len(bandit) == 0:
        raise DataError(f"{logs}: no decision with an outcome to learn from")
    fitted = fit_from_log(router, bandit, X, method, reward_router=reward_router)
    summary = {"logs": str(logs), "dataset": source, "method": method, "n_decisions": len(bandit),
               "n_prompts": int(len(np.unique(bandit.rows))), "n_llms": bandit.n_llms,
               "dropped_no_outcome": bandit.info.get("dropped_no_outcome", 0)}
    return fitted, enc, summary
