"""The routing loop on a replayed stream (recroute.loop): does the live router learn from its own
traffic, are promotions safe, does a new LLM get its share?

Each seed replays a dataset's prompts once each, in a random order, as traffic to a live router
trained with full information on 5 % of them (the anchor), exploring by ε-greedy within a budget;
every outcome comes back from the stored results; the loop refits every ``--every`` outcomes by DR
completion and promotes when the lower bound of candidate - live is above 0 (recroute.loop.gate's design
interval): with ``--explore shadow`` (default) the last refit, made conservative by ``--shadow-tau``, is
explored within the budget and gated on the decisions since (results/loop_gate.md); with ``--explore
epsilon`` ε-greedy over the top k and a gate on the most recent 30 %; ``--new-llm`` is held out of the pool
until halfway, then onboarded: probed on the anchor (at most 200 probes), placed by regression and gated
(recroute.loop.onboard); its share is reported against the full-information router's three ways
(dataset order, new LLM last, ties split evenly: recroute.loop.simulate._new_llm_share).

Modes:
- ``--mode fast`` (default): the loop in process (recroute.loop.simulate), the many-seed runs.
- ``--mode process``: one seed through real processes on 127.0.0.1: the replay upstreams
  (``python -m recroute.loop.replay``), ``recroute gateway`` (static encoder, ``--log-prompt-text``)
  and ``recroute loop run``; the traffic client posts each outcome to ``POST /v1/feedback`` (each
  request's candidates: the LLMs with a stored result for its prompt, as in fast mode). With
  ``--explore shadow`` the gateway runs greedy and the loop installs each refit as the gateway's shadow
  (``POST /admin/shadow`` with ``--shadow-tau``: the conservative shadow) and gates it on the decisions
  since, promoting ConservativeRouter(refit, live, tau) (tau 0: the plain refit); with ``--explore
  epsilon`` the gateway's ε-greedy over the top k explores and each refit is gated on the last 30 %.

    python benchmarks/loop.py --dataset mmlu_pro --decisions 11430 --seeds 20 --json out.json --new-llm DeepSeek-Coder-V2
    python benchmarks/loop.py --dataset mmlu_pro --decisions 2000 --seeds 1 --mode process --json proc.json

JSON: one row per seed with mu_o_live (the last window's true mu_o of the live router's greedy
choice), mu_o_full (the same family fitted with full information on every earlier prompt, on the
same window), promotions (each with true_delta against the router it replaced), curve, new_llm.
``--plot FILE`` draws mu_o over time (live vs full information) and the new LLM's share.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402


def load_features(data, encoder: str | None):
    """(data, X): the dataset's stored embeddings, else its texts encoded (``encoder``, default static)."""
    from recroute.encoders import embed_dataset, get_encoder

    if encoder is None and data.embeddings is not None:
        return data.embeddings
    return np.asarray(embed_dataset(data, get_encoder(encoder or "static")), dtype=np.float32)


def save(args, rows: list[dict]) -> None:
    """The JSON document so far (written after every seed: a long run keeps what it measured)."""
    doc = {"machine": describe_machine(), "args": vars(args), "rows": rows}
    Path(args.json).write_text(json.dumps(doc, indent=1, default=float))


def run_fast(args) -> list[dict]:
    from recroute.data.catalog import load_dataset
    from recroute.loop.runner import LoopSettings
    from recroute.loop.schedule import Schedule
    from recroute.loop.simulate import StreamConfig, simulate_stream

    data = load_dataset(args.dataset)
    X = load_features(data, args.encoder)
    settings = LoopSettings(schedule=Schedule(args.every), holdout=0.3, min_outcomes=args.every,
                            reward_router=args.reward_router, probe_budget=args.probe_budget,
                            min_support=args.min_support, onboard_margin=args.onboard_margin,
                            onboard_min_support=args.onboard_min_support, **({"onboard_design": args.onboard_design} if args.onboard_design else {}))
    config = StreamConfig(family=args.family, start_share=args.start_share, decisions=args.decisions,
                          explore_budget=args.budget, explore_top_k=args.top_k or None, new_llm=args.new_llm,
                          explore=args.explore, shadow_looks=args.shadow_looks,
                          shadow_tau=args.shadow_tau, anchor_reward=args.anchor_reward,
                          onboard_shadow=args.onboard_shadow, shallow=not args.no_shallow,
                          retune=not args.no_retune,
                          settings=settings)
    rows = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        start = time.perf_counter()
        row = simulate_stream(data, X, config, seed=seed)
        row.update(dataset=args.dataset, mode="fast", seconds=round(time.perf_counter() - start, 1),
                   load=os.getloadavg())
        rows.append(row)
        save(args, rows)
        print(f"seed {seed}: mu_o_live {row['mu_o_live']:.4f} full {row['mu_o_full']:.4f} ratio {row['ratio']:.3f} "
              f"promotions {[(p['kind'], p.get('stage'), round(p['true_delta'], 4)) for p in row['promotions']]} "
              f"depth {row.get('live_depth')} "
              f"new {_new_summary(row.get('new_llm'))} ({row['seconds']} s)", flush=True)
    return rows


def _new_summary(new: dict | None) -> str:
    if not new:
        return "-"
    return (f"{new['probes']} probes, placed {new['placed']}, true delta {new['true_delta']:+.4f}, share live "
            f"{new['share_live']:.3f} / full {new['share_full']:.3f} (last {new['share_full_last']:.3f}), split "
            f"{new['share_live_split']:.3f} / {new['share_full_split']:.3f}")


def run_process(args) -> list[dict]:
    """One seed through the replay upstreams, the gateway and the loop as processes."""
    import tempfile

    from recroute.data.catalog import load_dataset
    from recroute.encoders import get_encoder
    from recroute.feedback.logs import read_decision_log
    from recroute.loop.journal import Journal
    from recroute.loop.simulate import true_mu
    from recroute.loop.stream import send_traffic, write_anchor, write_upstreams
    from recroute.routers.registry import make_router
    from recroute.serve.bundle import RoutingBundle

    data = load_dataset(args.dataset)
    names = [str(n) for n in data.llm_names]
    rng = np.random.default_rng(0)
    perm = rng.permutation(np.flatnonzero((~np.isnan(data.dense(np.nan))).any(axis=1)))
    n0 = int(round(args.start_share * len(perm)))
    start_rows, stream = perm[:n0], perm[n0:n0 + args.decisions]
    tmp = Path(tempfile.mkdtemp(prefix="loop-bench-"))
    encoder = get_encoder(args.encoder or "static")
    X_all = load_features(data, args.encoder or "static")  # the gateway's encoder, through the embedding cache
    router = make_router(args.family).fit(data.dense(np.nan)[start_rows], X_all[start_rows])
    router.llm_names_ = np.asarray(names, dtype=object)
    bundle = RoutingBundle.build(router, encoder).save(tmp / "bundle")
    anchor = write_anchor(data, start_rows, tmp / "anchor")
    ports = [_free_port() for _ in range(2)]
    replay_url, gw_url = (f"http://127.0.0.1:{p}" for p in ports)
    upstreams = write_upstreams(tmp / "upstreams.toml", names, replay_url)
    env = {**os.environ, "LOOP_ADMIN_KEY": "bench-admin-key", "PYTHONUNBUFFERED": "1"}
    log, journal = tmp / "decisions.jsonl", tmp / "loop.jsonl"
    shadow = args.explore == "shadow"
    policy = [] if shadow else ["--policy", f"epsilon_greedy:epsilon={args.budget}" + (f",top_k={args.top_k}" if args.top_k else "")]
    explore = (["--explore", "shadow", "--shadow-looks", str(args.shadow_looks), "--shadow-tau", str(args.shadow_tau)]
               if shadow else ["--explore", "epsilon"])
    cmds = [
        [sys.executable, "-m", "recroute.loop.replay", "--dataset", str(args.dataset), "--port", str(ports[0])],
        [sys.executable, "-m", "recroute", "gateway", "--bundle", str(bundle), "--upstreams", str(upstreams),
         "--port", str(ports[1]), "--log", str(log), "--log-prompt-text", *policy, "--seed", "0",
         "--admin-key-env", "LOOP_ADMIN_KEY", "--quiet"],
        [sys.executable, "-m", "recroute", "loop", "run", "--log", str(log), "--bundle", str(bundle), "--journal",
         str(journal), "--gateway", gw_url, "--admin-key-env", "LOOP_ADMIN_KEY", "--every-outcomes", str(args.every),
         "--min-outcomes", str(args.every), "--reward-router", args.reward_router, "--anchor", str(anchor),
         "--explore-budget", str(args.budget), "--min-support", str(args.min_support), *explore, "--poll", "1",
         "--quiet"],
    ]
    procs = []
    started = time.perf_counter()
    try:
        procs.append(subprocess.Popen(cmds[0], env=env))
        _wait(replay_url)
        procs.append(subprocess.Popen(cmds[1], env=env))
        _wait(gw_url)
        procs.append(subprocess.Popen(cmds[2], env=env))
        sent = send_traffic(gw_url, data, stream, observed_only=True)
        deadline, last, quiet_since = time.monotonic() + 600, None, time.monotonic()
        while time.monotonic() < deadline:  # until no refit is due: the last one saw all but < --every outcomes
            events = Journal(journal).events()
            if any(e["event"] == "refit" and e["n_outcomes"] > len(stream) - args.every for e in events):
                break
            if len(events) != last:
                last, quiet_since = len(events), time.monotonic()
            elif shadow and time.monotonic() - quiet_since > 60:  # a shadow's window too short for another look
                break
            time.sleep(1)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
    events = Journal(journal).events()
    state = Journal(journal).state()
    live = RoutingBundle.load(state.live_bundle).router
    truth = data.dense(np.nan).astype(np.float64)
    window = stream[-min(args.window, len(stream)):]
    c = [names.index(str(n)) for n in live.llm_names_]
    mu_live = true_mu(live, X_all[window], truth[window][:, c], ~np.isnan(truth[window][:, c]))[0]
    before = np.concatenate([start_rows, stream[: len(stream) - len(window)]])
    full = make_router(args.family).fit(data.dense(np.nan)[before], X_all[before])
    mu_full = true_mu(full, X_all[window], truth[window], ~np.isnan(truth[window]))[0]
    logged = read_decision_log(log)
    promotions = []
    previous = router
    for ev in (e for e in events if e["event"] == "promoted"):
        new = RoutingBundle.load(ev["bundle"]).router
        cols = [names.index(str(n)) for n in new.llm_names_]
        mu_new = true_mu(new, X_all[stream], truth[stream][:, cols], ~np.isnan(truth[stream][:, cols]))[0]
        mu_old = true_mu(previous, X_all[stream], truth[stream], ~np.isnan(truth[stream]))[0]
        promotions.append({"kind": ev["kind"], "bundle": ev["bundle"], "true_delta": mu_new - mu_old,
                           "checksum": (ev.get("response") or {}).get("checksum")})
        previous = new
    shadows_true = shadow_true_deltas(events, X_all[stream], truth[stream], names)
    return [{"dataset": args.dataset, "mode": "process", "seed": 0, "family": args.family, "explore": args.explore,
             "n_decisions": len(stream), "explore_budget": args.budget, "mu_o_live": mu_live, "mu_o_full": mu_full,
             "ratio": mu_live / mu_full, "promotions": promotions, "shadows_true": shadows_true,
             **process_exploration(logged, events),
             "refused": [e["reason"] for e in events if e["event"] == "refused"],
             "refits": sum(e["event"] == "refit" for e in events),
             "requests_ok": sum(r["status"] == 200 for r in sent),
             "feedback_ok": sum(r.get("feedback_status") == 200 for r in sent),
             "logged_outcomes": int(logged["outcome"].notna().sum()), "logged_decisions": len(logged),
             "seconds": round(time.perf_counter() - started, 1), "load": os.getloadavg()}]


def shadow_true_deltas(events: list[dict], X: np.ndarray, truth: np.ndarray, names: list[str]) -> list[dict]:
    """Per shadow fitted (journal ``shadow`` events of kind refit): the true mu_o on the stream (X (n, d),
    truth (n, m) in ``names``' order, NaN = no result: not a candidate) of the policy it served and the
    gate tested (``served_policy``: ConservativeRouter(shadow, live, tau), tau 0: the shadow) and of the
    plain refit, each minus the live router's at the time, with whether it was promoted."""
    from recroute.loop.runner import served_policy
    from recroute.loop.simulate import true_mu
    from recroute.serve.bundle import RoutingBundle

    start = next(e["live_bundle"] for e in events if e["event"] == "start")
    live_path, out, allowed = start, [], ~np.isnan(truth)
    passed = {e["bundle"] for e in events if e["event"] == "decision" and e.get("kind") == "shadow" and e["action"] == "promote"}
    for ev in events:
        if ev["event"] == "promoted":
            live_path = ev["bundle"]
        if ev["event"] != "shadow" or ev.get("kind") != "refit":
            continue
        live, shadow = RoutingBundle.load(live_path).router, RoutingBundle.load(ev["bundle"]).router
        if [str(n) for n in shadow.llm_names_] != names or [str(n) for n in live.llm_names_] != names:
            continue
        mu_live = true_mu(live, X, truth, allowed)[0]
        served = served_policy(shadow, live, float(ev.get("tau") or 0.0))
        out.append({"bundle": ev["bundle"], "tau": ev.get("tau"), "live": live_path,
                    "true_delta_served": true_mu(served, X, truth, allowed)[0] - mu_live,
                    "true_delta_plain": true_mu(shadow, X, truth, allowed)[0] - mu_live,
                    "passed": ev["bundle"] in passed})
    return out


def process_exploration(logged, events: list[dict]) -> dict:
    """What the process run's exploration did: the shadows installed, every gate's estimate (delta, lower
    bound, expected support, look) and, for the decisions served with a shadow, the off-greedy share
    (served away from live's choice), the share where the two differ and the share of those served the
    shadow's choice (≈ ε)."""
    shadowed = logged["shadow_checksum"].notna() if "shadow_checksum" in logged.columns else None
    out = {"shadows": [{"epsilon": e["epsilon"], "tau": e.get("tau"), "kind": e["kind"], "checksum": e["checksum"]}
                       for e in events if e["event"] == "shadow"],
           "gates": [{k: e.get(k) for k in ("n_outcomes", "look", "n", "delta", "lower", "upper", "se_design",
                                            "expected_support", "support", "disagree")}
                     for e in events if e["event"] == "estimate"]}
    if shadowed is not None and shadowed.any():
        rows = logged[shadowed]
        differ = rows["live_choice"] != rows["shadow_choice"]
        kinds = {(e["checksum"], float(e["epsilon"])): e["kind"] for e in events if e["event"] == "shadow"}
        out["per_epsilon"] = [  # each shadow's decisions per ε in log order: the first is the refit's (its first window)
            {"checksum": c, "epsilon": float(eps), "set_by": kinds.get((c, float(eps))), "decisions": len(g),
             "differ": float((g["live_choice"] != g["shadow_choice"]).mean()),
             "expected_off_greedy": float(eps) * float((g["live_choice"] != g["shadow_choice"]).mean()),
             "served_off_greedy": float((g["chosen"] != g["live_choice"]).mean())}
            for (c, eps), g in rows.groupby(["shadow_checksum", "shadow_epsilon"], sort=False)]
        out.update(shadow_decisions=int(shadowed.sum()), off_greedy_share=float((rows["chosen"] != rows["live_choice"]).mean()),
                   differ_share=float(differ.mean()),
                   served_shadow_where_differ=float((rows.loc[differ, "chosen"] == rows.loc[differ, "shadow_choice"]).mean())
                   if differ.any() else float("nan"))
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(url: str, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer /healthz")


def plot(rows: list[dict], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r.get("curve")]
    has_new = any("new_llm_share" in r["curve"][0] for r in rows)
    fig, axes = plt.subplots(1, 2 if has_new else 1, figsize=(11 if has_new else 6, 4), squeeze=False)
    ax = axes[0][0]
    end = [p["end"] for p in rows[0]["curve"]]
    live = np.array([[p["mu_o_live"] for p in r["curve"]] for r in rows])
    full = np.array([[p["mu_o_full"] for p in r["curve"]] for r in rows])
    ax.plot(end, live.mean(0), label="live router (true mu_o)")
    ax.fill_between(end, live.min(0), live.max(0), alpha=0.2)
    ax.plot(end, full.mean(0), label="full-information router", linestyle="--")
    ax.set_xlabel("decisions"), ax.set_ylabel("mu_o per 500 decisions"), ax.legend(), ax.set_title(title)
    if has_new:
        share = np.array([[p["new_llm_share"] for p in r["curve"]] for r in rows])
        axes[0][1].plot(end, share.mean(0), label="new LLM's served share")
        full_share = np.mean([r["new_llm"]["share_full"] for r in rows])
        axes[0][1].axhline(full_share, linestyle="--", label="full-information share (dataset's LLM order)")
        if "share_full_split" in rows[0]["new_llm"]:  # the column-order-free share goal 3 is judged on
            split = np.mean([r["new_llm"]["share_full_split"] for r in rows])
            axes[0][1].axhline(split, linestyle=":", color="black", label="full-information share (ties split)")
        axes[0][1].set_xlabel("decisions"), axes[0][1].legend(), axes[0][1].set_title(rows[0]["new_llm"]["llm"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--decisions", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--json", required=True)
    parser.add_argument("--new-llm", default=None)
    parser.add_argument("--mode", choices=("fast", "process"), default="fast")
    parser.add_argument("--family", default="knn")
    parser.add_argument("--encoder", default=None, help="default: stored embeddings (fast), static (process)")
    parser.add_argument("--budget", type=float, default=0.02)
    parser.add_argument("--top-k", type=int, default=3, help="explore the top k LLMs (0: every allowed LLM)")
    parser.add_argument("--explore", choices=("epsilon", "shadow"), default="shadow",
                        help="shadow exploration of the last refit (recroute.loop.shadow; fast mode: conservative by "
                             "--shadow-tau; process mode: the gateway's shadow with --shadow-tau), or ε-greedy over the top k")
    parser.add_argument("--shadow-looks", type=int, default=3, help="--explore shadow: looks before a fresh shadow")
    parser.add_argument("--shadow-tau", type=float, default=0.2,
                        help="--explore shadow: the refit leaves live's choice only by more than tau (0: plain refit)")
    parser.add_argument("--anchor-reward", action="store_true",
                        help="fast mode: the DR reward model (refit completion, shadow gate) fitted on the anchor too")
    parser.add_argument("--onboard-shadow", action="store_true",
                        help="fast mode, --explore shadow: a shadow with the new LLM fitted as soon as it is onboarded")
    parser.add_argument("--no-shallow", action="store_true",
                        help="fast mode, tau > 0: promote the conservative policy only (no second, plain-refit stage)")
    parser.add_argument("--no-retune", action="store_true",
                        help="fast mode, --explore shadow: keep a shadow's first ε across its looks (no retune)")
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--min-support", type=int, default=3, help="the gate's support rule (LoopSettings.min_support)")
    parser.add_argument("--start-share", type=float, default=0.05)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--reward-router", default="linear")
    parser.add_argument("--probe-budget", type=int, default=200)
    parser.add_argument("--onboard-margin", type=float, default=-0.03, help="onboarding's gate (LoopSettings.onboard_margin)")
    parser.add_argument("--onboard-min-support", type=int, default=10, help="LoopSettings.onboard_min_support")
    parser.add_argument("--onboard-design", default=None, help="LoopSettings.onboard_design: the probe design (default: LoopSettings')")
    parser.add_argument("--plot", default=None)
    args = parser.parse_args()
    if args.mode == "process" and args.decisions is None:
        parser.error("--mode process needs --decisions")
    rows = run_fast(args) if args.mode == "fast" else run_process(args)
    save(args, rows)
    if args.plot:
        plot(rows, args.plot, f"{Path(args.dataset).name}: {args.family}, budget {args.budget}, top {args.top_k}")


if __name__ == "__main__":
    main()
