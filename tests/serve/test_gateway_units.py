"""The gateway's parts in-process: model field and body parsing, SSE rewriting, metrics and entropy,
the upstreams file, and the decision (policy propensities, fallback order, cost step)."""

from __future__ import annotations

import asyncio
import json
import math

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the gateway needs fastapi")

from recroute.errors import DataError  # noqa: E402
from recroute.serve.gateway import (  # noqa: E402
    Decider, RequestError, RouteOptions, SSERewriter, parse_chat_body, parse_model_field, rewrite_model, routed_text,
)
from recroute.serve.gateway_metrics import GatewayMetrics, Histogram, SelectionWindow, entropy_bits  # noqa: E402
from recroute.serve.upstreams import Upstream, load_upstreams  # noqa: E402

LLMS = ["math-llm", "code-llm", "history-llm"]
MATH = "prove the theorem about the prime number with algebra"


# ---------------------------------------------------------------------- the model field and the body
def test_model_field_routes_names_or_carries_options():
    assert parse_model_field("recroute", LLMS) == RouteOptions()
    assert parse_model_field("code-llm", LLMS) == RouteOptions(direct="code-llm")
    assert parse_model_field("recroute:cost_weight=0.3", LLMS) == RouteOptions(cost_weight=0.3)
    got = parse_model_field("recroute:candidates=code-llm|math-llm|code-llm,max_cost=0.01", LLMS)
    assert got == RouteOptions(candidates=("code-llm", "math-llm"), max_cost=0.01)


@pytest.mark.parametrize("model, status, message", [
    ("gpt-4o", 404, "unknown model 'gpt-4o'"),
    ("", 400, "non-empty string"),
    (3, 400, "non-empty string"),
    ("recroute:cost_weight", 400, "is not key=value"),
    ("recroute:cost_weight=abc", 400, "cost_weight must be a number >= 0"),
    ("recroute:max_cost=-0.5", 400, "max_cost must be a number >= 0"),
    ("recroute:cost_weight=inf", 400, "cost_weight must be a number >= 0"),
    ("recroute:cost_weight=1,cost_weight=2", 400, "given twice"),
    ("recroute:candidates=a|code-llm", 400, "candidates ['a']"),
    ("recroute:k=2", 400, "unknown routing option 'k'"),
])
def test_bad_model_fields_name_the_problem(model, status, message):
    with pytest.raises(RequestError) as info:
        parse_model_field(model, LLMS)
    assert info.value.status == status and message in info.value.message
    assert info.value.body()["error"]["param"] == "model"


def test_chat_body_checks_and_the_routed_text():
    body = parse_chat_body(json.dumps({"model": "recroute", "max_tokens": 5, "messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}, {"type": "image_url", "image_url": {}},
                                     {"type": "text", "text": "part"}]}]}).encode(), max_tokens_limit=5)
    assert routed_text(body["messages"]) == "second\npart"
    assert routed_text(body["messages"], "conversation") == "first\nok\nsecond\npart"
    with pytest.raises(RequestError, match="over this gateway's limit of 4"):
        parse_chat_body(json.dumps({"model": "x", "max_completion_tokens": 5,
                                    "messages": [{"role": "user", "content": "a"}]}).encode(), max_tokens_limit=4)
    with pytest.raises(RequestError, match=r"messages\[1\].content must be a string"):
        parse_chat_body(json.dumps({"model": "x", "messages": [{"role": "user", "content": "a"},
                                                               {"role": "user", "content": 5}]}).encode())
    with pytest.raises(RequestError, match="not valid JSON"):
        parse_chat_body(b"\xff\xfe")


# ---------------------------------------------------------------------- rewriting answers
def test_rewrite_model_sets_the_llm_and_keeps_everything_else():
    payload = json.dumps({"id": "x", "model": "up-name", "choices": [{"a": 1}], "usage": {"prompt_tokens": 3}}).encode()
    out, usage = rewrite_model(payload, "math-llm")
    assert json.loads(out) == {"id": "x", "model": "math-llm", "choices": [{"a": 1}], "usage": {"prompt_tokens": 3}}
    assert usage == {"prompt_tokens": 3}
    assert rewrite_model(b"not json", "m") == (b"not json", None)


def test_sse_rewriter_handles_events_split_across_chunks():
    events = [{"model": "up", "choices": [{"delta": {"content": "a"}}]}, {"model": "up", "choices": [], "usage": {"x": 1}}]
    raw = b"".join(b"data: " + json.dumps(e).encode() + b"\r\n\r\n" for e in events) + b"data: [DONE]\n\n"
    rewriter = SSERewriter("math-llm")
    out = b"".join(rewriter.feed(raw[i:i + 7]) for i in range(0, len(raw), 7)) + rewriter.flush()
    blocks = out.split(b"\n\n")
    assert [json.loads(b[6:])["model"] for b in blocks[:2]] == ["math-llm", "math-llm"]
    assert blocks[2] == b"data: [DONE]" and blocks[3] == b""
    assert rewriter.usage == {"x": 1}


# ---------------------------------------------------------------------- metrics
def test_entropy_by_hand():
    assert entropy_bits([]) == 0.0
    assert entropy_bits([5]) == 0.0
    assert entropy_bits([1, 1]) == pytest.approx(1.0)
    assert entropy_bits([2, 1, 1, 0]) == pytest.approx(1.5)  # -(.5 log .5 + 2 × .25 log .25)
    assert entropy_bits([1, 1, 1]) == pytest.approx(math.log2(3))


def test_selection_window_slides():
    window = SelectionWindow(3)
    for llm in ["a", "a", "b"]:
        window.add(llm)
    assert window.full and dict(window.counts) == {"a": 2, "b": 1}
    assert window.entropy() == pytest.approx(-(2 / 3) * math.log2(2 / 3) - (1 / 3) * math.log2(1 / 3))
    window.add("b")
    window.add("b")  # the window now holds b, b, b
    assert dict(window.counts) == {"b": 3} and window.entropy() == 0.0
    with pytest.raises(ValueError, match="at least 1"):
        SelectionWindow(0)


def test_histogram_renders_cumulative_buckets():
    hist = Histogram(buckets=(0.1, 1.0))
    for seconds in (0.05, 0.1, 0.5, 3.0):
        hist.observe("a", seconds)
    assert hist.lines("lat", "llm") == [
        'lat_bucket{llm="a",le="0.1"} 2', 'lat_bucket{llm="a",le="1.0"} 3', 'lat_bucket{llm="a",le="+Inf"} 4',
        'lat_sum{llm="a"} 3.65', 'lat_count{llm="a"} 4']


def test_collapse_is_judged_on_a_full_window_only():
    metrics = GatewayMetrics(["a", "b"], window=2, entropy_floor=0.5)
    metrics.routed("a", 0.001)
    assert not metrics.collapsed and metrics.health()["status"] == "ok"  # one request says nothing yet
    metrics.routed("a", 0.001)
    assert metrics.collapsed and "'a' took 100%" in metrics.health()["warnings"][0]
    metrics.routed("b", 0.001)
    assert not metrics.collapsed and metrics.health()["selection_entropy_bits"] == 1.0
    metrics.request("a", 200, 0.02)
    metrics.upstream_error("b", "timeout", fell_back=True)
    text = metrics.render()
    assert 'recroute_gateway_requests_total{llm="a",code="200"} 1' in text
    assert 'recroute_gateway_fallbacks_total{llm="b"} 1' in text
    assert 'recroute_gateway_upstream_errors_total{llm="b",kind="timeout"} 1' in text
    assert "recroute_gateway_selection_entropy_bits 1.0" in text and "recroute_gateway_collapsed 0" in text


# ---------------------------------------------------------------------- the upstreams file
def test_upstreams_file_parses_and_leaves_out_unlisted_llms(tmp_path):
    (tmp_path / "u.toml").write_text(
        '[upstreams."code-llm"]\nbase_url = "http://127.0.0.1:9/v1/"\nmodel = "c"\napi_key_env = "K"\n'
        'timeout_s = 2.5\ninput_price_per_mtok = 1.5\noutput_price_per_mtok = 4\n'
        '[upstreams."math-llm"]\nbase_url = "https://example.org/v1"\n')
    got, left_out = load_upstreams(tmp_path / "u.toml", LLMS, environ={"K": "secret"})
    assert list(got) == ["math-llm", "code-llm"] and left_out == ["history-llm"]
    code = got["code-llm"]
    assert (code.chat_url, code.model, code.timeout_s, code.api_key) == ("http://127.0.0.1:9/v1/chat/completions", "c",
                                                                         2.5, "secret")
    assert "secret" not in repr(code)
    assert code.cost(1000, 200) == pytest.approx((1000 * 1.5 + 200 * 4) / 1e6)
    assert code.cost(None, 200) is None
    assert got["math-llm"].model == "math-llm" and got["math-llm"].cost(10, 10) is None


@pytest.mark.parametrize("text, message", [
    ('[upstreams."nope"]\nbase_url = "http://x/v1"\n', "not LLMs of the bundle"),
    ('[upstreams."code-llm"]\nbase_url = "ftp://x"\n', "base_url must be an http(s) URL"),
    ('[upstreams."code-llm"]\nbase_url = "http://x"\ntimeout = 3\n', "unknown key(s) ['timeout']"),
    ('[upstreams."code-llm"]\nbase_url = "http://x"\ntimeout_s = 0\n', "timeout_s must be a positive"),
    ('[upstreams."code-llm"]\nbase_url = "http://x"\ninput_price_per_mtok = -1\n', "finite number >= 0"),
    ('[upstreams."code-llm"]\nbase_url = "http://x"\napi_key_env = "UNSET_VAR_X"\n', "UNSET_VAR_X (api_key_env) is not set"),
    ('[other]\nx = 1\n', "unknown top-level key(s) ['other']"),
    ('[upstreams\n', "not valid TOML"),
])
def test_bad_upstreams_files_name_the_problem(tmp_path, text, message):
    (tmp_path / "u.toml").write_text(text)
    with pytest.raises(DataError) as info:
        load_upstreams(tmp_path / "u.toml", LLMS, environ={})
    assert message in str(info.value) and "u.toml" in str(info.value)


# ---------------------------------------------------------------------- the decision
def upstreams(prices: dict | None = None) -> dict:
    prices = prices or {}
    return {n: Upstream(n, "http://127.0.0.1:9/v1", n, input_price_per_mtok=prices.get(n, (None, None))[0],
                        output_price_per_mtok=prices.get(n, (None, None))[1]) for n in LLMS}


def decide(router: Decider, text: str, options: RouteOptions = RouteOptions()):
    async def run():
        await router.start()
        try:
            return await router.decide(text, options)
        finally:
            await router.close()

    return asyncio.run(run())


@pytest.mark.parametrize("decide_on", ["loop", "thread"])
def test_greedy_decision_and_fallback_order(tfidf_bundle_dir, decide_on):
    from recroute.serve.bundle import RoutingBundle

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    scores = bundle.router.score(bundle.encode([MATH]))[0]
    decider = Decider(bundle, upstreams(), decide_on=decide_on)
    assert (decider.batcher is None) == (decide_on == "loop")
    got = decide(decider, MATH)
    expected = sorted(range(3), key=lambda j: (-scores[j], j))  # generalist (index 3) has no upstream
    assert got.order == [bundle.llm_names[j] for j in expected] and got.chosen == "math-llm"
    assert (got.propensity, got.policy, got.candidates) == (1.0, "greedy", LLMS)
    assert got.score == pytest.approx(float(scores[0]))


def test_concurrent_decisions_on_the_loop_share_one_scoring_call(tfidf_bundle_dir):
    """Requests waiting in the same loop turn are scored in one batch; each decision equals the one taken
    alone (rows are scored independently)."""
    from recroute.serve.bundle import RoutingBundle

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    texts = [MATH, "write a python function and debug the code", "the roman empire and the medieval kings", MATH]
    alone = [decide(Decider(bundle, upstreams(), decide_on="loop"), t) for t in texts]
    decider = Decider(bundle, upstreams(), decide_on="loop")

    async def together():
        return await asyncio.gather(*(decider.decide(t, RouteOptions()) for t in texts))

    got = asyncio.run(together())
    assert decider.loop_batcher.calls == 1
    assert [(d.order, d.chosen, d.score) for d in got] == [(d.order, d.chosen, d.score) for d in alone]
    assert [d.chosen for d in got] == ["math-llm", "code-llm", "history-llm", "math-llm"]
    assert len({d.decision_id for d in got}) == 4


def test_loop_batcher_splits_batches_passes_errors_and_skips_cancelled():
    from recroute.serve.batching import LoopBatcher

    seen: list[list[str]] = []

    def score(texts):
        seen.append(list(texts))
        if "bad" in texts:
            raise ValueError("bad text")
        return np.array([[len(t), 0.0] for t in texts])

    batcher = LoopBatcher(score, max_batch=2)

    async def run():
        ok = await asyncio.gather(*(batcher.submit(t) for t in ["a", "bb", "ccc"]))
        cancelled = asyncio.ensure_future(batcher.submit("dddd"))
        alive = asyncio.ensure_future(batcher.submit("ee"))
        await asyncio.sleep(0)  # both queued, the flush is scheduled
        cancelled.cancel()
        rest = await alive
        with pytest.raises(ValueError, match="bad text"):
            await batcher.submit("bad")
        return ok, rest

    ok, rest = asyncio.run(run())
    assert [row.tolist() for row in ok] == [[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]]
    assert rest.tolist() == [2.0, 0.0]
    assert seen == [["a", "bb"], ["ccc"], ["dddd", "ee"], ["bad"]]
    with pytest.raises(ValueError, match="max_batch"):
        LoopBatcher(score, max_batch=0)
    with pytest.raises(ValueError, match="turns"):
        LoopBatcher(score, turns=0)


def test_loop_batcher_off_loop_scores_each_batch_on_a_worker_thread():
    import threading

    from recroute.serve.batching import LoopBatcher

    seen: list[tuple[list, str]] = []

    def score(items):
        seen.append((list(items), threading.current_thread().name))
        if ("bad", None) in items:
            raise DataError("bad item")
        return np.array([[len(text), 0.0 if x is None else x] for text, x in items])

    batcher = LoopBatcher(score, max_batch=2, off_loop=True)

    async def run():
        ok = await asyncio.gather(*(batcher.submit(item) for item in [("a", None), ("bb", 5.0), ("ccc", None)]))
        failed = await asyncio.gather(batcher.submit(("bad", None)), batcher.submit(("fine", None)),
                                      return_exceptions=True)
        return ok, failed

    ok, failed = asyncio.run(run())
    assert [row.tolist() for row in ok] == [[1.0, 0.0], [2.0, 5.0], [3.0, 0.0]]
    assert all(isinstance(f, DataError) and "bad item" in str(f) for f in failed)  # its whole batch hears it
    assert [items for items, _ in seen] == [[("a", None), ("bb", 5.0)], [("ccc", None)],
                                            [("bad", None), ("fine", None)]]
    assert all(name != threading.main_thread().name for _, name in seen)


def test_loop_batcher_waits_the_given_turns_for_late_requests():
    from recroute.serve.batching import LoopBatcher

    seen: list[list[str]] = []
    batcher = LoopBatcher(lambda texts: seen.append(list(texts)) or np.zeros((len(texts), 1)), turns=3)

    async def late(text, turns):
        for _ in range(turns):
            await asyncio.sleep(0)
        return await batcher.submit(text)

    async def run():
        await asyncio.gather(late("a", 0), late("b", 1), late("c", 2), late("d", 5))

    asyncio.run(run())
    assert seen == [["a", "b", "c"], ["d"]]


def test_epsilon_greedy_propensities(tfidf_bundle_dir):
    from recroute.serve.bundle import RoutingBundle

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    seen = {}
    router = Decider(bundle, upstreams(), "epsilon_greedy:epsilon=0.6", seed=0)
    try:
        for _ in range(40):
            d = asyncio.run(router.decide(MATH, RouteOptions()))
            seen[d.chosen] = d.propensity
            assert d.order[0] == d.chosen and sorted(d.order) == sorted(LLMS)
    finally:
        router.close()
    assert seen["math-llm"] == pytest.approx(1 - 0.6 + 0.6 / 3)  # greedy arm among 3 configured LLMs
    assert seen["code-llm"] == seen["history-llm"] == pytest.approx(0.6 / 3)
    assert router.policy_spec.startswith("epsilon_greedy")


@pytest.mark.parametrize("decide_on", ["loop", "thread"])
def test_cost_weight_and_max_cost_use_the_shared_cost_step(tfidf_bundle_dir, decide_on):
    from recroute.data.costs import DEFAULT_OUTPUT_TOKENS, count_prompt_tokens
    from recroute.serve.bundle import RoutingBundle

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    prices = {"math-llm": (3.0, 5.0), "code-llm": (0.1, 0.2), "history-llm": (1.0, 1.0)}
    t = float(count_prompt_tokens([MATH])[0])
    costs = Decider(bundle, upstreams(prices)).expected_costs(MATH, np.array([True, True, True, False]))
    assert costs == pytest.approx([(t * a + DEFAULT_OUTPUT_TOKENS * b) / 1e6 for a, b in prices.values()] + [0.0])
    # a weight that makes math-llm's extra cost outweigh its score lead: code-llm (cheapest) wins
    weight = 2 / (costs[0] - costs[1])
    got = decide(Decider(bundle, upstreams(prices), decide_on=decide_on), MATH, RouteOptions(cost_weight=weight))
    assert got.chosen == "code-llm"
    got = decide(Decider(bundle, upstreams(prices), decide_on=decide_on), MATH, RouteOptions(max_cost=costs[2]))
    assert got.chosen != "math-llm" and "math-llm" not in got.candidates and "math-llm" not in got.order
    with pytest.raises(RequestError, match="the cheapest, code-llm"):
        decide(Decider(bundle, upstreams(prices), decide_on=decide_on), MATH, RouteOptions(max_cost=costs[1] / 2))
    with pytest.raises(RequestError, match=r"no price for candidate LLM\(s\) \['code-llm', 'history-llm'\]"):
        decide(Decider(bundle, upstreams({"math-llm": (3.0, 5.0)}), decide_on=decide_on), MATH,
               RouteOptions(cost_weight=1.0))
    with pytest.raises(RequestError, match="need prices"):
        decide(Decider(bundle, upstreams(), decide_on=decide_on), MATH, RouteOptions(cost_weight=1.0))


def test_auto_runs_fast_encoders_on_the_loop_and_others_on_the_thread(tfidf_bundle_dir):
    from recroute.serve.bundle import RoutingBundle
    from recroute.serve.gateway import fast_encoder

    bundle = RoutingBundle.load(tfidf_bundle_dir)
    assert fast_encoder(bundle) and Decider(bundle, upstreams()).decide_on == "loop"

    class Neural:
        name, dim = "all-MiniLM-L6-v2", 16

    assert not fast_encoder(RoutingBundle(bundle.router, Neural()))
    with pytest.raises(DataError, match="decide_on must be one of"):
        Decider(bundle, upstreams(), decide_on="gpu")
