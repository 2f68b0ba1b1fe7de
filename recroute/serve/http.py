"""The HTTP routing service (FastAPI): ``POST /route``, ``GET /llms``, ``GET /healthz``.

``create_app(bundle)`` builds the app; ``recroute serve --bundle DIR`` runs it under uvicorn.
Requests are validated (422 naming the field, 413 for too many prompts or too large a body) and
handled on the event loop; encoding and routing run on one worker thread that micro-batches
concurrent requests (:class:`DecisionBatcher`: up to ``max_batch`` prompts or ``max_wait_ms``,
encoded once and routed once), never on the event loop. Answers are serialised with orjson and say
how many prompts their batch held (header ``x-recroute-batch-size``). OpenAPI schema at
``/openapi.json``, interactive docs at ``/docs``.
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import Any, Optional

import numpy as np
import orjson
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recroute.errors import DataError
from recroute.serve.batching import BatchSettings, DecisionBatcher
from recroute.serve.bundle import RoutingBundle, decisions
from recroute.threads import ThreadSettings, apply_threads, serving_blas

DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_BODY_BYTES = 1 << 20  # 1 MiB
BATCH_SIZE_HEADER = "x-recroute-batch-size"


class RouteRequest(BaseModel):
    """Exactly one of ``prompt`` and ``prompts``; ``candidates`` restricts the LLMs; ``k`` top LLMs."""

    model_config = ConfigDict(extra="forbid", strict=True)

    prompt: Optional[str] = Field(None, description="One prompt to route.", examples=["Prove that 17 is prime."])
    prompts: Optional[list[str]] = Field(None, description="Several prompts to route (a batch).")
    candidates: Optional[list[str]] = Field(None, description="LLM names to choose among (default: all).")
    k: int = Field(1, ge=1, description="How many LLMs to return per prompt, best first.")
    cost_weight: Optional[float] = Field(
        None, ge=0, description="Rank by score - cost_weight × expected cost (needs a bundle fitted with prices).")
    max_cost: Optional[float] = Field(None, ge=0, description="Only LLMs whose expected cost is at most this.")
    policy: Optional[str] = Field(None, description="A routing policy (greedy, epsilon_greedy:epsilon=0.2, "
                                  "softmax:temperature=0.1) overriding the service's; the choice carries its propensity.")

    @model_validator(mode="after")
    def _one_source(self) -> "RouteRequest":
        if (self.prompt is None) == (self.prompts is None):
            raise ValueError("give exactly one of 'prompt' (a string) and 'prompts' (a list of strings)")
        texts = [self.prompt] if self.prompt is not None else self.prompts
        if not texts:
            raise ValueError("'prompts' is empty")
        empty = [i for i, t in enumerate(texts) if not t.strip()]
        if empty:
            where = "'prompt'" if self.prompt is not None else f"'prompts' item(s) {empty[:5]}"
            raise ValueError(f"{where} empty or only whitespace")
        if self.candidates is not None and not self.candidates:
            raise ValueError("'candidates' is empty (leave it out to consider every LLM)")
        return self

    @property
    def texts(self) -> list[str]:
        return [self.prompt] if self.prompt is not None else list(self.prompts or [])


class RankedLLM(BaseModel):
    llm: str
    score: Optional[float]


class Decision(BaseModel):
    llm: str = Field(description="The chosen LLM (the best of top_k).")
    score: Optional[float] = Field(description="The router's score of the chosen LLM (higher = better).")
    top_k: list[RankedLLM] = Field(description="The k best LLMs with their scores, best first.")
    propensity: Optional[float] = Field(None, description="Under a routing policy: the probability of this choice.")
    decision_id: Optional[str] = Field(None, description="With a decision log: the id to report the outcome under.")


class OutcomeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False)

    decision_id: str = Field(description="The decision_id a /route response gave.")
    outcome: float = Field(ge=0.0, le=1.0, description="The observed quality of the answer, in [0, 1].")


class RouteResponse(BaseModel):
    decisions: list[Decision] = Field(description="One decision per prompt, in request order.")


class LLMsResponse(BaseModel):
    llms: list[str]
    router: str
    encoder: Optional[str]


def create_app(
    bundle: RoutingBundle, max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batching: BatchSettings | None = None, threads: ThreadSettings | None = None,
    cost_weight: float | None = None, max_cost: float | None = None, policy: Optional[str] = None, log=None,
) -> FastAPI:
    """The FastAPI app serving ``bundle``.

    ``max_batch``: most prompts in one request (413 beyond); ``max_body_bytes``: largest body;
    ``batching``: micro-batching of concurrent requests (default :class:`BatchSettings`: on, 64
    prompts, 0 ms: no timed wait); ``threads``: thread counts applied on the worker thread (None: leave them).
    ``cost_weight`` / ``max_cost``: defaults for requests that give none (None: plain routing); ``policy``:
    the default routing policy (a spec; None = greedy); ``log``: a decision-log path (JSONL) or
    ``DecisionLogWriter`` receiving one line per decision, with ``POST /outcome`` to add outcomes later.
    """
    from recroute.feedback.logs import DecisionLogWriter
    from recroute.feedback.policies import parse_policy

    if (cost_weight is not None or max_cost is not None) and not bundle.has_costs:
        raise DataError("a default cost_weight / max_cost needs a bundle fitted with prices (or predicted costs)")
    default_policy = None if policy is None else parse_policy(policy).spec
    writer = log if isinstance(log, DecisionLogWriter) or log is None else DecisionLogWriter(log)
    if max_batch < 1 or max_body_bytes < 1:
        raise ValueError(f"max_batch and max_body_bytes must be positive; got {max_batch}, {max_body_bytes}")
    batching = batching or BatchSettings()
    needs_text = bundle.router.needs_features
    if needs_text and bundle.encoder is None:
        raise DataError("this bundle has no encoder, so it cannot route prompt texts over HTTP")
    state: dict[str, Any] = {}

    def route_rows(X, n: int, options: dict):
        tokens = options.get("prompt_tokens")
        options = {**options, "prompt_tokens": None if tokens is None else np.asarray(tokens, dtype=np.float64)}
        return bundle.route_arrays(X, n=n, **options)

    def warm_up() -> None:
        """On the worker thread: thread settings, the encoder loaded (not on the first request), settings
        again (torch is imported once a MiniLM encoder has loaded)."""
        if threads is not None:
            apply_threads(threads)
        if needs_text:
            bundle.encode(["warm-up"])
        if threads is not None:
            apply_threads(threads)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher = DecisionBatcher(bundle.encode if needs_text else None, route_rows, batching)
        await batcher.start()
        await batcher.on_worker(warm_up)
        state["batcher"] = batcher
        yield
        await batcher.close()

    app = FastAPI(
        title="recroute routing service",
        summary="Route each prompt to the best LLM of a pool.",
        version="1",
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=int(max_body_bytes))
    app.state.batching = batching
    names = bundle.llm_names

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: {"status": "ok"}."""
        return {"status": "ok"}

    @app.get("/llms", response_model=LLMsResponse)
    async def llms() -> dict[str, Any]:
        """The LLM names this service routes to, its router and encoder."""
        return {"llms": names, "router": bundle.router.name, "encoder": bundle.encoder_name}

    @app.post(
        "/route",
        response_model=RouteResponse,
        responses={413: {"description": "Too many prompts or too large a body"},
                   422: {"description": "Invalid request (the detail says what is wrong)"}},
    )
    async def route(request: RouteRequest) -> Response:
        """Route one prompt (``prompt``) or a batch (``prompts``) to the top-``k`` LLMs among ``candidates``."""
        texts = request.texts
        if len(texts) > max_batch:
            raise HTTPException(413, f"{len(texts)} prompts in one request; the limit is {max_batch}")
        _check_choice(bundle, request.candidates, request.k)
        spec = request.policy or default_policy
        if spec is not None:
            try:
                spec = parse_policy(spec).spec
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from None
            if request.k != 1:
                raise HTTPException(422, f"a routing policy ({spec}) chooses one LLM per prompt: k must be 1")
        weight = cost_weight if request.cost_weight is None else request.cost_weight
        limit = max_cost if request.max_cost is None else request.max_cost
        options: dict[str, Any] = {"k": request.k, "candidates": request.candidates}
        if weight is not None or limit is not None:  # requests batch together only when their options are equal
            tokens = bundle.prompt_tokens(texts) if bundle.prices is not None else None
            options.update(cost_weight=weight, max_cost=limit,
                           prompt_tokens=None if tokens is None else tuple(np.asarray(tokens).tolist()))
        if spec is not None:
            options["policy"] = spec
        try:
            out = await state["batcher"].decide(texts, options)
        except (DataError, ValueError) as exc:  # this request's own routing said no (no prices, max_cost, ...)
            raise HTTPException(422, str(exc)) from None
        made = [d.to_dict() for d in decisions(out.idx, out.scores, names, out.propensity)]
        if writer is not None:
            issued.update(_log_decisions(writer, texts, made, request.candidates or names, spec, bundle.router.name))
        body = orjson.dumps({"decisions": made})
        return Response(body, media_type="application/json", headers={BATCH_SIZE_HEADER: str(out.batch_prompts)})

    issued: set[str] = set()  # decision ids this process logged (an outcome must name one of them)

    if writer is not None:
        @app.post("/outcome", responses={404: {"description": "Unknown decision_id"}})
        async def outcome(request: OutcomeRequest) -> dict[str, str]:
            """Record the observed outcome of an earlier decision (routed by this process) in the decision log."""
            if request.decision_id not in issued:
                raise HTTPException(404, f"unknown decision_id {request.decision_id!r} (not routed by this service)")
            writer.append_outcome(request.decision_id, float(request.outcome))
            return {"status": "ok"}

    return app


def _log_decisions(writer, texts: list[str], out: list[dict], candidates: list[str], spec: str | None,
                   router: str) -> list[str]:
    """Append one decision-log line per routed prompt; each response decision gains its decision_id."""
    import uuid

    records = []
    for text, decision in zip(texts, out):
        decision["decision_id"] = uuid.uuid4().hex
        records.append({"decision_id": decision["decision_id"], "prompt_text": text, "candidates": list(candidates),
                        "chosen": decision["llm"], "propensity": decision.get("propensity", 1.0),
                        "score": decision["score"], "policy": spec or "greedy", "router": router})
    writer.append(records)
    return [r["decision_id"] for r in records]


def _check_choice(bundle: RoutingBundle, candidates: list[str] | None, k: int) -> None:
    """422 naming unknown LLM names or a k larger than the number of candidates."""
    try:
        bundle.check_choice(k, candidates)
    except (DataError, ValueError) as exc:
        raise HTTPException(422, str(exc)) from None


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes`` (by Content-Length, or as it streams)."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await _send_json(send, 413, {"detail": f"request body over {self.max_bytes} bytes"})
            return
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited, send)


async def _send_json(send, status: int, payload: dict) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(bundle: RoutingBundle, host: str = "127.0.0.1", port: int = 8000, *, max_batch: int = DEFAULT_MAX_BATCH,
          max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, batching: BatchSettings | None = None,
          threads: ThreadSettings | None = None, log_level: str = "info", cost_weight: float | None = None,
          max_cost: float | None = None, policy: Optional[str] = None, log=None) -> None:
    """Run the service under uvicorn until interrupted (uvloop and httptools when installed)."""
    import uvicorn

    threads = apply_threads(threads)
    app = create_app(bundle, max_batch, max_body_bytes, batching=batching, threads=threads, cost_weight=cost_weight,
                     max_cost=max_cost, policy=policy, log=log)
    with serving_blas():
        uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "info",
                    loop="auto", http="auto")
