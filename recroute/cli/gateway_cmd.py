"""``recroute gateway``: the OpenAI-compatible routing gateway (route, forward, fall back, log, watch)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import typer

from recroute.cli.common import err_console, user_errors
from recroute.errors import DataError


def register(app: typer.Typer) -> None:
    app.command("gateway")(gateway_command)


def gateway_command(
    bundle_dir: Path = typer.Option(..., "--bundle", "-b", help="A routing bundle folder (from recroute fit)."),
    upstreams_path: Path = typer.Option(..., "--upstreams", "-u", help="TOML: [upstreams.\"LLM\"] base_url, model, ..."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", "-p", help="Port to listen on."),
    log_path: Optional[Path] = typer.Option(None, "--log", help="Append one decision record per request (JSONL)."),
    log_prompt_text: bool = typer.Option(False, "--log-prompt-text", help="Log the routed text (default: its sha256 only)."),
    policy: Optional[str] = typer.Option(None, "--policy", help="greedy (default), epsilon_greedy:epsilon=0.2, softmax:temperature=0.1."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of a stochastic policy."),
    route_on: str = typer.Option("last_user", "--route-on", help="last_user | conversation: the text the router sees."),
    max_tries: int = typer.Option(3, "--max-tries", min=1, help="LLMs tried per request (1 + fallbacks)."),
    max_body_bytes: int = typer.Option(1 << 20, "--max-body-bytes", min=1, help="Largest request body (413 beyond)."),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="Largest max_tokens a client may ask (400 beyond)."),
    api_keys_env: Optional[str] = typer.Option(
        None, "--api-keys-env", help="Environment variable with the client API keys (comma-separated); Bearer auth on /v1/*."
    ),
    entropy_floor: Optional[float] = typer.Option(
        None, "--entropy-floor", min=0.0, help="Warn (log, /healthz) when the selection entropy falls below this (bits)."
    ),
    window: int = typer.Option(1000, "--window", min=1, help="Routed requests in the selection-entropy window."),
    decide_on: str = typer.Option(
        "auto", "--decide-on", help="auto | loop | thread: where the encoder runs (auto: the event loop for TF-IDF/static)."
    ),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-w", min=1, help="Worker processes on the port (default: one per core); see docs/gateway.md."),
    admin_key_env: Optional[str] = typer.Option(
        None, "--admin-key-env", help="Environment variable with the admin key (Bearer) of POST /admin/reload."),
    metrics_key_env: Optional[str] = typer.Option(
        None, "--metrics-key-env", help="Environment variable with the key (Bearer) of /metrics and /healthz details."),
    breaker_failures: int = typer.Option(
        5, "--breaker-failures", min=0, help="Consecutive upstream failures that open an LLM's circuit breaker (0: off)."),
    breaker_cooldown_s: float = typer.Option(
        30.0, "--breaker-cooldown-s", min=0.001, help="Seconds an open breaker waits before one half-open probe."),
    spare_upstreams: bool = typer.Option(
        False, "--spare-upstreams", help="Keep upstreams of LLMs the bundle does not know: routed to once a reloaded "
                                         "bundle knows them (recroute loop onboards them)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings only (no access log)."),
) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions that routes each request to an LLM of the bundle.

    SIGHUP (to the supervisor) or POST /admin/reload swaps in a new bundle in every worker.

    Example: recroute gateway --bundle bundle/ --upstreams upstreams.toml --log decisions.jsonl --port 8080 --workers 2
    """
    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.gateway import Decider, GatewayConfig
    from recroute.serve.shared import BreakerSettings
    from recroute.serve.upstreams import load_upstreams
    from recroute.serve.workers import WorkerSpec, default_workers, run_workers

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        keys: tuple[str, ...] = ()
        if api_keys_env is not None:
            raw = os.environ.get(api_keys_env, "")
            keys = tuple(k.strip() for k in raw.split(",") if k.strip())
            if not keys:
                raise DataError(f"--api-keys-env {api_keys_env}: the environment variable is not set or holds no key")
        admin_key, metrics_key = (_key_from_env(name, flag) for name, flag in
                                  ((admin_key_env, "--admin-key-env"), (metrics_key_env, "--metrics-key-env")))
        bundle = RoutingBundle.load(bundle_dir)
        upstreams, left_out = load_upstreams(upstreams_path, bundle.llm_names, spare=spare_upstreams)
        if left_out:
            logging.getLogger("recroute.gateway").warning(
                "%d LLM(s) of the bundle have no upstream and are left out of routing: %s",
                len(left_out), ", ".join(left_out[:10]) + (" ..." if len(left_out) > 10 else ""))
        config = GatewayConfig(policy=policy, seed=seed, log_path=str(log_path) if log_path else None,
                               log_prompt_text=log_prompt_text, route_on=route_on, max_tries=max_tries,
                               max_body_bytes=max_body_bytes, max_tokens=max_tokens, api_keys=keys,
                               entropy_floor=entropy_floor, entropy_window=window,
                               decide_on=decide_on, admin_key=admin_key, metrics_key=metrics_key,
                               breaker=BreakerSettings(breaker_failures, breaker_cooldown_s),
                               bundle_path=str(bundle_dir))
        config.check()
        Decider(bundle, upstreams, policy, decide_on=decide_on)  # every check a worker would make, here first
        n_workers = workers or default_workers()
        spec = WorkerSpec(str(bundle_dir), upstreams, config, "warning" if quiet else "info")
    if not quiet:
        err_console.print(f"gateway for {bundle!r} over {len(upstreams)} upstream(s) on http://{host}:{port}/v1 "
                          f"({n_workers} worker(s), bundle checksum {bundle.checksum})", highlight=False)
    checksum = bundle.checksum
    del bundle
    with user_errors():
        status = run_workers(spec, n_workers, checksum, host, port)
    raise typer.Exit(status)


def _key_from_env(name: str | None, flag: str) -> str | None:
    """The key in environment variable ``name`` (None when no variable is named); DataError when unset."""
    if name is None:
        return None
    key = os.environ.get(name, "").strip()
    if not key:
        raise DataError(f"{flag} {name}: the environment variable is not set or empty")
    return key
