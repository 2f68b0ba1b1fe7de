"""What a shadow bundle costs the gateway's hot path: CPU per routed request with and without a shadow
installed, in one run (rounds alternate off / on, so the machine's load hits both alike).

One gateway worker in this process (``create_gateway`` on the static-MiniLM kNN bundle of MMLU-Pro of
benchmarks/gateway.py, with a decision log), one fake upstream and one load client process
(benchmarks/gateway_profile.py's); the shadow is a kNN (k=1) over the same LLMs with the live bundle's
encoder, installed before the round starts (``LiveBundle.set_shadow`` and the host's board, as
``POST /admin/shadow`` does). CPU: this process's CPU seconds over the round / routed requests.

    python benchmarks/gateway_shadow.py --bundle-dir /tmp/gw-bundle --json benchmarks/results/gateway_shadow.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from gateway import build_bundle, free_port, start_upstream  # noqa: E402
from gateway_profile import CLIENT  # noqa: E402
from machine import describe_machine  # noqa: E402


def shadow_bundle(bundle, folder: Path) -> Path:
    """A kNN (k=1) over MMLU-Pro with ``bundle``'s encoder, saved in ``folder`` (reused when there)."""
    import recroute
    from recroute.routers.knn import KNNRouter
    from recroute.serve.bundle import RoutingBundle

    if not (folder / "manifest.json").is_file():
        data = recroute.load_dataset("mmlu_pro")
        RoutingBundle.build(KNNRouter(k=1).fit(data, bundle.encode(list(data.texts))), bundle.encoder).save(folder)
    return folder


def one_round(bundle, ups, shadow: Path | None, epsilon: float, requests: int, clients: int, prompts: Path,
              tmp: Path, name: str) -> dict:
    """{"cpu_ms_per_request", "requests_per_s", "shadow_decisions"} of one round served under uvicorn."""
    import uvicorn

    from recroute.serve.gateway import GatewayConfig, create_gateway
    from recroute.threads import serving_blas

    log = tmp / f"{name}.jsonl"
    app = create_gateway(bundle, ups, GatewayConfig(log_path=str(log), admin_key="bench"))
    if shadow is not None:
        live, host = app.state.live, app.state.host
        checksum = asyncio.run(live.set_shadow(str(shadow), epsilon, 0.0))
        host.board.publish_shadow({"bundle": str(shadow), "checksum": checksum, "epsilon": epsilon, "tau": 0.0})
        live.shadow_generation = host.board.desired_shadow()[0]
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url, str(requests), str(clients), str(prompts)])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            limit_max_requests=requests + 1)
    with serving_blas():
        server = uvicorn.Server(config)
        cpu0, t0 = time.process_time(), time.perf_counter()
        server.run()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    client.wait(60)
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    decisions = [r for r in rows if r.get("event") == "decision"]
    return {"cpu_ms_per_request": 1000 * cpu / requests, "requests_per_s": requests / wall,
            "decisions": len(decisions), "shadow_decisions": sum(1 for r in decisions if r.get("shadow_checksum")),
            "differ": sum(1 for r in decisions if r.get("shadow_checksum") and r["live_choice"] != r["shadow_choice"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle-dir", required=True, help="build the bundles here once and reuse them")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of rounds (off, on)")
    parser.add_argument("--epsilon", type=float, default=0.3)
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    from recroute.serve.gateway import tokenizers_on_one_thread
    from recroute.serve.upstreams import Upstream

    tokenizers_on_one_thread()
    bundle, texts, pool = build_bundle(Path(args.bundle_dir), "static")
    shadow = shadow_bundle(bundle, Path(args.bundle_dir + "-shadow"))
    upstream, port = start_upstream(",".join(pool))
    ups = {n: Upstream(n, f"http://127.0.0.1:{port}/{n}/v1", n) for n in pool}
    rounds, load = [], [os.getloadavg()]
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            prompts = tmp / "prompts.txt"
            prompts.write_text("\n".join(t.replace("\n", " ") for t in texts[:2000]))
            for i in range(args.rounds):
                for on in (False, True):
                    got = one_round(bundle, ups, shadow if on else None, args.epsilon, args.requests, args.clients,
                                    prompts, tmp, f"round{i}-{'on' if on else 'off'}")
                    rounds.append({"round": i, "shadow": on, **got, "load": os.getloadavg()})
                    print(rounds[-1], flush=True)
    finally:
        upstream.terminate()
    load.append(os.getloadavg())
    off = np.array([r["cpu_ms_per_request"] for r in rounds if not r["shadow"]])
    on = np.array([r["cpu_ms_per_request"] for r in rounds if r["shadow"]])
    ratios = on / off
    doc = {"machine": describe_machine(), "args": vars(args), "rounds": rounds, "load": load,
           "cpu_ms_off_median": float(np.median(off)), "cpu_ms_on_median": float(np.median(on)),
           "ratio_per_round": ratios.tolist(), "ratio_median": float(np.median(ratios))}
    Path(args.json).write_text(json.dumps(doc, indent=1))
    print(f"CPU per routed request: {doc['cpu_ms_off_median']:.3f} ms without a shadow, {doc['cpu_ms_on_median']:.3f} ms "
          f"with one (ratio {doc['ratio_median']:.3f}, per round {np.round(ratios, 3).tolist()}); load {load}")


if __name__ == "__main__":
    main()
