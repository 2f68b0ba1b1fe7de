"""``recroute fit`` (train a router, save its routing bundle), ``recroute route`` (batch routing to
JSONL) and ``recroute serve`` (the HTTP service)."""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Iterator, Optional, TextIO

import numpy as np
import typer

from recroute.cli.common import err_console, user_errors, write_json
from recroute.errors import DataError

CHUNK = 512  # prompts routed per step (progress granularity, bounded memory)


def register(app: typer.Typer) -> None:
    app.command("fit")(fit_command)
    app.command("route")(route_command)
    app.command("serve")(serve_command)


# ---------------------------------------------------------------------- fit
def fit_command(
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="A bundled name (mmlu_pro) or a dataset folder."),
    router: str = typer.Option("knn", "--router", "-r", help="Router spec, e.g. knn or knn:index='ivf',nprobe=32."),
    encoder: Optional[str] = typer.Option(
        None, "--encoder", "-e",
        help="minilm | minilm-onnx | minilm-int8 | static | tfidf: encode the prompt texts (default: the default encoder, reusing the dataset's embeddings when it made them).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the routing bundle to."),
    json_path: Optional[Path] = typer.Option(None, "--json", help="Write a summary row as JSON (- = stdout)."),
    threads: Optional[int] = typer.Option(
        None, "--threads", help="Threads for torch, ONNX Runtime and FAISS (default: RECROUTE_THREADS or the cores)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress and no summary."),
    logs: Optional[Path] = typer.Option(None, "--logs", help="Learn from a decision log instead (see docs/feedback.md)."),
    method: str = typer.Option("dr", "--method", help="With --logs: dr (doubly-robust completion), ips or naive."),
    reward_router: str = typer.Option("linear", "--reward-router", help="With --logs: the DR reward model's spec."),
    costs: str = typer.Option(
        "prices", "--costs",
        help="Where the bundle's --cost-weight / --max-cost costs come from: prices (the dataset's), or predicted "
             "(the router's own per-prompt predictions; a router that predicts costs, e.g. graphrouter on priced data)."),
) -> None:
    """Train a router on the whole dataset (or on a decision log, --logs) and save it with its encoder as a routing bundle.

    Example: recroute fit --dataset mmlu_pro --router knn --out mmlu-knn
    """
    from recroute.data.catalog import load_dataset
    from recroute.routers.registry import make_router, spec_label
    from recroute.serve.bundle import RoutingBundle
    from recroute.threads import apply_threads, resolve_threads

    if logs is not None:
        if costs != "prices":
            with user_errors():
                raise DataError("--costs predicted needs --dataset (a log carries no costs to learn from)")
        return _fit_logs(logs, dataset, router, method, reward_router, encoder, out, json_path, quiet)
    with user_errors():
        if dataset is None:
            raise DataError("give --dataset (or --logs to learn from a decision log)")
        apply_threads(resolve_threads(threads), load=True)
        data = load_dataset(dataset)
        model = make_router(router)
        enc, X, note = fit_features(data, model, encoder, quiet)
        start = time.perf_counter()
        model.fit(data, X)
        seconds = time.perf_counter() - start
        prices = data.prices()  # kept in the bundle for --cost-weight / --max-cost routing
        if prices is not None and not prices.priced.all():
            note = (note + "; " if note else "") + "some LLMs have no price: the bundle carries no prices"
            prices = None
        RoutingBundle.build(model, enc, prices, costs=costs).save(out)
        row = {"dataset": data.name or str(dataset), "router": spec_label(router), "encoder": enc.name if enc else None,
               "n_prompts": data.n_prompts, "n_llms": data.n_llms, "fit_seconds": round(seconds, 3), "bundle": str(out)}
        if json_path:
            write_json(json_path, [row])
    if quiet:
        return
    if note:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False)
    err_console.print(
        f"fitted {row['router']} on {data.n_prompts:,} prompts × {data.n_llms} LLMs in {seconds:.1f} s "
        f"(encoder {row['encoder'] or 'none'}); bundle written to {out}", highlight=False,
    )


def _fit_logs(logs, dataset, router, method, reward_router, encoder, out, json_path, quiet) -> None:
    """``recroute fit --logs``: learn from a decision log (recroute.feedback.learn) and save the bundle."""
    from recroute.cli.feedback_cmd import fit_router_on_logs
    from recroute.routers.registry import spec_label
    from recroute.serve.bundle import RoutingBundle

    with user_errors():
        start = time.perf_counter()
        model, enc, summary = fit_router_on_logs(logs, dataset, router, method, reward_router, encoder, quiet)
        RoutingBundle.build(model, enc).save(out)
        row = {**summary, "router": spec_label(router), "encoder": enc.name if enc else None,
               "fit_seconds": round(time.perf_counter() - start, 3), "bundle": str(out)}
        if json_path:
            write_json(json_path, [row])
    if not quiet:
        err_console.print(f"fitted {row['router']} ({method}) on {row['n_decisions']:,} logged decisions over "
                          f"{row['n_prompts']:,} prompts; bundle written to {out}", highlight=False)


def fit_features(data, router, encoder: str | None, quiet: bool):
    """(encoder or None, X (n_prompts, d) or None, note) for fitting ``router`` on ``data``.

    Without ``encoder``: the default encoder when the prompts have text (its embeddings are reused
    when the dataset carries them), else the encoder that made the dataset's embeddings when it is
    a known one, else the embeddings alone (a bundle that routes precomputed embeddings only).
    """
    from recroute.encoders import DEFAULT_ENCODER, embed_dataset, get_encoder
    from recroute.encoders.base import ENCODER_KINDS
    from recroute.serve.bundle import encoder_kind

    if not router.needs_features:
        note = f"router {router.name!r} uses no prompt features: --encoder {encoder} ignored" if encoder else None
        return None, None, note
    if encoder is None and data.embeddings is not None:
        kind = encoder_kind(data.embedding_name)
        rebuildable = kind in ("minilm", "minilm-onnx", "minilm-int8")  # static/tfidf: name alone is not enough
        if rebuildable and not data.has_text:
            enc = get_encoder(kind)
            if enc.dim == data.embeddings.shape[1]:
                return enc, data.embeddings, None
        if kind not in ENCODER_KINDS or not data.has_text:
            note = (f"the dataset's embeddings ({data.embedding_name!r}) come from no encoder that can be rebuilt "
                    "here: the bundle routes precomputed embeddings only (recroute route --embeddings); give "
                    "--encoder to route texts")
            return None, data.embeddings, note
    if encoder is None and not data.has_text:
        raise DataError(f"dataset {data.name!r} has neither embeddings nor prompt texts to fit {router.name!r} on")
    enc = get_encoder(encoder or DEFAULT_ENCODER)
    X = embed_dataset(data, enc, show_progress=not quiet)
    return enc, X, None


# ---------------------------------------------------------------------- route
def route_command(
    bundle_dir: Path = typer.Option(..., "--bundle", "-b", help="A routing bundle folder (from recroute fit)."),
    input_path: Optional[str] = typer.Option(
        None, "--input", "-i", help="Prompts: JSONL with {\"prompt\": ...} per line, or plain text lines; - = stdin."
    ),
    embeddings: Optional[Path] = typer.Option(None, "--embeddings", help="Precomputed float32 (n, d) .npy features."),
    k: int = typer.Option(1, "--k", "-k", help="LLMs per prompt, best first."),
    candidates: Optional[str] = typer.Option(None, "--candidates", "-c", help="Comma-separated LLM names to choose among."),
    out: str = typer.Option("-", "--out", "-o", help="JSONL decisions to this file (- = stdout)."),
    batch_size: int = typer.Option(CHUNK, "--batch-size", min=1, help="Prompts routed per step."),
    cost_weight: Optional[float] = typer.Option(
        None, "--cost-weight", min=0.0, help="Rank by score - cost_weight × expected cost (bundle with prices or predicted costs)."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0.0, help="Only LLMs expected to cost at most this."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary on stderr."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Stochastic routing: epsilon_greedy:epsilon=0.2 | "
                                         "softmax:temperature=0.1 (k = 1; each decision carries its propensity)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Append one line per decision to this decision log (JSONL)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the policy's draws (default: fresh)."),
) -> None:
    """Route prompts (or precomputed embeddings) with a bundle: one JSON decision per line, in input order.

    Each line: {"index", "line" (input line, text input), "id" (when the JSONL record has one), "llm",
    "score", "top_k": [{"llm", "score"}, ...]} (+ "propensity" under --policy). Blank input lines are skipped.

    Example: echo "What is 2 + 2?" | recroute route --bundle mmlu-knn --k 2
    """
    from recroute.serve.bundle import RoutingBundle

    with user_errors():
        writer, rng, spec = _decision_log(log, policy, seed, k)
        if input_path is not None and embeddings is not None:
            raise DataError("give --input or --embeddings, not both")
        bundle = RoutingBundle.load(bundle_dir)
        chosen = [c.strip() for c in candidates.split(",") if c.strip()] if candidates else None
        if chosen is not None and not chosen:
            raise DataError("--candidates names no LLM")
        bundle.check_choice(k, chosen)  # before reading any input
        if embeddings is not None:
            X = load_embeddings(embeddings, bundle.n_features)
            records, n = None, len(X)
        else:
            X = None
            records = read_prompts(input_path or "-")
            n = len(records)
        start = time.perf_counter()
        with _output(out) as sink, _progress(quiet or n <= batch_size, n) as advance:
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                if records is None:
                    got = bundle.route_embeddings(np.asarray(X[lo:hi], dtype=np.float32), k, chosen,
                                                  cost_weight=cost_weight, max_cost=max_cost, policy=spec, rng=rng)
                    extras = [{} for _ in range(hi - lo)]
                else:
                    got = bundle.route_texts([r["prompt"] for r in records[lo:hi]], k, chosen,
                                             cost_weight=cost_weight, max_cost=max_cost, policy=spec, rng=rng)
                    extras = [{key: r[key] for key in ("line", "id") if key in r} for r in records[lo:hi]]
                if writer is not None:
                    _append_decisions(writer, got, records[lo:hi] if records else None, lo, chosen or bundle.llm_names,
                                      spec, bundle.router.name)
                for i, (decision, extra) in enumerate(zip(got, extras)):
                    sink.write(json.dumps({"index": lo + i, **extra, **decision.to_dict()}) + "\n")
                advance(hi - lo)
        seconds = time.perf_counter() - start
    if not quiet:
        rate = f" ({n / seconds:,.0f} prompts/s)" if seconds > 0 and n else ""
        where = "stdout" if out == "-" else out
        err_console.print(f"routed {n:,} prompts in {seconds:.2f} s{rate} to {where}", highlight=False)


def _decision_log(log: Path | None, policy: str | None, seed: int | None, k: int):
    """(DecisionLogWriter or None, numpy Generator, policy spec or None) for --log / --policy / --seed."""
    from recroute.feedback.logs import DecisionLogWriter
    from recroute.feedback.policies import parse_policy

    spec = None if policy is None else parse_policy(policy).spec
    if spec is not None and k != 1:
        raise DataError(f"--policy chooses one LLM per prompt: --k must be 1 (got {k})")
    return (None if log is None else DecisionLogWriter(log)), np.random.default_rng(seed), spec


def _append_decisions(writer, got, records, offset: int, candidates, spec, router: str) -> None:
    """One decision-log line per routed prompt (text input: its text and id; embeddings: its row as prompt_id)."""
    rows = []
    for i, decision in enumerate(got):
        rec = records[i] if records else {}
        prompt_id = str(rec["id"]) if "id" in rec else (None if records else str(offset + i))
        rows.append({"prompt_id": prompt_id, "prompt_text": rec.get("prompt"), "candidates": [str(c) for c in candidates],
                     "chosen": decision.llm, "propensity": 1.0 if decision.propensity is None else decision.propensity,
                     "score": decision.score if np.isfinite(decision.score) else None,
                     "policy": spec or "greedy", "router": router})
    writer.append(rows)


def read_prompts(source: str) -> list[dict]:
    """[{"prompt", "line", ["id"]}] from JSONL ({"prompt": ...} per line) or plain text lines ("-" = stdin).

    The format is JSONL when the first non-blank line starts with "{". Blank lines are skipped; a JSONL
    line without a non-empty string "prompt" raises a DataError naming its line number.
    """
    name = "stdin" if source == "-" else source
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"--input {source}: no such file") from None
        except UnicodeDecodeError as exc:
            raise DataError(f"--input {source}: not UTF-8 text ({exc})") from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    if not numbered:
        raise DataError(f"{name}: no prompts (the input is empty)")
    if not numbered[0][1].lstrip().startswith("{"):
        return [{"prompt": line, "line": number} for number, line in numbered]
    records = []
    for number, line in numbered:
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{name} line {number}: not valid JSON ({exc.msg})") from None
        prompt = doc.get("prompt") if isinstance(doc, dict) else None
        if not isinstance(prompt, str) or not prompt.strip():
            raise DataError(f"{name} line {number}: expected an object with a non-empty string \"prompt\"")
        record = {"prompt": prompt, "line": number}
        if "id" in doc:
            record["id"] = doc["id"]
        records.append(record)
    return records


def load_embeddings(path: Path, n_features: int) -> np.ndarray:
    """A 2-D float .npy (memory-mapped, no pickle) of width ``n_features``."""
    try:
        X = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"--embeddings {path}: no such file") from None
    except ValueError as exc:
        raise DataError(f"--embeddings {path}: not a plain numpy array file ({exc})") from None
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.floating):
        raise DataError(f"--embeddings {path}: expected a 2-D float array (n, d); got {X.dtype} {X.shape}")
    if n_features and X.shape[1] != n_features:
        raise DataError(f"--embeddings {path}: {X.shape[1]} columns, the bundle's router takes {n_features}")
    return X


@contextmanager
def _output(out: str) -> Iterator[TextIO]:
    """stdout for "-", else a file written atomically (it appears only when routing succeeded)."""
    if out == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    from recroute.atomic import atomic_file

    with atomic_file(out) as tmp, open(tmp, "w", encoding="utf-8") as sink:
        yield sink


@contextmanager
def _progress(silent: bool, total: int):
    """Yields advance(n); a transient rich bar on stderr unless silent."""
    if silent:
        with nullcontext():
            yield lambda n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]routing[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as bar:
        task = bar.add_task("", total=total)
        yield lambda n: bar.advance(task, n)


# ---------------------------------------------------------------------- serve
def serve_command(
    bundle_dir: Path = typer.Option(..., "--bundle", "-b", help="A routing bundle folder (from recroute fit)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", "-p", help="Port to listen on."),
    max_batch: int = typer.Option(256, "--max-batch", min=1, help="Most prompts in one request (413 beyond)."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Largest request body (413 beyond)."),
    cost_weight: Optional[float] = typer.Option(
        None, "--cost-weight", min=0.0, help="Default cost weight for requests that give none (bundle with prices or predicted costs)."),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", min=0.0, help="Default max_cost for requests that give none."),
    micro_batch: bool = typer.Option(True, "--micro-batch/--no-micro-batch",
                                     help="Encode and route concurrent requests together."),
    micro_batch_size: int = typer.Option(64, "--micro-batch-size", help="Most prompts gathered into one micro-batch."),
    micro_batch_wait_ms: float = typer.Option(
        0.0, "--micro-batch-wait-ms",
        help="Longest a request waits for companions (ms) before its batch starts (0: batch what queued meanwhile)."),
    threads: Optional[int] = typer.Option(
        None, "--threads",
        help="Threads for torch, ONNX Runtime and FAISS (default: RECROUTE_THREADS, else the cores less one for "
             "encoders, all for FAISS; see docs/serving.md)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings only (no access log)."),
    policy: Optional[str] = typer.Option(None, "--policy", help="Default routing policy (e.g. epsilon_greedy:epsilon=0.2)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Append every decision to this decision log; POST /outcome adds outcomes."),
) -> None:
    """Serve a routing bundle over HTTP: POST /route, GET /llms, GET /healthz, OpenAPI at /docs.

    Example: recroute serve --bundle mmlu-knn --port 8000 --micro-batch-size 64 --micro-batch-wait-ms 1
    """
    from recroute.serve.batching import BatchSettings
    from recroute.serve.bundle import RoutingBundle
    from recroute.threads import apply_threads, resolve_threads

    with user_errors():
        batching = BatchSettings(micro_batch, micro_batch_size, micro_batch_wait_ms)
        thread_settings = apply_threads(resolve_threads(threads, serving=True))  # before the encoder is made
        bundle = RoutingBundle.load(bundle_dir)
        try:
            from recroute.serve.http import serve
        except ImportError as exc:
            raise DataError(f"recroute serve needs fastapi, uvicorn and orjson ({exc}); "
                            "pip install fastapi 'uvicorn[standard]' orjson") from None
        if not quiet:
            mode = (f"micro-batches of up to {batching.max_batch} prompts / {batching.max_wait_ms:g} ms"
                    if batching.enabled else "no micro-batching")
            err_console.print(f"serving {bundle!r} on http://{host}:{port} (docs at /docs; {mode}; "
                              f"threads {thread_settings.as_dict()})", highlight=False)
        if policy is not None:
            from recroute.feedback.policies import parse_policy

            policy = parse_policy(policy).spec
        serve(bundle, host, port, max_batch=max_batch, max_body_bytes=max_body_bytes, batching=batching,
              threads=thread_settings, log_level="warning" if quiet else "info", cost_weight=cost_weight,
              max_cost=max_cost, policy=policy, log=log)
