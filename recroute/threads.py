"""Thread counts for torch, ONNX Runtime and FAISS: chosen in one place, overridable.

Each library keeps its own pool; left alone on a small machine they can oversubscribe the cores
(torch's intra-op pool, FAISS's OpenMP pool and ONNX Runtime's pool all default to every core, and a
serving process also needs a core for its event loop). Resolution, first match wins, per library:

1. an explicit argument (``resolve_threads(torch=1)``, ``recroute serve --threads 2``);
2. the library's environment variable: ``RECROUTE_TORCH_THREADS``, ``RECROUTE_ORT_THREADS``,
   ``RECROUTE_FAISS_THREADS``;
3. ``RECROUTE_THREADS`` (every library);
4. the default: for torch and ONNX Runtime the cores this process may run on
   (``os.sched_getaffinity``), at most ``ENCODER_MAX_DEFAULT`` (4); when serving
   (``serving=True``) one core fewer (at least 1), which leaves a core to the event loop and HTTP
   parsing: on 2 cores that is 1 encoder thread. FAISS: every core (large query batches use them;
   small ones search on one thread anyway).

Why 1 encoder thread on 2 cores: an OpenMP / ONNX Runtime pool of 2 threads waits at every
operator for its slower thread, and whenever anything else runs (the event loop, the load, another
process) one of the two is descheduled. Measured on the shared 2-core machine (load average ~20):
one short prompt through torch MiniLM p50 125 ms with 1 thread vs 1,249 ms with 2; int8 MiniLM
18.7 vs 30.8 ms, and 64-prompt batches 170 vs 94 prompts/s.

OpenMP pools wait passively: ``import recroute`` sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set,
before FAISS or torch load. libgomp's default spins its idle threads; on the busy 2-core machine that
made a 2-thread FAISS search slower than one thread (688 vs 1,040 queries/s at load ~22) and the
static encoder's end-to-end routing 2.4-2.8x slower (benchmarks/results/finetune_speed*.md).

:func:`apply_threads` sets torch's and FAISS's pools at once; ONNX Runtime takes its count when a
session is created, and encoders fix their count when they are made: they read
:func:`current_threads` (the applied settings, else as resolved now), so apply the settings before
loading a bundle.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Mapping

ALL_ENV = "RECROUTE_THREADS"
LIBRARY_ENV = {"torch": "RECROUTE_TORCH_THREADS", "onnx": "RECROUTE_ORT_THREADS", "faiss": "RECROUTE_FAISS_THREADS"}

ENCODER_MAX_DEFAULT = 4
_applied: "ThreadSettings | None" = None


@dataclass(frozen=True)
class ThreadSettings:
    """Threads per library (each ≥ 1)."""

    torch: int
    onnx: int
    faiss: int

    def as_dict(self) -> dict[str, int]:
        return {"torch": self.torch, "onnx": self.onnx, "faiss": self.faiss}


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _positive(value, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{what} must be a positive integer; got {value!r}")
    try:
        number = int(str(value).strip()) if isinstance(value, str) else value
    except ValueError:
        raise ValueError(f"{what} must be a positive integer; got {value!r}") from None
    if not isinstance(number, int) or number < 1:
        raise ValueError(f"{what} must be a positive integer; got {value!r}")
    return number


def resolve_threads(
    threads: int | None = None, *, torch: int | None = None, onnx: int | None = None, faiss: int | None = None,
    serving: bool = False, environ: Mapping[str, str] | None = None,
) -> ThreadSettings:
    """The thread counts after arguments, environment variables and the default (see the module doc).

    ``serving``: the defaults of a serving process (one encoder thread fewer than the cores).
    ``threads`` sets every library; ``torch`` / ``onnx`` / ``faiss`` one each. A value that is not a
    positive integer (argument or variable) raises ValueError naming it.
    """
    env = os.environ if environ is None else environ
    if threads is not None:
        threads = _positive(threads, "threads")
    shared = threads
    if shared is None and env.get(ALL_ENV, "").strip():
        shared = _positive(env[ALL_ENV], ALL_ENV)
    cores = available_cores()
    encoder_default = max(1, min(cores - 1 if serving else cores, ENCODER_MAX_DEFAULT))
    chosen = {}
    for name, given in (("torch", torch), ("onnx", onnx), ("faiss", faiss)):
        if given is not None:
            chosen[name] = _positive(given, f"{name} threads")
        elif threads is not None:
            chosen[name] = threads
        elif env.get(LIBRARY_ENV[name], "").strip():
            chosen[name] = _positive(env[LIBRARY_ENV[name]], LIBRARY_ENV[name])
        else:
            chosen[name] = shared if shared is not None else (cores if name == "faiss" else encoder_default)
    return ThreadSettings(**chosen)


def apply_threads(settings: ThreadSettings | None = None, load: bool = False) -> ThreadSettings:
    """Set torch's intra-op and FAISS's OpenMP thread counts now; remember ONNX Runtime's.

    ``settings`` None resolves them from the environment. A library not imported yet is only set
    with ``load=True`` (importing torch takes seconds: a server applies the settings again once its
    encoder has loaded). Returns the settings applied.
    """
    global _applied
    settings = settings or resolve_threads()
    _applied = settings
    if load or "torch" in sys.modules:
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            torch = None
        if torch is not None:
            torch.set_num_threads(settings.torch)
    if load or "faiss" in sys.modules:
        try:
            import faiss
        except ImportError:  # pragma: no cover - faiss is a dependency
            faiss = None
        if faiss is not None:
            faiss.omp_set_num_threads(settings.faiss)
    return settings


def current_threads() -> ThreadSettings:
    """The applied settings (:func:`apply_threads`), else as resolved from the environment now."""
    return _applied or resolve_threads()


def onnx_threads() -> int:
    """Intra-op threads for a new ONNX Runtime session."""
    return current_threads().onnx


def serving_blas():
    """A context keeping BLAS (numpy's OpenBLAS) on one thread while a server runs: each decision multiplies
    a few prompts' rows, and a second BLAS thread only spins (measured: 30-45 % less CPU per routed gateway
    request, int8 HTTP routing 219 -> 254 requests/s with 16 clients; benchmarks/results/*_idle.md)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")
