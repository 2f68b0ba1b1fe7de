"""An OpenAI-compatible routing gateway: route each chat request to an LLM, forward it, fall back, log.

``create_gateway(bundle, upstreams, ...)`` builds the FastAPI app that ``recroute gateway`` runs:

- ``POST /v1/chat/completions``: the request's ``model`` is ``recroute`` (route over every configured
  LLM), ``recroute:cost_weight=0.3,max_cost=0.01,candidates=a|b`` (routing options), or the name of one
  configured LLM (forwarded there, no routing, no fallback). The routed prompt is the last user message
  (or the whole conversation). The request is forwarded unchanged but for ``model`` (the upstream's
  name); on a connection error, timeout or 5xx the next-best LLM is tried (at most ``max_tries``), never
  after the first streamed byte; an upstream 4xx is passed back as it is. The answer is the upstream's,
  with ``model`` set to the LLM's name, and ``x-recroute-*`` headers naming the decision.
- ``POST /v1/feedback`` ``{"decision_id", "outcome"}`` appends an outcome to the decision log.
- ``GET /v1/decisions/{decision_id}``: the explanation of one of the recent routed decisions
  (recroute.serve.recent_decisions; behind the client key).
- ``GET /v1/models``, ``GET /healthz`` (with the selection-entropy check), ``GET /metrics`` (Prometheus).

Every routed or direct request appends one decision record to the log (``recroute.feedback.logs``
format) with the gateway's extra keys: score, status, latency_ms, input/output tokens, cost from the
upstream's ``usage`` × its prices, fallbacks, upstream (the LLM that answered). Bad input is a 4xx
whose OpenAI-style ``error.message`` names the problem.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import hmac
import json
import logging
import time
import uuid
from collections import OrderedDict
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Mapping, Sequence

import httpx
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from recroute.errors import DataError
from recroute.feedback.logs import prompt_hash
from recroute.serve.batching import BatchSettings, DecisionBatcher, LoopBatcher
from recroute.serve.gateway_metrics import GatewayMetrics
from recroute.serve.upstreams import Upstream

logger = logging.getLogger("recroute.gateway")

ROUTE_MODEL = "recroute"
ROUTE_ON = ("last_user", "conversation")
DECIDE_ON = ("auto", "loop", "thread")
FAST_ENCODERS = ("tfidf", "static")  # encoder kinds cheap enough to run on the event loop
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_TRIES = 3
LOOP_BATCH_TURNS = 8  # loop turns a decision waits for others to batch with (16 clients: ~5 per batch, measured)
FEEDBACK_MEMORY = 100_000  # decision ids remembered for POST /v1/feedback
_PASS_HEADERS = ("content-type", "x-request-id", "openai-processing-ms")


class RequestError(Exception):
    """A client error: HTTP ``status`` and an OpenAI-style error body naming the problem."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict:
        kind = "authentication_error" if self.status == 401 else "invalid_request_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


# ---------------------------------------------------------------------- request parsing
@dataclass(frozen=True)
class RouteOptions:
    """What the ``model`` field asks for: one LLM directly, or routing with options."""

    direct: str | None = None
    candidates: tuple[str, ...] | None = None
    cost_weight: float | None = None
    max_cost: float | None = None


def parse_model_field(model: Any, llms: Sequence[str]) -> RouteOptions:
    """RouteOptions from a request's ``model``; RequestError (404) for an unknown model, 400 for bad options.

    ``llms``: the configured LLM names. Options: ``recroute:key=value,...`` with keys ``cost_weight``
    (float >= 0), ``max_cost`` (float >= 0) and ``candidates`` (LLM names separated by ``|``).
    """
    if not isinstance(model, str) or not model.strip():
        raise RequestError(400, "'model' must be a non-empty string: 'recroute', 'recroute:OPTIONS' or an LLM name",
                           "model")
    if model in llms:
        return RouteOptions(direct=model)
    head, sep, rest = model.partition(":")
    if head != ROUTE_MODEL:
        raise RequestError(404, f"unknown model {model!r}: use 'recroute' (routing) or one of {list(llms)[:20]}",
                           "model", "model_not_found")
    options: dict[str, Any] = {}
    for item in rest.split(",") if sep and rest.strip() else []:
        key, eq, value = (part.strip() for part in item.partition("="))
        if not eq or not value:
            raise RequestError(400, f"model {model!r}: routing option {item!r} is not key=value", "model")
        if key in options:
            raise RequestError(400, f"model {model!r}: routing option {key!r} given twice", "model")
        if key in ("cost_weight", "max_cost"):
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if not 0 <= number < float("inf"):
                raise RequestError(400, f"model {model!r}: {key} must be a number >= 0; got {value!r}", "model")
            options[key] = number
        elif key == "candidates":
            names = tuple(dict.fromkeys(n.strip() for n in value.split("|") if n.strip()))
            unknown = [n for n in names if n not in llms]
            if unknown or not names:
                raise RequestError(400, f"model {model!r}: candidates {unknown or value!r} are not configured LLMs "
                                   f"(configured: {list(llms)[:20]})", "model")
            options[key] = names
        else:
            raise RequestError(400, f"model {model!r}: unknown routing option {key!r}; use cost_weight, max_cost, "
                               "candidates", "model")
    return RouteOptions(**options)


def parse_chat_body(raw: bytes, max_tokens_limit: int | None = None) -> dict:
    """The request body as a dict, checked: a JSON object with ``model`` and non-empty ``messages``.

    RequestError (400) naming the first problem: not JSON, not an object, missing/bad ``messages``,
    a message without a string ``role``, a non-boolean ``stream``, or ``max_tokens`` /
    ``max_completion_tokens`` not a positive integer or above ``max_tokens_limit``.
    """
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"the request body must be a JSON object; got {type(body).__name__}")
    if "model" not in body:
        raise RequestError(400, "missing 'model' (use 'recroute' to route)", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "'messages' must be a non-empty list of {role, content} objects", "messages")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise RequestError(400, f"messages[{i}] must be an object with a string 'role'", f"messages[{i}]")
        content = message.get("content")
        if content is not None and not isinstance(content, (str, list)):
            raise RequestError(400, f"messages[{i}].content must be a string, a list of parts or null",
                               f"messages[{i}].content")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise RequestError(400, f"'stream' must be true or false; got {body['stream']!r}", "stream")
    for key in ("max_tokens", "max_completion_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RequestError(400, f"'{key}' must be a positive integer; got {value!r}", key)
        if max_tokens_limit is not None and value > max_tokens_limit:
            raise RequestError(400, f"'{key}' = {value} is over this gateway's limit of {max_tokens_limit}", key)
    return body


def routed_text(messages: list[dict], route_on: str = "last_user") -> str:
    """The text the router sees: the last user message, or every message's text (``conversation``).

    RequestError (400) when there is no user message or it holds no text.
    """
    if route_on == "conversation":
        text = "\n".join(t for t in (_content_text(m.get("content")) for m in messages) if t)
    else:
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            raise RequestError(400, "no message with role 'user' to route on", "messages")
        text = _content_text(users[-1].get("content"))
    if not text.strip():
        raise RequestError(400, "the routed message holds no text", "messages")
    return text


def _content_text(content: Any) -> str:
    """Text of a message content: a string, or the ``text`` of its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(p["text"] for p in content
                         if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str))
    return ""


# ---------------------------------------------------------------------- hooks into feedback and cost
def load_policy(spec: str | None):
    """The routing policy for ``spec`` (None = greedy) from recroute.feedback.policies."""
    from recroute.feedback.policies import parse_policy

    return parse_policy(spec)


def choose(policy, utility: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> tuple[int, float]:
    """(chosen LLM index, propensity) for one request: utility (m,), allowed (m,) bool."""
    chosen, propensity = policy.choose(utility[None, :], allowed[None, :], rng)
    return int(chosen[0]), float(propensity[0])


def cost_step(scores: np.ndarray, costs: np.ndarray, options: RouteOptions, allowed: np.ndarray,
              names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(values (m,), allowed (m,)) after the shared cost decision step (recroute.cost): utility with
    ``cost_weight``, then the ``max_cost`` mask (a request left with no LLM is a 400 naming the cheapest)."""
    from recroute.cost.decide import cost_aware_scores

    try:
        values, mask = cost_aware_scores(scores[None, :], costs, options.cost_weight, options.max_cost,
                                         allowed, names)
    except DataError as exc:
        raise RequestError(400, str(exc).replace(" for prompt 0", ""), "model") from None
    return values[0], mask[0]


def open_decision_log(path):
    """The decision-log writer (recroute.feedback.logs.DecisionLogWriter) for ``path``."""
    from recroute.feedback.logs import DecisionLogWriter

    return DecisionLogWriter(path)


def routing_prices(bundle, upstreams: Mapping[str, Upstream]):
    """The prices cost-aware routing uses: the bundle's (those the router was fitted with), else the
    upstreams file's per-token prices (NaN where an LLM has none); None when neither has any."""
    from recroute.data.costs import DEFAULT_OUTPUT_TOKENS, Prices

    if getattr(bundle, "prices", None) is not None:
        return bundle.prices
    names = bundle.llm_names
    table = [(upstreams[n].input_price_per_mtok, upstreams[n].output_price_per_mtok) if n in upstreams else (None, None)
             for n in names]
    if all(a is None and b is None for a, b in table):
        return None
    inp, out = (np.array([np.nan if v is None else v for v in col], dtype=np.float64) for col in zip(*table))
    return Prices(names, inp, out, np.full(len(names), np.nan), np.full(len(names), DEFAULT_OUTPUT_TOKENS))


# ---------------------------------------------------------------------- the decision
@dataclass
class Decision:
    """One request's decision: the LLMs to try in order, the router's choice and its propensity."""

    decision_id: str
    order: list[str]
    candidates: list[str]
    chosen: str
    score: float | None
    propensity: float
    policy: str
    routing_s: float


class Decider:
    """Scores a prompt text (encoder + router) and decides for it: on the event loop for a fast encoder
    (``decide_on="loop"``, batched with the other requests of the same loop turn), else on the batching
    worker thread (``"thread"``); ``"auto"`` picks by encoder."""

    def __init__(self, bundle, upstreams: Mapping[str, Upstream], policy_spec: str | None = None,
                 seed: int | None = None, max_batch: int = 64, decide_on: str = "auto") -> None:
        self.bundle = bundle
        self.names = bundle.llm_names
        self.configured = np.array([n in upstreams for n in self.names], dtype=bool)
        self.policy = load_policy(policy_spec)
        self.policy_spec = str(self.policy.spec)
        self.rng = np.random.default_rng(seed)
        self.prices = routing_prices(bundle, upstreams)
        self._index = {n: j for j, n in enumerate(self.names)}
        if decide_on not in DECIDE_ON:
            raise DataError(f"decide_on must be one of {DECIDE_ON}; got {decide_on!r}")
        if decide_on == "auto":
            decide_on = "loop" if fast_encoder(bundle) else "thread"
        self.decide_on = decide_on
        self.batcher = None
        if decide_on == "thread":  # the serving micro-batcher: encode + rank batched on its worker thread
            encode = self.bundle.encode if bundle.router.needs_features else None
            self.batcher = DecisionBatcher(encode, self._rank, BatchSettings(max_batch=max_batch))
        self.loop_batcher = (LoopBatcher(self._score, max_batch=max_batch, turns=LOOP_BATCH_TURNS)
                             if decide_on == "loop" else None)

    def _rank(self, X: np.ndarray | None, n: int, options: dict) -> tuple[np.ndarray, np.ndarray]:
        """Every LLM ranked for n prompts: (llm_idx (n, m), scores (n, m)), best first."""
        return self.bundle.router.route(X, k=len(self.names), n=n)

    def _score(self, texts: list[str]) -> np.ndarray:
        """float32 (n, m) router scores for n texts."""
        router = self.bundle.router
        if not router.needs_features:
            return router.score(None, n=len(texts))
        return router.score(self.bundle.encode(texts))

    async def start(self) -> None:
        if self.batcher is not None:
            await self.batcher.start()

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    def expected_costs(self, text: str, allowed: np.ndarray) -> np.ndarray:
        """float64 (m,) expected $ of the prompt on each LLM (0 where not allowed); 400 when unpriced."""
        from recroute.data.costs import Prices, count_prompt_tokens

        if self.prices is None:
            raise RequestError(400, "cost_weight / max_cost need prices: the bundle has none and the upstreams file "
                               "gives no input_price_per_mtok / output_price_per_mtok", "model")
        unpriced = [n for n, ok, on in zip(self.names, self.prices.priced, allowed) if on and not ok]
        if unpriced:
            raise RequestError(400, f"cost_weight / max_cost: no price for candidate LLM(s) {unpriced[:5]}", "model")
        p = self.prices  # LLMs without a price are never allowed here: a flat 0 keeps expected() whole
        priced = Prices(p.llms, p.input_per_mtok, p.output_per_mtok, np.where(p.priced, p.per_prompt, 0.0),
                        p.output_tokens)
        tokens = count_prompt_tokens([text]) if priced.token_based else None
        return np.where(allowed, priced.expected(tokens, n=1)[0], 0.0)

    async def decide(self, text: str, options: RouteOptions) -> Decision:
        start = time.perf_counter()
        if self.batcher is None:  # a fast encoder: scored on the loop (with the requests of this turn), no thread hop
            scores = np.asarray(await self.loop_batcher.submit(text), dtype=np.float64)
        else:
            ranked = await self.batcher.decide([text])
            scores = np.empty(len(self.names), dtype=np.float64)
            scores[ranked.idx[0]] = ranked.scores[0]
        allowed = self.configured.copy()
        if options.candidates is not None:
            allowed[:] = False
            allowed[[self._index[n] for n in options.candidates]] = True
        utility = scores
        if options.cost_weight is not None or options.max_cost is not None:
            costs = await asyncio.to_thread(self.expected_costs, text, allowed)
            utility, allowed = cost_step(scores, costs, options, allowed, self.names)
        chosen, propensity = choose(self.policy, utility, allowed, self.rng)
        rest = np.flatnonzero(allowed)
        rest = rest[rest != chosen][np.argsort(-utility[rest[rest != chosen]], kind="stable")]
        order = [self.names[chosen]] + [self.names[j] for j in rest]
        return Decision(uuid.uuid4().hex, order, [self.names[j] for j in np.flatnonzero(allowed)],
                        self.names[chosen], _finite(scores[chosen]), propensity, self.policy_spec,
                        time.perf_counter() - start)


def fast_encoder(bundle) -> bool:
    """Whether the bundle's prompt features are cheap enough (no encoder, TF-IDF, static embeddings) to
    compute on the event loop; a neural encoder runs on the batching worker thread instead."""
    from recroute.serve.bundle import encoder_kind

    if not bundle.router.needs_features:
        return True
    kind = encoder_kind(bundle.encoder_name) or ""
    return any(kind.startswith(fast) for fast in FAST_ENCODERS)


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# ---------------------------------------------------------------------- forwarding
@dataclass
class Attempt:
    """The outcome of forwarding to the LLMs of a decision's order."""

    llm: str | None = None  # the LLM that answered (None: every try failed)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (llm, kind) of each failed try
    response: Any = None  # httpx.Response: the answer, a stream's open response, or the last 5xx
    first: bytes = b""  # a stream's first chunk, read before committing to it
    chunks: AsyncIterator[bytes] | None = None


@functools.lru_cache(maxsize=1024)
def _parsed_url(url: str) -> httpx.URL:
    """The upstream URL parsed once (httpx re-parses a string URL on every request)."""
    return httpx.URL(url)


def _failure_kind(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect"
    return "closed"


async def forward(client, upstreams: Mapping[str, Upstream], order: Sequence[str], body: dict, stream: bool,
                  max_tries: int, metrics: GatewayMetrics) -> Attempt:
    """Try the LLMs of ``order`` (at most ``max_tries``) until one answers without a connection error,
    timeout or 5xx. A stream is committed to once its first chunk arrived (no retry after that)."""
    attempt = Attempt()
    tries = list(order[:max_tries])
    for i, llm in enumerate(tries):
        upstream = upstreams[llm]
        headers = {"content-type": "application/json", "accept": "text/event-stream" if stream else "application/json"}
        if upstream.api_key:
            headers["authorization"] = f"Bearer {upstream.api_key}"
        payload = json.dumps({**body, "model": upstream.model}).encode()
        request = client.build_request("POST", _parsed_url(upstream.chat_url), content=payload, headers=headers,
                                       timeout=upstream.timeout_s)
        response = None
        try:
            response = await client.send(request, stream=True)
            if response.status_code >= 500:
                await response.aread()
                kind = f"http_{response.status_code}"
            elif not stream or response.status_code != 200:
                await response.aread()
                attempt.llm, attempt.response = llm, response
                return attempt
            else:
                chunks = response.aiter_bytes()
                first = b""
                while not first:  # an empty chunk is not a byte: keep reading
                    first = await chunks.__anext__()
                attempt.llm, attempt.response = llm, response
                attempt.first, attempt.chunks = first, chunks
                return attempt
        except (httpx.TransportError, StopAsyncIteration) as exc:
            kind = "closed" if isinstance(exc, StopAsyncIteration) else _failure_kind(exc)
            if response is not None:
                await response.aclose()
        attempt.failed.append((llm, kind))
        metrics.upstream_error(llm, kind, fell_back=i + 1 < len(tries))
        attempt.response = response if kind.startswith("http_") else None
    return attempt


def rewrite_model(payload: bytes, llm: str) -> tuple[bytes, dict | None]:
    """(the JSON body with ``model`` set to ``llm``, its ``usage`` or None); non-JSON passes unchanged."""
    try:
        doc = json.loads(payload)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return payload, None
    if not isinstance(doc, dict):
        return payload, None
    if "model" in doc:
        doc["model"] = llm
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else None
    return json.dumps(doc, separators=(",", ":")).encode(), usage


class SSERewriter:
    """Feeds raw SSE bytes, yields whole events with each ``data:`` JSON's ``model`` set to the LLM name."""

    def __init__(self, llm: str) -> None:
        self.llm = llm
        self.buffer = b""
        self.usage: dict | None = None

    def feed(self, chunk: bytes) -> bytes:
        self.buffer += chunk.replace(b"\r\n", b"\n")
        events, sep, self.buffer = self.buffer.rpartition(b"\n\n")
        return self._rewrite(events + sep) if sep else b""

    def flush(self) -> bytes:
        rest, self.buffer = self.buffer, b""
        return self._rewrite(rest) if rest else b""

    def _rewrite(self, block: bytes) -> bytes:
        lines = block.split(b"\n")
        for i, line in enumerate(lines):
            if line.startswith(b"data:") and line[5:].strip() not in (b"", b"[DONE]"):
                data, usage = rewrite_model(line[5:].strip(), self.llm)
                lines[i] = b"data: " + data
                if usage:
                    self.usage = usage
        return b"\n".join(lines)


def _tokens(usage: dict | None) -> tuple[int | None, int | None]:
    if not usage:
        return None, None
    inp, out = usage.get("prompt_tokens"), usage.get("completion_tokens")
    return (inp if isinstance(inp, int) else None), (out if isinstance(out, int) else None)


# ---------------------------------------------------------------------- the app
@dataclass
class GatewayConfig:
    """The gateway's settings (see ``recroute gateway --help``)."""

    policy: str | None = None
    seed: int | None = None
    log_path: str | None = None
    log_prompt_text: bool = False
    route_on: str = "last_user"
    max_tries: int = DEFAULT_MAX_TRIES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_tokens: int | None = None
    api_keys: tuple[str, ...] = ()
    entropy_window: int = 1000
    entropy_floor: float | None = None
    max_connections: int = 256
    decide_on: str = "auto"

    def check(self) -> None:
        if self.route_on not in ROUTE_ON:
            raise DataError(f"route_on must be one of {ROUTE_ON}; got {self.route_on!r}")
        for name in ("max_tries", "max_body_bytes", "entropy_window", "max_connections"):
            if getattr(self, name) < 1:
                raise DataError(f"{name} must be at least 1; got {getattr(self, name)}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise DataError(f"max_tokens must be at least 1; got {self.max_tokens}")
        if self.entropy_floor is not None and not self.entropy_floor >= 0:
            raise DataError(f"entropy_floor must be >= 0 bits; got {self.entropy_floor}")
        if any(not k for k in self.api_keys):
            raise DataError("an empty client API key")


def create_gateway(bundle, upstreams: Mapping[str, Upstream], config: GatewayConfig | None = None):
    """The FastAPI app routing OpenAI chat requests over the ``upstreams`` (LLM name -> Upstream)."""
    from recroute.serve.http import BodyLimit

    config = config or GatewayConfig()
    config.check()
    if not upstreams:
        raise DataError("no upstreams: the upstreams file names none of the bundle's LLMs")
    if bundle.router.needs_features and bundle.encoder is None:
        raise DataError("this bundle has no encoder, so it cannot route prompt texts")
    llms = [n for n in bundle.llm_names if n in upstreams]
    metrics = GatewayMetrics(llms, config.entropy_window, config.entropy_floor)
    state: dict[str, Any] = {"collapsed": False, "feedback_ids": OrderedDict()}
    log = open_decision_log(config.log_path) if config.log_path else None
    decider = Decider(bundle, upstreams, config.policy, config.seed, decide_on=config.decide_on)
    from recroute.serve.recent_decisions import RecentDecisions

    recent = RecentDecisions(bundle, decider.expected_costs)
    keys = [k.encode() for k in config.api_keys]

    @asynccontextmanager
    async def lifespan(app):
        limits = httpx.Limits(max_connections=config.max_connections, max_keepalive_connections=config.max_connections)
        state["client"] = httpx.AsyncClient(limits=limits, follow_redirects=False)
        await decider.start()
        freeze_startup_objects()
        yield
        await state["client"].aclose()
        await decider.close()

    app = FastAPI(title="recroute gateway", summary="An OpenAI-compatible endpoint that routes each request to an LLM.",
                  version="1", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=int(config.max_body_bytes))

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    def authorize(request: Request) -> None:
        if not keys:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip().encode(), k) for k in keys):
            raise RequestError(401, "missing or invalid API key (Authorization: Bearer KEY)", code="invalid_api_key")

    def watch(decision: Decision) -> None:
        metrics.routed(decision.chosen, decision.routing_s)
        collapsed = metrics.collapsed
        if collapsed and not state["collapsed"]:
            logger.warning("%s", metrics.health()["warnings"][0])
        elif state["collapsed"] and not collapsed:
            logger.warning("selection entropy back above the floor (%.3f bits)", metrics.window.entropy())
        state["collapsed"] = collapsed

    def record(decision: Decision, text: str, attempt: Attempt, status: int, start: float, usage: dict | None,
               error_note: str | None = None) -> None:
        seconds = time.perf_counter() - start
        metrics.request(attempt.llm, status, seconds)
        if log is None:
            return
        inp, out = _tokens(usage)
        upstream = upstreams.get(attempt.llm) if attempt.llm else None
        row = {"event": "decision", "decision_id": decision.decision_id, "timestamp": time.time(), "prompt_id": None,
               "prompt_text": text if config.log_prompt_text else None,
               "prompt_hash": prompt_hash(text),
               "candidates": decision.candidates, "chosen": decision.chosen, "propensity": decision.propensity,
               "outcome": None, "cost": upstream.cost(inp, out) if upstream else None, "policy": decision.policy,
               "router": bundle.router.name, "score": decision.score, "status": status,
               "latency_ms": round(seconds * 1e3, 3), "input_tokens": inp, "output_tokens": out,
               "fallbacks": [f"{llm}:{kind}" for llm, kind in attempt.failed], "upstream": attempt.llm}
        if error_note:
            row["error"] = error_note
        log.append([row])
        ids = state["feedback_ids"]
        ids[decision.decision_id] = None
        if len(ids) > FEEDBACK_MEMORY:
            ids.popitem(last=False)

    def headers(decision: Decision, attempt: Attempt) -> dict[str, str]:
        out = {"x-recroute-decision-id": decision.decision_id, "x-recroute-routed": decision.chosen,
               "x-recroute-score": "" if decision.score is None else repr(decision.score),
               "x-recroute-propensity": repr(decision.propensity),
               "x-recroute-fallbacks": str(len(attempt.failed)),
               "x-recroute-failed": ",".join(f"{llm}:{kind}" for llm, kind in attempt.failed)}
        if attempt.llm:
            out["x-recroute-llm"] = attempt.llm
        if attempt.response is not None:
            for key in _PASS_HEADERS:
                value = attempt.response.headers.get(key)
                if value is not None:
                    out[key] = value
        return out

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(exc)

    @app.get("/healthz")
    async def healthz() -> dict:
        """{"status": "ok" | "degraded", selection entropy, warnings}; degraded when the router collapses."""
        return {**metrics.health(), "llms": llms}

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus text exposition: requests, errors, fallbacks, latency histograms, selection entropy."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        """``recroute`` and every configured LLM, in the OpenAI list format."""
        authorize(request)
        return {"object": "list", "data": [{"id": name, "object": "model", "created": 0, "owned_by": "recroute"}
                                           for name in [ROUTE_MODEL, *llms]]}

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> dict:
        """Append ``{"decision_id", "outcome" in [0, 1]}`` to the decision log."""
        authorize(request)
        if log is None:
            raise RequestError(400, "this gateway keeps no decision log (start it with --log FILE)")
        try:
            doc = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the request body is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or set(doc) != {"decision_id", "outcome"}:
            raise RequestError(400, "expected exactly {\"decision_id\": str, \"outcome\": number in [0, 1]}")
        decision_id, outcome = doc["decision_id"], doc["outcome"]
        if not isinstance(decision_id, str) or decision_id not in state["feedback_ids"]:
            raise RequestError(404, f"unknown decision_id {decision_id!r} (not among this gateway's last "
                               f"{FEEDBACK_MEMORY:,} decisions)", "decision_id")
        if isinstance(outcome, bool) or not isinstance(outcome, (int, float)) or not 0 <= outcome <= 1:
            raise RequestError(400, f"outcome must be a number in [0, 1]; got {outcome!r}", "outcome")
        log.append_outcome(decision_id, float(outcome))
        return {"decision_id": decision_id, "outcome": float(outcome)}

    @app.get("/v1/decisions/{decision_id}")
    async def explain_decision(decision_id: str, request: Request) -> dict:
        """Why one of the recent routed decisions went where it did (recroute.audit.explain)."""
        authorize(request)
        found = await asyncio.to_thread(recent.explain, decision_id)
        if found is None:
            raise RequestError(404, f"unknown decision_id {decision_id!r} (not among this gateway's last "
                               f"{recent.size:,} routed decisions)", "decision_id")
        return found

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        """Route, forward (with fallback), log; the upstream's answer with ``model`` = the LLM's name."""
        start = time.perf_counter()
        authorize(request)
        body = parse_chat_body(await request.body(), config.max_tokens)
        options = parse_model_field(body["model"], llms)
        text = routed_text(body["messages"], config.route_on)
        stream = bool(body.get("stream", False))
        if options.direct is not None:
            decision = Decision(uuid.uuid4().hex, [options.direct], [options.direct], options.direct, None, 1.0,
                                "direct", 0.0)
            tries = 1
        else:
            decision = await decider.decide(text, options)
            watch(decision)
            recent.add(decision.decision_id, text, list(options.candidates or llms), decision.chosen, decision.propensity,
                       decision.policy, options.cost_weight, options.max_cost)
            tries = config.max_tries
        attempt = await forward(state["client"], upstreams, decision.order, body, stream, tries, metrics)
        response = attempt.response
        if attempt.llm is None:  # every try failed
            if response is not None:  # the last one with a 5xx: passed back as it is
                record(decision, text, attempt, response.status_code, start, None, "every upstream try failed")
                return Response(response.content, response.status_code, headers=headers(decision, attempt))
            tried = ", ".join(f"{llm} ({kind})" for llm, kind in attempt.failed)
            status = 504 if all(kind == "timeout" for _, kind in attempt.failed) else 502
            record(decision, text, attempt, status, start, None, "every upstream try failed")
            return JSONResponse({"error": {"message": f"no upstream answered: {tried}", "type": "upstream_error",
                                           "param": None, "code": "upstream_unavailable"}},
                                status_code=status, headers=headers(decision, attempt))
        if attempt.chunks is None:  # a whole answer (or an upstream 4xx, passed back unchanged)
            payload, usage = response.content, None
            if response.status_code < 400:
                payload, usage = rewrite_model(payload, attempt.llm)
            record(decision, text, attempt, response.status_code, start, usage)
            return Response(payload, response.status_code, headers=headers(decision, attempt))
        return StreamingResponse(relay(decision, text, attempt, start), status_code=200,
                                 headers=headers(decision, attempt), media_type=None)

    async def relay(decision: Decision, text: str, attempt: Attempt, start: float) -> AsyncIterator[bytes]:
        """The upstream's SSE events, model rewritten, as they come; an upstream failure mid-stream ends
        the stream with an error event (nothing is retried after the first byte)."""
        rewriter = SSERewriter(attempt.llm)
        note = None
        try:
            out = rewriter.feed(attempt.first)
            if out:
                yield out
            async for chunk in attempt.chunks:
                out = rewriter.feed(chunk)
                if out:
                    yield out
            out = rewriter.flush()
            if out:
                yield out
        except httpx.TransportError as exc:
            note = f"upstream {attempt.llm} failed mid-stream ({_failure_kind(exc)})"
            metrics.upstream_error(attempt.llm, _failure_kind(exc), fell_back=False)
            yield (rewriter.flush() + b"\n\n" if rewriter.buffer else b"") + b"data: " + json.dumps(
                {"error": {"message": note, "type": "upstream_error", "code": "upstream_stream_broken"}}).encode() + b"\n\n"
        except (asyncio.CancelledError, GeneratorExit):
            note = "the client went away mid-stream"
            raise
        finally:
            record(decision, text, attempt, 200, start, rewriter.usage, note)  # first: closing may be cancelled
            try:
                await attempt.response.aclose()
            except Exception:  # the upstream connection is dropped either way
                pass

    return app


def freeze_startup_objects() -> None:
    """Move every object alive after start-up (the bundle, FastAPI, httpx: ~130k tracked objects) out of
    the cyclic garbage collector's reach (``gc.freeze``).

    Measured on the gateway: a full (generation 2) collection over them took 68-115 ms and ran about
    once per 1,000 requests, a stall that every in-flight request waited on, ~0.1 ms per request on
    average. Objects created while serving are still collected as before.
    """
    gc.collect()
    gc.freeze()


def serve_gateway(app, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Run the gateway app under uvicorn until interrupted, BLAS on one thread (``serving_blas``)."""
    import uvicorn

    from recroute.threads import serving_blas

    with serving_blas():
        uvicorn.run(app, host=host, port=port, log_level=log_level)
