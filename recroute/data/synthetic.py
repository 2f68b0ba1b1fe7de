"""Synthetic evaluation results: skills × difficulty, popularity skew, missing cells, any size.

Each prompt needs one of ``n_skills`` skills and has a difficulty; each LLM has a general strength
(skewed by ``popularity_skew`` so a few LLMs are best on average) and a per-skill aptitude.
P(correct) = sigmoid(strength + aptitude[skill] - difficulty). Prompt embeddings are noisy skill
centroids, so a router can learn which LLM fits which prompt.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recroute.data.dataset import RoutingDataset
from recroute.data.io import cells_to_csr
from recroute.errors import DataError


def _latent(n_prompts: int, n_llms: int, n_skills: int, popularity_skew: float, rng: np.random.Generator):
    skill = rng.integers(0, n_skills, n_prompts)
    difficulty = rng.normal(0.0, 1.0, n_prompts)
    strength = popularity_skew * np.sort(rng.normal(0.0, 1.0, n_llms))[::-1]
    aptitude = rng.normal(0.0, 1.5, (n_llms, n_skills))
    return skill, difficulty, strength, aptitude


def _probabilities(skill, difficulty, strength, aptitude, rows: slice) -> np.ndarray:
    """float32 (len(rows), n_llms) P(correct) for a block of prompts."""
    logits = strength[None, :] + aptitude[:, skill[rows]].T - difficulty[rows, None]
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def make_synthetic(
    n_prompts: int = 1000,
    n_llms: int = 10,
    n_skills: int = 5,
    *,
    popularity_skew: float = 1.0,
    missing_rate: float = 0.0,
    binary: bool = True,
    embedding_dim: int = 32,
    embedding_noise: float = 0.5,
    random_state: int = 0,
) -> RoutingDataset:
    """A RoutingDataset with embeddings (float32 (n_prompts, embedding_dim)) and task = skill.

    ``binary``: Bernoulli draws of P(correct); otherwise the probabilities themselves (continuous).
    ``missing_rate``: share of cells left unobserved (each prompt keeps at least one result).
    """
    if n_prompts < 1 or n_llms < 1 or n_skills < 1:
        raise DataError("n_prompts, n_llms and n_skills must be positive")
    if not 0 <= missing_rate < 1:
        raise DataError(f"missing_rate must be in [0, 1); got {missing_rate}")
    rng = np.random.default_rng(random_state)
    skill, difficulty, strength, aptitude = _latent(n_prompts, n_llms, n_skills, popularity_skew, rng)
    P = _probabilities(skill, difficulty, strength, aptitude, slice(None))
    Y = (rng.random(P.shape) < P).astype(np.float32) if binary else P
    observed = rng.random(Y.shape) >= missing_rate
    observed[np.arange(n_prompts), rng.integers(0, n_llms, n_prompts)] = True
    rows, cols = np.nonzero(observed)
    scores = cells_to_csr(rows, cols, Y[rows, cols], Y.shape, "error", "synthetic")
    prompts = pd.DataFrame(
        {
            "prompt_id": [f"p{i}" for i in range(n_prompts)],
            "text": None,
            "benchmark": "synthetic",
            "task": [f"skill_{s}" for s in skill],
            "split": None,
        }
    )
    llms = pd.DataFrame({"llm": [f"llm_{j}" for j in range(n_llms)], "strength": strength})
    centroids = rng.normal(0.0, 1.0, (n_skills, embedding_dim))
    X = centroids[skill] + embedding_noise * rng.normal(0.0, 1.0, (n_prompts, embedding_dim))
    return RoutingDataset(scores, prompts, llms, embeddings=X.astype(np.float32), embedding_name="synthetic", name="synthetic")


def write_synthetic_parquet(
    path: str | Path,
    n_prompts: int,
    n_llms: int,
    *,
    n_skills: int = 20,
    popularity_skew: float = 1.0,
    block_prompts: int = 500,
    random_state: int = 0,
) -> int:
    """Stream a binary long Parquet (prompt_id, llm, score) of any size; returns the record count.

    Writes one row group per block of prompts with dictionary-encoded ids, so RouterEval's scale
    (8,500 LLMs × 24,000 prompts ≈ 200M records) is written in bounded memory.
    """
    rng = np.random.default_rng(random_state)
    skill, difficulty, strength, aptitude = _latent(n_prompts, n_llms, n_skills, popularity_skew, rng)
    prompt_dict = pa.array([f"p{i}" for i in range(n_prompts)], type=pa.string())
    llm_dict = pa.array([f"llm_{j}" for j in range(n_llms)], type=pa.string())
    schema = pa.schema(
        [
            ("prompt_id", pa.dictionary(pa.int32(), pa.string())),
            ("llm", pa.dictionary(pa.int32(), pa.string())),
            ("score", pa.float32()),
        ]
    )
    total = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for start in range(0, n_prompts, block_prompts):
            rows = slice(start, min(start + block_prompts, n_prompts))
            P = _probabilities(skill, difficulty, strength, aptitude, rows)
            Y = (rng.random(P.shape, dtype=np.float32) < P).astype(np.float32)
            n_rows = P.shape[0]
            p_idx = np.repeat(np.arange(start, start + n_rows, dtype=np.int32), n_llms)
            l_idx = np.tile(np.arange(n_llms, dtype=np.int32), n_rows)
            table = pa.table(
                {
                    "prompt_id": pa.DictionaryArray.from_arrays(pa.array(p_idx), prompt_dict),
                    "llm": pa.DictionaryArray.from_arrays(pa.array(l_idx), llm_dict),
                    "score": pa.array(Y.ravel()),
                },
                schema=schema,
            )
            writer.write_table(table)
            total += table.num_rows
    return total
