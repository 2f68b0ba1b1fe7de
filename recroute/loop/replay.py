"""Loopback upstreams for the stream simulator: every LLM of a dataset as an OpenAI-compatible chat
endpoint that answers from the dataset's stored results.

    python -m recroute.loop.replay --dataset D --port P

serves ``POST /<llm>/v1/chat/completions`` for each LLM of D (and ``GET /healthz``). The prompt is
found by the sha256 of the last user message's text; the answer's content is the prompt's reference
(:func:`reference`) when the stored score of that LLM is at least 0.5, else ``"(wrong)"``, so an
exact-match scorer recovers the stored result (binarised at 0.5). An unknown prompt or LLM is a 404.
"""

from __future__ import annotations

import argparse
import hashlib

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def reference(prompt_id: str) -> str:
    """The reference answer the replayed LLMs give when right."""
    return f"answer-{prompt_id}"


def replay_app(data):
    """The FastAPI app answering for every LLM of ``data`` (a RoutingDataset with texts)."""
    if not data.has_text:
        raise ValueError("the replay upstream needs prompt texts (it finds each prompt by its text)")
    row = {hashlib.sha256(str(t).encode("utf-8")).hexdigest(): i for i, t in enumerate(data.texts) if t is not None}
    col = {str(n): j for j, n in enumerate(data.llm_names)}
    Y = data.dense(np.nan)
    ids = [str(p) for p in data.prompt_ids]
    app = FastAPI(title="recroute replay upstream")

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "llms": len(col), "prompts": len(row)}

    @app.post("/{llm}/v1/chat/completions")
    async def chat(llm: str, request: Request):
        body = await request.json()
        users = [m for m in body.get("messages", []) if m.get("role") == "user"]
        text = users[-1].get("content", "") if users else ""
        i = row.get(hashlib.sha256(str(text).encode("utf-8")).hexdigest())
        if llm not in col or i is None or np.isnan(Y[i, col[llm]]):
            return JSONResponse({"error": {"message": f"no stored result of {llm!r} for this prompt"}}, 404)
        content = reference(ids[i]) if Y[i, col[llm]] >= 0.5 else "(wrong)"
        return {"id": f"replay-{i}", "object": "chat.completion", "model": body.get("model", llm),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": len(str(text).split()), "completion_tokens": 1,
                          "total_tokens": len(str(text).split()) + 1}}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    from recroute.data.catalog import load_dataset

    parser = argparse.ArgumentParser(description="Loopback upstreams answering from a dataset's stored results.")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    uvicorn.run(replay_app(load_dataset(args.dataset)), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
