"""Named datasets shipped inside the package, and ``load_dataset(NAME | PATH)``."""

from __future__ import annotations

from pathlib import Path

from recroute.errors import DataError

BUNDLED_ROOT = Path(__file__).parent / "bundled"


def list_datasets() -> list[str]:
    """Names of the datasets bundled with recroute."""
    return sorted(p.name for p in BUNDLED_ROOT.iterdir() if (p / "records.parquet").exists())


def dataset_path(name_or_path: str | Path) -> Path:
    """The folder of a bundled dataset name, or the given folder path."""
    candidate = Path(name_or_path)
    if candidate.is_dir():
        return candidate
    bundled = BUNDLED_ROOT / str(name_or_path)
    if bundled.is_dir() and (bundled / "records.parquet").exists():
        return bundled
    raise DataError(
        f"no dataset {str(name_or_path)!r}: not a bundled name ({', '.join(list_datasets())}) "
        "and not a folder holding records.parquet"
    )


def load_dataset(name_or_path: str | Path):
    """Load a bundled dataset by name (``"mmlu_pro"``) or any folder in the long layout.

    The folder holds ``records.parquet`` (prompt_id, llm, score) and optionally ``prompts.parquet``,
    ``llms.parquet`` and ``embeddings.npy`` (float32 (n_prompts, d) rows in prompt-table order).
    A ``.pkl`` path is read as a RouterEval router_dataset pickle.
    """
    from recroute.data.dataset import RoutingDataset

    if str(name_or_path).endswith(".pkl"):
        return RoutingDataset.from_routereval(name_or_path)
    return RoutingDataset.load(dataset_path(name_or_path))
