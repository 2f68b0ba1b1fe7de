"""Profile the gateway's routed request end to end (cProfile), one worker in this process.

Starts one fake upstream (tests/serve/fake_upstream.py) and a load client process, then serves the
gateway (``create_gateway`` on a static-MiniLM kNN bundle of MMLU-Pro, with a decision log) under
uvicorn in this process with cProfile on, until the client's requests are done; prints the
functions by own time and by cumulative time, and the CPU seconds per request of this process.

    python benchmarks/gateway_profile.py --bundle-dir /tmp/gw-bundle [--requests 3000] [--clients 16]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway import FAKE, build_bundle, free_port, start_upstream  # noqa: E402

CLIENT = """
import asyncio, sys, time, httpx
url, n, c = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
texts = open(sys.argv[4]).read().splitlines()
model = sys.argv[5] if len(sys.argv) > 5 else "recroute"
async def main():
    while True:
        try:
            if httpx.get(url.replace('/v1/chat/completions', '/healthz')).status_code == 200: break
        except httpx.TransportError: time.sleep(0.1)
    it = iter(range(n))
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=c), timeout=30) as client:
        async def worker():
            for i in it:
                r = await client.post(url, json={"model": model, "max_tokens": 64,
                                                 "messages": [{"role": "user", "content": texts[i % len(texts)]}]})
                assert r.status_code == 200, r.text
        await asyncio.gather(*(worker() for _ in range(c)))
asyncio.run(main())
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle-dir", required=True, help="build the bundle here once and reuse it")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--top", type=int, default=35)
    args = parser.parse_args()

    import uvicorn

    from recroute.serve.gateway import GatewayConfig, create_gateway, tokenizers_on_one_thread
    from recroute.serve.upstreams import Upstream
    from recroute.threads import serving_blas

    tokenizers_on_one_thread()
    bundle, texts, pool = build_bundle(Path(args.bundle_dir), "static")
    upstream, port = start_upstream(",".join(pool))
    with tempfile.TemporaryDirectory() as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(t.replace("\n", " ") for t in texts[:2000]))
        ups = {n: Upstream(n, f"http://127.0.0.1:{port}/{n}/v1", n) for n in pool}
        app = create_gateway(bundle, ups, GatewayConfig(log_path=str(Path(tmp) / "log.jsonl")))
        gw_port = free_port()
        url = f"http://127.0.0.1:{gw_port}/v1/chat/completions"
        client = subprocess.Popen([sys.executable, "-c", CLIENT, url, str(args.requests), str(args.clients),
                                   str(prompts)])
        config = uvicorn.Config(app, host="127.0.0.1", port=gw_port, log_level="warning", access_log=False,
                                limit_max_requests=args.requests + 1)
        profiler = cProfile.Profile()
        with serving_blas():
            server = uvicorn.Server(config)
            cpu0, t0 = time.process_time(), time.perf_counter()
            profiler.enable()
            server.run()
            profiler.disable()
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        client.wait(60)
        upstream.terminate()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(key).print_stats(args.top)
        print(out.getvalue())
    print(f"{args.requests} routed requests, {args.clients} clients: {1000 * cpu / args.requests:.3f} ms CPU per request "
          f"(profiled, so slower than unprofiled), {args.requests / wall:.0f} requests/s; load {os.getloadavg()}; "
          f"fake upstream {FAKE.name}")


if __name__ == "__main__":
    main()
