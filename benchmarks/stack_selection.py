"""What the stack chooses per pool, and on what evidence: the diagnosis behind its selection rule.

For each group (pool) of a set, in RouterEval's protocol (seed-42 split and groups, m = 3, 5, 10), every
stack member is scored two ways, from information the stack may use:

- on the **validation part** (members bagged over ``--n-seeds`` seeds on the training prompts): log loss
  of P(correct), routed mu_o and its paired standard error against the best member (``one_se_choice``);
- **cross-fitted** on training + validation (``cv_folds`` folds, one seed per fold fit): the same out of
  fold, on every one of those prompts;

and, for the diagnosis only (never for a choice), the test V_B of each member fitted on the training
prompts, i.e. what each rule's pick turned out to be worth, and which member would have been needed.

    python benchmarks/stack_selection.py --sets llmrouter_nim --json benchmarks/results/stack_selection_nim.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_data import resolve  # noqa: E402

BOARD_M = (3, 5, 10)


def group_rows(stack, gd) -> list[dict]:
    """One row per member of one group: validation and cross-fitted evidence, and its test V_B."""
    from recroute.eval import metrics
    from recroute.routers.base import ValidationPart
    from recroute.routers.stack import one_se_choice

    validation = ValidationPart(gd.Y_val, gd.X_val)
    stack.cv_below = 0
    specs, P_val, Y_val, fitted, _ = stack.candidates(gd.Y_train, gd.X_train, validation)
    stack.cv_below = 10**12
    specs_cv, P_cv, Y_cv, _, _ = stack.candidates(gd.Y_train, gd.X_train, validation)
    if specs_cv != specs:
        raise RuntimeError(f"{gd.where}: members differ between the two modes: {specs} / {specs_cv}")
    val_pick, val = one_se_choice(P_val, Y_val)
    cv_pick, cv = one_se_choice(P_cv, Y_cv)
    n = gd.Y_test.shape[0]
    rows = []
    for i, (spec, router) in enumerate(zip(specs, fitted)):
        scores = np.asarray(router.score(gd.X_test, n=n), dtype=np.float64)
        mu = metrics.mu_o(gd.Y_test, np.argmax(scores, axis=1))
        rows.append({"where": gd.where, "m": gd.m, "member": spec, "n_val": int(len(Y_val)), "n_cv": int(len(Y_cv)),
                     **{f"val_{k}": float(v[i]) for k, v in val.items()}, **{f"cv_{k}": float(v[i]) for k, v in cv.items()},
                     "test_v_b": float(metrics.v_b(mu, gd.Y_test)),
                     "pick_val_log_loss": bool(i == int(np.argmin(val["log_loss"]))), "pick_val_one_se": bool(i == val_pick),
                     "pick_cv_log_loss": bool(i == int(np.argmin(cv["log_loss"]))), "pick_cv_one_se": bool(i == cv_pick),
                     "pick_cv_mu_o": bool(i == int(np.nanargmax(cv["mu_o"])))})
    return rows


RULES = ("pick_val_log_loss", "pick_val_one_se", "pick_cv_log_loss", "pick_cv_one_se", "pick_cv_mu_o")


def markdown(rows: list[dict], meta: dict) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = ["# The stack's selection: evidence per pool", "", meta["note"], "",
             "## Test V_B of each rule's pick (mean over the pools of m = 3, 5, 10), and of each member", "",
             "| set | " + " | ".join(r.removeprefix("pick_") for r in RULES) + " | best member on test (not a rule) |",
             "|---" * (len(RULES) + 2) + "|"]
    for dataset, part in df.groupby("dataset", sort=False):
        picks = [part[part[r]].test_v_b.mean() for r in RULES]
        by_member = part.groupby("member").test_v_b.mean()
        lines.append(f"| {dataset} | " + " | ".join(f"{v:.4f}" for v in picks)
                     + f" | {by_member.idxmax()} {by_member.max():.4f} |")
    lines += ["", "## Per pool", "",
              "| set | pool | member | val log loss | val mu_o ± se | cv log loss | cv mu_o ± se | test V_B | picked by |",
              "|---" * 9 + "|"]
    for r in df.itertuples():
        picked = ", ".join(k.removeprefix("pick_") for k in RULES if getattr(r, k))
        lines.append(f"| {r.dataset} | {r.where} | {r.member} | {r.val_log_loss:.4f} | {r.val_mu_o:.4f} ± {r.val_se:.4f} "
                     f"| {r.cv_log_loss:.4f} | {r.cv_mu_o:.4f} ± {r.cv_se:.4f} | {r.test_v_b:.4f} | {picked} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="llmrouter_nim")
    parser.add_argument("--stack", default="stack", help="the stack spec whose members are diagnosed")
    parser.add_argument("--n-seeds", type=int, default=3)
    parser.add_argument("--encoder", default=None)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    from recroute.data.routereval import build_router_dataset
    from recroute.eval.protocol import build_settings, dataset_embeddings, iter_group_data
    from recroute.routers.registry import make_router

    rows = []
    for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
        data = resolve(name)
        emb = dataset_embeddings(data, None, args.encoder, needed=True, fit_seed=42)
        rd = build_router_dataset(data, build_settings(("easy", "hard")), seed=42, embeddings=emb)
        for gd in iter_group_data(rd, ("easy", "hard")):
            if gd.m not in BOARD_M:
                continue
            stack = make_router(args.stack)
            stack.n_seeds = args.n_seeds
            load, start = os.getloadavg()[0], time.perf_counter()
            new = [{"dataset": name, **r, "seconds": time.perf_counter() - start, "load": load} for r in group_rows(stack, gd)]
            for r in new:
                r["seconds"] = time.perf_counter() - start
            rows += new
            best = max(new, key=lambda r: r["test_v_b"])
            print(f"{name} {gd.where}: val one_se {[r['member'] for r in new if r['pick_val_one_se']]}, "
                  f"cv one_se {[r['member'] for r in new if r['pick_cv_one_se']]}, best on test {best['member']} "
                  f"({time.perf_counter() - start:.0f} s, load {load:.1f})", flush=True)
            meta = {"benchmark": "stack_selection", "stack": args.stack, "n_seeds": args.n_seeds, "encoder": args.encoder,
                    "date": time.strftime("%Y-%m-%d"),
                    "note": (f"Members of `{args.stack}` ({args.n_seeds} seeds on the validation part; cross-fitted with one "
                             f"seed per fold), features {args.encoder or 'MiniLM'}; 2 shared cores. Test V_B is the "
                             "member fitted on the training prompts only: the diagnosis, never a choice.")}
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps({**meta, "rows": rows}, indent=1) + "\n")
            args.json.with_suffix(".md").write_text(markdown(rows, meta))


if __name__ == "__main__":
    main()
