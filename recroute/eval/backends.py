"""Where a grid of independent work items runs: serially, on a local process pool, or on Ray.

``map_work(fn, items, shared, backend)`` returns ``[fn(shared, item) for item in items]`` in item
order on any backend, so results do not depend on it. ``shared`` (read-only data every item needs,
e.g. the embeddings) is sent once per worker, not once per item.

- "serial": this process, one item after another (the default).
- "process": a local pool started with the ``spawn`` method (a forked child deadlocks on its first
  OpenMP call once the parent has run FAISS or torch); BLAS/OpenMP threads are split between workers.
- "ray": Ray tasks (``pip install 'recroute[ray]'``); uses the running Ray instance, else starts a
  local one for the call (and shuts it down after). Ray limits each task to one thread.

``fn`` must be a module-level function (it is pickled by reference).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from recroute.errors import DataError

BACKENDS = ("serial", "process", "ray")

Work = Callable[[Any, Any], Any]
Hook = Callable[[int], None]


def check_backend(backend: str) -> str:
    """``backend`` if it is one of BACKENDS, else a DataError naming the choices."""
    if backend not in BACKENDS:
        raise DataError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    return backend


def map_work(
    fn: Work, items: Sequence[Any], shared: Any = None, backend: str = "serial", n_workers: int | None = None,
    on_start: Hook | None = None, on_done: Hook | None = None,
) -> list[Any]:
    """``[fn(shared, item) for item in items]`` on ``backend``, in item order.

    ``on_start(i)`` / ``on_done(i)`` are called in this process around item i (for parallel backends
    both when it finishes). The first failing item's exception is raised (the others are cancelled).
    """
    check_backend(backend)
    items = list(items)
    on_start = on_start or (lambda i: None)
    on_done = on_done or (lambda i: None)
    if n_workers is not None and int(n_workers) < 1:
        raise DataError(f"n_workers must be at least 1; got {n_workers}")
    workers = max(1, min(int(n_workers or os.cpu_count() or 1), len(items) or 1))
    if backend == "serial" or not items:
        out = []
        for i, item in enumerate(items):
            on_start(i)
            out.append(fn(shared, item))
            on_done(i)
        return out
    if backend == "process":
        return _map_process(fn, items, shared, workers, on_start, on_done)
    return _map_ray(fn, items, shared, workers, on_start, on_done)


# ---------------------------------------------------------------------- process pool
_SHARED: Any = None


def _init_worker(shared: Any, threads: int) -> None:
    """Runs once in each spawned worker: keep the shared data, split the cores' threads."""
    global _SHARED
    _SHARED = shared
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)  # libraries loaded later (FAISS, torch) read these
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # those already loaded (numpy's BLAS)
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        pass


def _call_shared(fn: Work, item: Any) -> Any:
    return fn(_SHARED, item)


def _map_process(fn, items, shared, workers, on_start, on_done) -> list[Any]:
    import multiprocessing
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(shared, threads)) as pool:
        futures = [pool.submit(_call_shared, fn, item) for item in items]
        index = {future: i for i, future in enumerate(futures)}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in sorted(done, key=index.get):
                    future.result()  # raises the item's own exception
                    on_start(index[future])
                    on_done(index[future])
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        return [future.result() for future in futures]


# ---------------------------------------------------------------------- ray
def _ray_call(fn: Work, shared: Any, item: Any) -> Any:
    return fn(shared, item)


def _map_ray(fn, items, shared, workers, on_start, on_done) -> list[Any]:
    try:
        import ray
    except ImportError:
        raise DataError("the ray backend needs Ray: pip install 'recroute[ray]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        shared_ref = ray.put(shared)
        task = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
        refs = [task.remote(fn, shared_ref, item) for item in items]
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                ray.get(done)  # raises the item's own error
                on_start(index[done[0]])
                on_done(index[done[0]])
            return ray.get(refs)
        except ray.exceptions.RayTaskError as exc:
            for ref in pending:
                ray.cancel(ref)
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
    finally:
        if started:
            ray.shutdown()
