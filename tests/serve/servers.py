"""Helpers of the HTTP tests: a free loopback port, a server process that is awaited and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Send ``sig`` to a running ``proc`` and reap it (killed after 20 s)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def await_health(proc: subprocess.Popen, url: str, deadline: float, describe) -> None:
    """Wait until ``url``/healthz answers 200; fail with ``describe()`` if ``proc`` exits or ``deadline``
    (time.monotonic) passes."""
    import httpx

    while True:
        if proc.poll() is not None:
            pytest.fail(f"{describe()} exited ({proc.returncode})")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{describe()} did not answer /healthz in time")
        time.sleep(0.2)


@contextmanager
def server_process(command: list[str], port: int, startup_s: float = 120):
    """Run ``command`` (a server on 127.0.0.1:``port``) until /healthz answers; yield its base URL;
    stop it afterwards."""
    with server_processes([(command, port)], startup_s) as (url,):
        yield url


@contextmanager
def server_processes(servers: list[tuple[list[str], int]], startup_s: float = 120):
    """Start every (command, port) at once (their start-ups overlap), wait until each answers
    /healthz, yield their base URLs; stop them all afterwards."""
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"}) for command, _ in servers]
    urls = [f"http://127.0.0.1:{port}" for _, port in servers]
    deadline = time.monotonic() + startup_s
    try:
        for proc, url in zip(procs, urls):
            await_health(proc, url, deadline, lambda proc=proc: f"the server ({proc.stdout.read().decode()})")
        yield urls
    finally:
        for proc in procs:
            stop(proc)


def serve_command(bundle_dir: Path, port: int, *options: str) -> list[str]:
    """``python -m recroute serve`` on a bundle and a loopback port, quiet, with extra options."""
    return [sys.executable, "-m", "recroute", "serve", "--bundle", str(bundle_dir), "--host", "127.0.0.1",
            "--port", str(port), "--quiet", *options]
