"""Write fit_scale.py's 24,000 × 8,500 arrays straight from the synthetic generator, without the parquet.

``fit_scale.prepare`` writes ~204M records to parquet and reads them back as a dataset before caching the
dense matrix: many minutes and several GB on a shared 2-core machine. This draws the same kind of data
(recroute.data.synthetic's latent skills and P(correct), 20 skills, binary, no missing cells; prompt
embeddings as fit_scale's, noisy skill centroids) block by block into the cache files fit_scale reads, so
``python benchmarks/fit_scale.py`` then finds them and skips its own preparation. It is another draw
than the parquet's, with the same structure.

    python benchmarks/fit_scale_dense.py [--prompts 24000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    from fit_scale import DIM, N_LLMS, N_SKILLS, SCRATCH

    from recroute.atomic import atomic_file
    from recroute.data.synthetic import _latent, _probabilities

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24_000)
    n = parser.parse_args().prompts
    rng = np.random.default_rng(0)
    skill, difficulty, strength, aptitude = _latent(n, N_LLMS, N_SKILLS, 1.0, rng)
    Y = np.empty((n, N_LLMS), dtype=np.float32)
    for start in range(0, n, 2000):
        P = _probabilities(skill, difficulty, strength, aptitude, slice(start, start + 2000))
        Y[start : start + 2000] = rng.random(P.shape, dtype=np.float32) < P
    rng = np.random.default_rng(1)
    X = (rng.normal(0, 1, (N_SKILLS, DIM))[skill] + 0.5 * rng.normal(0, 1, (n, DIM))).astype(np.float32)
    SCRATCH.mkdir(exist_ok=True)
    for path, array in ((SCRATCH / f"fit_scale_Y_{N_LLMS}x{n}.npy", Y), (SCRATCH / f"fit_scale_X_{n}.npy", X)):
        with atomic_file(path) as tmp:
            np.save(tmp, array)
        print(f"wrote {path} {array.shape}")


if __name__ == "__main__":
    main()
