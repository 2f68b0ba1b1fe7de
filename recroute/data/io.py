"""Readers, validation and writers for RoutingDataset (long, wide and folder layouts).

Long records are handled as Arrow columns and int32 codes, so RouterEval's scale (≈200M records)
loads without materialising 200M Python strings.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import scipy.sparse as sp

from recroute.atomic import atomic_dir, atomic_file
from recroute.errors import DataError, describe_rows

if TYPE_CHECKING:
    from recroute.data.dataset import RoutingDataset

RECORD_COLUMNS = ("prompt_id", "llm", "score")
DUPLICATE_POLICIES = ("error", "mean", "max", "min", "first", "last")
METADATA_POLICIES = ("error", "keep")
FORMAT_VERSION = 1


# ---------------------------------------------------------------------- reading
def _read_any(source: pd.DataFrame | pa.Table | str | Path, what: str) -> tuple[pa.Table, str]:
    """A table and a label for messages ("records.parquet", "DataFrame")."""
    if isinstance(source, pa.Table):
        return source, f"{what} table"
    if isinstance(source, pd.DataFrame):
        try:
            return pa.Table.from_pandas(source, preserve_index=False), f"{what} DataFrame"
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DataError(f"{what} DataFrame has a column of mixed types: {exc}") from None
    path = Path(source)
    if not path.exists():
        raise DataError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pq.read_table(path), str(path)
        if suffix in (".csv", ".tsv", ".txt"):
            from pyarrow import csv as pacsv

            parse = pacsv.ParseOptions(delimiter="\t" if suffix == ".tsv" else ",")
            # ids stay strings; scores are parsed (and checked) later
            convert = pacsv.ConvertOptions(
                column_types={"prompt_id": pa.string(), "llm": pa.string()}, strings_can_be_null=True
            )
            return pacsv.read_csv(path, parse_options=parse, convert_options=convert), str(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {what} file {path}: {exc}") from None
    raise DataError(f"{what} file {path}: unsupported extension {suffix!r} (expected .parquet or .csv)")


BATCH_ROWS = 1 << 22


@dataclass
class LongRecords:
    """A long results table read batch by batch (bounded memory at any scale)."""

    label: str
    num_rows: int
    batches: Callable[[], Iterator[pa.RecordBatch]]


def read_long_records(source) -> LongRecords:
    """Records with the required columns checked; Parquet files are streamed by row batches."""
    if isinstance(source, (str, Path)) and Path(source).suffix.lower() in (".parquet", ".pq") and Path(source).exists():
        path = Path(source)
        try:
            handle = pq.ParquetFile(path, read_dictionary=["prompt_id", "llm"])
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataError(f"cannot read records file {path}: {exc}") from None
        names, label, num_rows = handle.schema_arrow.names, str(path), handle.metadata.num_rows
        batches = lambda: handle.iter_batches(batch_size=BATCH_ROWS, columns=list(RECORD_COLUMNS))  # noqa: E731
    else:
        table, label = _read_any(source, "records")
        names, num_rows = table.column_names, table.num_rows
        batches = lambda: table.select(list(RECORD_COLUMNS)).to_batches(max_chunksize=BATCH_ROWS)  # noqa: E731
    missing = [c for c in RECORD_COLUMNS if c not in names]
    if missing:
        raise DataError(
            f"{label}: missing column{'s' if len(missing) > 1 else ''} {missing}; "
            f"expected {list(RECORD_COLUMNS)}, found {names}"
        )
    if num_rows == 0:
        raise DataError(f"{label}: no records (the results table is empty)")
    return LongRecords(label, num_rows, batches)


def read_table(source, what: str, required: Sequence[str]) -> pd.DataFrame:
    """A metadata table (prompts or LLMs) as pandas, with its id column checked."""
    if isinstance(source, pd.DataFrame):
        table, label = source.reset_index(drop=True), f"{what} DataFrame"
    else:
        arrow, label = _read_any(source, what)
        table = arrow.to_pandas()
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise DataError(f"{label}: missing column {missing}; found {list(table.columns)}")
    key = required[0]
    null = table[key].isna().to_numpy()
    if null.any():
        raise DataError(f"{label}: column {key!r} is empty at {describe_rows(np.flatnonzero(null))}")
    table[key] = table[key].astype(str)
    dup = table[key].duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataError(
            f"{label}: column {key!r} repeats {table[key][dup].iloc[0]!r} at {describe_rows(np.flatnonzero(dup))}"
        )
    table.attrs["source"] = label
    return table


class _IdCodes:
    """Stable int32 codes for the ids of one column, across batches (first-appearance order)."""

    def __init__(self, name: str, label: str) -> None:
        self.name, self.label = name, label
        self.ids: dict[str, int] = {}
        self.values: list[str] = []

    def encode(self, column: pa.Array, offset: int) -> np.ndarray:
        if column.null_count:
            nulls = offset + np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
            raise DataError(f"{self.label}: column {self.name!r} is empty at {describe_rows(nulls)}")
        if not pa.types.is_dictionary(column.type):
            if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
                column = pc.cast(column, pa.string())
            column = pc.dictionary_encode(column)
        local = column.dictionary.cast(pa.string()).to_pylist()
        lookup = np.empty(len(local), dtype=np.int32)
        for i, value in enumerate(local):
            code = self.ids.get(value)
            if code is None:
                code = self.ids[value] = len(self.values)
                self.values.append(value)
            lookup[i] = code
        return lookup[column.indices.to_numpy(zero_copy_only=False)]

    def compact(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(codes, unique values) with values no row uses (stored dictionaries) removed."""
        uniques = np.asarray(self.values, dtype=object)
        used = np.bincount(codes, minlength=len(uniques)) > 0
        if used.all():
            return codes, uniques
        remap = (np.cumsum(used, dtype=np.int64) - 1).astype(np.int32)
        return remap[codes], uniques[used]


def _batch_scores(column: pa.Array, label: str, offset: int) -> np.ndarray:
    """float64 scores of one batch; non-numeric, empty, NaN and inf values raise with their rows."""
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or pa.types.is_boolean(column.type)):
        as_pandas = column.to_pandas()
        numeric = pd.to_numeric(as_pandas, errors="coerce")
        bad = np.flatnonzero(numeric.isna().to_numpy() & as_pandas.notna().to_numpy())
        if bad.size:
            raise DataError(
                f"{label}: column 'score' is not numeric at {describe_rows(offset + bad)} "
                f"(e.g. {as_pandas.iloc[bad[0]]!r})"
            )
        column = pa.array(numeric.to_numpy(dtype=np.float64, na_value=np.nan))
    if column.null_count:
        nulls = offset + np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))
        raise DataError(f"{label}: column 'score' has an empty or NaN value at {describe_rows(nulls)}")
    values = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        raise DataError(f"{label}: column 'score' has NaN or inf at {describe_rows(offset + np.flatnonzero(~finite))}")
    return values


def stream_records(records: LongRecords, rescale: bool):
    """(prompt codes int32, llm codes int32, scores float32, prompt uniques, llm uniques), validated."""
    n = records.num_rows
    p_codes, l_codes = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32)
    values = np.empty(n, dtype=np.float32)
    prompt_ids, llm_ids = _IdCodes("prompt_id", records.label), _IdCodes("llm", records.label)
    lo, hi, offset = np.inf, -np.inf, 0
    for batch in records.batches():
        size = batch.num_rows
        score = _batch_scores(batch.column("score"), records.label, offset)
        if not rescale:
            check_range(score, records.label, False, rows=offset + np.arange(size))
        elif size:
            lo, hi = min(lo, float(score.min())), max(hi, float(score.max()))
        values[offset:offset + size] = score
        p_codes[offset:offset + size] = prompt_ids.encode(batch.column("prompt_id"), offset)
        l_codes[offset:offset + size] = llm_ids.encode(batch.column("llm"), offset)
        offset += size
    if rescale and (lo < 0 or hi > 1):
        if hi <= lo:
            raise DataError(f"{records.label}: cannot rescale scores: they are all {lo}")
        values -= lo
        values /= hi - lo
    p_codes, p_uniques = prompt_ids.compact(p_codes)
    l_codes, l_uniques = llm_ids.compact(l_codes)
    return p_codes, l_codes, values, p_uniques, l_uniques


def check_range(values: np.ndarray, label: str, rescale: bool, rows: np.ndarray | None = None) -> np.ndarray:
    """Scores in [0, 1] as float32; min-max rescaled when asked, else an error naming the rows."""
    outside = (values < 0) | (values > 1)
    if outside.any():
        if not rescale:
            where = np.flatnonzero(outside) if rows is None else rows[outside]
            raise DataError(
                f"{label}: scores must lie in [0, 1]; found {float(values[outside][0])} at {describe_rows(where)} "
                "(pass rescale=True / --rescale to min-max them into [0, 1])"
            )
        lo, hi = float(values.min()), float(values.max())
        if hi <= lo:
            raise DataError(f"{label}: cannot rescale scores: they are all {lo}")
        values = (values - lo) / (hi - lo)
    return values.astype(np.float32, copy=False)


# ---------------------------------------------------------------------- building
def _order(uniques: np.ndarray, table: pd.DataFrame | None, key: str, policy: str, label: str):
    """Map record codes onto the final order: the metadata table's order.

    Result ids the metadata table does not know are "unknown ids": an error unless ``policy`` is
    "keep" (appended with empty metadata). Metadata rows without any result (an LLM catalogue that
    lists unevaluated LLMs) are dropped with a warning naming them, except under "keep".
    Returns (remap: code -> final position, final metadata table).
    """
    if table is None:
        return np.arange(len(uniques), dtype=np.int32), pd.DataFrame({key: uniques.astype(str)})
    if policy not in METADATA_POLICIES:
        raise DataError(f"unknown_metadata must be one of {METADATA_POLICIES}, got {policy!r}")
    src = table.attrs.get("source", f"{key} table")
    names = pd.Index(uniques.astype(str))
    present = pd.Index(table[key].astype(str)).isin(names)
    if not present.all() and policy != "keep":
        unused = table[key][~present].tolist()
        warnings.warn(
            f"{src}: dropping {len(unused)} {key} row(s) with no result in {label}: "
            f"{unused[:5]}{' ...' if len(unused) > 5 else ''}",
            stacklevel=4,
        )
        table = table[present].reset_index(drop=True)
    pos = pd.Index(table[key].astype(str)).get_indexer(names)
    extra = np.flatnonzero(pos < 0)
    if extra.size:
        if policy != "keep":
            raise DataError(
                f"{label}: {extra.size} {key} value(s) are unknown to {src}: "
                f"{uniques[extra][:5].tolist()}{' ...' if extra.size > 5 else ''} "
                "(pass unknown_metadata='keep' to accept them with empty metadata)"
            )
        pos[extra] = len(table) + np.arange(extra.size)
        table = pd.concat([table, pd.DataFrame({key: uniques[extra].astype(str)})], ignore_index=True)
    return pos.astype(np.int32), table.reset_index(drop=True)


def _aggregate(key: np.ndarray, values: np.ndarray, policy: str, label: str):
    """Sort cells by key; resolve repeated keys by ``policy``. Returns (unique keys, values)."""
    if policy not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {policy!r}")
    order = np.argsort(key, kind="stable")
    key = key[order]
    repeat = key[1:] == key[:-1]
    if not repeat.any():
        return key, values[order]
    if policy == "error":
        rows = np.sort(np.concatenate([order[1:][repeat], order[:-1][repeat]]))
        raise DataError(
            f"{label}: repeated (prompt_id, llm) pairs at {describe_rows(np.unique(rows))}; "
            f"choose duplicates= one of {DUPLICATE_POLICIES[1:]} to aggregate them"
        )
    values = values[order].astype(np.float64)
    starts = np.flatnonzero(np.concatenate([[True], ~repeat]))
    ends = np.append(starts[1:], key.size)
    reducer = {
        "mean": lambda: np.add.reduceat(values, starts) / (ends - starts),
        "max": lambda: np.maximum.reduceat(values, starts),
        "min": lambda: np.minimum.reduceat(values, starts),
        "first": lambda: values[starts],
        "last": lambda: values[ends - 1],
    }[policy]
    return key[starts], reducer()


def _strictly_sorted(prompt_idx: np.ndarray, llm_idx: np.ndarray, chunk: int = 1 << 24) -> bool:
    """Whether cells are in (prompt, llm) order with no repeat, checked in chunks (no big temporaries)."""
    for start in range(0, max(len(prompt_idx) - 1, 0), chunk):
        p = prompt_idx[start:start + chunk + 1].astype(np.int64)
        l = llm_idx[start:start + chunk + 1]
        dp = p[1:] - p[:-1]
        if not ((dp > 0) | ((dp == 0) & (l[1:] > l[:-1]))).all():
            return False
    return True


def cells_to_csr(prompt_idx: np.ndarray, llm_idx: np.ndarray, values: np.ndarray, shape, duplicates: str, label: str):
    """CSR float32 of observed cells (explicit zeros kept) from COO-style arrays.

    Cells already in (prompt, llm) order become the CSR arrays without a copy; otherwise they are
    sorted and repeated pairs resolved by ``duplicates``.
    """
    n_prompts, n_llms = shape
    if duplicates not in DUPLICATE_POLICIES:
        raise DataError(f"duplicates must be one of {DUPLICATE_POLICIES}, got {duplicates!r}")
    if _strictly_sorted(prompt_idx, llm_idx):
        rows, cols = prompt_idx, llm_idx.astype(np.int32, copy=False)
    else:
        key = prompt_idx.astype(np.int64) * n_llms + llm_idx.astype(np.int64)
        key, values = _aggregate(key, values, duplicates, label)
        rows = key // n_llms
        cols = (key - rows * n_llms).astype(np.int32)
        del key
    indptr = np.zeros(n_prompts + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_prompts), out=indptr[1:])
    if indptr[-1] < 2**31:
        indptr = indptr.astype(np.int32)
    return sp.csr_matrix((values.astype(np.float32, copy=False), cols, indptr), shape=shape, copy=False)


def build_from_records(
    cls, records: LongRecords, prompts: pd.DataFrame | None, llms: pd.DataFrame | None,
    *, duplicates: str, rescale: bool, unknown_metadata: str, name: str,
) -> "RoutingDataset":
    p_codes, l_codes, values, p_uniques, l_uniques = stream_records(records, rescale)
    p_map, prompt_table = _order(p_uniques, prompts, "prompt_id", unknown_metadata, records.label)
    l_map, llm_table = _order(l_uniques, llms, "llm", unknown_metadata, records.label)
    if not np.array_equal(p_map, np.arange(len(p_map))):
        p_codes = p_map[p_codes]
    if not np.array_equal(l_map, np.arange(len(l_map))):
        l_codes = l_map[l_codes]
    shape = (len(prompt_table), len(llm_table))
    scores = cells_to_csr(p_codes, l_codes, values, shape, duplicates, records.label)
    return cls(scores, prompt_table, llm_table, name=name)


def build_from_wide(cls, matrix, prompt_ids, llm_names, prompts, llms, *, rescale: bool, name: str):
    if isinstance(matrix, pd.DataFrame):
        prompt_ids = list(matrix.index.astype(str)) if prompt_ids is None else list(prompt_ids)
        llm_names = list(matrix.columns.astype(str)) if llm_names is None else list(llm_names)
        try:
            values = matrix.to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise DataError("wide matrix has non-numeric cells") from None
    else:
        values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise DataError(f"wide matrix must be 2-D (n_prompts, n_llms); got shape {values.shape}")
    n_prompts, n_llms = values.shape
    prompt_ids = [str(i) for i in range(n_prompts)] if prompt_ids is None else [str(p) for p in prompt_ids]
    llm_names = [f"llm_{j}" for j in range(n_llms)] if llm_names is None else [str(n) for n in llm_names]
    if len(prompt_ids) != n_prompts or len(llm_names) != n_llms:
        raise DataError(
            f"wide matrix has shape {values.shape} but {len(prompt_ids)} prompt ids and {len(llm_names)} LLM names were given"
        )
    if np.isinf(values).any():
        rows = np.flatnonzero(np.isinf(values).any(axis=1))
        raise DataError(f"wide matrix has inf at {describe_rows(rows)}")
    observed = ~np.isnan(values)
    if not observed.any():
        raise DataError("wide matrix has no observed cell (all NaN)")
    rows, cols = np.nonzero(observed)
    cell_values = check_range(values[rows, cols], "wide matrix", rescale, rows)
    prompt_table = pd.DataFrame({"prompt_id": prompt_ids})
    if prompts is not None:
        prompt_table = _merge_metadata(prompt_table, prompts, "prompt_id")
    llm_table = pd.DataFrame({"llm": llm_names})
    if llms is not None:
        llm_table = _merge_metadata(llm_table, llms, "llm")
    scores = cells_to_csr(rows, cols, cell_values, values.shape, "error", "wide matrix")
    return cls(scores, prompt_table, llm_table, name=name)


def _merge_metadata(base: pd.DataFrame, table: pd.DataFrame, key: str) -> pd.DataFrame:
    table = table.copy()
    table[key] = table[key].astype(str)
    unknown = ~table[key].isin(base[key])
    if unknown.any():
        raise DataError(f"{key} metadata names ids absent from the matrix: {table[key][unknown].head(5).tolist()}")
    return base.merge(table, on=key, how="left")


# ---------------------------------------------------------------------- folders
def load_folder(cls, path: Path) -> "RoutingDataset":
    """Load ``records.parquet`` (+ ``prompts``, ``llms``, ``embeddings.npy``, ``dataset.json``)."""
    if not path.is_dir():
        raise DataError(f"dataset folder not found: {path}")
    records = _first_existing(path, "records")
    if records is None:
        raise DataError(f"{path}: no records.parquet or records.csv (the long table prompt_id, llm, score)")
    meta = {}
    meta_file = path / "dataset.json"
    if meta_file.exists():
        try:
            meta = json.loads(meta_file.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{meta_file}: not valid JSON ({exc})") from None
    prompts = _first_existing(path, "prompts")
    llms = _first_existing(path, "llms")
    data = cls.from_long(
        records,
        prompts=prompts,
        llms=llms,
        unknown_metadata="keep" if meta.get("written_by") == "recroute" else "error",
        name=meta.get("name") or path.name,
    )
    emb = path / "embeddings.npy"
    if emb.exists():
        try:
            X = np.load(emb, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{emb}: not a plain numpy array ({exc})") from None
        data.set_embeddings(X, meta.get("embedding_name") or "unknown")
    extra = meta.get("embedding_files") or {}
    if not isinstance(extra, dict):
        raise DataError(f"{meta_file}: 'embedding_files' must map encoder names to .npy files in the folder")
    for name, file in extra.items():  # more sets, by encoder name: embed_dataset picks the one it needs
        target = path / str(file)
        if Path(str(file)).name != str(file) or target.suffix != ".npy" or not target.is_file():
            raise DataError(f"{meta_file}: embedding_files[{name!r}] = {file!r} is not a .npy file in {path}")
        if str(file) == emb.name and data.embeddings is not None:  # the main file under another encoder's name
            data.add_embedding_set(data.embeddings, str(name))
            continue
        try:
            X = np.load(target, allow_pickle=False)
        except ValueError as exc:
            raise DataError(f"{target}: not a plain numpy array ({exc})") from None
        data.add_embedding_set(X, str(name))
    return data


def _first_existing(path: Path, stem: str) -> Path | None:
    for suffix in (".parquet", ".csv"):
        if (path / f"{stem}{suffix}").exists():
            return path / f"{stem}{suffix}"
    return None


def records_table(data: "RoutingDataset") -> pa.Table:
    """The observed cells as an Arrow table with dictionary-encoded ids (cheap at any scale)."""
    csr = data.scores
    rows = np.repeat(np.arange(data.n_prompts, dtype=np.int32), np.diff(csr.indptr))
    prompt_dict = pa.array(data.prompts["prompt_id"].tolist(), type=pa.string())
    llm_dict = pa.array(data.llms["llm"].tolist(), type=pa.string())
    return pa.table(
        {
            "prompt_id": pa.DictionaryArray.from_arrays(pa.array(rows), prompt_dict),
            "llm": pa.DictionaryArray.from_arrays(pa.array(csr.indices.astype(np.int32)), llm_dict),
            "score": pa.array(csr.data.astype(np.float32)),
        }
    )


def save_folder(data: "RoutingDataset", path: Path) -> Path:
    """Write the dataset folder atomically: a temp folder beside it, then a rename."""
    with atomic_dir(path) as tmp:
        pq.write_table(records_table(data), tmp / "records.parquet")
        pq.write_table(pa.Table.from_pandas(_plain(data.prompts), preserve_index=False), tmp / "prompts.parquet")
        pq.write_table(pa.Table.from_pandas(_plain(data.llms), preserve_index=False), tmp / "llms.parquet")
        meta = {"written_by": "recroute", "format_version": FORMAT_VERSION, "name": data.name}
        if data.embeddings is not None:
            np.save(tmp / "embeddings.npy", data.embeddings)
            meta["embedding_name"] = data.embedding_name
        (tmp / "dataset.json").write_text(json.dumps(meta, indent=2))
    return Path(path)


def _plain(table: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding strings and None become string columns Arrow can write."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(lambda v: None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
    return out


# ---------------------------------------------------------------------- wide files and frames
def read_wide(source: str | Path) -> pd.DataFrame:
    """A wide file (Parquet/CSV): a ``prompt_id`` column (or the first column) then one column per LLM."""
    table, label = _read_any(source, "wide matrix")
    frame = table.to_pandas()
    key = "prompt_id" if "prompt_id" in frame.columns else frame.columns[0]
    if frame.shape[1] < 2:
        raise DataError(f"{label}: a wide matrix needs an id column and at least one LLM column")
    frame = frame.set_index(key)
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise DataError(f"{label}: LLM column(s) {bad[:5]} are not numeric")
    return frame


def write_frame(frame: pd.DataFrame, path: str | Path, fmt: str) -> Path:
    """Write a DataFrame as Parquet or CSV atomically."""
    if fmt not in ("parquet", "csv"):
        raise DataError(f"unknown table format {fmt!r}; expected parquet or csv")
    with atomic_file(path) as tmp:
        if fmt == "parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False)
    return Path(path)
