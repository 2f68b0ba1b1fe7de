"""RouterEval ``router_dataset`` pickles: safe reading, conversion, and building them from any dataset.

Layout (RouterEval's get_router_dataset.py / test_router.py)::

    {"easy": {3: {"all_strong": {"data": {"train_score", "val_score", "test_score", ["train_label"]},
                                 "model": array of names}, "all_weak": ..., "strong_to_weak": ...}, 5: ...},
     "hard": {10: ..., 100: ..., 1000: ...},
     "split_index": {"train_indices", "val_indices", "test_indices"},
     "embedding": {"train_embed", "val_embed", "test_embed"},
     "prompt": {"train_prompt", "val_prompt", "test_prompt"}}

Score arrays are (n_split_prompts, m); split indices are positions in the benchmark's prompt order.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recroute.errors import DataError, UnsafePickleError

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset

PARTS = ("train", "val", "test")
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("builtins", "bytearray"),
}


class _PlainDataUnpickler(pickle.Unpickler):
    """Admits numpy arrays and scalars, dicts, lists, tuples, strings and numbers; nothing else."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to load {module}.{name}: RouterEval pickles may only hold numpy arrays, "
            "dicts, lists, tuples, strings and numbers"
        )


def safe_load_pickle(source: str | Path | bytes) -> Any:
    """Unpickle plain data only (see :class:`_PlainDataUnpickler`)."""
    if isinstance(source, (bytes, bytearray)):
        stream, label = io.BytesIO(source), "pickle bytes"
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"RouterEval pickle not found: {path}")
        stream, label = open(path, "rb"), str(path)
    with stream:
        try:
            obj = _PlainDataUnpickler(stream).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{label}: {exc}") from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
            raise DataError(f"{label}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    _check_object_arrays(obj, label)
    return obj


def _check_object_arrays(obj: Any, label: str) -> None:
    """Object arrays (names, prompts) must hold only strings or numbers."""
    if isinstance(obj, dict):
        for value in obj.values():
            _check_object_arrays(value, label)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _check_object_arrays(value, label)
    elif isinstance(obj, np.ndarray) and obj.dtype == object:
        for value in obj.ravel():
            if not isinstance(value, (str, int, float, np.generic)) and value is not None:
                raise UnsafePickleError(f"{label}: object array holds a {type(value).__name__}")


def load_router_dataset(source: str | Path | dict) -> dict:
    """A validated RouterEval router_dataset dict from a path (safe unpickling) or a dict."""
    if not isinstance(source, (dict, str, Path, bytes, bytearray)):
        raise DataError(f"router_dataset: expected a dict or a pickle path, got {type(source).__name__}")
    obj = source if isinstance(source, dict) else safe_load_pickle(source)
    label = "router_dataset" if isinstance(source, dict) else str(source)
    validate_router_dataset(obj, label)
    return obj


def iter_groups(router_dataset: dict):
    """Yield (setting, m, group, entry) for every filled candidate group."""
    for setting in ("easy", "hard"):
        for m, groups in (router_dataset.get(setting) or {}).items():
            for group, entry in (groups or {}).items():
                if entry and entry.get("data") is not None and entry.get("model") is not None:
                    yield setting, int(m), group, entry


def validate_router_dataset(obj: Any, label: str) -> None:
    """Shapes and keys of a router_dataset; DataError naming the first inconsistency."""
    if not isinstance(obj, dict):
        raise DataError(f"{label}: expected a dict at the top level, got {type(obj).__name__}")
    if "split_index" not in obj:
        raise DataError(f"{label}: missing key 'split_index'")
    sizes = {}
    for part in PARTS:
        idx = obj["split_index"].get(f"{part}_indices")
        if idx is None:
            raise DataError(f"{label}: missing split_index/{part}_indices")
        sizes[part] = len(idx)
    groups = list(iter_groups(obj))
    if not groups:
        raise DataError(f"{label}: no candidate group with data under 'easy' or 'hard'")
    for setting, m, group, entry in groups:
        where = f"{label}: {setting}/{m}/{group}"
        models = np.asarray(entry["model"])
        if models.ndim != 1:
            raise DataError(f"{where}/model must be a 1-D array of names")
        for part in PARTS:
            arr = entry["data"].get(f"{part}_score")
            if arr is None:
                raise DataError(f"{where}: missing data/{part}_score")
            arr = np.asarray(arr)
            if arr.shape != (sizes[part], len(models)):
                raise DataError(
                    f"{where}/{part}_score has shape {arr.shape}; expected ({sizes[part]}, {len(models)}) "
                    f"= (len({part}_indices), len(model))"
                )
            if not np.isfinite(arr.astype(np.float64)).all():
                raise DataError(f"{where}/{part}_score has NaN or inf")
        label_arr = entry["data"].get("train_label")
        if label_arr is not None and np.asarray(label_arr).shape != (sizes["train"], len(models)):
            raise DataError(f"{where}/train_label has shape {np.asarray(label_arr).shape}")
    for key, suffix in (("embedding", "embed"), ("prompt", "prompt")):
        block = obj.get(key) or {}
        for part in PARTS:
            arr = block.get(f"{part}_{suffix}")
            if arr is not None and len(arr) != sizes[part]:
                raise DataError(f"{label}: {key}/{part}_{suffix} has {len(arr)} rows; expected {sizes[part]}")


def dataset_from_routereval(cls, source: str | Path | dict, name: str = "") -> "RoutingDataset":
    """One RoutingDataset holding every LLM of every group; prompts in the benchmark's order.

    Prompt ids are the benchmark positions (``split_index`` values); the ``split`` column says
    train/val/test; embeddings and texts come along when present. An LLM that appears in several
    groups must have the same scores in each.
    """
    rd = load_router_dataset(source)
    label = str(source) if not isinstance(source, dict) else "router_dataset"
    positions = np.concatenate([np.asarray(rd["split_index"][f"{p}_indices"], dtype=np.int64) for p in PARTS])
    if len(np.unique(positions)) != len(positions):
        raise DataError(f"{label}: split_index parts overlap or repeat a prompt")
    part_of = np.concatenate([np.full(len(rd["split_index"][f"{p}_indices"]), p, dtype=object) for p in PARTS])
    order = np.argsort(positions, kind="stable")
    columns: dict[str, np.ndarray] = {}
    cost_columns: dict[str, np.ndarray] = {}  # recroute's extension: {part}_cost blocks beside the scores
    for setting, m, group, entry in iter_groups(rd):
        Y = np.concatenate([np.asarray(entry["data"][f"{p}_score"], dtype=np.float32) for p in PARTS])[order]
        C = None
        if all(entry["data"].get(f"{p}_cost") is not None for p in PARTS):
            from recroute.data.costs import check_cost_values

            C = np.concatenate([np.asarray(entry["data"][f"{p}_cost"], dtype=np.float64) for p in PARTS])[order]
            check_cost_values(C.ravel(), f"{label}: {setting}/{m}/{group} costs")
        for j, llm in enumerate(np.asarray(entry["model"]).astype(str)):
            if llm in columns and not np.array_equal(columns[llm], Y[:, j]):
                raise DataError(f"{label}: LLM {llm!r} has different scores in {setting}/{m}/{group} than elsewhere")
            columns[llm] = Y[:, j]
            if C is not None:
                cost_columns[llm] = C[:, j]
    names = list(columns)
    dense = np.stack([columns[n] for n in names], axis=1)
    if ((dense < 0) | (dense > 1)).any():
        raise DataError(f"{label}: scores outside [0, 1]")
    prompts = pd.DataFrame({"prompt_id": positions[order].astype(str), "split": part_of[order]})
    texts = rd.get("prompt") or {}
    if all(texts.get(f"{p}_prompt") is not None for p in PARTS):
        prompts["text"] = np.concatenate([np.asarray(texts[f"{p}_prompt"], dtype=object) for p in PARTS])[order]
    # a RouterEval pickle is dense: every cell is observed (zeros included)
    cell_costs = None
    if cost_columns:
        costs = np.stack([cost_columns.get(n, np.full(len(dense), np.nan)) for n in names], axis=1)
        cell_costs = _dense_csr(costs)
    data = cls(_dense_csr(dense), prompts, pd.DataFrame({"llm": names}), name=name or Path(label).stem,
               cell_costs=cell_costs)
    emb = rd.get("embedding") or {}
    if all(emb.get(f"{p}_embed") is not None for p in PARTS):
        X = np.concatenate([np.asarray(emb[f"{p}_embed"], dtype=np.float32) for p in PARTS])[order]
        data.set_embeddings(X, "routereval")
    return data


def _dense_csr(dense: np.ndarray) -> sp.csr_matrix:
    n, m = dense.shape
    indptr = np.arange(0, n * m + 1, m, dtype=np.int64)
    indices = np.tile(np.arange(m, dtype=np.int32), n)
    return sp.csr_matrix((dense.ravel().astype(np.float32), indices, indptr), shape=(n, m))


def sorted_prompt_order(data: "RoutingDataset") -> np.ndarray:
    """int64 (n_prompts,): dataset positions in prompt-id order, the order of ``prompt_order="sorted"``."""
    return np.argsort(data.prompt_ids.astype(str), kind="stable")


def routereval_train_prompts(data: "RoutingDataset", seed: int = 42) -> np.ndarray:
    """int64 dataset positions of the training part of RouterEval's split as :func:`build_router_dataset`
    draws it (sorted prompt order, the first draws of ``RandomState(seed)``), in ascending order."""
    from recroute.data.splits import routereval_split

    order = sorted_prompt_order(data)
    tasks = data.prompts["task"].to_numpy()[order] if "task" in data.prompts else None
    split = routereval_split(tasks, data.n_prompts, rng=np.random.RandomState(seed))
    return np.sort(order[split.train]).astype(np.int64)


def build_router_dataset(
    data: "RoutingDataset",
    settings: dict[str, tuple[int, ...]] | None = None,
    *,
    seed: int = 42,
    prompt_order: str = "sorted",
    labels: str = "auto",
    embeddings: np.ndarray | None = None,
    costs: np.ndarray | None = None,
) -> dict:
    """A RouterEval router_dataset dict built from any dataset, the way get_router_dataset.py does.

    One legacy RandomState(seed) stream: the stratified split by ``task`` first, then every
    strong_to_weak draw in the order easy m=3, 5, hard m=10, 100, 1000 (all_strong, all_weak,
    strong_to_weak). Unobserved cells are filled with 0. ``prompt_order="sorted"`` (the default)
    orders prompts by id and LLMs by name, as the pandas pivot that feeds RouterEval's construction
    does, so the result does not depend on the order of rows in the source files (the shared fixture
    and the reference numbers were made this way); "dataset" keeps the dataset's order. Settings whose
    m exceeds the usable pool are left empty. ``labels``: "auto" adds ``train_label`` (0.95 × best
    rule) when scores are continuous, "always" / "never" force it. ``costs`` (n_prompts, n_llms) in the
    dataset's order (e.g. ``data.costs()``) adds ``{part}_cost`` blocks beside the scores (recroute's
    extension; RouterEval's own code ignores them).
    """
    from recroute.data.labels import process_label
    from recroute.data.splits import routereval_split
    from recroute.eval.groups import SETTINGS, GROUPS, can_select, select_candidates

    settings = SETTINGS if settings is None else settings
    if prompt_order not in ("dataset", "sorted"):
        raise DataError(f"prompt_order must be 'dataset' or 'sorted', got {prompt_order!r}")
    if costs is not None:
        costs = np.asarray(costs, dtype=np.float64)
        if costs.shape != data.shape:
            raise DataError(f"costs must have shape {data.shape} (n_prompts, n_llms); got {costs.shape}")
    if prompt_order == "sorted":
        order = sorted_prompt_order(data)
        llm_order = np.argsort(data.llm_names.astype(str), kind="stable")
        data = data.subset(prompts=order, llms=llm_order)
        if embeddings is not None:
            embeddings = np.asarray(embeddings)[order]
        if costs is not None:
            costs = costs[order][:, llm_order]
    Y = data.dense(fill=0.0)
    rng = np.random.RandomState(seed)
    split = routereval_split(data.prompts["task"], data.n_prompts, rng=rng)
    parts = {"train": split.train, "val": split.val, "test": split.test}
    add_labels = labels == "always" or (labels == "auto" and data.score_type == "continuous")
    names = data.llm_names.astype(str)
    means = Y.mean(axis=0)
    out: dict = {"easy": {}, "hard": {}}
    for setting, sizes in settings.items():
        out.setdefault(setting, {})
        for m in sizes:
            if not can_select(means, m):
                continue
            out[setting][m] = {}
            for group in GROUPS:
                cols = select_candidates(Y, m, group, rng)
                block = {f"{p}_score": Y[idx][:, cols] for p, idx in parts.items()}
                if costs is not None:
                    block.update({f"{p}_cost": costs[idx][:, cols] for p, idx in parts.items()})
                if add_labels:
                    block["train_label"] = process_label(block["train_score"])
                out[setting][m][group] = {"data": block, "model": names[cols].astype(object)}
    out["split_index"] = {f"{p}_indices": idx for p, idx in parts.items()}
    X = data.embeddings if embeddings is None else np.asarray(embeddings, dtype=np.float32)
    if X is not None:
        out["embedding"] = {f"{p}_embed": X[idx] for p, idx in parts.items()}
    texts = np.asarray(data.texts, dtype=object)
    out["prompt"] = {f"{p}_prompt": texts[idx] for p, idx in parts.items()}
    return out


def save_router_dataset(router_dataset: dict, path: str | Path) -> Path:
    """Write a router_dataset pickle atomically (it holds plain data only)."""
    from recroute.atomic import atomic_file

    with atomic_file(path) as tmp:
        tmp.write_bytes(pickle.dumps(router_dataset, protocol=4))
    return Path(path)
