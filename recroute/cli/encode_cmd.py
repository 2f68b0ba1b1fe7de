"""``recroute encode NAME|PATH``: encode a dataset's prompt texts into a float32 .npy file."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import output_console, user_errors, write_json
from recroute.encoders.base import DEFAULT_ENCODER


def register(app: typer.Typer) -> None:
    """Add the ``encode`` command to the ``recroute`` app."""
    app.command("encode")(encode)


def encode(
    dataset: Optional[str] = typer.Argument(
        None, metavar="[NAME|PATH]", help="Bundled dataset name (mmlu_pro) or dataset folder (optional with --make)."
    ),
    encoder: str = typer.Option(
        DEFAULT_ENCODER, "--encoder", "-e",
        help="minilm (torch) | minilm-onnx (ONNX fp32) | minilm-int8 (ONNX int8) | static (model2vec) | tfidf.",
    ),
    make: Optional[str] = typer.Option(
        None, "--make", help="Build and cache an encoder now (static | minilm-onnx | minilm-int8), then encode DATASET if given."
    ),
    finetune: Optional[str] = typer.Option(
        None, "--finetune",
        help="Fine-tune this encoder (static: its token vectors; minilm: its top --layers transformer layers) on "
             "DATASET's training prompts with RouterDC's contrastive losses, cache it in ~/.cache/recroute/encoders, "
             "then encode DATASET with it.",
    ),
    layers: int = typer.Option(2, "--layers", min=1, max=6, help="--finetune minilm only: top transformer layers to train (of 6)."),
    train_part: str = typer.Option(
        "routereval", "--train-part",
        help="--finetune only: the prompts it may learn from: routereval (RouterEval's seeded training part, "
             "what recroute eval tests under) | column (split == 'train').",
    ),
    split_seed: int = typer.Option(42, "--split-seed", help="--finetune only: seed of RouterEval's split."),
    clusters_from: str = typer.Option(
        "minilm", "--clusters-from",
        help="--finetune only: embeddings of the sample-sample clusters: minilm (stored, else minilm-onnx once) | static.",
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="--finetune only: passes over the training prompts."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="--finetune minilm only: Adam steps at most (default 300)."),
    frozen_states: bool = typer.Option(
        False, "--frozen-states",
        help="--finetune minilm only: run MiniLM's frozen bottom layers once per prompt (float16 states cached in "
             "the encoder store), so each step and the final encoding run only the top --layers layers.",
    ),
    n_threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch / ONNX Runtime threads (default: CPUs, at most 4)."),
    out: Optional[Path] = typer.Option(
        None, "--out", "-o", help="float32 .npy to write (rows in prompt order). Default: ./<dataset>-<encoder>.npy"
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Texts per encoder batch."),
    dim: int = typer.Option(256, "--dim", min=1, help="TF-IDF only: SVD dimensions (fewer if the vocabulary is small)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Encode every text; neither read nor write the cache."),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", help="Embedding cache root (default $RECROUTE_CACHE or ~/.cache/recroute/embeddings)."
    ),
    json_file: Optional[Path] = typer.Option(None, "--json", help="Also write the summary as JSON rows (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar and no summary."),
) -> None:
    """Encode the prompt texts of a dataset (cached: a text already encoded is not encoded again).

    A TF-IDF encoder is fitted on the dataset's texts and saved beside the output as <out>.encoder/.
    ``--make static`` distils the static encoder once (or exports the ONNX graph for minilm-onnx /
    minilm-int8) into ~/.cache/recroute/encoders. ``--finetune static`` trains the static encoder's
    token vectors on the dataset's training prompts only (never its test part) and saves the tuned
    encoder there too; its folder, printed as "encoder saved", works as ``--encoder PATH`` anywhere.
    ``--finetune minilm`` trains MiniLM's top ``--layers`` transformer layers the same way (slower: minutes
    per hundred steps on 2 cores).

    (e.g. recroute encode mmlu_pro --finetune static --out mmlu_pro-static-ft.npy)

    Example: recroute encode mmlu_pro --encoder static --out mmlu_pro-static.npy
    """
    import numpy as np

    from recroute.data.catalog import load_dataset
    from recroute.encoders.base import canonical_name, get_encoder
    from recroute.encoders.cache import encode_cached_with_stats, save_embeddings
    from recroute.encoders.embed import dataset_texts

    started = time.perf_counter()
    with user_errors():
        if make is not None:
            made = _make_encoder(make, n_threads)
            if dataset is None:
                if json_file is not None:
                    write_json(json_file, [{"encoder": made.name, "dim": made.dim,
                                            "cache_key": getattr(made, "cache_key", made.name),
                                            "seconds": round(time.perf_counter() - started, 3)}])
                if not quiet:
                    output_console(json_file).print(
                        f"{made.name} (dim {made.dim}) ready in {time.perf_counter() - started:.1f}s", highlight=False)
                return
            encoder = make
        if dataset is None:
            raise ValueError("give a dataset (NAME|PATH) to encode, or --make ENCODER to only build an encoder")
        data = load_dataset(dataset)
        texts = dataset_texts(data)
        encode_missing = None  # how texts not in the cache are encoded: enc.encode unless states serve them
        if finetune is not None:
            states = None
            if frozen_states:
                if canonical_name(finetune) != "minilm":
                    raise ValueError("--frozen-states is for --finetune minilm")
                from recroute.encoders.minilm_states import N_LAYERS, states_for_texts

                states = states_for_texts(texts, [N_LAYERS - layers], n_threads=n_threads or 1)
            enc, encoder_dir = _finetuned(data, finetune, train_part, split_seed, clusters_from, epochs, n_threads,
                                          layers, max_steps, states)
            if states is not None:  # the final encoding runs only the tuned layers, on the states
                from recroute.encoders.minilm_states import states_encoder

                encode_missing = states_encoder(enc, states, batch_size=batch_size, n_threads=n_threads or 1)
            kind = f"{canonical_name(finetune)}-ft"
        else:
            kind = canonical_name(encoder)
            options: dict = {"dim": dim} if kind == "tfidf" else {"batch_size": batch_size}
            if n_threads is not None and kind in ("minilm", "minilm-onnx", "minilm-int8"):
                options["n_threads"] = n_threads
            enc = get_encoder(encoder, **options)
            encoder_dir = None
        label = data.name or Path(dataset).name
        out = out or Path(f"{label}-{kind}.npy")
        if out.suffix != ".npy":
            raise ValueError(f"--out must name a .npy file, got {out}")
        if getattr(enc, "is_fitted", True) is False:
            enc.fit(texts)
            encoder_dir = enc.save(out.with_suffix(".encoder"))
        X, stats = encode_cached_with_stats(
            enc, texts, cache_dir=cache_dir, use_cache=not no_cache, show_progress=not quiet,
            batch_size=batch_size if encode_missing is None else None, encode_missing=encode_missing,
        )
        if not np.isfinite(X).all():
            raise ValueError("encoding produced NaN or inf values")
        save_embeddings(out, X)

    seconds = time.perf_counter() - started
    row = {
        "dataset": label,
        "encoder": enc.name,
        "n_prompts": stats.n_texts,
        "n_unique_texts": stats.n_unique,
        "n_from_cache": stats.n_cached,
        "n_encoded": stats.n_encoded,
        "dim": int(X.shape[1]),
        "seconds": round(seconds, 3),
        "seconds_loading": round(stats.seconds_loading, 3),
        "seconds_encoding": round(stats.seconds_encoding, 3),
        "texts_per_second": round(stats.n_encoded / stats.seconds_encoding, 2) if stats.seconds_encoding else None,
        "out": str(out),
        "bytes": out.stat().st_size,
        "encoder_saved_to": str(encoder_dir) if encoder_dir else None,
    }
    if json_file is not None:
        with user_errors():
            write_json(json_file, [row])
    if quiet:
        return
    from rich.table import Table

    table = Table(title=f"recroute encode {label}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("encoder", f"{enc.name} (dim {X.shape[1]})")
    table.add_row("prompts", f"{stats.n_texts:,} ({stats.n_unique:,} distinct texts)")
    table.add_row("from cache", f"{stats.n_cached:,}" + ("" if not no_cache else " (cache off)"))
    rate = f", {row['texts_per_second']:,} texts/s" if row["texts_per_second"] else ""
    load = f" (+{stats.seconds_loading:.1f}s loading the encoder)" if stats.seconds_loading >= 0.05 else ""
    route = " through the frozen states" if encode_missing is not None and stats.n_encoded else ""
    table.add_row("encoded", f"{stats.n_encoded:,}{route} in {stats.seconds_encoding:.1f}s{rate}{load}")
    table.add_row("wrote", f"{out} float32 {X.shape[0]}×{X.shape[1]} ({row['bytes'] / 2**20:.1f} MiB)")
    if encoder_dir:
        table.add_row("encoder saved", str(encoder_dir))
    table.add_row("total time", f"{seconds:.1f}s")
    output_console(json_file).print(table)


def _finetuned(data, base: str, train_part: str, seed: int, clusters_from: str, epochs: int | None,
               n_threads: int | None, layers: int = 2, max_steps: int | None = None, states=None):
    """(the fine-tuned encoder, its folder in the artefact store), trained now or reused."""
    from recroute.encoders.base import canonical_name, get_encoder
    from recroute.encoders.finetune import TRAIN_PARTS, finetune_for_dataset

    kind = canonical_name(base)
    if kind not in ("static", "minilm"):
        raise ValueError(f"--finetune tunes the static encoder (static) or MiniLM's top layers (minilm), not {base!r}")
    if train_part not in TRAIN_PARTS:
        raise ValueError(f"--train-part must be one of {', '.join(TRAIN_PARTS)}; got {train_part!r}")
    options = {} if epochs is None else {"epochs": int(epochs)}
    threads = 1 if n_threads is None else int(n_threads)
    if kind == "minilm":
        from recroute.encoders.minilm_finetune import finetune_minilm_for_dataset

        if max_steps is not None:
            options["max_steps"] = int(max_steps)
        tuned = finetune_minilm_for_dataset(data, n_layers=layers, train_part=train_part, seed=seed,
                                            n_threads=threads, states=states, **options)
        return tuned, tuned.path
    tuned = finetune_for_dataset(data, get_encoder("static"), train_part=train_part, seed=seed,
                                 clusters_from=clusters_from, n_threads=threads, **options)
    return tuned, tuned.path


def _make_encoder(name: str, n_threads: int | None):
    """Build (export or distil) and cache an encoder now; returns it."""
    from recroute.encoders.base import canonical_name, get_encoder

    kind = canonical_name(name)
    if kind not in ("static", "minilm-onnx", "minilm-int8"):
        raise ValueError(f"--make builds static, minilm-onnx or minilm-int8, not {name!r}")
    enc = get_encoder(kind, **({} if kind == "static" or n_threads is None else {"n_threads": n_threads}))
    prepare = getattr(enc, "prepare", None)
    if callable(prepare):
        prepare()
    return enc
