"""A one-worker gateway process whose TF-IDF encoder counts what it encodes, for the tests that prove
how many times a request's prompt is encoded.

    python tests/serve/counting_gateway.py --bundle DIR --upstreams TOML --port N --log FILE \
        --decide-on loop|thread --admin-key KEY

Every ``TfidfEncoder.encode`` call in the process (any bundle's: the live one, a reloaded one, a
shadow) is counted; ``GET /_encoded`` answers ``{"calls": int, "texts": int}`` so far.
"""

from __future__ import annotations

import argparse
import threading

from fastapi.responses import JSONResponse

from recroute.encoders.tfidf import TfidfEncoder
from recroute.serve.bundle import RoutingBundle
from recroute.serve.gateway import GatewayConfig, create_gateway, serve_gateway
from recroute.serve.upstreams import load_upstreams

COUNTS = {"calls": 0, "texts": 0}
_LOCK = threading.Lock()
_ENCODE = TfidfEncoder.encode


def counted_encode(self, texts, *args, **kwargs):
    """TfidfEncoder.encode, counted (the texts of one call, however many)."""
    with _LOCK:
        COUNTS["calls"] += 1
        COUNTS["texts"] += len(texts)
    return _ENCODE(self, texts, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--upstreams", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--decide-on", default="auto")
    parser.add_argument("--admin-key", required=True)
    args = parser.parse_args()

    TfidfEncoder.encode = counted_encode
    bundle = RoutingBundle.load(args.bundle)
    upstreams, _ = load_upstreams(args.upstreams, bundle.llm_names, spare=True)
    config = GatewayConfig(log_path=args.log, decide_on=args.decide_on, admin_key=args.admin_key,
                           log_prompt_text=True)
    app = create_gateway(bundle, upstreams, config)

    @app.get("/_encoded")
    async def encoded() -> JSONResponse:
        with _LOCK:
            return JSONResponse(dict(COUNTS))

    serve_gateway(app, "127.0.0.1", args.port, log_level="warning")


if __name__ == "__main__":
    main()
