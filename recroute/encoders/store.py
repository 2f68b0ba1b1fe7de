"""Where encoder artefacts made on this machine live (exported ONNX graphs, distilled static vectors).

Root: ``$RECROUTE_ENCODER_CACHE``, else ``$RECROUTE_CACHE/_encoders`` when the embedding cache root
is moved (the leading ``_`` cannot clash with an embedding-cache folder name), else
``~/.cache/recroute/encoders``. Each artefact is one folder, built under a temporary name and
renamed into place once complete (``recroute.atomic``), with a ``meta.json`` recording what it is
and the sha256 of its main file. The folder's name ends with a hash of the recipe
(``minilm-int8-<10 hex>``), so checkouts or library versions that make an artefact differently
each keep their own instead of rebuilding each other's. Several processes may build the same
artefact at once: the first rename wins and the others' copies are discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from recroute.errors import SavedArtifactError

ENCODER_CACHE_ENV = "RECROUTE_ENCODER_CACHE"
META_FILE = "meta.json"


def encoder_cache_dir() -> Path:
    """The root folder of encoder artefacts (see the module docstring)."""
    env = os.environ.get(ENCODER_CACHE_ENV)
    if env:
        return Path(env).expanduser()
    emb = os.environ.get("RECROUTE_CACHE")
    if emb:
        return Path(emb).expanduser() / "_encoders"
    return Path.home() / ".cache" / "recroute" / "encoders"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_meta(folder: Path) -> dict | None:
    """The artefact's ``meta.json`` as a dict, or None when the folder is absent or incomplete."""
    file = Path(folder) / META_FILE
    if not file.exists():
        return None
    try:
        meta = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def artifact_dir(root: Path, base: str, recipe: dict) -> Path:
    """``root/<base>-<first 10 hex of sha256(recipe as sorted JSON)>``."""
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:10]
    return Path(root) / f"{base}-{digest}"


def ensure_artifact(folder: Path, recipe: dict, build: Callable[[Path], dict]) -> dict:
    """The meta of the artefact in ``folder``, building it first when missing or made by another recipe.

    ``build(tmp)`` fills the empty temporary folder ``tmp`` and returns extra meta fields (e.g.
    ``{"file": "model.onnx", "sha256": ...}``); ``recipe`` (JSON-able) identifies how it is made and
    is compared with the stored one, so a changed recipe rebuilds instead of reusing stale files
    (with :func:`artifact_dir` names a different recipe gets a different folder anyway).
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if meta is not None and meta.get("recipe") == recipe:
        return meta
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        extra = build(tmp)
        meta = {"recipe": recipe, **extra}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
        os.chmod(tmp, 0o777 & ~_umask())
        if folder.exists():  # stale (other recipe) or half-made by a crashed run: replace it
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            try:
                os.replace(folder, old)
            except OSError:
                pass
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished first: use its copy when it is complete
            shutil.rmtree(tmp, ignore_errors=True)
            theirs = read_meta(folder)
            if theirs is None or theirs.get("recipe") != recipe:
                raise
            return theirs
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def check_file(folder: Path, meta: dict) -> Path:
    """The artefact's main file, after checking it against the sha256 in its meta."""
    path = Path(folder) / str(meta.get("file", ""))
    if not path.is_file():
        raise SavedArtifactError(f"{folder}: {META_FILE} names {meta.get('file')!r}, which does not exist")
    if file_sha256(path) != meta.get("sha256"):
        raise SavedArtifactError(
            f"{path}: checksum differs from {META_FILE} (damaged?); delete {folder} and it is rebuilt"
        )
    return path
