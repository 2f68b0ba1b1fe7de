"""Datasets for the benchmarks by name: bundled ones, folders, or folders of the shared data."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("RECROUTE_SHARED", HERE.parent.parent / "shared"))


def resolve(name: str):
    """A bundled name or a folder, else a folder of the shared data (../shared/data/NAME)."""
    import recroute
    from recroute.data.catalog import list_datasets

    source = name if name in list_datasets() or Path(name).is_dir() else SHARED / "data" / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = recroute.load_dataset(source)
    data.name = Path(name).name
    return data
