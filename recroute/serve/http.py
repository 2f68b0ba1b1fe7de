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

import orjson
from fastapi import FastAPI, HTTPException
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recroute.errors import DataError
from recroute.serve.batching import BatchSettings, DecisionBatcher
from recroute.serve.bundle import RoutingBundle, decisions
from recroute.threads import ThreadSettings, apply_threads

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


class RouteResponse(BaseModel):
    decisions: list[Decision] = Field(description="One decision per prompt, in request order.")


class LLMsResponse(BaseModel):
    llms: list[str]
    router: str
    encoder: Optional[str]


def create_app(
    bundle: RoutingBundle, max_batch: int = DEFAULT_MAX_BATCH, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    batching: BatchSettings | None = None, threads: ThreadSettings | None = None,
) -> FastAPI:
    """The FastAPI app serving ``bundle``.

    ``max_batch``: most prompts in one request (413 beyond); ``max_body_bytes``: largest body;
    ``batching``: micro-batching of concurrent requests (default :class:`BatchSettings`: on, 64
    prompts, 0 ms: no timed wait); ``threads``: thread counts applied on the worker thread (None: leave them).
    """
    if max_batch < 1 or max_body_bytes < 1:
        raise ValueError(f"max_batch and max_body_bytes must be positive; got {max_batch}, {max_body_bytes}")
    batching = batching or BatchSettings()
    needs_text = bundle.router.needs_features
    if needs_text and bundle.encoder is None:
        raise DataError("this bundle has no encoder, so it cannot route prompt texts over HTTP")
    state: dict[str, Any] = {}

    def route_rows(X, n: int, options: dict):
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
        options = {"k": request.k, "candidates": request.candidates}
        try:
            out = await state["batcher"].decide(texts, options)
        except (DataError, ValueError) as exc:  # this request's own routing said no
            raise HTTPException(422, str(exc)) from None
        body = orjson.dumps({"decisions": [d.to_dict() for d in decisions(out.idx, out.scores, names)]})
        return Response(body, media_type="application/json", headers={BATCH_SIZE_HEADER: str(out.batch_prompts)})

    return app


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
          threads: ThreadSettings | None = None, log_level: str = "info") -> None:
    """Run the service under uvicorn until interrupted (uvloop and httptools when installed)."""
    import uvicorn

    threads = apply_threads(threads)
    app = create_app(bundle, max_batch, max_body_bytes, batching=batching, threads=threads)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=log_level == "info",
                loop="auto", http="auto")
