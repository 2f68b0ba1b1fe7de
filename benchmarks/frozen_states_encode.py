"""What `recroute encode --finetune minilm --layers 1 --frozen-states --no-cache` saves by encoding through the
states: a tuned MiniLM (1 layer) encoding MMLU-Pro questions uncached, through all six layers (what --no-cache
ran before) and through the cached frozen states (the top layer only; what it runs now), in one run.

Both go through ``encode_cached_with_stats(..., use_cache=False)``; 1 torch thread each, best of 3. The
states are computed once beforehand (timed apart: in the CLI they are kept in the encoder store, so
only a first run pays them). The tuned layer here is the packaged one (speed does not depend on its values).

    python benchmarks/frozen_states_encode.py [--n 128]   # writes benchmarks/results/frozen_states_encode.{json,md}
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def best_of(n: int, fn) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(n):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=128)
    args = parser.parse_args()
    import recroute
    from recroute.encoders.cache import encode_cached_with_stats
    from recroute.encoders.embed import dataset_texts
    from recroute.encoders.minilm import MODEL_NAME
    from recroute.encoders.minilm_finetune import TunedMiniLMEncoder, fresh_model
    from recroute.encoders.minilm_states import compute_states, states_encoder

    load0 = [round(x, 2) for x in os.getloadavg()]
    texts = dataset_texts(recroute.load_dataset("mmlu_pro"))
    texts = [texts[i] for i in np.sort(np.random.default_rng(0).choice(len(texts), args.n, replace=False))]
    model = fresh_model()
    tuned = TunedMiniLMEncoder(model, 1, f"{MODEL_NAME}-ft-bench", n_threads=1)
    start = time.perf_counter()
    states = compute_states(model, texts, [5], n_threads=1)
    states_s = time.perf_counter() - start
    route = states_encoder(tuned, states, n_threads=1)
    six_s, six = best_of(3, lambda: encode_cached_with_stats(tuned, texts, use_cache=False)[0])
    top_s, top = best_of(3, lambda: encode_cached_with_stats(tuned, texts, use_cache=False, encode_missing=route)[0])
    payload = {"n_texts": args.n, "n_word_pieces": int(states.lengths.sum()), "threads": 1,
               "six_layers_s": round(six_s, 3), "states_route_s": round(top_s, 3), "ratio": round(six_s / top_s, 2),
               "states_once_s": round(states_s, 3), "max_abs_diff": float(np.abs(six - top).max()),
               "load": [load0, [round(x, 2) for x in os.getloadavg()]]}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "frozen_states_encode.json").write_text(json.dumps(payload, indent=1))
    md = (f"# Tuned MiniLM (1 layer), uncached encoding: six layers vs the frozen states\n\n"
          f"`python benchmarks/frozen_states_encode.py --n {args.n}`: {args.n} MMLU-Pro questions "
          f"({payload['n_word_pieces']} word pieces), 1 torch thread, best of 3, load {payload['load'][0]} "
          f"to {payload['load'][1]}.\n\n"
          f"| route | seconds | |\n|---|---|---|\n"
          f"| all six layers (`--no-cache` before) | {payload['six_layers_s']} | 1.0× |\n"
          f"| the top layer on the cached states (`--no-cache` now) | {payload['states_route_s']} | "
          f"{payload['ratio']}× faster |\n\n"
          f"Computing the states once (kept in the encoder store by the CLI): {payload['states_once_s']} s. "
          f"Largest difference between the two encodings: {payload['max_abs_diff']:.1e} per coordinate "
          f"(float16 states; the module's stated tolerance is 5e-4).\n")
    (RESULTS / "frozen_states_encode.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
