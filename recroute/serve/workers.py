"""``recroute gateway --workers N``: N gateway processes answering on one port, and their supervisor.

The supervisor binds the listening socket once and spawns N workers (multiprocessing, spawn: no
fork after FAISS or torch) that accept from it, each with its own bundle, decider and event loop.
What must agree across workers lives in one :class:`~recroute.serve.shared.HostState` in shared
memory (selection window, circuit breakers, the bundle to serve); each worker's metrics go to a file
of a private folder that ``/metrics`` adds up; every worker appends whole lines to the one decision
log (O_APPEND under an exclusive ``flock``, ``recroute.feedback.logs.DecisionLogWriter``), so the log
stays one file.

Signals to the supervisor: SIGHUP reloads the bundle (the same path) in every worker; SIGTERM or
SIGINT stops the workers gracefully (requests in flight finish) and then itself. A worker that dies
(e.g. SIGKILL) is replaced; the others keep serving meanwhile.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import shutil
import signal
import socket
import tempfile
import time
from dataclasses import dataclass
from typing import Mapping

from recroute.serve.shared import HostState

logger = logging.getLogger("recroute.gateway")

STOP_WAIT_S = 20.0  # longest a worker gets to finish its requests in flight on shutdown
RESTART_GIVE_UP = 3  # a worker slot that dies this many times in a row within FAST_DEATH_S stops the gateway
FAST_DEATH_S = 10.0


@dataclass
class WorkerSpec:
    """What every worker builds its gateway from (pickled to each): the bundle folder, the upstreams
    (LLM name -> Upstream), the GatewayConfig and uvicorn's log level."""

    bundle_path: str
    upstreams: Mapping
    config: object
    log_level: str = "warning"


def default_workers() -> int:
    """One worker per core the process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) that child processes can accept from."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror})") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run_workers(spec: WorkerSpec, n_workers: int, checksum: str | None, host: str = "127.0.0.1",
                port: int = 8080) -> int:
    """Supervise ``n_workers`` gateway workers on (host, port) until SIGTERM/SIGINT; the exit status."""
    if n_workers < 1:
        raise ValueError(f"--workers must be at least 1; got {n_workers}")
    ctx = mp.get_context("spawn")
    sock = bind(host, port)
    folder = tempfile.mkdtemp(prefix="recroute-gateway-metrics-")
    state = HostState(list(spec.upstreams), spec.config.entropy_window, spec.config.breaker, spec.bundle_path,
                      checksum, n_workers, folder)
    flags = {"stop": False, "reload": False}

    def start(slot: int):
        proc = ctx.Process(target=worker_main, args=(spec, state, slot, sock), name=f"recroute-gateway-{slot}")
        proc.start()
        return proc, time.monotonic()

    def on_stop(sig, frame) -> None:
        flags["stop"] = True

    def on_hup(sig, frame) -> None:
        flags["reload"] = True

    old = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    procs = [start(slot) for slot in range(n_workers)]
    fast_deaths = [0] * n_workers
    status = 0
    try:
        while not flags["stop"]:
            time.sleep(0.1)
            if flags["reload"]:
                flags["reload"] = False
                state.board.publish(state.board.desired()[1], None)
                _signal_all(procs, signal.SIGUSR1)
            for slot, (proc, started) in enumerate(procs):
                if proc.is_alive() or flags["stop"]:
                    continue
                fast_deaths[slot] = fast_deaths[slot] + 1 if time.monotonic() - started < FAST_DEATH_S else 0
                if fast_deaths[slot] >= RESTART_GIVE_UP:
                    logger.error("gateway worker %d died %d times in a row at start (exit %s): stopping",
                                 slot, fast_deaths[slot], proc.exitcode)
                    flags["stop"], status = True, 1
                    break
                logger.warning("gateway worker %d (pid %s) exited with %s: starting another", slot, proc.pid,
                               proc.exitcode)
                procs[slot] = start(slot)
    finally:
        _signal_all(procs, signal.SIGTERM)
        deadline = time.monotonic() + STOP_WAIT_S
        for proc, _ in procs:
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join()
        sock.close()
        shutil.rmtree(folder, ignore_errors=True)
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return status


def _signal_all(procs, sig) -> None:
    for proc, _ in procs:
        if proc.pid is not None and proc.is_alive():
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass


def worker_main(spec: WorkerSpec, state: HostState, slot: int, sock: socket.socket) -> None:
    """One worker: load the bundle the host serves now (else the one it started with), build the
    gateway app on the shared state, serve it on the shared socket until SIGTERM."""
    import uvicorn

    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.gateway import create_gateway, tokenizers_on_one_thread
    from recroute.serve.reload import RELOAD_ERRORS
    from recroute.threads import serving_blas

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s[%(process)d]: %(message)s")
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the app's own handler is in place
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    tokenizers_on_one_thread()
    with serving_blas():
        path = state.board.desired()[1] or spec.bundle_path
        try:
            bundle = RoutingBundle.load(path)
        except RELOAD_ERRORS as exc:
            logger.warning("worker %d: bundle %s refused (%s): starting on %s", slot, path, exc, spec.bundle_path)
            bundle = RoutingBundle.load(spec.bundle_path)
        app = create_gateway(bundle, spec.upstreams, spec.config, state, slot)
        config = uvicorn.Config(app, log_level=spec.log_level, access_log=spec.log_level == "info", lifespan="on")
        uvicorn.Server(config).run(sockets=[sock])
