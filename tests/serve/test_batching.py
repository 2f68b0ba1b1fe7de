"""The decision micro-batcher in-process: batches bounded by N prompts and T ms, own rows back,
one encoder call per batch and one router call per option group, errors kept to their request."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from recroute.errors import DataError
from recroute.serve.batching import BatchSettings, DecisionBatcher


class Recorder:
    """encode: row = [len(text), 0]; route: idx = k copies of len(text) % 5, scores = -len(text)."""

    def __init__(self, fail_on: str | None = None, route_fail_on: int | None = None) -> None:
        self.encode_sizes: list[int] = []
        self.route_calls: list[tuple[int, dict]] = []
        self.threads: set[str] = set()
        self.fail_on, self.route_fail_on = fail_on, route_fail_on

    def encode(self, texts):
        self.threads.add(threading.current_thread().name)
        self.encode_sizes.append(len(texts))
        if self.fail_on is not None and self.fail_on in texts:
            raise DataError(f"cannot encode {self.fail_on!r}")
        return np.array([[len(t), 0.0] for t in texts], dtype=np.float32)

    def route(self, X, n, options):
        self.route_calls.append((n, dict(options)))
        if self.route_fail_on is not None and (X[:, 0] == self.route_fail_on).any():
            raise DataError(f"no candidate for a prompt of length {self.route_fail_on}")
        lengths = X[:, 0].astype(np.int64)
        k = options.get("k", 1)
        return np.repeat((lengths % 5)[:, None], k, axis=1), np.repeat(-X[:, :1], k, axis=1)


def run(coro):
    return asyncio.run(coro)


async def gather_decisions(batcher, requests):
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.decide(t, o) for t, o in requests), return_exceptions=True)
    finally:
        await batcher.close()


def test_concurrent_requests_share_one_encode_and_one_route_and_get_their_own_rows():
    rec = Recorder()
    requests = [(["a" * (i + 1)] * (1 + i % 3), {"k": 2}) for i in range(10)]  # 19 prompts in all
    batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_batch=64, max_wait_ms=200))
    out = run(gather_decisions(batcher, requests))
    for (texts, _), got in zip(requests, out):
        n = len(texts[0])
        assert got.idx.shape == (len(texts), 2) and (got.idx == n % 5).all() and (got.scores == -n).all()
        assert got.batch_prompts == 19
        assert got.X.tolist() == [[n, 0.0]] * len(texts)  # its own rows of the batch's encoding
    assert rec.encode_sizes == [19] and [n for n, _ in rec.route_calls] == [19]
    assert rec.threads == {"recroute-decide_0"}


def test_max_batch_caps_the_prompts_per_batch_without_splitting_a_request():
    rec = Recorder()
    requests = [(["x" * (i + 1)] * 3, {}) for i in range(7)]  # 21 prompts, 3 per request
    batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_batch=7, max_wait_ms=200))
    out = run(gather_decisions(batcher, requests))
    assert rec.encode_sizes == [6, 6, 6, 3]  # two whole requests (6 prompts) fit under 7
    assert list(batcher.batch_sizes) == [6, 6, 6, 3]
    assert [o.batch_prompts for o in out] == [6, 6, 6, 6, 6, 6, 3]
    big = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_batch=2, max_wait_ms=0))
    [alone] = run(gather_decisions(big, [(["y"] * 5, {})]))  # a request larger than the cap goes alone
    assert alone.idx.shape == (5, 1)


def test_different_options_are_routed_in_separate_calls_of_one_batch():
    rec = Recorder()
    requests = [(["aa"], {"k": 1}), (["bbb"], {"k": 2}), (["c"], {"k": 1}),
                (["dddd"], {"k": 1, "candidates": ["x", "y"]}), (["e"], {"k": 1, "candidates": ["x", "y"]})]
    batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_wait_ms=200))
    out = run(gather_decisions(batcher, requests))
    assert rec.encode_sizes == [5]
    assert sorted((n, o.get("k"), tuple(o.get("candidates") or ())) for n, o in rec.route_calls) == [
        (1, 2, ()), (2, 1, ()), (2, 1, ("x", "y"))]
    assert [o.idx.tolist() for o in out] == [[[2]], [[3, 3]], [[1]], [[4]], [[1]]]


def test_a_request_waits_about_max_wait_ms_for_companions_then_goes_alone():
    rec = Recorder()

    async def one(wait_ms):
        batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_batch=64, max_wait_ms=wait_ms))
        await batcher.start()
        start = time.perf_counter()
        got = await batcher.decide(["solo"])
        seconds = time.perf_counter() - start
        await batcher.close()
        return got, seconds

    got, seconds = run(one(150))
    assert got.batch_prompts == 1 and 0.14 <= seconds < 1.5  # waited for T, not much longer
    _, seconds = run(one(0))
    assert seconds < 1.0


def test_a_full_batch_starts_before_max_wait():
    rec = Recorder()

    async def main():
        batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_batch=4, max_wait_ms=30_000))
        await batcher.start()
        start = time.perf_counter()
        out = await asyncio.gather(*(batcher.decide([f"p{i}"]) for i in range(4)))
        seconds = time.perf_counter() - start
        await batcher.close()
        return out, seconds

    out, seconds = run(main())
    assert [o.batch_prompts for o in out] == [4] * 4 and seconds < 10  # N reached: T (30 s) not awaited


def test_an_encoding_error_fails_only_its_request():
    rec = Recorder(fail_on="poison")
    requests = [(["ok"], {}), (["poison"], {}), (["fine", "good"], {})]
    batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_wait_ms=200))
    out = run(gather_decisions(batcher, requests))
    assert isinstance(out[1], DataError) and "poison" in str(out[1])
    assert out[0].idx.tolist() == [[2]] and out[2].idx.tolist() == [[4], [4]]
    assert rec.encode_sizes == [4, 1, 1, 2]  # the batch, then each request alone


def test_a_routing_error_fails_only_its_request():
    rec = Recorder(route_fail_on=3)
    requests = [(["ab"], {}), (["abc"], {}), (["abcd"], {})]
    batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(max_wait_ms=200))
    out = run(gather_decisions(batcher, requests))
    assert isinstance(out[1], DataError) and "length 3" in str(out[1])
    assert out[0].idx.tolist() == [[2]] and out[2].idx.tolist() == [[4]]


def test_batching_off_routes_each_request_alone():
    rec = Recorder()
    requests = [([f"{'z' * i}"], {}) for i in range(1, 6)]
    batcher = DecisionBatcher(rec.encode, rec.route, BatchSettings(enabled=False))
    out = run(gather_decisions(batcher, requests))
    assert rec.encode_sizes == [1] * 5 and [o.batch_prompts for o in out] == [1] * 5
    assert [o.idx.tolist() for o in out] == [[[1]], [[2]], [[3]], [[4]], [[0]]]


def test_a_router_without_features_gets_no_x():
    seen = []

    def route(X, n, options):
        seen.append((X, n))
        return np.zeros((n, 1), dtype=np.int64), np.ones((n, 1), dtype=np.float32)

    batcher = DecisionBatcher(None, route, BatchSettings(max_wait_ms=100))
    out = run(gather_decisions(batcher, [(["a", "b"], {}), (["c"], {})]))
    assert seen == [(None, 3)] and [o.idx.shape for o in out] == [(2, 1), (1, 1)]
    assert [o.X for o in out] == [None, None]


def test_thread_setup_runs_on_the_worker_thread_and_closed_batchers_refuse():
    names = []
    batcher = DecisionBatcher(Recorder().encode, Recorder().route, BatchSettings(max_wait_ms=0),
                              thread_setup=lambda: names.append(threading.current_thread().name))
    run(gather_decisions(batcher, [(["a"], {})]))
    assert names == ["recroute-decide_0"]
    with pytest.raises(RuntimeError, match="not running"):
        run(batcher.decide(["late"]))


@pytest.mark.parametrize("kwargs, message", [
    ({"max_batch": 0}, "max_batch"), ({"max_batch": 2.5}, "max_batch"), ({"max_batch": True}, "max_batch"),
    ({"max_wait_ms": -1}, "max_wait_ms"), ({"max_wait_ms": float("nan")}, "max_wait_ms"),
    ({"max_wait_ms": "2"}, "max_wait_ms"), ({"enabled": "yes"}, "enabled"),
])
def test_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BatchSettings(**kwargs)
