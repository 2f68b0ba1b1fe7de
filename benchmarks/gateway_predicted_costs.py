"""What predicted-cost requests cost the gateway before and after their costs came from the routing
features (one encoding per request instead of two), in one run: rounds alternate the gateway module of
the commit before the change (``--before``, loaded from git beside the current package) and the
current one, so the machine's load hits both alike.

Bundle: graphrouter fitted on a 2,000-prompt slice of llmrouter_nim's training split (9 LLMs, $/Mtok
prices) with the static MiniLM encoder, ``costs="predicted"`` (its cost edges). One gateway worker in
this process (``create_gateway``, a decision log with the prompt texts), one fake upstream serving the 9
LLMs, one load client process sending ``recroute:cost_weight=W`` (W = 0.5 / the median predicted cost,
so the costs move choices) for the test split's prompts. Per round: CPU seconds of this process /
routed requests, requests per second, the texts the encoder encoded per request (the encoder class
wrapped to count), and each prompt's chosen LLM (after and before must agree on every prompt).

    python benchmarks/gateway_predicted_costs.py --bundle-dir /tmp/gw-predicted --json benchmarks/results/gateway_predicted_costs.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from gateway import free_port, start_upstream  # noqa: E402
from gateway_profile import CLIENT  # noqa: E402  (its 5th argument: the request's model)
from machine import describe_machine  # noqa: E402

BEFORE = "1c28653"  # main before this change: predicted costs encoded the prompt a second time


def build_bundle(folder: Path, dataset: str, n_train: int):
    """(bundle, test prompts): the predicted-cost graphrouter bundle of ``dataset`` in ``folder`` (built
    unless there)."""
    import recroute
    from recroute.encoders import embed_dataset, get_encoder
    from recroute.routers.registry import make_router
    from recroute.serve.bundle import RoutingBundle

    data = recroute.load_dataset(dataset)
    split = np.asarray(data.prompts["split"]) if "split" in data.prompts else None
    test = np.flatnonzero(split == "test") if split is not None else np.arange(data.n_prompts)[-500:]
    if not (folder / "manifest.json").is_file():
        train = np.flatnonzero(split == "train") if split is not None else np.arange(data.n_prompts - 500)
        part = data.subset(prompts=np.sort(np.random.default_rng(0).choice(train, n_train, replace=False)))
        encoder = get_encoder("static")
        embed_dataset(part, encoder, use_cache=False)
        router = make_router("graphrouter").fit(part, part.embeddings)
        RoutingBundle.build(router, encoder, part.prices(), costs="predicted").save(folder)
    return RoutingBundle.load(folder), [str(data.texts[i]) for i in test]


def gateway_module(commit: str):
    """recroute/serve/gateway.py as it was at ``commit``, imported beside the current package."""
    source = subprocess.run(["git", "show", f"{commit}:recroute/serve/gateway.py"], cwd=REPO, check=True,
                            capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="gateway-before-")) / "gateway_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("gateway_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    path.unlink()
    path.parent.rmdir()
    return module


class Counter:
    """Counts the texts every instance of an encoder class encodes (its ``encode`` wrapped)."""

    def __init__(self, cls) -> None:
        self.texts = 0
        self.lock = threading.Lock()
        original = cls.encode

        def encode(encoder, texts, *args, **kwargs):
            with self.lock:
                self.texts += len(texts)
            return original(encoder, texts, *args, **kwargs)

        cls.encode = encode


def one_round(module, bundle, ups, model: str, decide_on: str, requests: int, clients: int, prompts: Path,
              tmp: Path, name: str, counter: Counter) -> dict:
    """{"cpu_ms_per_request", "requests_per_s", "latency_ms_p50" (the decision log's, the upstream
    answering at once), "encoded_per_request", "choices"} of one round under uvicorn."""
    import uvicorn

    from recroute.threads import serving_blas

    log = tmp / f"{name}.jsonl"
    app = module.create_gateway(bundle, ups, module.GatewayConfig(log_path=str(log), log_prompt_text=True,
                                                                  decide_on=decide_on))
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    client = subprocess.Popen([sys.executable, "-c", CLIENT, url, str(requests), str(clients), str(prompts), model])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                            limit_max_requests=requests + 1)
    with serving_blas():
        server = uvicorn.Server(config)
        texts0 = counter.texts
        cpu0, t0 = time.process_time(), time.perf_counter()
        server.run()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
        encoded = counter.texts - texts0
    if client.wait(60) != 0:
        raise RuntimeError(f"round {name}: the load client failed")
    decisions = [r for r in map(json.loads, log.read_text().splitlines()) if r.get("event") == "decision"]
    if len(decisions) != requests:
        raise RuntimeError(f"round {name}: {len(decisions)} decisions logged for {requests} requests")
    return {"cpu_ms_per_request": 1000 * cpu / requests, "requests_per_s": requests / wall,
            "latency_ms_p50": float(np.median([r["latency_ms"] for r in decisions])),
            "encoded_per_request": encoded / requests, "choices": {r["prompt_text"]: r["chosen"] for r in decisions}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle-dir", required=True, help="build the bundle here once and reuse it")
    parser.add_argument("--dataset", default="/work/shared/data/llmrouter_nim")
    parser.add_argument("--train", type=int, default=2000, help="training prompts of the bundle")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="pairs of rounds (before, after) per --decide-on")
    parser.add_argument("--decide-on", default="loop,thread", help="comma-separated: loop, thread")
    parser.add_argument("--before", default=BEFORE, help="the commit whose gateway module is the baseline")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()

    import recroute.serve.gateway as after
    from recroute.serve.gateway import tokenizers_on_one_thread
    from recroute.serve.upstreams import Upstream

    tokenizers_on_one_thread()
    before = gateway_module(args.before)
    bundle, texts = build_bundle(Path(args.bundle_dir), args.dataset, args.train)
    texts = [t.replace("\n", " ") for t in texts]
    C = bundle.expected_costs(len(texts), None, bundle.encode(texts))
    weight = 0.5 / float(np.median(C))
    model = f"recroute:cost_weight={weight!r}"
    counter = Counter(type(bundle.encoder))
    upstream, port = start_upstream(",".join(bundle.llm_names))
    ups = {n: Upstream(n, f"http://127.0.0.1:{port}/{n}/v1", n) for n in bundle.llm_names}
    rounds, load, agree = [], [os.getloadavg()], {}
    try:
        with tempfile.TemporaryDirectory() as folder:
            tmp = Path(folder)
            prompts = tmp / "prompts.txt"
            prompts.write_text("\n".join(texts))
            for decide_on in args.decide_on.split(","):
                choices: dict[str, list[dict]] = {"before": [], "after": []}
                for i in range(args.rounds):
                    for which, module in (("before", before), ("after", after)):
                        got = one_round(module, bundle, ups, model, decide_on, args.requests, args.clients, prompts,
                                        tmp, f"{decide_on}-{i}-{which}", counter)
                        choices[which].append(got.pop("choices"))
                        rounds.append({"decide_on": decide_on, "round": i, "gateway": which, **got,
                                       "load": os.getloadavg()})
                        print(rounds[-1], flush=True)
                ref = choices["before"][0]
                agree[decide_on] = {"prompts": len(ref), "differ": sum(
                    1 for c in choices["before"] + choices["after"] for t, llm in c.items() if ref[t] != llm),
                    "plain_differ": None}
    finally:
        upstream.terminate()
    load.append(os.getloadavg())
    plain = bundle.route_arrays(bundle.encode(texts), k=1)[0][:, 0]
    costed = bundle.route_arrays(bundle.encode(texts), k=1, cost_weight=weight)[0][:, 0]
    summary = {}
    for decide_on in args.decide_on.split(","):
        agree[decide_on]["plain_differ"] = int((plain != costed).sum())  # prompts whose choice the costs moved
        rows = [r for r in rounds if r["decide_on"] == decide_on]
        b = {r["round"]: r for r in rows if r["gateway"] == "before"}
        a = {r["round"]: r for r in rows if r["gateway"] == "after"}
        cpu = [a[i]["cpu_ms_per_request"] / b[i]["cpu_ms_per_request"] for i in sorted(a)]
        rps = [a[i]["requests_per_s"] / b[i]["requests_per_s"] for i in sorted(a)]
        lat = [a[i]["latency_ms_p50"] / b[i]["latency_ms_p50"] for i in sorted(a)]
        summary[decide_on] = {
            "cpu_ms_before_median": float(np.median([r["cpu_ms_per_request"] for r in b.values()])),
            "cpu_ms_after_median": float(np.median([r["cpu_ms_per_request"] for r in a.values()])),
            "rps_before_median": float(np.median([r["requests_per_s"] for r in b.values()])),
            "rps_after_median": float(np.median([r["requests_per_s"] for r in a.values()])),
            "cpu_ratio_per_round": cpu, "cpu_ratio_median": float(np.median(cpu)),
            "rps_ratio_per_round": rps, "rps_ratio_median": float(np.median(rps)),
            "latency_ms_p50_before_median": float(np.median([r["latency_ms_p50"] for r in b.values()])),
            "latency_ms_p50_after_median": float(np.median([r["latency_ms_p50"] for r in a.values()])),
            "latency_ratio_per_round": lat, "latency_ratio_median": float(np.median(lat)),
            "encoded_per_request_before": float(np.median([r["encoded_per_request"] for r in b.values()])),
            "encoded_per_request_after": float(np.median([r["encoded_per_request"] for r in a.values()])),
            "choices": agree[decide_on]}
    doc = {"machine": describe_machine(), "args": vars(args), "cost_weight": weight, "llms": len(bundle.llm_names),
           "bundle": {"router": bundle.router.name, "encoder": bundle.encoder_name, "costs": bundle.costs},
           "rounds": rounds, "load": load, "summary": summary}
    Path(args.json).write_text(json.dumps(doc, indent=1))
    for decide_on, s in summary.items():
        print(f"{decide_on}: CPU per predicted-cost request {s['cpu_ms_before_median']:.3f} -> {s['cpu_ms_after_median']:.3f} "
              f"ms (ratio {s['cpu_ratio_median']:.3f}, per round {np.round(s['cpu_ratio_per_round'], 3).tolist()}); "
              f"requests/s {s['rps_before_median']:.0f} -> {s['rps_after_median']:.0f} (ratio {s['rps_ratio_median']:.3f}); "
              f"p50 latency {s['latency_ms_p50_before_median']:.2f} -> {s['latency_ms_p50_after_median']:.2f} ms "
              f"(ratio {s['latency_ratio_median']:.3f}); "
              f"texts encoded per request {s['encoded_per_request_before']:.2f} -> {s['encoded_per_request_after']:.2f}; "
              f"choices differing from the first before round: {s['choices']['differ']} of "
              f"{2 * args.rounds} x {s['choices']['prompts']}")
    print(f"load {load}")


if __name__ == "__main__":
    main()
