"""``recroute loop run`` (the online loop beside a gateway: refit from its log, promote what OPE proves,
onboard new LLMs) and ``recroute loop status`` (what its journal says)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import (
    err_console,
    output_console,
    table_from_rows,
    user_errors,
    write_json,
)
from recroute.errors import DataError

loop_app = typer.Typer(help="The online loop: refit from the gateway's log, promote only what OPE proves.",
                       no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(loop_app, name="loop")


@loop_app.command("run")
def run_command(
    log_path: Path = typer.Option(..., "--log", "-l", help="The gateway's decision log (JSONL, --log-prompt-text)."),
    bundle_dir: Path = typer.Option(..., "--bundle", "-b", help="The bundle the gateway started with."),
    journal_path: Path = typer.Option(..., "--journal", "-j", help="The loop journal (JSONL), resumed when it exists."),
    gateway: str = typer.Option(..., "--gateway", "-g", help="The gateway's URL (its POST /admin/reload promotes)."),
    admin_key_env: Optional[str] = typer.Option(None, "--admin-key-env", help="Environment variable holding the admin key."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where candidate bundles go (default: beside the journal)."),
    families: Optional[str] = typer.Option(None, "--families", help="Comma-separated router specs to refit (default: the live one's)."),
    every_outcomes: Optional[int] = typer.Option(1000, "--every-outcomes", min=1, help="Refit after this many new outcomes."),
    every_seconds: Optional[float] = typer.Option(None, "--every-seconds", min=0.001, help="Or after this many seconds."),
    holdout: float = typer.Option(0.3, "--holdout", min=0.0, help="Recent decisions the gate evaluates on (a share < 1, or a count)."),
    min_outcomes: int = typer.Option(500, "--min-outcomes", min=2, help="Outcomes needed before the first refit."),
    alpha: float = typer.Option(0.05, "--alpha", help="1 - the interval's level (split over the families)."),
    margin: float = typer.Option(0.0, "--margin", help="Promote when the lower bound of candidate - live is above this."),
    min_support: int = typer.Option(3, "--min-support", min=0, help="Logged decisions that must have taken the candidate's differing choice, where the logging probabilities cannot be recomputed (otherwise the design interval decides)."),
    reward_router: str = typer.Option("linear", "--reward-router", help="The DR reward model's router spec."),
    explore_budget: Optional[float] = typer.Option(None, "--explore-budget", min=0.0, max=1.0, help="The off-greedy share exploration may use: journalled against the measured share (epsilon), or the shadow's budget (shadow; default 0.02)."),
    explore: str = typer.Option("epsilon", "--explore", help="epsilon: the gateway's --policy explores, each refit gated on the last --holdout; shadow: each refit served as the gateway's shadow (POST /admin/shadow) and gated on the decisions since."),
    shadow_looks: int = typer.Option(3, "--shadow-looks", min=1, help="--explore shadow: gates of one shadow (look j at level alpha/(j(j+1))) before a fresh refit replaces it."),
    shadow_tau: float = typer.Option(0.2, "--shadow-tau", min=0.0, help="--explore shadow: the shadow serves (and a passed gate promotes) ConservativeRouter(refit, live, tau): the refit's choice only where its score beats live's choice's by more than tau (0: the plain refit)."),
    anchor_reward: bool = typer.Option(False, "--anchor-reward", help="Fit the DR reward model of refits and gates on the --anchor set's full results too (docs/loop.md: the anchored reward model)."),
    anchor: Optional[str] = typer.Option(None, "--anchor", help="Dataset folder of the start set (full results; 'reference' column for probes)."),
    upstreams: Optional[Path] = typer.Option(None, "--upstreams", "-u", help="The gateway's upstreams file: a new LLM there is onboarded."),
    probe_budget: int = typer.Option(200, "--probe-budget", min=1, help="Most probe calls per new LLM."),
    onboard_margin: float = typer.Option(-0.03, "--onboard-margin", help="A new LLM is routed to once the lower bound of its gain on the probes is above this."),
    onboard_min_support: int = typer.Option(10, "--onboard-min-support", min=0, help="Probed prompts where the placed LLM must change the choice."),
    onboard_design: str = typer.Option("uniform", "--onboard-design", help="Which anchor prompts a new LLM is probed on: uniform (a random order) or contested (stratified on where the existing LLMs disagree; docs/loop.md)."),
    poll: float = typer.Option(5.0, "--poll", min=0.01, help="Seconds between steps."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=1, help="Stop after this many steps (default: run until stopped)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the reward model's folds."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Warnings only."),
) -> None:
    """Run the loop beside a gateway: on schedule refit from its log, gate by OPE, hot-reload what passes.

    Example: recroute loop run --log decisions.jsonl --bundle bundle/ --journal loop.jsonl --gateway http://127.0.0.1:8080 --admin-key-env ADMIN_KEY
    """
    from recroute.loop.journal import Journal
    from recroute.loop.promote import ShadowClient, gateway_reload, gateway_serving
    from recroute.loop.runner import LoopRunner, LoopSettings
    from recroute.loop.schedule import Schedule

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        key = None
        if admin_key_env is not None:
            key = os.environ.get(admin_key_env)
            if not key:
                raise DataError(f"--admin-key-env {admin_key_env}: the environment variable is not set")
        if not bundle_dir.is_dir():
            raise DataError(f"--bundle {bundle_dir}: no such bundle folder")
        anchor_data = None
        if anchor is not None:
            from recroute.data.catalog import load_dataset

            anchor_data = load_dataset(anchor)
        if explore not in ("epsilon", "shadow"):
            raise DataError(f"--explore must be epsilon or shadow; got {explore!r}")
        if anchor_reward and anchor_data is None:
            raise DataError("--anchor-reward fits the reward model on the anchor set: give it with --anchor")
        if explore == "shadow" and explore_budget is None:
            explore_budget = 0.02
        specs = tuple(s.strip() for s in families.split(";" if ";" in families else ",") if s.strip()) if families else None
        settings = LoopSettings(
            families=specs, schedule=Schedule(every_outcomes, every_seconds),
            holdout=holdout if holdout < 1 else int(holdout), min_outcomes=min_outcomes, alpha=alpha, margin=margin,
            min_support=min_support, reward_router=reward_router, explore_budget=explore_budget,
            probe_budget=probe_budget, onboard_margin=onboard_margin,
            onboard_min_support=onboard_min_support, onboard_design=onboard_design, explore=explore, shadow_looks=shadow_looks,
            shadow_tau=shadow_tau, anchor_reward=anchor_reward)
        journal = Journal(journal_path)
        runner = LoopRunner(log_path, journal, gateway_reload(gateway, key), workdir or journal_path.parent / "loop-bundles",
                            settings, anchor_data, upstreams, seed=seed, serving=gateway_serving(gateway),
                            shadow_client=ShadowClient(gateway, key) if explore == "shadow" else None)
        runner.start(bundle_dir, log=str(log_path), gateway=gateway, holdout=holdout, margin=margin, alpha=alpha,
                     min_support=min_support, families=list(specs) if specs else None, explore=explore,
                     explore_budget=explore_budget)
    if not quiet:
        err_console.print(f"loop on {log_path} -> {gateway} (journal {journal_path})", highlight=False)
    try:
        runner.run(poll, max_steps)
    except KeyboardInterrupt:
        pass


def status_rows(events: list[dict]) -> list[dict]:
    """One row per refit, onboarding or promotion of the journal, in order."""
    rows = []
    estimates: list[dict] = []
    for ev in events:
        kind = ev["event"]
        if kind == "estimate":
            estimates.append(ev)
        elif kind == "decision":
            for est in estimates or [{}]:
                rows.append({"event": "shadow gate" if ev.get("kind") == "shadow" else "refit",
                             "n_outcomes": ev.get("n_outcomes"), "family": est.get("family"),
                             "delta": est.get("delta"), "lower": est.get("lower"), "support": est.get("support"),
                             "action": ev.get("action"), "detail": ev.get("reason")})
            estimates = []
        elif kind == "onboard":
            gate = ev.get("gate") or {}
            rows.append({"event": "onboard", "family": ev.get("llm"), "action": "place" if ev.get("placed") else "hold",
                         "delta": gate.get("delta"), "lower": gate.get("lower"), "support": gate.get("support"),
                         "detail": f"{ev.get('probes')} probes" + (f": {ev['reason']}" if ev.get("reason") else "")})
        elif kind == "shadow":
            rows.append({"event": "shadow", "action": ev.get("kind"), "family": ev.get("checksum"),
                         "detail": f"{ev.get('bundle')} (epsilon {ev.get('epsilon'):.4g}, tau {ev.get('tau'):g})"})
        elif kind in ("refused", "shadow_refused"):
            rows.append({"event": kind, "action": ev.get("kind"), "detail": ev.get("reason")})
        elif kind == "promoted":
            response = ev.get("response") or {}
            rows.append({"event": "promoted", "action": ev.get("kind"), "detail": ev.get("bundle"),
                         "family": response.get("checksum")})
    return rows


@loop_app.command("status")
def status_command(
    journal_path: Path = typer.Option(..., "--journal", "-j", help="The loop journal (JSONL)."),
    json_path: Optional[str] = typer.Option(None, "--json", help="Write the rows as JSON (- = stdout)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table."),
) -> None:
    """Show the loop's journal: the live bundle, every refit with its estimate and decision, promotions, onboardings.

    Example: recroute loop status --journal loop.jsonl
    """
    from recroute.loop.journal import Journal, shadow_looks

    with user_errors():
        if not journal_path.is_file():
            raise DataError(f"--journal {journal_path}: no such journal")
        journal = Journal(journal_path)
        events = journal.events()
        state = journal.state()
        rows = status_rows(events)
        if json_path:
            write_json(json_path, rows)
    if quiet:
        return
    out = output_console(json_path)
    out.print(f"live bundle: {state.live_bundle}; {state.refits} refit(s), {len(state.promotions)} promotion(s)"
              + (f"; promotion of {state.pending['bundle']} pending" if state.pending else ""), highlight=False)
    if state.shadow is not None or state.shadow_pending is not None:
        sh, pending = state.shadow, state.shadow_pending
        line = "shadow: none"
        if sh is not None:
            looks = shadow_looks(events, sh.get("checksum"))
            line = (f"shadow: {sh['bundle']} (checksum {sh.get('checksum')}, epsilon {sh['epsilon']:.4g}, "
                    f"tau {sh['tau']:g}, {looks} look(s))")
        if pending is not None:
            line += f"; install of {pending['bundle']} (epsilon {pending['epsilon']:.4g}) pending"
        out.print(line, highlight=False)
    out.print(table_from_rows(f"loop journal {journal_path}", rows,
                              ["event", "n_outcomes", "family", "delta", "lower", "support", "action", "detail"]))



