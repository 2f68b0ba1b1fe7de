"""Shared test fixtures: where the shared real data lives, small datasets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RECROUTE_SHARED", REPO.parent / "shared")).resolve()
DATA = SHARED / "data"
FIXTURE = SHARED / "routereval" / "llmrouter_nim_router_dataset.pkl"
REFERENCE = SHARED / "routereval" / "llmrouter_nim_reference.json"


def shared_or_skip(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared data not found at {path} (set RECROUTE_SHARED)")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return shared_or_skip(DATA)


@pytest.fixture(scope="session")
def routereval_fixture() -> Path:
    return shared_or_skip(FIXTURE)
