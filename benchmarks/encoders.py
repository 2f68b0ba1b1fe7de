"""Encoders: what each costs end to end and what routing quality it buys.

For every encoder (minilm = torch fp32, minilm-onnx = ONNX Runtime fp32, minilm-int8 = ONNX
Runtime int8, static = model2vec distillation of MiniLM, tfidf = TF-IDF + SVD):

Speed (``--part speed``), in one process, on a kNN routing bundle (KNNRouter k=5 fitted on the
12,032 MMLU-Pro questions encoded by that encoder):
- single prompts one at a time: p50 / p99 ms of ``route_texts([text])`` (text -> encode -> kNN -> decision);
- batched: prompts/s of ``route_texts(batch)``;
- the routing step alone on precomputed embeddings (``route_embeddings``), same bundle, same prompts;
  the ratio end-to-end / routing-step-alone says how much the encoder costs.
Short prompts: MMLU-Pro questions of at most 64 MiniLM word pieces; long: random MMLU-Pro questions.

Quality (``--part quality``): mean V_B of knn and two_tower (seeds 0, 1, 2) under RouterEval's
protocol (``evaluate_dataset``: seed-42 split, easy groups m = 3, 5 and hard m = 10 where the pool
allows) on MMLU-Pro and llmrouter_nim with that encoder's embeddings, encoded once through the
shared embedding cache. minilm-onnx reuses MiniLM's embeddings only when its vectors agree at
cosine >= 0.9999 on a sample (recorded); the agreement of every MiniLM variant with torch MiniLM
is recorded over the whole sets.

    python benchmarks/encoders.py                       # both parts; long when the cache is cold
    python benchmarks/encoders.py --part speed --singles 100

Writes benchmarks/results/encoders.json and encoders.md (the machine is recorded; it was shared).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_data import resolve  # noqa: E402

ENCODERS = ["minilm", "minilm-onnx", "minilm-int8", "static", "tfidf"]
DATASETS = ["mmlu_pro", "llmrouter_nim"]
QUALITY_ROUTERS = ["knn", "two_tower"]
BOUNDS = {"minilm-onnx": 0.005, "minilm-int8": 0.005, "static": 0.01}  # allowed mean V_B loss vs minilm
SPEED_GOALS = {"minilm-int8": ("short", 300.0, None), "static": ("short", 5000.0, 3.0)}
AGREEMENT_SAMPLE = 256
MAX_ENCODE = {"value": None}  # --max-encode: skip a (dataset, encoder) whose cache misses exceed this


class NotMeasured(Exception):
    """A (dataset, encoder) pair left out by the --max-encode bound."""


def check_bound(enc, texts: list[str]) -> None:
    from recroute.encoders.cache import EmbeddingCache, text_key

    bound = MAX_ENCODE["value"]
    if bound is None:
        return
    _, found = EmbeddingCache.for_encoder(enc).lookup(sorted({text_key(t) for t in texts}))
    missing = int((~found).sum())
    if missing > bound:
        raise NotMeasured(f"{missing} texts not in the embedding cache for {enc.name} (bound --max-encode {bound})")


# ---------------------------------------------------------------------- embeddings
def dataset_embeddings(data, name: str, minilm_X: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """float32 (n_prompts, d) embeddings of ``data`` by encoder ``name`` (cached), and notes about them."""
    from recroute.encoders import embed_dataset, get_encoder
    from recroute.encoders.cache import encode_cached
    from recroute.encoders.embed import dataset_texts

    texts = dataset_texts(data)
    if name == "minilm":
        return embed_dataset(data.subset(), get_encoder("minilm")), {}
    if name == "tfidf":
        return embed_dataset(data.subset(), get_encoder("tfidf")), {"fitted_on": "the dataset's prompt texts (no scores)"}
    enc = get_encoder(name)
    if name == "minilm-onnx" and minilm_X is not None:
        notes = sample_agreement(enc, texts, minilm_X)
        if notes["sample_cosine_min"] >= 0.9999:
            notes["embeddings"] = "MiniLM's (fp32 ONNX agrees at cosine >= 0.9999 on the sample)"
            return minilm_X, notes
    check_bound(enc, texts)
    return encode_cached(enc, texts), {}


def sample_agreement(enc, texts: list[str], minilm_X: np.ndarray) -> dict:
    """Cosine to MiniLM's rows on a fixed random sample of AGREEMENT_SAMPLE prompts (encoded uncached)."""
    rows = np.random.default_rng(0).choice(len(texts), size=min(AGREEMENT_SAMPLE, len(texts)), replace=False)
    cos = np.sum(enc.encode([texts[i] for i in rows]) * minilm_X[rows], axis=1)
    return {"sample_size": int(rows.size), "sample_cosine_min": float(cos.min()),
            "sample_cosine_mean": float(cos.mean()), "sample_cosine_p01": float(np.percentile(cos, 1))}


def agreement(X: np.ndarray, minilm_X: np.ndarray) -> dict:
    cos = np.sum(X * minilm_X, axis=1)
    return {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "cosine_p01": float(np.percentile(cos, 1))}


# ---------------------------------------------------------------------- quality
def quality(datasets: list[str], encoders: list[str], seeds: list[int]) -> tuple[list[dict], dict, dict]:
    """(V_B rows per dataset x encoder x router x m, agreement with MiniLM, notes on embeddings)."""
    from recroute.eval.protocol import evaluate_dataset

    rows, agree, notes = [], {}, {}
    for ds in datasets:
        data = resolve(ds)
        minilm_X, _ = dataset_embeddings(data, "minilm")
        for name in encoders:
            start = time.perf_counter()
            try:
                X, note = (minilm_X, {}) if name == "minilm" else dataset_embeddings(data, name, minilm_X)
            except NotMeasured as exc:
                notes[f"{ds}/{name}"] = {"not_measured": str(exc)}
                if name.startswith("minilm-"):  # its agreement with MiniLM on a sample, at least
                    from recroute.encoders import get_encoder
                    from recroute.encoders.embed import dataset_texts

                    notes[f"{ds}/{name}"].update(sample_agreement(get_encoder(name), dataset_texts(data), minilm_X))
                print(f"  {ds} {name}: not measured ({exc})", flush=True)
                continue
            notes[f"{ds}/{name}"] = {**note, "dim": int(X.shape[1]), "seconds_to_embed": time.perf_counter() - start}
            if name.startswith("minilm-") and X is not minilm_X:  # reused MiniLM's: its sample agreement is in notes
                agree[f"{ds}/{name}"] = agreement(X, minilm_X)
            for router in QUALITY_ROUTERS:
                specs = [router] if router == "knn" else [f"{router}:random_state={s}" for s in seeds]
                for spec in specs:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        df = evaluate_dataset(data, [spec], settings=("easy", "hard"), X=X, quiet=True)
                    for r in df[df.group == "mean"].itertuples():
                        rows.append({"dataset": ds, "encoder": name, "router": router, "spec": spec, "m": int(r.m),
                                     "v_b": float(r.v_b), "mu_o": float(r.mu_o)})
                got = [r for r in rows if r["dataset"] == ds and r["encoder"] == name and r["router"] == router]
                print(f"  {ds} {name:12s} {router:9s} " + ", ".join(
                    f"m={m} V_B {np.mean([r['v_b'] for r in got if r['m'] == m]):.4f}"
                    for m in sorted({r['m'] for r in got})), flush=True)
    return rows, agree, notes


def summarise_quality(rows: list[dict]) -> pd.DataFrame:
    """Per dataset x encoder x router: mean V_B over seeds then over m; and the loss vs minilm."""
    df = pd.DataFrame(rows)
    per_m = df.groupby(["dataset", "encoder", "router", "m"], sort=False).v_b.mean().reset_index()
    out = per_m.groupby(["dataset", "encoder", "router"], sort=False).v_b.mean().rename("mean_v_b").reset_index()
    wide = per_m.pivot_table(index=["dataset", "encoder", "router"], columns="m", values="v_b").reset_index()
    wide.columns = [f"v_b_m{c}" if isinstance(c, (int, np.integer)) else c for c in wide.columns]
    out = out.merge(wide, on=["dataset", "encoder", "router"])
    base = out[out.encoder == "minilm"].set_index(["dataset", "router"]).mean_v_b
    out["delta_vs_minilm"] = [r.mean_v_b - base.get((r.dataset, r.router), np.nan) for r in out.itertuples()]
    return out


# ---------------------------------------------------------------------- speed
def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def singles(fn, items: list) -> dict:
    for item in items[:5]:
        fn([item])
    seconds = []
    for item in items:
        start = time.perf_counter()
        fn([item])
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def batched(fn, items, repeat: int) -> float:
    fn(items[:64])
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(items)
        best = min(best, time.perf_counter() - start)
    return len(items) / best


def pick_prompts(texts: list[str], n: int, rng) -> dict[str, list[str]]:
    """{"short": up to n questions of <= 64 MiniLM word pieces, "long": n random questions}."""
    from recroute.encoders.onnx import load_tokenizer

    tokenizer = load_tokenizer()
    order = rng.permutation(len(texts))
    candidates = [texts[i] for i in order[: 8 * n]]
    pieces = [sum(e.attention_mask) for e in tokenizer.encode_batch(candidates)]  # truncated at 256
    short = [t for t, k in zip(candidates, pieces) if k <= 64][:n]
    return {"short": short, "long": [texts[i] for i in order[:n]]}


def speed(encoders: list[str], n_singles: int, batch: dict[str, int], long_batch: int) -> dict:
    from recroute.encoders import get_encoder
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    data = resolve("mmlu_pro")
    texts = data.texts
    prompts = pick_prompts(texts, max(max(batch.values()), n_singles), np.random.default_rng(0))
    print(f"short prompts: {len(prompts['short'])}, long: {len(prompts['long'])}", flush=True)
    out = {}
    for name in encoders:
        enc = get_encoder(name)
        X = embedding_for_speed(data, name, enc)
        router = KNNRouter(k=5).fit(data, X)
        with tempfile.TemporaryDirectory() as tmp:
            RoutingBundle.build(router, enc).save(Path(tmp) / "bundle")
            start = time.perf_counter()
            bundle = RoutingBundle.load(Path(tmp) / "bundle", encoder=name)
            load_s = time.perf_counter() - start
        prepare = getattr(bundle.encoder, "prepare", None)
        if callable(prepare):
            prepare()
        route = lambda b: bundle.route_texts(b)  # noqa: E731
        res = {"encoder_name": bundle.encoder.name, "dim": int(bundle.encoder.dim), "bundle_load_s": load_s,
               "n_threads": getattr(bundle.encoder, "n_threads", None)}
        for kind in ("short", "long"):
            group = prompts[kind]
            n_batch = min(batch.get(name, batch["default"]) if kind == "short" else long_batch, len(group))
            n_single = n_singles if kind == "short" else max(20, n_singles // 4)
            fast = name in ("static", "tfidf")
            single = singles(route, group[:n_single])
            rate = batched(route, group[:n_batch], repeat=3 if fast else (2 if kind == "short" else 1))
            Xq = bundle.encode(group[:n_batch])
            single_knn = singles(lambda b: bundle.route_embeddings(Xq[: len(b)]), list(range(n_single)))
            rate_knn = batched(lambda b: bundle.route_embeddings(Xq[: len(b)]), list(range(n_batch)), repeat=3)
            res[kind] = {"n_single": n_single, "n_batch": n_batch, "single_route": single,
                         "batch_route_prompts_per_s": rate, "single_routing_step_only": single_knn,
                         "batch_routing_step_only_prompts_per_s": rate_knn,
                         "batch_ratio_routing_step_vs_route": rate_knn / rate,
                         "single_p50_ratio_route_vs_routing_step": single["p50_ms"] / single_knn["p50_ms"]}
            print(f"{name:12s} {kind:5s} single p50 {single['p50_ms']:.2f} ms p99 {single['p99_ms']:.2f} ms; "
                  f"batch of {n_batch}: {rate:,.0f} prompts/s end-to-end, routing step alone {rate_knn:,.0f}/s "
                  f"({rate_knn / rate:.2f}x)", flush=True)
        out[name] = res
    return out


def embedding_for_speed(data, name: str, enc):
    """The MMLU-Pro embeddings the speed part fits its kNN router on (cached; MiniLM's bundled)."""
    from recroute.encoders.cache import encode_cached

    if name == "minilm" or name == "minilm-onnx":  # fp32 ONNX = MiniLM's vectors (agreement recorded)
        return data.embeddings
    if name == "tfidf":
        enc.fit(data.texts)
    return encode_cached(enc, data.texts)


# ---------------------------------------------------------------------- report
def goals_and_default(speed_res: dict, qual: pd.DataFrame | None) -> dict:
    goals: dict = {}
    for name, (kind, rate, ratio) in SPEED_GOALS.items():
        if name not in speed_res:
            continue
        r = speed_res[name][kind]
        g = {"goal_prompts_per_s": rate, "value_prompts_per_s": r["batch_route_prompts_per_s"],
             "met_speed": r["batch_route_prompts_per_s"] >= rate}
        if ratio is not None:
            g.update({"goal_ratio": ratio, "value_ratio": r["batch_ratio_routing_step_vs_route"],
                      "met_ratio": r["batch_ratio_routing_step_vs_route"] <= ratio})
        goals[name] = g
    if qual is not None:
        for name, bound in BOUNDS.items():
            sub = qual[qual.encoder == name]
            if sub.empty:
                continue
            losses = {f"{r.dataset}/{r.router}": -float(r.delta_vs_minilm) for r in sub.itertuples()}
            missing = sorted(set(DATASETS) - set(sub.dataset))
            met = all(v <= bound for v in losses.values())
            goals.setdefault(name, {}).update({
                "quality_bound": bound, "mean_v_b_loss_vs_minilm": losses,
                "met_quality": (False if not met else None) if missing else met,  # None: not measured on every set
                "quality_not_measured_on": missing})
    default = None
    if qual is not None and speed_res:
        ok = [n for n in speed_res if n == "minilm" or goals.get(n, {}).get("met_quality")]
        default = max(ok, key=lambda n: speed_res[n]["short"]["batch_route_prompts_per_s"]) if ok else None
    return {"goals": goals, "fastest_within_quality_bound": default}


def summary_table(payload: dict) -> list[str]:
    """The README's short table: per encoder, batched short prompts/s end to end, its ratio to the
    routing step alone, and mean V_B (knn / two_tower, mean over m) minus MiniLM's per set."""
    sp = payload.get("speed") or {}
    q = pd.DataFrame(payload.get("quality_summary") or [])
    sets = [d for d in DATASETS if not q.empty and d in set(q.dataset)]
    lines = ["| encoder | dim | short prompts/s, text -> route | routing step alone / end to end | "
             + " | ".join(f"V_B vs MiniLM, {d} (knn / two_tower)" for d in sets) + " |",
             "|---" * (4 + len(sets)) + "|"]
    for name in ENCODERS:
        r = sp.get(name)
        cells = [name, str(r["dim"]) if r else "-",
                 f"{r['short']['batch_route_prompts_per_s']:,.0f}" if r else "-",
                 f"{r['short']['batch_ratio_routing_step_vs_route']:.1f}x" if r else "-"]
        for d in sets:
            sub = q[(q.dataset == d) & (q.encoder == name)].set_index("router")
            if sub.empty:
                cells.append("not measured")
            else:
                cells.append(" / ".join(f"{sub.delta_vs_minilm.get(k, float('nan')):+.4f}" for k in QUALITY_ROUTERS))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(payload: dict) -> str:
    lines = ["# Encoders: speed end to end and routing quality", "",
             f"Machine: {payload['machine'].get('cpu')}, {payload['machine'].get('cores')} cores, shared with other "
             f"engineers' jobs while this ran (absolute rates are noisy; ratios are within one run). {payload['date']}.", ""]
    sp = payload.get("speed") or {}
    if sp or payload.get("quality_summary"):
        lines += ["## Summary", ""] + summary_table(payload) + [""]
    if sp:
        lines += ["## Speed (kNN k=5 bundle over 12,032 MMLU-Pro questions; text -> encode -> route)", "",
                  "| encoder | dim | short p50 ms | short p99 ms | short prompts/s | routing step alone /s | ratio | "
                  "long p50 ms | long prompts/s | long ratio |", "|---" * 10 + "|"]
        for name, r in sp.items():
            s, lg = r["short"], r["long"]
            lines.append(f"| {name} | {r['dim']} | {s['single_route']['p50_ms']:.2f} | {s['single_route']['p99_ms']:.2f} | "
                         f"{s['batch_route_prompts_per_s']:,.0f} | {s['batch_routing_step_only_prompts_per_s']:,.0f} | "
                         f"{s['batch_ratio_routing_step_vs_route']:.1f}x | {lg['single_route']['p50_ms']:.2f} | "
                         f"{lg['batch_route_prompts_per_s']:,.0f} | {lg['batch_ratio_routing_step_vs_route']:.1f}x |")
        lines += ["", "ratio = routing step alone (precomputed embeddings) / end to end, batched; 1x = the encoder is free.", ""]
    q = payload.get("quality_summary")
    if q:
        df = pd.DataFrame(q)
        ms = sorted(int(c[5:]) for c in df.columns if c.startswith("v_b_m"))
        lines += ["## Quality: V_B under RouterEval's protocol (knn; two_tower mean of seeds 0-2)", "",
                  "| dataset | encoder | router | " + " | ".join(f"V_B m={m}" for m in ms) + " | mean | vs minilm |",
                  "|---" * (5 + len(ms)) + "|"]
        for r in df.itertuples():
            cells = [f"{getattr(r, f'v_b_m{m}'):.4f}" if pd.notna(getattr(r, f"v_b_m{m}")) else "-" for m in ms]
            lines.append(f"| {r.dataset} | {r.encoder} | {r.router} | " + " | ".join(cells)
                         + f" | {r.mean_v_b:.4f} | {r.delta_vs_minilm:+.4f} |")
        lines.append("")
    if payload.get("agreement"):
        lines += ["## Agreement with torch MiniLM (cosine per prompt, whole sets)", "",
                  "| set / encoder | mean | 1st percentile | min |", "|---|---|---|---|"]
        for key, a in payload["agreement"].items():
            lines.append(f"| {key} | {a['cosine_mean']:.5f} | {a['cosine_p01']:.5f} | {a['cosine_min']:.5f} |")
        lines.append("")
    skipped = {k: v for k, v in (payload.get("embeddings") or {}).items() if "not_measured" in v}
    if skipped:
        lines += ["## Not measured", ""]
        for k, v in skipped.items():
            extra = (f"; cosine to MiniLM on a random sample of {v['sample_size']} of its prompts: mean "
                     f"{v['sample_cosine_mean']:.4f}, min {v['sample_cosine_min']:.4f}") if "sample_size" in v else ""
            lines.append(f"- {k}: {v['not_measured']}{extra}")
        lines.append("")
    onnx = {k: v for k, v in (payload.get("embeddings") or {}).items() if "embeddings" in v}
    for k, v in onnx.items():
        lines += [f"- {k}: {v['embeddings']} (sample of {v['sample_size']}: min cosine {v['sample_cosine_min']:.6f})"]
    if onnx:
        lines.append("")
    if payload.get("goals"):
        lines += ["## Goals", "", "```json", json.dumps(payload["goals"], indent=1), "```", ""]
    if payload.get("fastest_within_quality_bound"):
        lines += [f"Fastest encoder within its quality bound on both sets: **{payload['fastest_within_quality_bound']}**.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "quality", "all", "report"], default="all",
                        help="report: rewrite the .json/.md from recorded results only")
    parser.add_argument("--speed-from", type=Path, default=None, help="take the speed results of another run's JSON")
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", default="0,1,2", help="two_tower seeds")
    parser.add_argument("--singles", type=int, default=200, help="single-prompt calls (short; long gets a quarter)")
    parser.add_argument("--batch", type=int, default=512, help="short prompts per batched call (slow encoders)")
    parser.add_argument("--fast-batch", type=int, default=2048, help="short prompts per batched call (static, tfidf)")
    parser.add_argument("--long-batch", type=int, default=128)
    parser.add_argument("--max-encode", type=int, default=None,
                        help="quality: skip a dataset x encoder with more texts than this missing from the cache")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "encoders.json")
    args = parser.parse_args()
    MAX_ENCODE["value"] = args.max_encode

    from machine import describe_machine

    from recroute.atomic import atomic_file

    encoders = args.encoders.split(",")
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    started = time.perf_counter()
    payload = {"benchmark": "encoders", "machine": describe_machine(), "date": time.strftime("%Y-%m-%d"),
               "note": "2-core machine shared with other engineers' jobs while this ran"}
    speed_res = previous.get("speed", {})
    if args.speed_from is not None:
        speed_res = {**speed_res, **json.loads(args.speed_from.read_text())["speed"]}
    if args.part in ("speed", "all"):
        batch = {"default": args.batch, "static": args.fast_batch, "tfidf": args.fast_batch}
        speed_res = {**speed_res, **speed(encoders, args.singles, batch, args.long_batch)}
    payload["speed"] = speed_res
    qual_rows = previous.get("quality_rows", [])
    agree, notes = previous.get("agreement", {}), previous.get("embeddings", {})

    def save() -> None:
        summary = summarise_quality(qual_rows) if qual_rows else None
        payload.update({"quality_rows": qual_rows, "agreement": agree, "embeddings": notes,
                        "quality_summary": None if summary is None else summary.to_dict("records"),
                        "quality_protocol": "RouterEval: seed-42 split; groups all_strong/all_weak/strong_to_weak; "
                                            "group means; easy m=3,5 and hard m=10 where the pool allows; "
                                            "two_tower averaged over seeds " + args.seeds,
                        **goals_and_default(speed_res, summary), "seconds": time.perf_counter() - started})
        with atomic_file(args.out) as tmp:
            tmp.write_text(json.dumps(payload, indent=1, default=float) + "\n")
        with atomic_file(args.out.with_suffix(".md")) as tmp:
            tmp.write_text(markdown(payload) + "\n")

    if args.part in ("quality", "all"):
        for ds in args.datasets.split(","):  # saved after every dataset x encoder: a long run keeps what it did
            for name in encoders:
                rows, new_agree, new_notes = quality([ds], [name], [int(s) for s in args.seeds.split(",")])
                qual_rows = [r for r in qual_rows if (r["dataset"], r["encoder"]) != (ds, name)] + rows
                agree.update(new_agree)
                notes.update(new_notes)
                save()
    save()
    print(json.dumps({"goals": payload["goals"], "default": payload["fastest_within_quality_bound"]}, indent=1))
    print(f"written to {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
