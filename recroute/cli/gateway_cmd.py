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
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log warnings only (no access log)."),
) -> None:
    """Serve an OpenAI-compatible /v1/chat/completions that routes each request to an LLM of the bundle.

    Example: recroute gateway --bundle bundle/ --upstreams upstreams.toml --log decisions.jsonl --port 8080
    """
    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.gateway import GatewayConfig, create_gateway, serve_gateway
    from recroute.serve.upstreams import load_upstreams

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with user_errors():
        keys: tuple[str, ...] = ()
        if api_keys_env is not None:
            raw = os.environ.get(api_keys_env, "")
            keys = tuple(k.strip() for k in raw.split(",") if k.strip())
            if not keys:
                raise DataError(f"--api-keys-env {api_keys_env}: the environment variable is not set or holds no key")
        bundle = RoutingBundle.load(bundle_dir)
        upstreams, left_out = load_upstreams(upstreams_path, bundle.llm_names)
        if left_out:
            logging.getLogger("recroute.gateway").warning(
                "%d LLM(s) of the bundle have no upstream and are left out of routing: %s",
                len(left_out), ", ".join(left_out[:10]) + (" ..." if len(left_out) > 10 else ""))
        config = GatewayConfig(policy=policy, seed=seed, log_path=str(log_path) if log_path else None,
                               log_prompt_text=log_prompt_text, route_on=route_on, max_tries=max_tries,
                               max_body_bytes=max_body_bytes, max_tokens=max_tokens, api_keys=keys,
                               entropy_floor=entropy_floor, entropy_window=window,
                               decide_on=decide_on)
        app = create_gateway(bundle, upstreams, config)
    if not quiet:
        err_console.print(f"gateway for {bundle!r} over {len(upstreams)} upstream(s) on http://{host}:{port}/v1",
                          highlight=False)
    serve_gateway(app, host, port, log_level="warning" if quiet else "info")
